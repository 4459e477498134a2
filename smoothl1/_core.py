"""From user arguments to loss values and gradients: dtypes, broadcasting, reductions.

The elementwise math is in :mod:`smoothl1._formulas`; this module validates the
arguments, picks the working precision, applies the reduction and assembles
gradients and tangents.  It is written against the array API only and never reads
array values from Python, so it runs unchanged under ``jax.jit``, on torch's
``meta`` device, under ``torch.compile`` and on lazy dask arrays.

Three entry points share one preparation step:

- :func:`evaluate` — the loss and/or the gradient with respect to ``input``;
- :func:`backward` — vector-Jacobian product for both arguments (reverse mode);
- :func:`value_and_tangent` — Jacobian-vector product (forward mode).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import _formulas
from ._namespace import Array, is_numpy_backed, namespace_of
from ._validation import (
    Reduction,
    Shape,
    broadcast_shapes,
    check_axis,
    check_real_floating,
    shape_of,
    warn_if_shapes_differ,
)

__all__ = ["Request", "backward", "evaluate", "formula_for", "validate", "value_and_tangent"]


@dataclass(frozen=True)
class Request:
    """What a public function asks for: static (hashable) choices, validated."""

    func: str  # public name, for messages
    kind: _formulas.Kind  # "smooth_l1" or "huber"
    param: float  # validated beta or delta
    reduction: Reduction = "mean"
    axis: int | tuple[int, ...] | None = None  # as given; checked against the loss's ndim
    keepdims: bool = False
    value: bool = True  # compute the loss
    grad: bool = False  # compute the gradient with respect to input


@dataclass
class _Work:
    """Validated arguments and the quantities every result is built from."""

    xp: ModuleType
    formula: _formulas.Formula
    reduction: Reduction
    axis: tuple[int, ...] | None  # normalised, sorted; None: all axes
    keepdims: bool
    d: Array  # input - target, broadcast, in the working precision
    z: Array  # |d|
    linear: Array | None  # z >= param (torch: not z < param)
    weight: Array | float | None  # in the working precision
    count: int | None  # loss elements per reduced value, None if unknown (lazy)
    out_dtype: Any
    work_dtype: Any
    in_shape: Shape
    tg_shape: Shape
    loss_shape: Shape
    kept_shape: Shape  # the reduced shape with the reduced axes kept as 1


def _working_precision(xp: ModuleType, dtype: object) -> tuple[object, int]:
    """float32/float64 stay; half precisions are computed in float32 and rounded once."""
    if dtype == xp.float64:
        return dtype, 64
    return xp.float32, 32


_FLOAT32_MAX = (2.0 - 2.0**-23) * 2.0**127


def _round_param(param: float, bits: int) -> float:
    """Round beta/delta to the working precision, as torch's kernels cast it.

    Plain Python arithmetic (round half to even, subnormals, overflow to inf), so
    that ``torch.compile`` can fold it: it refuses ``numpy.errstate``.
    """
    if bits == 64 or param == 0.0 or not math.isfinite(param):
        return param
    mantissa, exponent = math.frexp(param)  # param = mantissa * 2**exponent
    digits = min(24, 149 + exponent)  # float32 keeps 24 bits, fewer when subnormal
    rounded = math.ldexp(round(math.ldexp(mantissa, digits)), exponent - digits)
    return math.copysign(math.inf, param) if abs(rounded) > _FLOAT32_MAX else rounded


def formula_for(req: Request, bits: int) -> _formulas.Formula:
    """The formula a request computes in the working precision ``bits`` (32 or 64)."""
    param = _round_param(req.param, bits)
    kind = req.kind
    if kind == "smooth_l1" and param == 0.0:
        # beta == 0, or a beta that is 0 in the working precision: torch's forward
        # is then exactly L1, and so is ours; the gradient is sign(d), 0 at d == 0.
        kind = "l1"
    return _formulas.Formula(kind=kind, param=param, bits=bits)


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


def _check_against(
    func: str, name: str, xp: ModuleType, value: object, shape: Shape, what: str,
    dtypes: str | tuple[str, ...] = "real floating",
) -> None:
    """``value`` (an array or a number) must broadcast to ``shape`` without enlarging it."""
    if _is_scalar(value):  # namespace_of checked that anything else is an array
        return
    check_real_floating(func, name, xp, value, dtypes)
    v_shape = shape_of(value)
    if broadcast_shapes(func, v_shape, shape, names=(name, what)) != shape:
        raise ValueError(
            f"{func}: {name} of shape {v_shape} does not broadcast to the {what} shape {shape}"
        )


def _is_scalar(value: object) -> bool:
    """Whether ``value`` is None or a Python number.

    Plain ``isinstance``: array-api-compat's ``is_array_api_obj`` is
    ``lru_cache``d, which Dynamo warns about under ``torch.compile``.
    """
    return value is None or isinstance(value, (int, float))


def _reduced_shapes(loss_shape: Shape, axis: tuple[int, ...] | None,
                    keepdims: bool) -> tuple[Shape, Shape]:
    """The reduced shape as returned, and with the reduced axes kept as 1."""
    axes = range(len(loss_shape)) if axis is None else axis
    kept = tuple(1 if i in axes else n for i, n in enumerate(loss_shape))
    returned = kept if keepdims else tuple(n for i, n in enumerate(loss_shape) if i not in axes)
    return returned, kept


def validate(
    req: Request,
    input: Array,
    target: Array,
    weight: object = None,
    grad_output: object = None,
    *,
    xp: ModuleType | None = None,
    warn: bool = True,
) -> tuple[ModuleType, Shape, Shape, Shape, tuple[int, ...] | None, Shape]:
    """Check every argument (and warn as torch does); compute nothing.

    Returns the namespace; the input, target and loss shapes; the normalised
    axis; and the shape of the result.  Framework adapters call this before
    entering their autodiff machinery, so that errors and warnings point at the
    user's code.
    """
    if xp is None:
        xp = namespace_of(
            req.func, optional=("weight", "grad_output"), input=input, target=target,
            weight=weight, grad_output=grad_output,
        )
    check_real_floating(req.func, "input", xp, input)
    check_real_floating(req.func, "target", xp, target)
    in_shape, tg_shape = shape_of(input), shape_of(target)
    loss_shape = broadcast_shapes(req.func, in_shape, tg_shape)
    axis = check_axis(req.func, req.reduction, req.axis, len(loss_shape))
    _check_against(req.func, "weight", xp, weight, loss_shape, "loss",
                   ("bool", "integral", "real floating"))
    out_shape = loss_shape
    if req.reduction != "none":
        out_shape = _reduced_shapes(loss_shape, axis, req.keepdims)[0]
    _check_against(req.func, "grad_output", xp, grad_output, out_shape, "result")
    if warn:
        warn_if_shapes_differ(in_shape, tg_shape)
    return xp, in_shape, tg_shape, loss_shape, axis, out_shape


def _prepare(
    req: Request,
    input: Array,
    target: Array,
    weight: object = None,
    *,
    xp: ModuleType | None = None,
    grad_output: object = None,
    warn: bool = True,
) -> _Work:
    xp, in_shape, tg_shape, loss_shape, axis, _ = validate(
        req, input, target, weight, grad_output, xp=xp, warn=warn
    )
    out_dtype = xp.result_type(input, target)
    work_dtype, bits = _working_precision(xp, out_dtype)
    f = formula_for(req, bits)
    d = _cast(xp, input, work_dtype) - _cast(xp, target, work_dtype)
    z = xp.abs(d)
    # a Python number stays one: no full-size array, and nothing to place on a device
    w = weight if weight is None or _is_scalar(weight) else _cast(xp, weight, work_dtype)
    kept = _reduced_shapes(loss_shape, axis, True)[1]
    reduced = [n for n, k in zip(loss_shape, kept, strict=True) if k == 1]
    known = [n for n in reduced if n is not None]
    count = math.prod(known) if len(known) == len(reduced) else None
    return _Work(
        xp=xp, formula=f, reduction=req.reduction, axis=axis, keepdims=req.keepdims,
        d=d, z=z, linear=_formulas.linear_mask(xp, f, z), weight=w, count=count,
        out_dtype=out_dtype, work_dtype=work_dtype, in_shape=in_shape, tg_shape=tg_shape,
        loss_shape=loss_shape, kept_shape=kept,
    )


def _losses(w: _Work, products: bool) -> Array:
    """The elementwise losses to reduce.

    torch's bits (:func:`~smoothl1._formulas.loss`) for ``reduction='none'`` or
    unless ``products`` is asked for; else the factorised products.
    """
    if products and w.reduction != "none":
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
    return _sum(w, elementwise, keep) / float(w.count)


def _expand(w: _Work, g: Any) -> Any:
    """A cotangent of the reduced shape, reshaped so that it broadcasts over the loss."""
    if w.reduction == "none" or w.keepdims or w.axis is None or _is_scalar(g):
        return g
    return w.xp.reshape(g, w.kept_shape)


def _norm(w: _Work) -> Any:
    """The factor d(result)/d(weighted loss element): 1, 1/N or 1/total weight."""
    xp = w.xp
    if w.reduction == "mean":
        if w.count is None:
            count = _sum(w, xp.ones_like(w.z, dtype=xp.int64), True)
            return 1.0 / _cast(xp, count, w.work_dtype)
        return 1.0 / w.count if w.count > 1 else 1.0
    if w.reduction == "weighted_mean":
        return _safe_inverse(xp, _total_weight(w, True))
    return 1.0


def _slope(w: _Work, grad_output: object) -> Array:
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
    req: Request,
    input: Array,
    target: Array,
    weight: object = None,
    grad_output: object = None,
    *,
    xp: ModuleType | None = None,
    warn: bool = True,
    products: bool = False,
) -> tuple[Array | None, Array | None]:
    """Compute the requested ``(loss, grad)``; the one not requested is ``None``.

    ``products``: reduce :func:`~smoothl1._formulas.loss_products` instead of
    :func:`~smoothl1._formulas.loss` (fewer operations where a compiler fuses
    them into the reduction; adapters choose it).
    """
    w = _prepare(req, input, target, weight, xp=xp,
                 grad_output=grad_output if req.grad else None, warn=warn)
    xp = w.xp
    with _quiet(xp):
        value = None
        if req.value:
            value = _as_array(xp, _cast(xp, _reduce(w, _losses(w, products)), w.out_dtype))
        grad = None
        if req.grad:
            grad = _to_argument(w, _slope(w, grad_output), input.dtype, w.in_shape)
    return value, grad


def backward(
    req: Request,
    input: Array,
    target: Array,
    weight: Array | None,
    grad_output: Array,
    *,
    need: tuple[bool, bool, bool] = (True, True, False),
    xp: ModuleType | None = None,
) -> tuple[Array | None, Array | None, Array | None]:
    """Gradients of the result with respect to ``input``, ``target`` and ``weight`` (a VJP).

    Only the ones flagged in ``need`` are computed; the others are ``None``.
    """
    if not any(need):
        return None, None, None
    w = _prepare(req, input, target, weight, xp=xp, warn=False)
    xp = w.xp
    g_in = g_tg = g_w = None
    with _quiet(xp):
        if need[0] or need[1]:
            g = _slope(w, grad_output)
            g_in = _to_argument(w, g, input.dtype, w.in_shape) if need[0] else None
            g_tg = _to_argument(w, -g, target.dtype, w.tg_shape) if need[1] else None
        if need[2] and weight is not None:
            elementwise = _formulas.loss(xp, w.formula, w.z, w.linear)
            if w.reduction == "weighted_mean":  # d(S/W)/dw_i = (loss_i - S/W) / W
                mean = _reduce(w, elementwise, keepdims=True)
                elementwise = elementwise - mean
            gw = _norm(w) * elementwise * _expand(w, grad_output)
            g_w = _to_argument(w, gw, weight.dtype, shape_of(weight))
    return g_in, g_tg, g_w


def value_and_tangent(
    req: Request,
    input: Array,
    target: Array,
    weight: Array | None,
    input_tangent: Array | None,
    target_tangent: Array | None,
    weight_tangent: Array | None = None,
    *,
    xp: ModuleType | None = None,
    products: bool = False,
) -> tuple[Array, Array]:
    """The result and its directional derivative along the tangents (a JVP).

    A ``None`` tangent counts as zero.  Both results have the result's shape and
    dtype.  ``products`` as for :func:`evaluate`.
    """
    w = _prepare(req, input, target, weight, xp=xp, warn=False)
    xp = w.xp
    with _quiet(xp):
        elementwise = _losses(w, products)
        value = _reduce(w, elementwise)
        if input_tangent is None and target_tangent is None:
            dd = xp.zeros_like(w.d)
        elif target_tangent is None:
            dd = _cast(xp, input_tangent, w.work_dtype)
        elif input_tangent is None:
            dd = -_cast(xp, target_tangent, w.work_dtype)
        else:
            dd = _cast(xp, input_tangent, w.work_dtype) - _cast(xp, target_tangent, w.work_dtype)
        d, z, linear = w.d, w.z, w.linear
        if products:
            # d again, as -(target - input) (the same bits): a separate expression,
            # so that XLA recomputes it in the tangent's loop instead of storing
            # the d shared with the loss (a full-size array) for both loops
            d = -(_cast(xp, target, w.work_dtype) - _cast(xp, input, w.work_dtype))
            if w.in_shape != w.tg_shape:
                d = xp.broadcast_to(d, w.loss_shape)
            z = xp.abs(d)
            linear = _formulas.linear_mask(xp, w.formula, z)
        slope = _formulas.derivative(xp, w.formula, d, z, linear)
        out = _reduce(w, slope * dd)
        if weight_tangent is not None and w.weight is not None:
            tw = _cast(xp, weight_tangent, w.work_dtype)
            plain = _Work(**{**w.__dict__, "weight": None})
            extra = _reduce(plain, elementwise * tw) if w.reduction != "weighted_mean" else (
                (_sum(w, elementwise * tw, w.keepdims) - value * _sum(w, xp.ones_like(w.z) * tw,
                                                                       w.keepdims))
                * _safe_inverse(xp, _total_weight(w, w.keepdims)))
            out = out + extra
        return (_as_array(xp, _cast(xp, value, w.out_dtype)),
                _as_array(xp, _cast(xp, out, w.out_dtype)))
