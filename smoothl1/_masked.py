"""Masked arrays (``numpy.ma``, marray, dask's masked chunks): masked elements count nowhere.

A user of ``numpy.ma`` (or of marray, masked arrays over any array-API
library) expects ``smooth_l1(x, y)`` to be ``np.ma.mean`` of the elementwise
losses: an element masked in ``input``, ``target`` or ``weight``
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
  ``weight`` it is the ``'sum'`` of the losses times ``weight / count``
  (dividing the weight first keeps a float32 sum from overflowing where the
  mean does not).
  ``'weighted_mean'`` divides by the sum of the unmasked weights.
* A reduced value whose elements are all masked is masked, as ``np.ma.sum``
  and ``np.ma.mean`` give ``masked``; an element of the gradient is masked
  where every loss element it reaches is masked (its value there is 0).
* A masked ``grad_output`` element counts as 0 (with no other mask, the
  results are plain arrays).

Results are masked arrays of the inputs' library: ``numpy.ma.MaskedArray``, an
marray ``MArray`` over the inputs' own library (its data computed by that
library's executor), or a dask array of masked chunks (lazy, nothing computed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from ._core import _sum_to_shape
from ._request import Call, Request, validate
from ._validation import Shape

__all__ = ["Masks", "evaluate", "masked_module"]

Evaluate = Callable[[Request, Any, Any, object, object, object], tuple[Any, Any]]


@dataclass(frozen=True)
class Masks:
    """How to take one masked-array library's arrays apart and put results together.

    Attributes
    ----------
    xp
        The namespace of the data (NumPy, dask, or the library under marray).
    mask
        ``a -> mask`` (boolean, ``a``'s shape), or ``None`` where ``a`` has none.
    data
        ``a -> data`` (the values, whatever lies under the mask).
    wrap
        ``(values, mask) -> masked array`` of the inputs' library.
    """

    xp: ModuleType
    mask: Callable[[Any], Any]
    data: Callable[[Any], Any]
    wrap: Callable[[Any, Any], Any]


def _is_dask_masked(a: object) -> bool:
    da = sys.modules.get("dask.array")
    return (da is not None and isinstance(a, da.Array)
            and isinstance(a._meta, np.ma.MaskedArray))


def _is_marray(a: object) -> bool:
    # marray makes one ``MArray`` class per wrapped library, all in the module ``marray``
    cls = type(a)
    return cls.__name__ == "MArray" and cls.__module__ == "marray"


def _marray(example: Any) -> Masks:
    mod = example.__array_namespace__()  # the masked namespace, for the results
    xp = array_api_compat.array_namespace(example.data)
    return Masks(xp=xp, mask=lambda a: a.mask if _is_marray(a) else None,
                 data=lambda a: a.data if _is_marray(a) else a,
                 wrap=lambda v, m: mod.asarray(v, mask=m))


def masked_module(*args: object) -> Masks | None:
    """How to handle the masks if any argument is a masked array (``None`` if none is)."""
    if any(isinstance(a, np.ma.MaskedArray) for a in args):
        ma = np.ma
        return Masks(xp=np, mask=lambda a: ma.getmaskarray(a) if isinstance(a, ma.MaskedArray)
                     else None, data=ma.getdata, wrap=lambda v, m: ma.masked_array(v, mask=m))
    if "marray" in sys.modules:
        for a in args:
            if _is_marray(a):
                return _marray(a)
    if any(_is_dask_masked(a) for a in args):
        da = sys.modules["dask.array"]
        return Masks(xp=da, mask=lambda a: da.ma.getmaskarray(a) if _is_dask_masked(a) else None,
                     data=da.ma.getdata, wrap=lambda v, m: da.ma.masked_array(v, mask=m))
    return None


def _all_to(mask: Any, xp: ModuleType, shape: Shape) -> Any:
    """``mask`` (of a broadcast shape) reduced with ``all`` to ``shape``, which broadcasts to it."""
    lead = mask.ndim - len(shape)
    if lead:
        mask = xp.all(mask, axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and mask.shape[i] != 1)
    return xp.all(mask, axis=axes, keepdims=True) if axes else mask


def evaluate(req: Request, input: Any, target: Any, weight: object, grad_output: object,
             masks: Masks, inner: Evaluate, param: Any = None) -> tuple[Any, Any]:
    """``(loss, grad)`` of masked arguments; ``inner`` computes plain ones (the router).

    An array threshold ``param`` may be masked too: its masked elements mask the
    losses they reach, and are replaced by 1 (a valid threshold) before use.
    """
    xp = masks.xp
    call: Call = validate(req, input, target, weight, grad_output, param=param)
    shape = call.loss_shape
    arrays = [a for a in (input, target, weight, param)
              if not (a is None or isinstance(a, (int, float)))]
    mask: Any = None
    for a in arrays:
        m = masks.mask(a)
        if m is not None:
            m = xp.broadcast_to(m, shape)
            mask = m if mask is None else mask | m
    go: Any = grad_output
    if not (go is None or isinstance(go, (int, float))):
        go_mask, go = masks.mask(go), masks.data(go)
        if go_mask is not None:
            go = xp.where(go_mask, xp.zeros((), dtype=go.dtype), go)
    if param is not None:
        param_mask, param = masks.mask(param), masks.data(param)
        if param_mask is not None:
            param = xp.where(param_mask, xp.ones((), dtype=param.dtype), param)
    if mask is None:  # only grad_output was masked: plain arguments, plain results
        return inner(req, input, target, weight, go, param)

    def filled(a: Any) -> Any:
        data = xp.broadcast_to(masks.data(a), shape)
        return xp.where(mask, xp.zeros((), dtype=data.dtype), data)

    x, y = filled(input), filled(target)
    w: Any = weight
    if not (weight is None or isinstance(weight, (int, float))):
        w = filled(weight)

    reduction = req.reduction
    axis = call.axis if reduction != "none" else None
    keep = req.keepdims
    if reduction == "mean" and weight is None:
        req, w = replace(req, reduction="weighted_mean"), ~mask
    elif reduction == "mean":
        # The weighted sum of the losses over the number of unmasked elements: the
        # weight divided by that count first, so that the float32 sum cannot
        # overflow where the mean does not.  Outputs with no unmasked element are
        # masked: divide those by 1, not 0.
        # count_nonzero (array-api-strict sums no booleans; dask's has no keepdims)
        count = xp.reshape(xp.count_nonzero(~mask, axis=axis), tuple(
            1 if axis is None or i in axis else n for i, n in enumerate(mask.shape)))
        count = xp.where(count == 0, 1, count)
        # dask.array has no ``astype`` function, only the method; array-API arrays the reverse
        count = (xp.astype(count, call.out_dtype) if hasattr(xp, "astype")
                 else count.astype(call.out_dtype))
        w = w / count
        req = replace(req, reduction="sum")
    elif reduction == "weighted_mean" and weight is None:
        w = ~mask
    value, grad = inner(req, x, y, w, go, param)

    out_mask = mask if reduction == "none" else xp.all(mask, axis=axis, keepdims=keep)
    if value is not None:
        value = masks.wrap(value, out_mask)
    if grad is not None:
        grad = _sum_to_shape(xp, grad, call.in_shape) if call.in_shape != shape else grad
        grad = masks.wrap(grad, _all_to(mask, xp, call.in_shape))
    return value, grad

