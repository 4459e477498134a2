"""dask arrays: one task per chunk that runs the chunk through the NumPy blocks.

Built from dask's own graph operations (:func:`dask.array.blockwise`,
:func:`dask.array.map_blocks`, its tree reduction), so the result is a lazy dask
array that runs on any dask scheduler, ``dask.distributed`` clusters included.

The general path (:mod:`smoothl1._core` on ``array_api_compat.dask.array``)
would also run lazily, but every array-API operation becomes a task that
allocates a chunk-sized temporary: about a dozen per chunk for the loss.
Here the chunks of input, target, weight and cotangent that meet (dask lines
them up, broadcasting included) go through :func:`smoothl1._backends.numpy.run`
in cache-sized blocks, so a task holds its input chunks, at most one output
chunk and a few hundred KiB more:

- reductions (any ``axis``): float64 totals per output of the chunk (and, for
  ``weighted_mean``, of the weights), added up along the reduced axes by dask's
  tree reduction in float64, then divided by the element count as an integer
  (exact beyond 2**31 elements) or by the total weight, rounded once;
- the gradient: ``norm * slope * weight * grad_output`` per chunk, with the
  mean's ``1/N`` or ``weighted_mean``'s ``1/total weight`` (a lazy reduction of
  the weights) as a factor;
- ``value_and_grad``: one task per chunk yields both, so the inputs are read once.

Unknown chunk sizes (after boolean masking) are counted lazily by dask, for full
reductions and ``'none'``.  What this module does not take goes the general path:
a gradient with respect to a broadcast ``input`` (it is a sum over chunks of
another shape), unknown sizes with per-axis reductions or broadcasting, and
chunks that are not plain NumPy arrays (CuPy must stay on its device; masked
chunks keep their masks there).  An array ``beta``/``delta`` is one more
operand whose chunks meet the others' (per feature, per element).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from functools import partial
from typing import Any

import dask.array as da
import numpy as np

from .. import _core, _formulas
from .._request import Call, Request, validate
from . import numpy as blocks

__all__ = ["evaluate"]

_DTYPES = (np.float16, np.float32, np.float64)


def _plain(a: object) -> bool:
    """A dask array of plain NumPy chunks (not CuPy, not masked)."""
    return isinstance(a, da.Array) and type(a._meta) is np.ndarray


def _same_chunks(a: da.Array, b: da.Array) -> bool:
    """Equal chunks, unknown (NaN) sizes included; dask aligns known ones itself."""
    if a.numblocks != b.numblocks:
        return False
    return all(
        p == q or (math.isnan(p) and math.isnan(q))
        for ca, cb in zip(a.chunks, b.chunks, strict=True)
        for p, q in zip(ca, cb, strict=True)
    )


def _unknown(a: object) -> bool:
    return isinstance(a, da.Array) and any(math.isnan(n) for n in a.shape)


def _applies(call: Call, input: Any, target: Any, weight: object,
             grad_output: object, param: object = None) -> bool:
    req = call.req
    if not (_plain(input) and _plain(target)):
        return False
    if input.dtype not in _DTYPES or target.dtype not in _DTYPES:
        return False
    if call.param == "array" and not (
            _plain(param) and getattr(param, "dtype", None) in _DTYPES and not _unknown(param)):
        return False  # (a NumPy threshold was refused with dask inputs)
    for extra in (weight, grad_output):
        if not (extra is None or isinstance(extra, (int, float)) or _plain(extra)
                or isinstance(extra, np.ndarray)):
            return False
    if req.grad and call.in_shape != call.loss_shape:
        return False  # a broadcast input's gradient sums over chunks of the loss
    unknown = any(_unknown(a) for a in (input, target, weight, grad_output))
    if unknown:  # only the forms whose counting is lazy here, and chunks that meet
        whole = call.axis is None or len(call.axis) == len(call.loss_shape)
        if not (whole or req.reduction == "none") or not _same_chunks(input, target):
            return False
        if not (weight is None or isinstance(weight, (int, float))
                or (isinstance(weight, da.Array) and _same_chunks(input, weight))):
            return False
        if not (grad_output is None or isinstance(grad_output, (int, float))):
            return False
    return bool(input.size != 0) and bool(target.size != 0)  # NaN (unknown) is not 0


def _squeezed(a: Any, loss_shape: tuple[Any, ...]) -> tuple[Any, tuple[int, ...],
                                                             tuple[bool, ...]]:
    """An operand without the length-1 axes it broadcasts along: (array, index, where).

    Returns the array, its blockwise index and where it had those axes
    (blockwise lines up equal indices; a length-1 axis that broadcasts against
    a longer one is dropped here and put back in the task.)
    """
    if not isinstance(a, da.Array):
        a = da.asarray(a)
    ndim = len(loss_shape)
    lead = ndim - a.ndim
    ones = tuple(i < lead or (a.shape[i - lead] == 1 and loss_shape[i] != 1)
                 for i in range(ndim))
    keep = [i - lead for i in range(lead, ndim) if not ones[i]]
    if len(keep) != a.ndim:
        a = a.reshape(tuple(a.shape[i] for i in keep)) if keep else a.reshape(())
    return a, tuple(i for i in range(ndim) if not ones[i]), ones


def _restore(chunk: Any, ones: tuple[bool, ...]) -> np.ndarray:
    """A chunk with its length-1 axes back (a view)."""
    shape, it = [], iter(np.shape(chunk))
    for one in ones:
        shape.append(1 if one else next(it))
    return np.asarray(chunk).reshape(shape)


def _task(*chunks: Any, req: Request, layout: tuple[tuple[bool, ...] | None, ...],
          numbers: tuple[Any, ...], norm: Any, reduced: tuple[int, ...]) -> tuple[Any, Any]:
    """One task: ``(totals or losses or None, gradient or None)`` of the chunks that meet.

    ``layout`` says, for input, target, weight, cotangent, the per-output
    gradient factor and an array threshold, where each array chunk had its
    length-1 axes (None: the value is a number in ``numbers``; the threshold
    then is the request's own).
    """
    if any(isinstance(c, np.ma.MaskedArray) for c in chunks):
        # Only a dask array's meta says it is masked before compute, and reading
        # a masked chunk's data here would drop its mask: refuse, never guess.
        raise TypeError(
            f"{req.func}: a dask array has masked chunks but a plain NumPy meta, so its masks "
            "cannot be honoured; give it a masked meta (for example da.from_array(masked, "
            "asarray=False) or map_blocks(..., meta=np.ma.masked_array([]))), "
            "or pass the mask as weight= with reduction='weighted_mean'")
    it = iter(chunks)
    x, y, w, go, factor, param = (_restore(next(it), ones) if ones is not None else number
                                  for ones, number in zip(layout, numbers, strict=True))
    if factor is None:
        factor = norm  # the gradient's factor is a number
    if np.size(x) == 0 or np.size(y) == 0:  # a chunk emptied by masking
        shape = np.broadcast_shapes(np.shape(x), np.shape(y))
        empty = np.zeros(tuple(1 if i in reduced else n for i, n in enumerate(shape)))
        return (blocks.Totals(empty, empty if w is not None else None)
                if req.reduction != "none" else np.empty(shape, np.result_type(x, y)),
                np.zeros(np.shape(x), x.dtype) if req.grad else None)
    # the chunk's cotangent comes with the reduced axes kept (as length 1)
    call = validate(dataclasses.replace(req, keepdims=True), x, y, w, go if req.grad else None,
                    warn=False, param=param)
    grads = (blocks.GradSpec(1, x.shape, x.dtype),) if req.grad else ()
    found = blocks.run(call, x, y, w, go, out_dtype=np.result_type(x, y), grads=grads,
                       threads=1, norm=factor if req.grad else None, raw=True, param=param)
    assert found is not None
    value, gs = found
    return value, (gs[0] if gs else None)


def _part(pair: tuple[Any, ...], which: str) -> Any:
    return getattr(pair[0], which)


def _size_block(a: np.ndarray) -> np.ndarray:
    return np.full((1,) * a.ndim, a.size, dtype=np.int64)


def evaluate(req: Request, input: Any, target: Any, weight: object,
             grad_output: object = None, param: object = None) -> tuple[Any, Any]:
    """``(loss, grad)`` as lazy dask arrays: per chunk where that applies, else the general path."""
    call = validate(req, input, target, weight, grad_output, param=param)
    if not _applies(call, input, target, weight, grad_output, param):
        return _core.evaluate(call, input, target, weight, grad_output, param=param)
    ndim = len(call.loss_shape)
    out_dtype = np.result_type(input.dtype, target.dtype)
    reduced = call.reduced_axes
    kept_shape = call.kept_shape
    loss_shape = call.loss_shape
    known = all(n is not None for n in loss_shape)
    count: Any = call.count
    if req.reduction in ("mean", "weighted_mean") and count is None:
        # unknown sizes (boolean masks): the element count, counted lazily per chunk
        sizes = da.map_blocks(_size_block, input, chunks=tuple((1,) * len(c) for c in
                                                               input.chunks),
                              dtype=np.int64, meta=np.empty((1,) * ndim, np.int64))
        count = da.sum(sizes, dtype=np.int64)

    # the gradient's factor: a number, or a lazy array per output
    norm: Any = None
    factor_array = None
    if req.grad:
        norm = 1.0
        if req.reduction == "mean":
            if isinstance(count, int):
                norm = _formulas.mean_scale(count)
            else:
                factor_array = 1.0 / da.maximum(count, 1)  # 1 for one element (or none)
        elif req.reduction == "weighted_mean":
            factor_array = _inverse_total_weight(call, weight, input, count)
        if factor_array is not None and factor_array.ndim == 0:
            factor_array = factor_array.reshape((1,) * ndim)
    go: Any = grad_output if req.grad else None
    if not (go is None or isinstance(go, (int, float)) or req.reduction == "none"):
        # a cotangent per result: broadcast over what it reduces
        go = da.broadcast_to(da.asarray(go), call.out_shape).reshape(kept_shape)
    args: list[Any] = []
    layout: list[tuple[bool, ...] | None] = []
    numbers: list[Any] = []
    for a in (input, target, weight, go, factor_array, param):
        if a is None or isinstance(a, (int, float)):
            layout.append(None)
            numbers.append(a)
            continue
        squeezed, index, ones = _squeezed(a, loss_shape)
        args += [squeezed, index]
        layout.append(ones)
        numbers.append(None)
    ind = tuple(range(ndim))
    task = partial(_task, req=req, layout=tuple(layout), numbers=tuple(numbers), norm=norm,
                   reduced=reduced)
    meta = np.empty((0,) * ndim, out_dtype)
    pairs = da.blockwise(task, ind, *args, dtype=out_dtype, meta=meta, token="smoothl1-chunk",
                         align_arrays=True)
    grad = None
    if req.grad:
        grad = da.map_blocks(operator.itemgetter(1), pairs, dtype=input.dtype,
                             meta=np.empty((0,) * ndim, input.dtype), token="smoothl1-grad")
    value = None
    if req.value and req.reduction == "none":
        value = da.map_blocks(operator.itemgetter(0), pairs, dtype=out_dtype, meta=meta,
                              token="smoothl1-loss")
    elif req.value:
        value = _reduced_value(call, pairs, reduced, count, weight, known, out_dtype)
    return value, grad


def _partials(pairs: Any, which: str, reduced: tuple[int, ...]) -> Any:
    """The float64 totals of every chunk, one per output of the chunk, summed over the grid."""
    chunks = tuple((1,) * len(c) if i in reduced else c for i, c in enumerate(pairs.chunks))
    part = da.map_blocks(_part, pairs, which, chunks=chunks, dtype=np.float64,
                         meta=np.empty((0,) * pairs.ndim, np.float64),
                         token=f"smoothl1-{which}")
    return da.sum(part, axis=reduced, keepdims=True, dtype=np.float64)


def _reduced_value(call: Call, pairs: Any, reduced: tuple[int, ...], count: Any, weight: Any,
                   known: bool, out_dtype: Any) -> Any:
    total = _partials(pairs, "loss", reduced)
    if call.req.reduction == "mean":
        if isinstance(count, int):
            total = total / count  # a float64 total over an exact count, even past 2**31
        else:  # NaN if nothing is left, as torch's mean of nothing
            total = da.where(count == 0, np.nan, total / da.maximum(count, 1))
    elif call.req.reduction == "weighted_mean":
        if isinstance(weight, (da.Array, np.ndarray)):
            divisor = _partials(pairs, "weight", reduced)
        else:  # no weight, or a number
            divisor = (1.0 if weight is None else float(weight)) * count
        zero = divisor == 0  # NaN there, without dividing by zero (NumPy would warn)
        total = da.where(zero, np.nan, total / da.where(zero, 1.0, divisor))
    value = total.astype(out_dtype)
    if not call.req.keepdims:
        value = value.reshape(call.out_shape) if known else da.squeeze(value, axis=reduced)
    return value


def _inverse_total_weight(call: Call, weight: Any, input: Any, count: Any) -> Any:
    """weighted_mean's gradient factor: 1/(sum of the broadcast weights) per output, lazily."""
    work = np.float64 if call.formula.bits == 64 else np.float32
    reduced = call.reduced_axes
    if weight is None or isinstance(weight, (int, float)):
        total = (1.0 if weight is None else float(weight)) * count
        total = da.asarray(total, dtype=np.float64).reshape((1,) * len(call.loss_shape))
    elif _unknown(weight):  # then a full reduction, and the weight has the input's chunks
        total = da.sum(weight, dtype=np.float64).reshape((1,) * len(call.loss_shape))
    else:
        w = da.asarray(weight)
        w = w.reshape((1,) * (len(call.loss_shape) - w.ndim) + w.shape)
        own = tuple(i for i in reduced if w.shape[i] != 1)
        repeats = math.prod(int(call.loss_shape[i] or 1) for i in reduced if w.shape[i] == 1)
        total = da.sum(w, axis=own, keepdims=True, dtype=np.float64) * repeats
    t = total.astype(work)
    zero = t == 0  # NaN there, without dividing by zero (NumPy would warn)
    return da.where(zero, work(np.nan), work(1.0) / da.where(zero, work(1.0), t)).astype(work)
