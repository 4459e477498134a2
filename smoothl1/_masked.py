"""Masked arrays (``numpy.ma``, dask arrays of masked chunks): masked elements count nowhere.

A user of ``numpy.ma`` expects ``smooth_l1(x, y)`` to be ``np.ma.mean`` of the
elementwise losses: an element masked in ``input``, ``target`` or ``weight``
is left out of the losses, of ``'mean'``'s count, of ``'sum'`` and of the
gradient, and ``'none'`` keeps the mask.  Silently reading the data under the
mask (what the array API's operations do with these arrays) is never right.

How: the union ``M`` of the masks (broadcast to the loss's shape) is turned
into plain arrays that the executors compute exactly, then the results get
their masks back.

* ``input`` and ``target`` are broadcast to the loss's shape and filled with 0
  under ``M``: a masked element's loss and gradient are then exactly 0, also
  where the data under the mask is ``inf`` or NaN (a weight of 0 times NaN
  would still be NaN).
* ``'mean'`` divides by the number of unmasked elements: without ``weight`` it
  is ``'weighted_mean'`` with the weight ``~M`` (one rounding, as ever); with
  ``weight`` it is the weighted ``'sum'`` divided by that count (rounded twice).
  ``'weighted_mean'`` divides by the sum of the unmasked weights.
* A reduced value whose elements are all masked is masked, as ``np.ma.sum``
  and ``np.ma.mean`` give ``masked``; an element of the gradient is masked
  where every loss element it reaches is masked (its value there is 0).
* A masked ``grad_output`` element counts as 0.

Results are masked arrays of the inputs' library: ``numpy.ma.MaskedArray``, or
a dask array of masked chunks (lazy, nothing computed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import numpy as np

from ._core import _sum_to_shape
from ._request import Call, Request, validate
from ._validation import Shape

__all__ = ["evaluate", "masked_module"]

Evaluate = Callable[[Request, Any, Any, object, object], tuple[Any, Any]]


def _is_dask_masked(a: object) -> bool:
    da = sys.modules.get("dask.array")
    return (da is not None and isinstance(a, da.Array)
            and isinstance(a._meta, np.ma.MaskedArray))


def masked_module(*args: object) -> tuple[ModuleType, ModuleType] | None:
    """``(xp, ma)`` (the library and its masked-array module) if any argument is masked."""
    if any(isinstance(a, np.ma.MaskedArray) for a in args):
        return np, np.ma
    if any(_is_dask_masked(a) for a in args):
        da = sys.modules["dask.array"]
        return da, da.ma
    return None


def _all_to(mask: Any, xp: ModuleType, shape: Shape) -> Any:
    """``mask`` (of a broadcast shape) reduced with ``all`` to ``shape``, which broadcasts to it."""
    lead = mask.ndim - len(shape)
    if lead:
        mask = xp.all(mask, axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and mask.shape[i] != 1)
    return xp.all(mask, axis=axes, keepdims=True) if axes else mask


def evaluate(req: Request, input: Any, target: Any, weight: object, grad_output: object,
             modules: tuple[ModuleType, ModuleType], inner: Evaluate) -> tuple[Any, Any]:
    """``(loss, grad)`` of masked arguments; ``inner`` computes plain ones (the router)."""
    xp, ma = modules
    call: Call = validate(req, input, target, weight, grad_output)
    shape = call.loss_shape
    arrays = [a for a in (input, target, weight) if not (a is None or isinstance(a, (int, float)))]
    mask = xp.broadcast_to(ma.getmaskarray(arrays[0]), shape)
    for a in arrays[1:]:
        mask = mask | xp.broadcast_to(ma.getmaskarray(a), shape)

    def filled(a: Any) -> Any:
        return xp.where(mask, xp.zeros((), dtype=a.dtype), xp.broadcast_to(ma.getdata(a), shape))

    x, y = filled(input), filled(target)
    w: Any = weight
    if not (weight is None or isinstance(weight, (int, float))):
        w = filled(weight)
    go: Any = grad_output
    if not (go is None or isinstance(go, (int, float))):
        go = ma.filled(go, 0)

    reduction = req.reduction
    axis = call.axis if reduction != "none" else None
    keep = req.keepdims
    count = None
    if reduction == "mean" and weight is None:
        req, w = replace(req, reduction="weighted_mean"), ~mask
    elif reduction == "mean":
        # Outputs with no unmasked element are masked: divide those by 1, not 0.
        count = xp.sum(~mask, axis=axis, keepdims=keep)
        count = xp.where(count == 0, 1, count).astype(call.out_dtype)
        req = replace(req, reduction="sum")
        if req.grad:
            go = (1 if go is None else go) / count
    elif reduction == "weighted_mean" and weight is None:
        w = ~mask
    value, grad = inner(req, x, y, w, go)

    out_mask = mask if reduction == "none" else xp.all(mask, axis=axis, keepdims=keep)
    if value is not None:
        if count is not None:
            value = value / count
        value = ma.masked_array(value, mask=out_mask)
    if grad is not None:
        grad = _sum_to_shape(xp, grad, call.in_shape) if call.in_shape != shape else grad
        grad = ma.masked_array(grad, mask=_all_to(mask, xp, call.in_shape))
    return value, grad

