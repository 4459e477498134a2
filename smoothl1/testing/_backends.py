"""The one table of array libraries: how to reach each, move data in and out, wait, differentiate.

``python -m smoothl1 check``, the demo, the conformance runner, the benchmark
and the test suite all read this table; adding an array library is one entry
in :data:`LIBRARIES`.  smoothl1's *library* never reads it (the library finds a
framework by its arrays, in :mod:`smoothl1._backends`); this is for the tools
that drive many libraries at once.  Frameworks are imported only when an entry
is used.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["LIBRARIES", "Library", "library", "library_of", "to_numpy"]

#: ``fn(x, y) -> loss``, differentiated by a framework's autodiff.
Loss = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Library:
    """How the tools drive one array library.

    Attributes
    ----------
    name
        Short name (``"numpy"``, ``"torch"``, ...), as in test ids and tables.
    module
        The module whose presence means the library is installed (``"dask.array"``).
    namespace
        The array-API namespace a user of the library gets from
        ``array_api_compat.array_namespace`` (the strictest settings for
        array-api-strict).
    from_numpy
        ``(array, device) -> library array``; ``device`` ``None`` is the default.
    to_numpy
        Values as NumPy (a host copy; bfloat16 widened to float32).
    devices
        The devices the tools try: ``(device, reason it cannot run or "")``.
    sync
        Waits for a result to be computed (for timing).
    autodiff
        ``(loss, x, y) -> (value, grad_x, grad_y)`` through the framework's own
        autodiff, or ``None`` where the library has none.
    exact
        Whether float32/float64 elementwise results are torch's bits (XLA rewrites
        divisions, so not JAX's).
    """

    name: str
    module: str
    namespace: Callable[[], ModuleType]
    from_numpy: Callable[[np.ndarray, Any], Any]
    to_numpy: Callable[[Any], np.ndarray]
    devices: Callable[[], list[tuple[Any, str]]] = lambda: [(None, "")]
    sync: Callable[[Any], Any] = lambda out: out
    autodiff: Callable[[Loss, Any, Any], tuple[Any, Any, Any]] | None = None
    exact: bool = True

    def missing(self) -> str:
        """Why the library cannot run here ("" if it can)."""
        if importlib.util.find_spec(self.module.partition(".")[0]) is None:
            return "not installed"
        if self.name == "cupy":
            try:
                import cupy

                if not cupy.is_available():
                    return "installed, but no CUDA device"
            except Exception:  # a CUDA runtime that cannot start is "cannot run"
                return "installed, but its CUDA runtime cannot start"
        return ""

    def targets(self) -> Iterator[tuple[Any, str]]:
        """``(device, reason)`` for every device the tools try; reason "" where it runs."""
        reason = self.missing()
        if reason:
            yield None, reason
            return
        yield from self.devices()


def _compat(module: str) -> Callable[[], ModuleType]:
    return lambda: importlib.import_module(f"array_api_compat.{module}")


def _strict() -> ModuleType:
    import array_api_strict

    # the strictest settings: no data-dependent shapes, no extensions
    array_api_strict.set_array_api_strict_flags(
        boolean_indexing=False, data_dependent_shapes=False, enabled_extensions=())
    return array_api_strict


def _jax() -> ModuleType:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 cases and tests need it
    return jax.numpy


def _plain(a: Any) -> np.ndarray:
    if "bfloat16" in str(getattr(a, "dtype", "")):
        import array_api_compat

        xp = array_api_compat.array_namespace(a)
        a = xp.astype(a, xp.float32)
    return np.asarray(a) if isinstance(a, (np.ndarray, np.generic)) else np.from_dlpack(a)


def _torch_to_numpy(t: Any) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    return np.asarray((t.float() if t.dtype is torch.bfloat16 else t).numpy())


def _torch_from_numpy(a: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).to(device or "cpu")


def _torch_devices() -> list[tuple[Any, str]]:
    import torch

    return [("cpu", ""), ("cuda", "" if torch.cuda.is_available() else "no CUDA device")]


def _torch_sync(out: Any) -> Any:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out


def _torch_autodiff(loss: Loss, x: Any, y: Any) -> tuple[Any, Any, Any]:
    import torch

    xs, ys = x.detach().requires_grad_(), y.detach().requires_grad_()
    out = loss(xs, ys)
    gx, gy = torch.autograd.grad(out, (xs, ys), torch.ones_like(out), allow_unused=True)
    return out, gx, gy


def _jax_autodiff(loss: Loss, x: Any, y: Any) -> tuple[Any, Any, Any]:
    import jax

    out, vjp = jax.vjp(loss, x, y)
    gx, gy = vjp(jax.numpy.ones_like(out))
    return out, gx, gy


def _jax_sync(out: Any) -> Any:
    import jax

    return jax.block_until_ready(out)


def _dask_from_numpy(a: np.ndarray, device: Any) -> Any:
    import dask.array as da

    # a few chunks, so that the per-chunk path and the combining of chunks both run
    return da.from_array(a, chunks=max(a.size // 4, 1) if a.ndim == 1 else "auto")


def _dask_to_numpy(a: Any) -> np.ndarray:
    return np.asarray(a.compute())


def _dask_sync(out: Any) -> Any:
    import dask

    return dask.compute(out)  # type: ignore[attr-defined]


def _cupy_from_numpy(a: np.ndarray, device: Any) -> Any:
    import cupy

    return cupy.asarray(a)


def _cupy_to_numpy(a: Any) -> np.ndarray:
    return np.asarray(a.get())


def _cupy_sync(out: Any) -> Any:
    import cupy

    cupy.cuda.Device().synchronize()
    return out


def _strict_from_numpy(a: np.ndarray, device: Any) -> Any:
    import array_api_strict

    return array_api_strict.asarray(a) if device is None else array_api_strict.asarray(
        a, device=device)


def _ndonnx_to_numpy(a: Any) -> np.ndarray:
    return np.asarray(a.unwrap_numpy())  # a symbolic array has none: ndonnx's ValueError


def _sparse_from_numpy(a: np.ndarray, device: Any) -> Any:
    import sparse

    return sparse.COO.from_numpy(a)


def _sparse_to_numpy(a: Any) -> np.ndarray:
    return np.asarray(a.todense())


def _marray() -> ModuleType:
    import marray

    return marray.numpy  # type: ignore[no-any-return]  # masked arrays over NumPy


def _marray_to_numpy(a: Any) -> np.ndarray:
    """Plain values where nothing is masked, a ``numpy.ma`` array otherwise."""
    data, mask = _plain(a.data), np.asarray(a.mask)
    return np.ma.masked_array(data, mask=mask) if mask.any() else data


def _cubed_from_numpy(a: np.ndarray, device: Any) -> Any:
    import cubed

    # a few chunks, as for dask: the per-chunk work and the combining both run
    # (from_array: cubed's asarray holds at most 1 MB in memory)
    return cubed.from_array(a, chunks=max(a.size // 4, 1) if a.ndim == 1 else "auto")


def _cubed_to_numpy(a: Any) -> np.ndarray:
    return np.asarray(a.compute())


def _cubed_sync(out: Any) -> Any:
    import cubed

    return cubed.compute(*out) if isinstance(out, tuple) else cubed.compute(out)


#: Every array library the tools know, in the order they are listed.
LIBRARIES: tuple[Library, ...] = (
    Library("numpy", "numpy", _compat("numpy"), lambda a, device: np.asarray(a), _plain),
    Library("array_api_strict", "array_api_strict", _strict, _strict_from_numpy, _plain),
    Library("torch", "torch", _compat("torch"), _torch_from_numpy, _torch_to_numpy,
            devices=_torch_devices, sync=_torch_sync, autodiff=_torch_autodiff),
    Library("jax", "jax", _jax, lambda a, device: importlib.import_module("jax.numpy").asarray(a),
            _plain, sync=_jax_sync,
            autodiff=_jax_autodiff, exact=False),
    Library("dask", "dask.array", _compat("dask.array"), _dask_from_numpy, _dask_to_numpy,
            sync=_dask_sync),
    Library("cupy", "cupy", _compat("cupy"), _cupy_from_numpy, _cupy_to_numpy, sync=_cupy_sync),
    Library("ndonnx", "ndonnx", lambda: importlib.import_module("ndonnx"),
            lambda a, device: importlib.import_module("ndonnx").asarray(a), _ndonnx_to_numpy),
    Library("sparse", "sparse", lambda: importlib.import_module("sparse"), _sparse_from_numpy,
            _sparse_to_numpy),
    Library("marray", "marray", _marray, lambda a, device: _marray().asarray(a),
            _marray_to_numpy),
    Library("cubed", "cubed", lambda: importlib.import_module("cubed.array_api"),
            _cubed_from_numpy, _cubed_to_numpy, sync=_cubed_sync),
)


def library(name: str) -> Library:
    """The entry called ``name``."""
    for lib in LIBRARIES:
        if lib.name == name:
            return lib
    raise KeyError(f"no array library called {name!r}; known: "
                   f"{', '.join(lib.name for lib in LIBRARIES)}")


def library_of(x: object) -> Library:
    """The entry whose arrays (or namespace) ``x`` is."""
    name = getattr(x, "__name__", None) if isinstance(x, ModuleType) else type(x).__module__
    name = name or ""
    for lib in LIBRARIES[1:]:  # NumPy last: every module name is checked against the others
        if lib.name in name or lib.module in name:
            return lib
    if "numpy" in name:
        return LIBRARIES[0]
    raise KeyError(f"no array library entry for {name!r}")


def to_numpy(x: Any) -> np.ndarray:
    """Values of any known library's array as NumPy (a host copy)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    return library_of(x).to_numpy(x)
