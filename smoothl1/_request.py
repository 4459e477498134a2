"""A call, checked once: the static request and the validated shapes every executor takes.

A public function turns its Python arguments into a :class:`Request` (hashable:
it is also the static argument of ``jax.jit`` and part of cache keys), then
:func:`validate` checks the arrays against it and returns a :class:`Call`.  The
router (:mod:`smoothl1._backends`), the general path (:mod:`smoothl1._core`) and
every executor take that ``Call``; none of them checks an argument again.

Both steps depend only on Python values, types, dtypes and shapes, never on
array contents, so they run under ``jax.jit``, on torch's ``meta`` device and on
lazy dask arrays.  Both are remembered (:class:`_Memo`): for a small loss,
checking the arguments would cost more than computing it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar

import numpy as np

from . import _formulas
from ._compat import Array, namespace_of
from ._validation import (
    REDUCTIONS,
    Reduction,
    Shape,
    as_float,
    broadcast_shapes,
    check_axis,
    check_axis_type,
    check_beta,
    check_delta,
    check_keepdims,
    check_real_floating,
    check_reduction,
    shape_of,
    warn_if_shapes_differ,
)

__all__ = ["Call", "Request", "is_threshold_array", "request", "validate"]

K = TypeVar("K")
V = TypeVar("V")


class _Memo(Generic[K, V]):
    """A bounded memo: emptied when it holds ``size`` entries.

    Not ``functools.lru_cache``: Dynamo warns about every ``lru_cache``-wrapped
    call it traces, and the keys here are cheap to rebuild.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._data: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> V:
        if len(self._data) >= self._size:
            self._data.clear()
        self._data[key] = value
        return value


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
    per_element: bool = False  # beta/delta is an array, given to the executors beside input

    @property
    def param_name(self) -> str:
        """``"beta"`` or ``"delta"``, for messages."""
        return "beta" if self.kind == "smooth_l1" else "delta"


_REQUESTS: _Memo[tuple[object, ...], Request] = _Memo()


def request(
    func: str, kind: str, param: object, reduction: object, axis: object, keepdims: object,
    *, value: bool = True, grad: bool = False,
) -> Request:
    """Validate the static arguments of a public function (remembered for plain values).

    An array ``param`` (anything with a shape and a dtype that is not a number) is
    a threshold per element: the request then says so (``per_element``), and the
    array itself is checked with the others by :func:`validate`.
    """
    array = is_threshold_array(param)
    # (an array is remembered as such: the memo must not hold, or hash, the array)
    key = (func, kind, _ARRAY if array else param, reduction, axis, keepdims, value, grad)
    plain = ((array or type(param) in (float, int)) and reduction in REDUCTIONS
             and (axis is None or type(axis) is int) and type(keepdims) is bool)
    req = _REQUESTS.get(key) if plain else None
    if req is None:
        if array:
            p = 1.0
        else:
            p = check_beta(func, param) if kind == "smooth_l1" else check_delta(func, param)
        req = Request(func, kind, p, check_reduction(func, reduction),  # type: ignore[arg-type]
                      check_axis_type(func, axis), check_keepdims(func, keepdims), value, grad,
                      per_element=array)
        if plain:
            _REQUESTS.put(key, req)
    return req


#: What an array threshold is in :func:`request`'s memo key.
_ARRAY = object()


def is_threshold_array(param: object) -> bool:
    """Whether ``beta``/``delta`` is an array rather than a number.

    Plain attribute checks (no array-api-compat lookup, which Dynamo warns
    about); NumPy scalars are numbers.
    """
    if type(param) is float or type(param) is int:  # the common cases, without an ABC check
        return False
    if type(param) in EXACT_TYPES:
        return True
    return (not isinstance(param, numbers.Real) and hasattr(param, "shape")
            and hasattr(param, "dtype"))


@dataclass(frozen=True, eq=False)
class Call:
    """A request checked against its arrays: everything an executor needs, no arrays.

    Attributes
    ----------
    req
        The request.
    xp
        The arrays' namespace (array-api-compat's).
    formula
        The loss in the working precision (float32 for half precisions).
    in_shape, tg_shape, loss_shape, out_shape
        Shapes of ``input``, ``target``, their broadcast (the elementwise loss)
        and the result; unknown (lazy) sizes are ``None``.
    axis
        The reduced axes of the loss, normalised and sorted (``None``: all of
        them, or none for ``'none'``).
    kept_shape
        ``loss_shape`` with the reduced axes as 1 (where a reduced result and its
        cotangent broadcast against the loss).
    count
        Loss elements per reduced value, ``None`` if unknown.
    out_dtype, work_dtype
        ``result_type(input, target)`` and the precision computed in.
    weight, grad_output, param
        How those arguments came: ``"none"``, ``"number"`` or ``"array"``.
        ``param == "array"``: ``beta``/``delta`` is an array (a threshold per
        element) given to the executor beside the others, and
        ``formula.param`` is NaN (an executor that forgot it gives NaN, never a
        silently wrong number).
    shapes_differ
        ``input`` and ``target`` differ in shape (torch warns).
    """

    req: Request
    xp: ModuleType
    formula: _formulas.Formula
    in_shape: Shape
    tg_shape: Shape
    loss_shape: Shape
    out_shape: Shape
    axis: tuple[int, ...] | None
    kept_shape: Shape
    count: int | None
    out_dtype: Any
    work_dtype: Any
    weight: str
    grad_output: str
    shapes_differ: bool
    param: str = "number"

    @property
    def reduced_axes(self) -> tuple[int, ...]:
        """The axes a reduction sums over (all for ``axis=None``, none for ``'none'``)."""
        if self.req.reduction == "none":
            return ()
        return tuple(range(len(self.loss_shape))) if self.axis is None else self.axis


def _is_scalar(value: object) -> bool:
    """Whether ``value`` is None or a Python number.

    Plain ``isinstance``: array-api-compat's ``is_array_api_obj`` is
    ``lru_cache``d, which Dynamo warns about under ``torch.compile``.
    """
    return value is None or isinstance(value, (int, float))


def _kind(value: object) -> str:
    return "none" if value is None else "number" if _is_scalar(value) else "array"


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


def _reduced_shapes(loss_shape: Shape, axis: tuple[int, ...] | None,
                    keepdims: bool) -> tuple[Shape, Shape]:
    """The reduced shape as returned, and with the reduced axes kept as 1."""
    axes = range(len(loss_shape)) if axis is None else axis
    kept = tuple(1 if i in axes else n for i, n in enumerate(loss_shape))
    returned = kept if keepdims else tuple(n for i, n in enumerate(loss_shape) if i not in axes)
    return returned, kept


def _working_precision(xp: ModuleType, dtype: object) -> tuple[object, int]:
    """float32/float64 stay; half precisions are computed in float32 and rounded once."""
    if dtype == xp.float64:
        return dtype, 64
    return xp.float32, 32


def _check(req: Request, input: Array, target: Array, weight: object, grad_output: object,
           xp: ModuleType | None, param: object = None) -> Call:
    """Every check, and the shapes and dtypes that follow from them."""
    func = req.func
    name = req.param_name
    if xp is None:
        arrays = {"input": input, "target": target, "weight": weight,
                  "grad_output": grad_output}
        if param is not None:
            arrays[name] = param
        xp = namespace_of(func, optional=("weight", "grad_output"), **arrays)
    check_real_floating(func, "input", xp, input)
    check_real_floating(func, "target", xp, target)
    in_shape, tg_shape = shape_of(input), shape_of(target)
    loss_shape = broadcast_shapes(func, in_shape, tg_shape)
    axis = check_axis(func, req.reduction, req.axis, len(loss_shape))
    _check_against(func, "weight", xp, weight, loss_shape, "loss",
                   ("bool", "integral", "real floating"))
    if param is not None:  # a threshold per element: broadcasts like a weight
        _check_against(func, name, xp, param, loss_shape, "loss", ("integral", "real floating"))
    out_shape, kept = _reduced_shapes(loss_shape, axis, req.keepdims)
    if req.reduction == "none":
        out_shape, kept = loss_shape, loss_shape
    if req.grad:
        _check_against(func, "grad_output", xp, grad_output, out_shape, "result")
    reduced = [n for n, k in zip(loss_shape, kept, strict=True) if k == 1]
    if req.reduction == "none":
        reduced = []
    known = [n for n in reduced if n is not None]
    out_dtype = xp.result_type(input, target)
    work_dtype, bits = _working_precision(xp, out_dtype)
    return Call(
        req=req, xp=xp, formula=_formulas.formula_for(
            req.kind, math.nan if param is not None else req.param, bits),
        in_shape=in_shape, tg_shape=tg_shape, loss_shape=loss_shape, out_shape=out_shape,
        axis=axis, kept_shape=kept,
        count=math.prod(known) if len(known) == len(reduced) else None,
        out_dtype=out_dtype, work_dtype=work_dtype, weight=_kind(weight),
        grad_output=_kind(grad_output if req.grad else None),
        shapes_differ=in_shape != tg_shape, param="array" if param is not None else "number",
    )


#: Array types whose ``shape`` is always a tuple of ints (outside tracing): a backend
#: adds its own when it is imported (torch's ``Tensor``; ``torch.Size`` is a tuple).
EXACT_TYPES: set[type] = {np.ndarray}


def _signature(value: object) -> object:
    """What validation depends on in an argument: its type, dtype and shape."""
    if type(value) in EXACT_TYPES:  # the commonest cases, first
        return (type(value), value.dtype, value.shape)  # type: ignore[attr-defined]
    if _is_scalar(value):
        return type(value)
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None or not all(type(n) is int for n in shape):
        return None  # not an array (the check reports it), or lazy (NaN) or symbolic sizes
    return (type(value), dtype, tuple(shape))


_CALLS: _Memo[tuple[object, ...], Call] = _Memo()


def validate(
    req: Request,
    input: Array,
    target: Array,
    weight: object = None,
    grad_output: object = None,
    *,
    xp: ModuleType | None = None,
    warn: bool = True,
    remember: bool = True,
    param: object = None,
) -> Call:
    """Check every argument against ``req`` (and warn as torch does); compute nothing.

    The result depends only on the arguments' types, dtypes and shapes, so it is
    remembered by them (``remember=False`` under tracers whose shapes are not
    plain ints, such as Dynamo's).  ``xp`` skips the namespace lookup when the
    caller knows it.  ``param``: an array ``beta``/``delta`` (``req.param`` is
    then not used).

    Raises
    ------
    TypeError, ValueError
        As the public functions document, naming the parameter.
    """
    if req.per_element and param is None:
        raise TypeError(f"{req.func}: internal error: an array {req.param_name} was not passed on")
    key: tuple[object, ...] | None = None
    call = None
    if remember:
        parts = (_signature(input), _signature(target), _signature(weight),
                 _signature(grad_output if req.grad else None), _signature(param))
        if None not in parts:
            key = (req, *parts)
            call = _CALLS.get(key)
    if call is None:
        call = _check(req, input, target, weight, grad_output, xp, param)
        if key is not None:
            _CALLS.put(key, call)
    # Not remembered with the call: the memo knows a number's type, not its value.
    if type(weight) is int:
        as_float(req.func, "weight", weight)
    if type(grad_output) is int and req.grad:
        as_float(req.func, "grad_output", grad_output)
    if warn and call.shapes_differ:
        warn_if_shapes_differ(call.in_shape, call.tg_shape)
    return call
