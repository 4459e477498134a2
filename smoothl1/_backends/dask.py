"""dask arrays: one task per chunk that runs the chunk through the NumPy blocks.

Built from dask's own graph operations (:func:`dask.array.blockwise`,
:func:`dask.array.map_blocks`, its tree reduction), so the result is a lazy dask
array that runs on any dask scheduler, ``dask.distributed`` clusters included.

The general path (:mod:`smoothl1._core` on ``array_api_compat.dask.array``)
would also run lazily, but every array-API operation becomes a task that
allocates a chunk-sized temporary: about a dozen per chunk for the loss.
Here each chunk of ``input`` and ``target`` goes through
:func:`smoothl1._backends.numpy.run` in cache-sized blocks, so a task holds its
two input chunks, at most one output chunk and a few hundred KiB more:

- ``'mean'``/``'sum'``: a float64 total per chunk (``s.d - s.c/2``, see
  :func:`smoothl1._formulas.dot_terms`), added up by dask's tree reduction in
  float64 and divided by the element count as an integer (exact beyond 2**31
  elements), then rounded once to the input's dtype;
- the gradient: ``norm * slope`` per chunk, with ``norm = 1/N`` for the mean;
- ``value_and_grad``: one task per chunk yields both, so the inputs are read once.

Unknown chunk sizes (after boolean masking) are counted lazily by dask.
:func:`evaluate` takes the general path for whatever it does not handle —
weights, broadcasting, per-axis reductions, cotangents that are arrays,
dtypes other than float32/float64, chunks that are not plain NumPy arrays
(CuPy, masked) — and those take the general path.
"""

from __future__ import annotations

import math
import operator
from functools import partial
from typing import Any

import dask.array as da
import numpy as np

from .. import _core
from .._request import Request, validate
from . import numpy as blocks

__all__ = ["evaluate"]

_DTYPES = (np.float32, np.float64)


def _same_chunks(a: da.Array, b: da.Array) -> bool:
    """Equal chunks, unknown (NaN) sizes included; dask aligns known ones itself."""
    if a.numblocks != b.numblocks:
        return False
    return all(
        p == q or (math.isnan(p) and math.isnan(q))
        for ca, cb in zip(a.chunks, b.chunks, strict=True)
        for p, q in zip(ca, cb, strict=True)
    )


def _applies(req: Request, axis: tuple[int, ...] | None, input: Any, target: Any,
             weight: object, grad_output: object) -> bool:
    if not (isinstance(input, da.Array) and isinstance(target, da.Array)):
        return False
    if weight is not None or req.reduction not in ("mean", "sum", "none"):
        return False
    if not (grad_output is None or type(grad_output) in (int, float)):
        return False
    if input.dtype not in _DTYPES or target.dtype != input.dtype or input.ndim != target.ndim:
        return False
    if not (type(input._meta) is np.ndarray and type(target._meta) is np.ndarray):
        return False  # CuPy or masked chunks: never move them to the host or drop masks
    known = not any(math.isnan(n) for n in input.shape + target.shape)
    if known and input.shape != target.shape:
        return False  # broadcasting: the general path
    if not known and not _same_chunks(input, target):
        return False  # the general path reports what does not match
    if axis is not None and axis != tuple(range(input.ndim)):
        return False
    return bool(input.size != 0)  # NaN (unknown) is not 0


def _chunk(x: np.ndarray, y: np.ndarray, norm: Any = None, *, req: Request,
           go: float | None) -> tuple[Any, Any]:
    """One task: ``(total or losses or None, grad or None)`` of a chunk."""
    x = np.asarray(x, order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    y = np.asarray(y, order="C")
    if x.size == 0:  # a chunk emptied by masking
        zero = np.zeros((), np.float64) if req.reduction != "none" else np.empty_like(x)
        return (zero if req.value else None, np.empty_like(x) if req.grad else None)
    scale = 1.0 if norm is None else float(norm)  # a computed NumPy scalar here
    call = validate(req, x, y, None, go, warn=False)
    grads = (blocks.GradSpec(1, x.shape, x.dtype),) if req.grad else ()
    found = blocks.run(call, x, y, None, go, out_dtype=x.dtype, grads=grads, threads=1,
                       norm=scale if req.grad else None, raw=True)
    assert found is not None
    value, gs = found
    if isinstance(value, blocks.Totals):
        value = value.loss.reshape(())
    return value, (gs[0] if gs else None)


def _ones(ndim: int) -> tuple[int, ...]:
    return (1,) * ndim


def _total_block(pair: tuple[Any, ...], ndim: int) -> np.ndarray:
    return np.reshape(np.asarray(pair[0], dtype=np.float64), _ones(ndim))


def _size_block(a: np.ndarray) -> np.ndarray:
    return np.full(_ones(a.ndim), a.size, dtype=np.int64)


def evaluate(req: Request, input: Any, target: Any, weight: object,
             grad_output: object = None) -> tuple[Any, Any]:
    """``(loss, grad)`` as lazy dask arrays: per chunk where that applies, else the general path."""
    call = validate(req, input, target, weight, grad_output)
    if not _applies(req, call.axis, input, target, weight, grad_output):
        return _core.evaluate(call, input, target, weight, grad_output)
    ndim, dtype = input.ndim, input.dtype
    reduced = req.reduction != "none"
    n = input.size
    known = not math.isnan(n)
    ind = tuple(range(ndim))
    args: list[Any] = [input, ind, target, ind]
    count: Any = int(n) if known else None
    if not known and req.reduction == "mean":
        # unknown sizes (boolean masks): the element count, counted lazily per chunk
        sizes = da.map_blocks(_size_block, input, chunks=tuple((1,) * len(c) for c in
                                                               input.chunks),
                              dtype=np.int64, meta=np.empty(_ones(ndim), np.int64))
        count = da.sum(sizes, dtype=np.int64)
    norm: Any = 1.0
    if req.grad and req.reduction == "mean":
        if known:
            norm = 1.0 / count if count > 1 else 1.0
        else:  # the task's third argument
            norm = 1.0 / da.maximum(count, 1)  # 1 for one element (or none)
            args += [norm, ()]
    go = None if grad_output is None else float(grad_output)  # type: ignore[arg-type]
    # a known 1/N is a constant of the task; a lazy one is its third argument
    if isinstance(norm, float):
        task = partial(_chunk, norm=norm, req=req, go=go)
    else:
        task = partial(_chunk, req=req, go=go)
    pairs = da.blockwise(task, ind, *args, dtype=dtype, meta=np.empty((0,) * ndim, dtype),
                         token="smoothl1-chunk")
    grad = None
    if req.grad:
        grad = da.map_blocks(operator.itemgetter(1), pairs, dtype=dtype,
                             meta=np.empty((0,) * ndim, dtype), token="smoothl1-grad")
    value = None
    if req.value and not reduced:
        value = da.map_blocks(operator.itemgetter(0), pairs, dtype=dtype,
                              meta=np.empty((0,) * ndim, dtype), token="smoothl1-loss")
    elif req.value:
        per_chunk = tuple((1,) * len(c) for c in pairs.chunks)
        totals = da.map_blocks(_total_block, pairs, ndim, chunks=per_chunk, dtype=np.float64,
                               meta=np.empty(_ones(ndim), np.float64), token="smoothl1-total")
        total = da.sum(totals, dtype=np.float64)
        if req.reduction == "mean":
            if known:
                total = total / count  # a float64 total over an exact count, even past 2**31
            else:  # NaN if nothing is left, as torch's mean of nothing
                total = da.where(count == 0, np.nan, total / da.maximum(count, 1))
        value = total.astype(dtype)
        if req.keepdims:
            value = da.reshape(value, _ones(ndim))
    return value, grad
