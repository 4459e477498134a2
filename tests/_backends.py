"""The array libraries the test suite runs on: smoothl1.testing's registry, with pytest's skip."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

from smoothl1.testing._backends import LIBRARIES, library, library_of
from smoothl1.testing._backends import to_numpy as _to_numpy

BACKENDS = [lib.name for lib in LIBRARIES]


def backend_namespace(name: str) -> ModuleType:
    """The namespace a user of ``name`` gets from ``array_namespace``, or skip."""
    lib = library(name)
    reason = lib.missing()
    if reason:
        pytest.skip(f"{name}: {reason}")
    return lib.namespace()


def backend_name(xp: ModuleType) -> str:
    return library_of(xp).name


def is_exact_backend(xp: ModuleType) -> bool:
    """Backends on which float32/float64 elementwise results are torch's bits (not JAX)."""
    return library_of(xp).exact


def asarray(xp: ModuleType, a: Any, dtype: str | None = None) -> Any:
    """A backend array from NumPy data; ``dtype`` by name (``'bfloat16'`` allowed)."""
    a = np.asarray(a)
    if dtype == "bfloat16":
        return xp.astype(xp.asarray(a.astype(np.float32)), xp.bfloat16)
    if dtype is not None:
        a = a.astype(dtype)
    return xp.asarray(a)


def to_numpy(x: Any) -> np.ndarray:
    """Values of a backend array as NumPy (bfloat16 widened to float32)."""
    return _to_numpy(x)


def dtype_name(x: Any) -> str:
    return str(x.dtype).rpartition(".")[2]
