"""Checks of user arguments, with errors that name the parameter and the value.

Everything here looks only at Python values, dtypes and shapes, never at array
contents, so it is free under ``jax.jit``, on torch's ``meta`` device and on lazy
dask arrays.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from types import ModuleType
from typing import Literal

from ._compat import Array, describe

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "broadcast_shapes",
    "check_delta",
    "check_beta",
    "check_real_floating",
    "check_axis",
    "check_axis_type",
    "check_keepdims",
    "check_reduction",
    "legacy_reduction",
]

Reduction = Literal["none", "mean", "sum", "weighted_mean"]
REDUCTIONS: tuple[Reduction, ...] = ("none", "mean", "sum", "weighted_mean")

Shape = tuple[int | None, ...]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _in_package(filename: str) -> bool:
    folder = os.path.dirname(os.path.abspath(filename))
    return folder == _PACKAGE_DIR or folder.startswith(_PACKAGE_DIR + os.sep)


def warn_user(message: str) -> None:
    """Issue a ``UserWarning`` attributed to the first caller outside smoothl1.

    The public entry points sit at different depths (functions, loss objects,
    framework adapters), so a fixed ``stacklevel`` would point into smoothl1.
    """
    level = 2
    frame = sys._getframe(1)
    while frame is not None and _in_package(frame.f_code.co_filename):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _as_python_float(func: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{func}: {name} must be a real number or an array of the inputs' "
                        f"library, got {describe(value)}")
    return as_float(func, name, value)


def as_float(func: str, name: str, value: object) -> float:
    """``float(value)``, with a ``ValueError`` naming the parameter where it is too large."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise ValueError(
            f"{func}: {name} is an integer too large for a float (about 2**"
            f"{value.bit_length()}; the largest float is about 1.8e308); use math.inf for an "  # type: ignore[attr-defined]
            f"infinite {name}") from None


def check_devices(func: str, devices: dict[str, object]) -> None:
    """All arrays on one device (``devices``: each array argument's device, by name).

    Checked for every call (a device is not part of what validation remembers)
    by the executors that can see devices; the backends' own errors for arrays on
    two devices name neither the parameters nor the fix.
    """
    first = None
    for name, device in devices.items():
        if first is None:
            first = (name, device)
        elif device != first[1]:
            raise ValueError(
                f"{func}: {first[0]} is on device {first[1]} but {name} is on device {device}; "
                "move them to one device first (results stay on the inputs' device)")


def check_beta(func: str, beta: object) -> float:
    """Validate Smooth L1's ``beta``: a real number ``>= 0`` (``inf`` allowed)."""
    b = _as_python_float(func, "beta", beta)
    if not b >= 0.0:  # also rejects NaN
        raise ValueError(f"{func}: beta must be a non-negative number, got {b!r}")
    return b + 0.0  # turn -0.0 into 0.0


def check_delta(func: str, delta: object) -> float:
    """Validate Huber's ``delta``: a real number ``> 0`` (``inf`` allowed)."""
    d = _as_python_float(func, "delta", delta)
    if not d > 0.0:  # also rejects NaN
        raise ValueError(f"{func}: delta must be a positive number, got {d!r}")
    return d


def check_reduction(func: str, reduction: object) -> Reduction:
    """Validate ``reduction``: one of ``'none'``, ``'mean'``, ``'sum'``, ``'weighted_mean'``.

    torch's deprecated spelling ``'elementwise_mean'`` is accepted as ``'mean'``
    with the same warning torch gives.
    """
    if reduction == "elementwise_mean":
        warn_user(
            "reduction='elementwise_mean' is deprecated, please use reduction='mean' instead."
        )
        return "mean"
    if isinstance(reduction, str) and reduction in REDUCTIONS:
        return reduction
    raise ValueError(
        f"{func}: reduction must be one of 'none', 'mean', 'sum' or 'weighted_mean', "
        f"got {reduction!r}"
    )


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """Map torch's deprecated ``size_average``/``reduce`` pair to a reduction.

    Exactly ``torch.nn._reduction.legacy_get_string``: when either is given it
    overrides ``reduction``; a missing one counts as ``True``.
    """
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        result = "mean"
    elif reduce:
        result = "sum"
    else:
        result = "none"
    warn_user(
        f"size_average and reduce args will be deprecated, please use reduction='{result}' instead."
    )
    return result


def check_real_floating(
    func: str, name: str, xp: ModuleType, x: Array,
    kinds: str | tuple[str, ...] = "real floating",
) -> None:
    """Raise ``TypeError`` unless ``x`` has a real floating-point dtype (or one of ``kinds``)."""
    if not xp.isdtype(x.dtype, kinds):
        allowed = ("a real floating-point dtype (float16, bfloat16, float32 or float64)"
                   if kinds == "real floating" else
                   "a boolean, integer or real floating-point dtype")
        raise TypeError(
            f"{func}: {name} must have {allowed}, got {x.dtype}; cast it first, e.g. "
            f"with xp.astype({name}, xp.float32)"
        )


def check_keepdims(func: str, keepdims: object) -> bool:
    """``keepdims`` must be a bool."""
    if not isinstance(keepdims, bool):
        raise TypeError(f"{func}: keepdims must be True or False, got {keepdims!r}")
    return keepdims


def check_axis_type(func: str, axis: object) -> int | tuple[int, ...] | None:
    """``axis`` must be None, an int or a tuple of ints (checked against ndim later)."""
    def is_int(a: object) -> bool:
        if isinstance(a, bool):
            return False
        return isinstance(a, numbers.Integral)

    if axis is None:
        return None
    if is_int(axis):
        return int(axis)  # type: ignore[call-overload,no-any-return]
    if isinstance(axis, (tuple, list)) and all(is_int(a) for a in axis):
        return tuple(int(a) for a in axis)
    raise TypeError(f"{func}: axis must be None, an int or a tuple of ints, got {axis!r}")


def check_axis(
    func: str, reduction: str, axis: int | tuple[int, ...] | None, ndim: int
) -> tuple[int, ...] | None:
    """Normalise ``axis`` for a loss of ``ndim`` dimensions (negative axes count from the end)."""
    if axis is None:
        return None
    if reduction == "none":
        raise ValueError(f"{func}: axis={axis!r} needs a reduction ('mean', 'sum' or "
                         "'weighted_mean'), not reduction='none'")
    axes = (axis,) if isinstance(axis, int) else axis
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{func}: axis {a} is out of range for a loss of {ndim} "
                             f"dimension{'s' if ndim != 1 else ''}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{func}: axis {axis!r} repeats an axis")
    return tuple(sorted(out))


def _dim(n: object) -> int | None:
    """A dimension as an ``int``, or ``None`` when unknown (dask's ``nan``)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return None
    return int(n)  # type: ignore[call-overload,no-any-return]


def shape_of(x: Array) -> Shape:
    """``x.shape`` with unknown dimensions as ``None``."""
    return tuple(_dim(n) for n in x.shape)


def broadcast_shapes(
    func: str, a: Shape, b: Shape, *, names: tuple[str, str] = ("input", "target")
) -> Shape:
    """Broadcast two shapes by the array API rules; unknown (``None``) dims pass.

    Raises
    ------
    ValueError
        If the shapes cannot be broadcast together.
    """
    ndim = max(len(a), len(b))
    pa = (1,) * (ndim - len(a)) + a
    pb = (1,) * (ndim - len(b)) + b
    out: list[int | None] = []
    for i, (m, n) in enumerate(zip(pa, pb, strict=True)):
        if m == 1:
            out.append(n)
        elif n == 1 or m == n:
            out.append(m)
        elif m is None or n is None:
            out.append(m if n is None else n)
        else:
            raise ValueError(
                f"{func}: {names[0]} of shape {a} and {names[1]} of shape {b} cannot be "
                f"broadcast together (size {m} against {n} at dimension {i - ndim})"
            )
    return tuple(out)


def warn_if_shapes_differ(input_shape: Shape, target_shape: Shape) -> None:
    """Torch's warning when ``target`` and ``input`` differ but broadcast."""
    if input_shape != target_shape:
        warn_user(
            f"Using a target size ({target_shape}) that is different to the input size "
            f"({input_shape}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size."
        )
