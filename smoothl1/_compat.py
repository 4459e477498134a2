"""Array-namespace resolution.

This is the only module of smoothl1 that imports ``array_api_compat``; everything
else asks it for the namespace of its arguments.  It turns array-api-compat's
generic errors into messages that name smoothl1's own parameters.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import array_api_compat

__all__ = [
    "Array",
    "array_size",
    "describe",
    "is_array",
    "is_numpy_backed",
    "namespace_of",
    "numpy_kernel_namespace",
    "torch_namespace",
]

#: Any array-API array (NumPy, CuPy, torch, JAX, dask, array-api-strict, ...).
Array = Any


def is_array(obj: object) -> bool:
    """Whether ``obj`` is an array that array-api-compat can dispatch on."""
    return bool(array_api_compat.is_array_api_obj(obj))


def describe(obj: object) -> str:
    """A short, human name for the type of ``obj``, e.g. ``'numpy.ndarray'``."""
    cls = type(obj)
    module = cls.__module__.partition(".")[0]
    if module == "jaxlib":  # jax arrays live in jaxlib's private modules
        module = "jax"
    return f"{module}.{cls.__qualname__}"


def namespace_of(
    func: str, *, optional: tuple[str, ...] = (), **arrays: object
) -> ModuleType:
    """Return the array namespace shared by the named ``arrays``.

    Parameters
    ----------
    func
        Name of the public function, used in error messages.
    optional
        Names of parameters that may also be ``None`` or a Python number;
        those values are not arrays of any library and are skipped.
    **arrays
        The arrays by parameter name.

    Raises
    ------
    TypeError
        If a required array is not an array, or if the arrays come from more
        than one array library.
    """
    found: dict[str, object] = {}
    for name, value in arrays.items():
        if name in optional and (value is None or isinstance(value, (int, float))):
            continue
        if not is_array(value):
            what = "an array or a real number" if name in optional else "an array"
            raise TypeError(
                f"{func}: {name} must be {what} (NumPy, CuPy, torch, JAX, dask, "
                f"array-api-strict, ...), got {describe(value)}; convert it first, "
                f"e.g. with numpy.asarray({name})"
            )
        found[name] = value
    try:
        return array_api_compat.array_namespace(*found.values())
    except TypeError:
        kinds = ", ".join(f"{name} is a {describe(v)}" for name, v in found.items())
        raise TypeError(
            f"{func}: arrays from different array libraries cannot be mixed ({kinds}); "
            "convert them to one library first"
        ) from None


#: Namespaces whose arithmetic is NumPy's, which reports overflow and invalid
#: operations as warnings where torch and JAX stay silent.
_NUMPY_BACKED = frozenset({"array_api_compat.numpy", "numpy", "array_api_strict", "sparse"})


def is_numpy_backed(xp: ModuleType) -> bool:
    """Whether ``xp`` computes eagerly with NumPy (a plain name check, safe under Dynamo)."""
    return xp.__name__ in _NUMPY_BACKED


def torch_namespace() -> ModuleType:
    """array-api-compat's torch namespace, for the torch adapter (no lookup by type)."""
    import array_api_compat.torch

    return array_api_compat.torch


def array_size(x: Array) -> int | None:
    """Number of elements of ``x``, or ``None`` when it is not known yet (lazy dask)."""
    n = array_api_compat.size(x)
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return None
    return int(n)


def numpy_kernel_namespace() -> ModuleType:
    """The namespace for NumPy block kernels: ``numpy`` itself from 2.1 on.

    NumPy 2.1 implements the standard's functions used here (``clip`` with Python
    bounds, ``vecdot``, ``astype``) in its main namespace, with less overhead per
    call than the compat wrapper; older NumPy gets the wrapper.
    """
    import numpy as np

    if np.lib.NumpyVersion(np.__version__) >= "2.1.0":
        return np
    import array_api_compat.numpy

    return array_api_compat.numpy
