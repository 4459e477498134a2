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
from ._namespace import Array, array_size, is_array, is_numpy_backed, namespace_of
from ._validation import (
    Reduction,
    Shape,
    broadcast_shapes,
    check_real_floating,
    check_reduction,
    shape_of,
    warn_if_shapes_differ,
)

__all__ = ["Request", "backward", "evaluate", "validate", "value_and_tangent"]


@dataclass(frozen=True)
class Request:
    """What a public function asks for."""

    func: str  # public name, for messages
    kind: _formulas.Kind  # "smooth_l1" or "huber"
    param: float  # validated beta or delta
    value: bool = True  # compute the loss
    grad: bool = False  # compute the gradient with respect to input


@dataclass
class _Work:
    """Validated arguments and the quantities every result is built from."""

    xp: ModuleType
    formula: _formulas.Formula
    reduction: Reduction
    d: Array  # input - target, broadcast, in the working precision
    z: Array  # |d|
    linear: Array | None  # z >= param (torch: not z < param)
    n: int | None  # number of loss elements, None if unknown (lazy)
    out_dtype: Any
    work_dtype: Any
    in_shape: Shape
    tg_shape: Shape
    loss_shape: Shape


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


def _formula(req: Request, bits: int) -> _formulas.Formula:
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


def _check_grad_output(
    func: str, xp: ModuleType, grad_output: object, reduction: Reduction, loss_shape: Shape
) -> None:
    if not is_array(grad_output):  # None or a Python number (namespace_of checked)
        return
    check_real_floating(func, "grad_output", xp, grad_output)
    g_shape = shape_of(grad_output)
    if reduction != "none":
        if g_shape != ():
            raise ValueError(
                f"{func}: with reduction={reduction!r} the loss is a scalar, so "
                f"grad_output must be a scalar or a 0-d array, got shape {g_shape}"
            )
        return
    if broadcast_shapes(func, g_shape, loss_shape, names=("grad_output", "loss")) != loss_shape:
        raise ValueError(
            f"{func}: grad_output of shape {g_shape} does not match the loss shape {loss_shape}"
        )


def validate(
    req: Request,
    input: Array,
    target: Array,
    reduction: object,
    *,
    xp: ModuleType | None = None,
    grad_output: object = None,
    warn: bool = True,
) -> tuple[ModuleType, Reduction, Shape, Shape, Shape]:
    """Check every argument (and warn as torch does); compute nothing.

    Returns the namespace, the reduction, and the input, target and loss shapes.
    Framework adapters call this before entering their autodiff machinery, so
    that errors and warnings point at the user's code.
    """
    red = check_reduction(req.func, reduction)
    if xp is None:
        xp = namespace_of(
            req.func, optional=("grad_output",), input=input, target=target,
            grad_output=grad_output,
        )
    check_real_floating(req.func, "input", xp, input)
    check_real_floating(req.func, "target", xp, target)
    in_shape, tg_shape = shape_of(input), shape_of(target)
    loss_shape = broadcast_shapes(req.func, in_shape, tg_shape)
    if grad_output is not None:
        _check_grad_output(req.func, xp, grad_output, red, loss_shape)
    if warn:
        warn_if_shapes_differ(in_shape, tg_shape)
    return xp, red, in_shape, tg_shape, loss_shape


def _prepare(
    req: Request,
    input: Array,
    target: Array,
    reduction: object,
    *,
    xp: ModuleType | None = None,
    grad_output: object = None,
    warn: bool = True,
) -> _Work:
    xp, red, in_shape, tg_shape, loss_shape = validate(
        req, input, target, reduction, xp=xp, grad_output=grad_output, warn=warn
    )
    out_dtype = xp.result_type(input, target)
    work_dtype, bits = _working_precision(xp, out_dtype)
    f = _formula(req, bits)
    d = _cast(xp, input, work_dtype) - _cast(xp, target, work_dtype)
    z = xp.abs(d)
    return _Work(
        xp=xp, formula=f, reduction=red, d=d, z=z,
        linear=_formulas.linear_mask(xp, f, z), n=array_size(z),
        out_dtype=out_dtype, work_dtype=work_dtype,
        in_shape=in_shape, tg_shape=tg_shape, loss_shape=loss_shape,
    )


def _reduce(w: _Work, elementwise: Array) -> Array:
    """Apply the reduction in the working precision (at least float32)."""
    xp = w.xp
    if w.reduction == "none":
        return elementwise
    if w.reduction == "sum":
        return xp.sum(elementwise)
    if w.n is None:  # lazy array of unknown size: let the library count
        return xp.mean(elementwise)
    return xp.sum(elementwise) / float(w.n)


def _slope(w: _Work) -> Array:
    """d(loss)/d(d) elementwise, including the mean's 1/N, in the working precision."""
    xp = w.xp
    g = _formulas.derivative(xp, w.formula, w.d, w.z, w.linear)
    if w.reduction == "mean":
        if w.n is None:
            count = xp.sum(xp.ones_like(w.z, dtype=xp.int64))
            g = g * (1.0 / _cast(xp, count, w.work_dtype))
        elif w.n > 1:
            g = (1.0 / w.n) * g  # torch: norm * derivative * grad_output
    return g


def _to_argument(w: _Work, g: Array, dtype: object, shape: Shape) -> Array:
    """A broadcast-shaped gradient as one argument's gradient: its dtype and shape."""
    return _as_array(w.xp, _sum_to_shape(w.xp, _cast(w.xp, g, dtype), shape))


def evaluate(
    req: Request,
    input: Array,
    target: Array,
    reduction: object,
    grad_output: object = None,
    *,
    xp: ModuleType | None = None,
    warn: bool = True,
) -> tuple[Array | None, Array | None]:
    """Compute the requested ``(loss, grad)``; the one not requested is ``None``."""
    w = _prepare(req, input, target, reduction, xp=xp,
                 grad_output=grad_output if req.grad else None, warn=warn)
    xp = w.xp
    with _quiet(xp):
        value = None
        if req.value:
            elementwise = _formulas.loss(xp, w.formula, w.z, w.linear)
            value = _as_array(xp, _cast(xp, _reduce(w, elementwise), w.out_dtype))
        grad = None
        if req.grad:
            g = _slope(w)
            if grad_output is not None:
                g = g * grad_output
            grad = _to_argument(w, g, input.dtype, w.in_shape)
    return value, grad


def backward(
    req: Request,
    input: Array,
    target: Array,
    reduction: object,
    grad_output: Array,
    *,
    need_input: bool = True,
    need_target: bool = True,
    xp: ModuleType | None = None,
) -> tuple[Array | None, Array | None]:
    """Gradients of the loss with respect to ``input`` and ``target`` (a VJP).

    Only the requested ones are computed; the other is ``None``.
    """
    if not (need_input or need_target):
        return None, None
    w = _prepare(req, input, target, reduction, xp=xp, warn=False)
    with _quiet(w.xp):
        g = _slope(w) * grad_output
        g_in = _to_argument(w, g, input.dtype, w.in_shape) if need_input else None
        g_tg = _to_argument(w, -g, target.dtype, w.tg_shape) if need_target else None
    return g_in, g_tg


def value_and_tangent(
    req: Request,
    input: Array,
    target: Array,
    reduction: object,
    input_tangent: Array | None,
    target_tangent: Array | None,
    *,
    xp: ModuleType | None = None,
) -> tuple[Array, Array]:
    """The loss and its directional derivative along ``(input_tangent, target_tangent)``.

    This is the Jacobian-vector product (forward mode); a ``None`` tangent counts as
    zero.  Both results have the loss's shape and dtype.
    """
    w = _prepare(req, input, target, reduction, xp=xp, warn=False)
    xp = w.xp
    with _quiet(xp):
        value = _reduce(w, _formulas.loss(xp, w.formula, w.z, w.linear))
        if input_tangent is None and target_tangent is None:
            dd = xp.zeros_like(w.d)
        elif target_tangent is None:
            dd = _cast(xp, input_tangent, w.work_dtype)
        elif input_tangent is None:
            dd = -_cast(xp, target_tangent, w.work_dtype)
        else:
            dd = _cast(xp, input_tangent, w.work_dtype) - _cast(xp, target_tangent, w.work_dtype)
        slope = _formulas.derivative(xp, w.formula, w.d, w.z, w.linear)
        out = _reduce(w, slope * dd)
        return (_as_array(xp, _cast(xp, value, w.out_dtype)),
                _as_array(xp, _cast(xp, out, w.out_dtype)))
