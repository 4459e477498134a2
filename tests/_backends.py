"""The array libraries the test suite runs on, and conversions to and from NumPy."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
import pytest

BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask", "cupy"]


def _cupy_runs() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:  # a broken CUDA install is "cannot run", not a test failure
        return False


def backend_namespace(name: str) -> ModuleType:
    """The namespace a user of ``name`` gets from ``array_namespace``, or skip."""
    if name == "cupy" and not _cupy_runs():
        pytest.skip("CuPy is not installed or no CUDA GPU is available")
    module = {"dask": "dask.array"}.get(name, name)
    mod = pytest.importorskip(module)
    if name == "array_api_strict":
        # the strictest settings: no data-dependent shapes, no extensions
        mod.set_array_api_strict_flags(
            boolean_indexing=False, data_dependent_shapes=False, enabled_extensions=()
        )
        return mod
    if name == "jax":
        import jax.numpy as jnp

        return jnp
    return array_api_compat.array_namespace(mod.asarray(np.zeros(1)))


def backend_name(xp: ModuleType) -> str:
    name = xp.__name__
    for key in ("array_api_strict", "torch", "jax", "dask", "cupy", "numpy"):
        if key in name:
            return key
    raise AssertionError(name)


def is_exact_backend(xp: ModuleType) -> bool:
    """Backends on which float32/float64 elementwise results are torch's bits (not JAX)."""
    return backend_name(xp) != "jax"


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
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return np.asarray(x.numpy())
    if array_api_compat.is_dask_array(x):
        return np.asarray(x.compute())
    if array_api_compat.is_cupy_array(x):
        return np.asarray(x.get())
    if type(x).__module__.startswith("array_api_strict"):
        return np.from_dlpack(x)
    if array_api_compat.is_jax_array(x) and "bfloat16" in str(x.dtype):
        return np.asarray(x.astype("float32"))
    return np.asarray(x)


def dtype_name(x: Any) -> str:
    return str(x.dtype).rpartition(".")[2]
