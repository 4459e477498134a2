"""Route a loss call to the autodiff glue of the framework its arrays belong to.

Detection looks only at frameworks already imported by the caller (``sys.modules``),
so it never imports torch or JAX itself, and it is plain ``isinstance`` code that
``torch.compile`` traces without warnings.  The glue modules are imported on
first use.
"""

from __future__ import annotations

import sys
from types import ModuleType

from ._namespace import Array

__all__ = ["autodiff_adapter", "chunked_executor"]


def autodiff_adapter(input: Array, target: Array) -> ModuleType | None:
    """The adapter module for ``input`` and ``target``, or ``None`` for plain evaluation.

    Only when *both* arrays belong to the framework: mixed inputs fall through to
    the core, which reports them clearly.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor):
        from . import _torch_autograd

        return _torch_autograd
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(input, jax.Array) and isinstance(target, jax.Array):
        from . import _jax_autodiff

        return _jax_autodiff
    return None


def chunked_executor(input: Array, target: Array) -> ModuleType | None:
    """The per-chunk executor for two dask arrays (:mod:`smoothl1._dask_chunks`), else ``None``."""
    dask_array = sys.modules.get("dask.array")
    if (dask_array is not None and isinstance(input, dask_array.Array)
            and isinstance(target, dask_array.Array)):
        from . import _dask_chunks

        return _dask_chunks
    return None
