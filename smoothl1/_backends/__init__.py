"""The one router: which executor takes a call.

Top to bottom, first match wins; an executor may decline (``None``), and the
call then takes the general path of :mod:`smoothl1._core`:

1. NumPy arrays: cache-sized blocks on a thread pool (:mod:`.numpy`), every call form.
   Masked arrays (``numpy.ma``, dask arrays of masked chunks) first become
   plain ones and get their masks back (:mod:`smoothl1._masked`).
2. Two torch tensors: an ``autograd.Function`` (:mod:`.torch`); CPU tensors are
   computed by the NumPy blocks through zero-copy views.
3. Two JAX arrays: ``jax.custom_jvp`` and one jitted kernel per request (:mod:`.jax`).
4. Two dask arrays: one NumPy-block task per chunk (:mod:`.dask`).
5. Two cubed arrays: one NumPy-block task per chunk (:mod:`.cubed`).
6. Masked arrays (marray's over any library, ``numpy.ma`` weights): the masks
   become weights and plain arrays, and come back (:mod:`smoothl1._masked`).
7. Anything else (array-api-strict, CuPy, ndonnx, sparse, mixed libraries, ...):
   :mod:`smoothl1._core`.

Frameworks are recognised through ``sys.modules`` only (a framework the caller
has not imported is never imported here), with plain ``isinstance`` checks
that ``torch.compile`` traces without warnings.  Each framework module is
imported on first use.  The arguments are checked once, by
:func:`smoothl1._request.validate`, on every path.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from .. import _core, _masked
from .._compat import Array
from .._request import Request, validate
from .._validation import check_devices
from . import numpy as _numpy

__all__ = ["evaluate", "loss"]

_MASKED = np.ma.MaskedArray


def _framework(input: Array, target: Array, weight: object = None,
               grad_output: object = None) -> ModuleType | None:
    """The backend module for two arrays of one framework, or ``None``.

    Only when *both* arrays belong to it: mixed inputs take the general path,
    whose validation reports them clearly.  dask arrays with masks go to
    :mod:`smoothl1._masked` first (torch and JAX arrays have no NumPy masks: a
    masked weight with them is refused as a mix of libraries).  (Plain
    ``import`` statements, which Dynamo traces; ``importlib`` would break the
    graph.)
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor):
        from . import torch as backend
        return backend
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(input, jax.Array) and isinstance(target, jax.Array):
        from . import jax as backend  # type: ignore[no-redef]
        return backend
    dask_array = sys.modules.get("dask.array")
    if (dask_array is not None and isinstance(input, dask_array.Array)
            and isinstance(target, dask_array.Array)
            and _masked.masked_module(input, target, weight, grad_output) is None):
        from . import dask as backend  # type: ignore[no-redef]
        return backend
    cubed = sys.modules.get("cubed")
    if cubed is not None and isinstance(input, cubed.Array) and isinstance(target, cubed.Array):
        from . import cubed as backend  # type: ignore[no-redef]
        return backend
    return None


def evaluate(req: Request, input: Array, target: Array, weight: object = None,
             grad_output: object = None, param: object = None) -> tuple[Any, Any]:
    """``(loss, grad)`` as ``req`` asks for them (the other is ``None``); no autodiff graph.

    ``param``: an array ``beta``/``delta`` (a threshold per element), or ``None``
    for ``req.param``.
    """
    if (_numpy.accepts(input) and _numpy.accepts(target)
            and not isinstance(weight, _MASKED) and not isinstance(grad_output, _MASKED)
            and not isinstance(param, _MASKED)):
        call = validate(req, input, target, weight, grad_output, param=param)
        out = _numpy.evaluate(call, input, target, weight, grad_output, param)
        return out if out is not None else _core.evaluate(call, input, target, weight,
                                                          grad_output, param=param)
    backend = _framework(input, target, weight, grad_output)
    if backend is not None:
        if param is None:
            return backend.evaluate(req, input, target, weight, grad_output)  # type: ignore[no-any-return]
        return backend.evaluate(req, input, target, weight, grad_output, param=param)  # type: ignore[no-any-return]
    masked = _masked.masked_module(input, target, weight, grad_output, param)
    if masked is not None:
        return _masked.evaluate(req, input, target, weight, grad_output, masked, evaluate,
                                param=param)
    call = validate(req, input, target, weight, grad_output, param=param)
    check_devices(req.func, {name: array_api_compat.device(a) for name, a in (
        ("input", input), ("target", target), ("weight", weight), ("grad_output", grad_output),
        (req.param_name, param)) if not (a is None or isinstance(a, (int, float)))})
    return _core.evaluate(call, input, target, weight, grad_output, param=param)


def loss(req: Request, input: Array, target: Array, weight: object,
         param: object = None) -> Any:
    """The loss; differentiable by the framework's autodiff for torch and JAX arrays."""
    if _numpy.accepts(input) and _numpy.accepts(target):
        return evaluate(req, input, target, weight, param=param)[0]
    backend = _framework(input, target, weight)
    if backend is not None and hasattr(backend, "loss"):
        if param is None:
            return backend.loss(req, input, target, weight)
        return backend.loss(req, input, target, weight, param=param)
    return evaluate(req, input, target, weight, param=param)[0]
