"""cubed arrays: one task per chunk that runs the chunk through the NumPy blocks.

cubed (bounded-memory arrays: every task's memory is planned against the
``Spec``'s ``allowed_mem`` before anything runs) stores the output of every
operation it does not fuse.  The general path (:mod:`smoothl1._core` on
cubed's namespace) is lazy and right, but each of its dozen array-API
operations is a cubed operation whose temporaries cubed cannot see.  Here a
chunk of input and target (and weight, and cotangent) goes through
:func:`smoothl1._backends.numpy.run` in cache-sized blocks inside one
:func:`cubed.map_blocks` task, so a task holds its input chunks, one output
chunk and a few hundred KiB more: what cubed's plan counts.

- reductions (any ``axis``): float64 totals per output of a chunk (length 1
  along the reduced axes), summed along them by cubed's tree reduction in
  float64, then divided by the element count (an exact integer) or by the
  float64 total of the weights, rounded once to the result's dtype;
- the gradient: ``slope * weight * grad_output`` times the mean's ``1/N``, one
  task per chunk, in the input's dtype;
- ``value_and_grad``: two operations over the same chunks (cubed has no
  two-output map), so the inputs are read twice.

A weight or an array threshold of a smaller shape is broadcast to the input's chunks.  What this
module does not take goes the general path: inputs whose shapes or chunks
differ (broadcasting), array cotangents of
reduced losses, ``weighted_mean`` gradients with an array weight (their
factor is a lazy total), chunks that are not NumPy arrays, and empty arrays.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import cubed
import cubed.array_api as cxp
import numpy as np

from .. import _core, _formulas
from .._request import Call, Request, validate
from . import numpy as blocks

__all__ = ["evaluate"]

_DTYPES = (np.float16, np.float32, np.float64)


def _numpy_chunks() -> bool:
    """Whether cubed computes chunks with NumPy (its default; it can be told otherwise)."""
    from cubed.backend_array_api import namespace

    return "numpy" in getattr(namespace, "__name__", "")


def _same(a: Any, b: Any) -> bool:
    return bool(a.shape == b.shape and a.chunks == b.chunks)


def _applies(call: Call, input: Any, target: Any, weight: object, grad_output: object,
             param: object = None) -> bool:
    req = call.req
    if not (isinstance(input, cubed.Array) and isinstance(target, cubed.Array)):
        return False
    if call.param == "array" and not (isinstance(param, cubed.Array)
                                      and param.dtype in _DTYPES):
        return False  # (broadcast to the input's chunks, as a smaller weight)
    if input.dtype not in _DTYPES or target.dtype not in _DTYPES or input.size == 0:
        return False
    if not _same(input, target) or not _numpy_chunks():
        return False
    if not (weight is None or isinstance(weight, (int, float))):
        # a smaller weight is broadcast (validation checked that it broadcasts)
        if not (isinstance(weight, cubed.Array) and weight.dtype in _DTYPES):
            return False
        if req.grad and req.reduction == "weighted_mean":
            return False  # its factor is a lazy total of the weights
    return (grad_output is None or isinstance(grad_output, (int, float))
            or (req.reduction == "none" and isinstance(grad_output, cubed.Array)
                and _same(input, grad_output) and grad_output.dtype in _DTYPES))


def _is_number(a: object) -> bool:
    return a is None or isinstance(a, (int, float))


def _number(weight: object) -> float:
    """A weight that is ``None`` (1) or a number, as a float."""
    assert weight is None or isinstance(weight, (int, float))
    return 1.0 if weight is None else float(weight)


def _task(x: np.ndarray, y: np.ndarray, *arrays: np.ndarray, req: Request,
          chunked: tuple[bool, bool, bool], numbers: tuple[Any, Any, Any], norm: Any,
          out_dtype: Any) -> np.ndarray:
    """One chunk: its losses, its float64 total (``(1,)*ndim``), or its gradient.

    ``chunked`` says whether weight, cotangent and an array threshold come as
    chunks (in ``arrays``) or as the numbers (or ``None``) in ``numbers``.
    """
    it = iter(arrays)
    w, go, param = (next(it) if c else number
                    for c, number in zip(chunked, numbers, strict=True))
    call = validate(dataclasses.replace(req, keepdims=True), x, y, w, go, warn=False,
                    param=param)
    grads = (blocks.GradSpec(1, x.shape, x.dtype),) if req.grad else ()
    found = blocks.run(call, x, y, w, go, out_dtype=out_dtype, grads=grads, threads=1,
                       norm=norm if req.grad else None, raw=True, param=param)
    assert found is not None  # chunks are never empty here
    value, gs = found
    if req.grad:
        return gs[0]  # type: ignore[no-any-return]
    if req.reduction == "none":
        return value  # type: ignore[no-any-return]
    return np.asarray(value.loss, dtype=np.float64)


def _map(req: Request, input: Any, target: Any, weight: object, grad_output: object, *,
         norm: Any, out_dtype: Any, chunks: Any = None, dtype: Any, param: object) -> Any:
    extras = (weight, grad_output, param)
    chunked = (not _is_number(weight), not _is_number(grad_output), param is not None)
    arrays = [a for a, c in zip(extras, chunked, strict=True) if c]
    numbers = (None if chunked[0] else weight, None if chunked[1] else grad_output, None)
    task = partial(_task, req=req, chunked=chunked, numbers=numbers, norm=norm,
                   out_dtype=out_dtype)
    return cubed.map_blocks(task, input, target, *arrays, dtype=dtype, chunks=chunks)


def evaluate(req: Request, input: Any, target: Any, weight: object,
             grad_output: object = None, param: object = None) -> tuple[Any, Any]:
    """``(loss, grad)`` as lazy cubed arrays: per chunk where it applies, else the general path."""
    call = validate(req, input, target, weight, grad_output, param=param)
    if not _applies(call, input, target, weight, grad_output, param):
        return _core.evaluate(call, input, target, weight, grad_output, param=param)
    if isinstance(weight, cubed.Array) and not _same(input, weight):
        # cubed fuses the broadcast into the tasks that read it
        weight = cubed.rechunk(cxp.broadcast_to(weight, input.shape), input.chunks)
    if isinstance(param, cubed.Array) and not _same(input, param):
        param = cubed.rechunk(cxp.broadcast_to(param, input.shape), input.chunks)
    out_dtype = np.result_type(input.dtype, target.dtype)
    reduced = call.reduced_axes
    count = call.count if call.count is not None else int(input.size)
    value = grad = None
    if req.value and req.reduction == "none":
        value = _map(dataclasses.replace(req, grad=False), input, target, weight, None,
                     norm=None, out_dtype=out_dtype, dtype=out_dtype, param=param)
    elif req.value:
        # a chunk's totals: length 1 along the reduced axes, the chunk's own along the others
        chunks = tuple((1,) * len(c) if i in reduced else c for i, c in enumerate(input.chunks))
        parts = _map(dataclasses.replace(req, grad=False), input, target, weight, None,
                     norm=None, out_dtype=out_dtype, chunks=chunks, dtype=np.float64,
                     param=param)
        total = cxp.sum(parts, axis=reduced, keepdims=True, dtype=cxp.float64)
        if req.reduction == "mean":
            total = total / count  # float64 over an exact count
        elif req.reduction == "weighted_mean":
            if isinstance(weight, cubed.Array):
                divisor = cxp.sum(weight, axis=reduced, keepdims=True, dtype=cxp.float64)
                zero = divisor == 0  # NaN there, without dividing by zero
                total = cxp.where(zero, cxp.nan, total / cxp.where(zero, 1.0, divisor))
            else:  # no weight, or a number: NaN for a total weight of 0, as torch
                scale = _number(weight) * count
                total = total / scale if scale else total * float("nan")
        value = cxp.astype(total, out_dtype)
        if not req.keepdims:
            value = cxp.reshape(value, call.out_shape)
    if req.grad:
        norm: Any = 1.0
        if req.reduction == "mean":
            norm = _formulas.mean_scale(count)
        elif req.reduction == "weighted_mean":  # no weight, or a number
            total_weight = _number(weight) * count
            norm = 1.0 / total_weight if total_weight else float("nan")
        grad = _map(dataclasses.replace(req, value=False), input, target, weight, grad_output,
                    norm=norm, out_dtype=out_dtype, dtype=input.dtype, param=param)
    return value, grad
