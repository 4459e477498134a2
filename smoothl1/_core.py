"""From user arguments to loss values and gradients: dtypes, broadcasting, reductions.

The elementwise math is in :mod:`smoothl1._formulas`; this module validates the
arguments, picks the working precision, applies the reduction and assembles the
gradient.  It is written against the array API only and never reads array values
from Python, so it runs unchanged under ``jax.jit``, on torch's ``meta`` device and
on lazy dask arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import _formulas
from ._namespace import Array, array_size, is_array, namespace_of
from ._validation import (
    Reduction,
    Shape,
    broadcast_shapes,
    check_real_floating,
    check_reduction,
    shape_of,
    warn_if_shapes_differ,
)

__all__ = ["Request", "evaluate"]


@dataclass(frozen=True)
class Request:
    """What a public function asks of :func:`evaluate`."""

    func: str  # public name, for messages
    kind: _formulas.Kind  # "smooth_l1" or "huber"
    param: float  # validated beta or delta
    value: bool  # compute the loss
    grad: bool  # compute the gradient with respect to input


def _working_precision(xp: ModuleType, dtype: object) -> tuple[object, int]:
    """float32/float64 stay; half precisions are computed in float32 and rounded once."""
    if dtype == xp.float64:
        return dtype, 64
    return xp.float32, 32


def _round_param(param: float, bits: int) -> float:
    """Round beta/delta to the working precision, as torch's kernels cast it."""
    if bits == 64:
        return param
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float32(param))


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
    req: Request, xp: ModuleType, grad_output: object, reduction: Reduction, loss_shape: Shape
) -> None:
    if not is_array(grad_output):  # None or a Python number (namespace_of checked)
        return
    check_real_floating(req.func, "grad_output", xp, grad_output)
    g_shape = shape_of(grad_output)
    if reduction != "none":
        if g_shape != ():
            raise ValueError(
                f"{req.func}: with reduction={reduction!r} the loss is a scalar, so "
                f"grad_output must be a scalar or a 0-d array, got shape {g_shape}"
            )
        return
    if broadcast_shapes(req.func, g_shape, loss_shape, names=("grad_output", "loss")) != loss_shape:
        raise ValueError(
            f"{req.func}: grad_output of shape {g_shape} does not match the loss shape "
            f"{loss_shape}"
        )


def evaluate(
    req: Request,
    input: Array,
    target: Array,
    reduction: object,
    grad_output: object = None,
) -> tuple[Array | None, Array | None]:
    """Compute the requested ``(loss, grad)``; the one not requested is ``None``."""
    red = check_reduction(req.func, reduction)
    xp = namespace_of(
        req.func, optional=("grad_output",), input=input, target=target, grad_output=grad_output
    )
    check_real_floating(req.func, "input", xp, input)
    check_real_floating(req.func, "target", xp, target)
    in_shape, tg_shape = shape_of(input), shape_of(target)
    loss_shape = broadcast_shapes(req.func, in_shape, tg_shape)
    if req.grad:
        _check_grad_output(req, xp, grad_output, red, loss_shape)
    warn_if_shapes_differ(in_shape, tg_shape)

    out_dtype = xp.result_type(input, target)
    work_dtype, bits = _working_precision(xp, out_dtype)
    f = _formula(req, bits)

    # NumPy (and NumPy-backed namespaces) would warn about the inf/NaN that torch
    # produces silently, and about intermediates the formulas deliberately repair.
    with np.errstate(all="ignore"):
        d = _cast(xp, input, work_dtype) - _cast(xp, target, work_dtype)
        z = xp.abs(d)
        quadratic = _formulas.quadratic_mask(xp, f, z)
        n = array_size(z)

        value = None
        if req.value:
            elementwise = _formulas.loss(xp, f, z, quadratic)
            if red == "none":
                value = elementwise
            elif red == "sum":
                value = xp.sum(elementwise)
            elif n is None:  # lazy array of unknown size: let the library count
                value = xp.mean(elementwise)
            else:
                value = xp.sum(elementwise) / float(n)
            value = xp.asarray(_cast(xp, value, out_dtype))

        grad = None
        if req.grad:
            g = _formulas.derivative(xp, f, d, quadratic)
            if red == "mean":
                if n is None:
                    count = xp.sum(xp.ones_like(z, dtype=xp.int64))
                    g = g * (1.0 / _cast(xp, count, work_dtype))
                elif n > 1:
                    g = (1.0 / n) * g
            if grad_output is not None:
                g = g * grad_output
            g = _sum_to_shape(xp, _cast(xp, g, input.dtype), in_shape)
            grad = xp.asarray(g)
    return value, grad
