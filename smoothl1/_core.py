"""The general path: loss values, gradients and tangents of a checked call, on any array library.

The elementwise math is in :mod:`smoothl1._formulas`; this module applies the
working precision, the weights, the reduction and the broadcasting of a
:class:`~smoothl1._request.Call` (checked before it gets here).  It is written
against the array API only and never reads array values from Python, so it
runs unchanged under ``jax.jit``, on torch's ``meta`` device, under
``torch.compile`` and on lazy dask arrays.  The executors in
:mod:`smoothl1._backends` are faster ways to the same numbers; whatever they
decline comes here.

Three entry points share one preparation step:

- :func:`evaluate` — the loss and/or the gradient with respect to ``input``;
- :func:`backward` — vector-Jacobian product for all three arguments (reverse mode);
- :func:`value_and_tangent` — Jacobian-vector product (forward mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import _formulas
from ._compat import Array, is_numpy_backed
from ._request import Call, _is_scalar
from ._validation import Shape, shape_of

__all__ = ["backward", "evaluate", "value_and_tangent"]


@dataclass
class _Work:
    """A checked call and the quantities every result is built from."""

    call: Call
    xp: ModuleType
    formula: _formulas.Formula
    d: Array  # input - target, broadcast, in the working precision
    z: Array  # |d|
    linear: Array | None  # z >= param (torch: not z < param)
    weight: Array | float | None  # in the working precision

    @property
    def reduction(self) -> str:
        return self.call.req.reduction

    @property
    def axis(self) -> tuple[int, ...] | None:
        return self.call.axis

    @property
    def keepdims(self) -> bool:
        return self.call.req.keepdims

    @property
    def count(self) -> int | None:
        return self.call.count


def _cast(xp: ModuleType, x: Array, dtype: object) -> Array:
    return x if x.dtype == dtype else xp.astype(x, dtype)


def _as_array(xp: ModuleType, x: Any) -> Array:
    """NumPy turns 0-d results into NumPy scalars; make them 0-d arrays again.

    (``xp.asarray`` on every result would also work, but torch warns when it is
    given a tensor that requires grad.)
    """
    return xp.asarray(x) if isinstance(x, np.generic) else x


def _quiet(xp: ModuleType) -> contextlib.AbstractContextManager[Any]:
    """Silence NumPy's overflow/invalid warnings for eager NumPy-backed namespaces.

    torch produces the same inf/NaN silently, and some intermediates are
    deliberately repaired by the formulas.
    """
    return np.errstate(all="ignore") if is_numpy_backed(xp) else contextlib.nullcontext()


def _sum_to_shape(xp: ModuleType, g: Array, shape: Shape) -> Array:
    """Sum a broadcast gradient back to an argument's own shape."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if not axes:
        return g
    g = xp.sum(g, axis=axes, keepdims=True)
    return xp.reshape(g, shape) if lead else g


def _prepare(call: Call, input: Array, target: Array, weight: object = None,
             param: Array | None = None) -> _Work:
    xp, f = call.xp, call.formula
    if call.param == "array":  # a threshold per element, in the working precision
        if param is None:
            raise TypeError(f"{call.req.func}: internal error: an array threshold was checked "
                            "but not given to the executor")
        f = dataclasses.replace(f, param=_cast(xp, param, call.work_dtype))
    d = _cast(xp, input, call.work_dtype) - _cast(xp, target, call.work_dtype)
    z = xp.abs(d)
    # a Python number stays one: no full-size array, and nothing to place on a device
    w = weight if _is_scalar(weight) else _cast(xp, weight, call.work_dtype)
    return _Work(call=call, xp=xp, formula=f, d=d, z=z, linear=_formulas.linear_mask(xp, f, z),
                 weight=w)


def _losses(w: _Work, products: bool) -> Array:
    """The elementwise losses to reduce.

    torch's bits (:func:`~smoothl1._formulas.loss`) for ``reduction='none'`` or
    unless ``products`` is asked for; else the factorised products.
    """
    # (the products take a Python threshold: with an array one, the branches)
    if products and w.reduction != "none" and not w.formula.per_element:
        return _formulas.loss_products(w.xp, w.formula, w.z)
    return _formulas.loss(w.xp, w.formula, w.z, w.linear)


def _sum(w: _Work, x: Array, keepdims: bool) -> Array:
    return w.xp.sum(x, axis=w.axis, keepdims=keepdims)


def _safe_inverse(xp: ModuleType, total: Array) -> Array:
    """1/total, and NaN (without a division by zero) where the total weight is 0."""
    zero = total == 0
    return xp.where(zero, float("nan"), 1.0 / xp.where(zero, 1.0, total))


def _total_weight(w: _Work, keepdims: bool) -> Array:
    """Sum of the broadcast weights over the reduced axes (weighted_mean's divisor)."""
    xp = w.xp
    ones = xp.ones_like(w.z)
    return _sum(w, ones if w.weight is None else ones * w.weight, keepdims)


def _reduce(w: _Work, elementwise: Array, keepdims: bool | None = None) -> Array:
    """Weight and reduce an elementwise array in the working precision (float32 at least)."""
    xp = w.xp
    keep = w.keepdims if keepdims is None else keepdims
    if w.weight is not None:
        elementwise = elementwise * w.weight
    if w.reduction == "none":
        return elementwise
    if w.reduction == "sum":
        return _sum(w, elementwise, keep)
    if w.reduction == "weighted_mean":
        return _sum(w, elementwise, keep) * _safe_inverse(xp, _total_weight(w, keep))
    if w.count is None:  # lazy array of unknown size: let the library count
        return xp.mean(elementwise, axis=w.axis, keepdims=keep)
    return _sum(w, elementwise, keep) / float(w.count)  # torch: the sum, then / N


def _expand(w: _Work, g: Any) -> Any:
    """A cotangent of the result's shape, reshaped so that it broadcasts over the loss."""
    call = w.call
    if w.reduction == "none" or w.keepdims or w.axis is None or _is_scalar(g):
        return g
    if tuple(g.shape) != call.out_shape:  # a smaller cotangent that broadcasts to the result
        g = w.xp.broadcast_to(g, call.out_shape)
    return w.xp.reshape(g, call.kept_shape)


def _norm(w: _Work) -> Any:
    """The factor d(result)/d(weighted loss element): 1, 1/N or 1/total weight."""
    xp = w.xp
    if w.reduction == "mean":
        if w.count is None:
            count = _sum(w, xp.ones_like(w.z, dtype=xp.int64), True)
            return 1.0 / _cast(xp, count, w.call.work_dtype)
        return _formulas.mean_scale(w.count)
    if w.reduction == "weighted_mean":
        return _safe_inverse(xp, _total_weight(w, True))
    return 1.0


def _scaled_derivative(w: _Work, grad_output: object) -> Array:
    """d(result)/d(d) elementwise, times the cotangent, in the working precision."""
    g = _formulas.derivative(w.xp, w.formula, w.d, w.z, w.linear)
    norm = _norm(w)
    if not (isinstance(norm, float) and norm == 1.0):
        g = norm * g  # torch: norm * derivative * grad_output
    if w.weight is not None:
        g = g * w.weight
    if grad_output is not None:
        g = g * _expand(w, grad_output)
    return g


def _to_argument(w: _Work, g: Array, dtype: object, shape: Shape) -> Array:
    """A broadcast-shaped gradient as one argument's gradient: its dtype and shape."""
    return _as_array(w.xp, _sum_to_shape(w.xp, _cast(w.xp, g, dtype), shape))


def evaluate(
    call: Call,
    input: Array,
    target: Array,
    weight: object = None,
    grad_output: object = None,
    *,
    products: bool = False,
    param: Array | None = None,
) -> tuple[Array | None, Array | None]:
    """Compute the requested ``(loss, grad)``; the one not requested is ``None``.

    ``products``: reduce :func:`~smoothl1._formulas.loss_products` instead of
    :func:`~smoothl1._formulas.loss` (fewer operations where a compiler fuses
    them into the reduction; the JAX backend chooses it).  ``param``: the array
    threshold when ``call.param == "array"``.
    """
    req = call.req
    xp = call.xp
    with _quiet(xp):  # d = input - target may be inf - inf: a NaN result, not a warning
        w = _prepare(call, input, target, weight, param)
        value = None
        if req.value:
            value = _as_array(xp, _cast(xp, _reduce(w, _losses(w, products)), call.out_dtype))
        grad = None
        if req.grad:
            grad = _to_argument(w, _scaled_derivative(w, grad_output), input.dtype, call.in_shape)
    return value, grad


def backward(
    call: Call,
    input: Array,
    target: Array,
    weight: Array | None,
    grad_output: Array,
    *,
    need: tuple[bool, bool, bool] = (True, True, False),
    param: Array | None = None,
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of the result with respect to ``input``, ``target`` and ``weight`` (a VJP).

    Only the ones flagged in ``need`` are computed; the others are ``None``.
    (The gradient with respect to an array threshold: :func:`param_backward`.)
    """
    if not any(need):
        return None, None, None
    xp = call.xp
    grad_input = grad_target = grad_weight = None
    with _quiet(xp):
        w = _prepare(call, input, target, weight, param)
        if need[0] or need[1]:
            g = _scaled_derivative(w, grad_output)
            if need[0]:
                grad_input = _to_argument(w, g, input.dtype, call.in_shape)
            if need[1]:
                grad_target = _to_argument(w, -g, target.dtype, call.tg_shape)
        if need[2] and weight is not None:
            elementwise = _formulas.loss(xp, w.formula, w.z, w.linear)
            if w.reduction == "weighted_mean":  # d(S/W)/dw_i = (loss_i - S/W) / W
                mean = _reduce(w, elementwise, keepdims=True)
                elementwise = elementwise - mean
            gw = _norm(w) * elementwise * _expand(w, grad_output)
            grad_weight = _to_argument(w, gw, weight.dtype, shape_of(weight))
    return grad_input, grad_target, grad_weight


def param_backward(call: Call, input: Array, target: Array, weight: object, param: Array,
                   grad_output: object) -> Array:
    r"""The gradient of the result with respect to an array threshold (a VJP).

    :math:`\sum_i \mathrm{norm}\; w_i\, \partial_eta \ell_i \; ar g`, summed over
    the elements each threshold reaches, in the threshold's shape and dtype
    (:func:`~smoothl1._formulas.param_derivative`; ``weighted_mean``'s divisor
    does not depend on the threshold).  ``grad_output`` ``None`` counts as 1.
    """
    xp = call.xp
    with _quiet(xp):
        w = _prepare(call, input, target, weight, param)
        assert w.linear is not None  # never L1: an array threshold keeps its kind
        g = _formulas.param_derivative(xp, w.formula, w.z, w.linear)
        norm = _norm(w)
        if not (isinstance(norm, float) and norm == 1.0):
            g = norm * g
        if w.weight is not None:
            g = g * w.weight
        if grad_output is not None:
            g = g * _expand(w, grad_output)
        return _to_argument(w, g, param.dtype, shape_of(param))


def _weight_tangent_term(w: _Work, elementwise: Array, value: Array, tw: Array) -> Array:
    """How the result moves with the weights (a JVP term).

    ``sum(l * tw) * norm``, or for weighted_mean ``(sum(l * tw) - value * sum(tw)) / sum(w)``.
    """
    xp = w.xp
    if w.reduction != "weighted_mean":
        plain = _Work(**{**w.__dict__, "weight": None})
        return _reduce(plain, elementwise * tw)
    moved = _sum(w, elementwise * tw, w.keepdims)
    shift = value * _sum(w, xp.ones_like(w.z) * tw, w.keepdims)
    return (moved - shift) * _safe_inverse(xp, _total_weight(w, w.keepdims))


def value_and_tangent(
    call: Call,
    input: Array,
    target: Array,
    weight: Array | None,
    input_tangent: Array | None,
    target_tangent: Array | None,
    weight_tangent: Array | None = None,
    *,
    products: bool = False,
    param: Array | None = None,
    param_tangent: Array | None = None,
) -> tuple[Array, Array]:
    """The result and its directional derivative along the tangents (a JVP).

    A ``None`` tangent counts as zero.  Both results have the result's shape and
    dtype.  ``products`` as for :func:`evaluate`; ``param`` the array threshold
    and ``param_tangent`` its tangent.
    """
    xp, work = call.xp, call.work_dtype
    with _quiet(xp):
        w = _prepare(call, input, target, weight, param)
        elementwise = _losses(w, products)
        value = _reduce(w, elementwise)
        if input_tangent is None and target_tangent is None:
            dd = xp.zeros_like(w.d)
        elif target_tangent is None:
            dd = _cast(xp, input_tangent, work)
        elif input_tangent is None:
            dd = -_cast(xp, target_tangent, work)
        else:
            dd = _cast(xp, input_tangent, work) - _cast(xp, target_tangent, work)
        d, z, linear = w.d, w.z, w.linear
        if products:
            # d again, as -(target - input) (the same bits): a separate expression,
            # so that XLA recomputes it in the tangent's loop instead of storing
            # the d shared with the loss (a full-size array) for both loops
            d = -(_cast(xp, target, work) - _cast(xp, input, work))
            if call.in_shape != call.tg_shape:
                d = xp.broadcast_to(d, call.loss_shape)
            z = xp.abs(d)
            linear = _formulas.linear_mask(xp, w.formula, z)
        slope = _formulas.derivative(xp, w.formula, d, z, linear)
        out = _reduce(w, slope * dd)
        if weight_tangent is not None and w.weight is not None:
            out = out + _weight_tangent_term(w, elementwise, value, _cast(xp, weight_tangent,
                                                                          work))
        if param_tangent is not None and w.formula.per_element:
            assert w.linear is not None
            dp = _formulas.param_derivative(xp, w.formula, w.z, w.linear)
            out = out + _reduce(w, dp * _cast(xp, param_tangent, work))
        return (_as_array(xp, _cast(xp, value, call.out_dtype)),
                _as_array(xp, _cast(xp, out, call.out_dtype)))
