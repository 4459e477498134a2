r"""The elementwise formulas of the Smooth L1, Huber and L1 losses and their derivatives.

This module is *the* math of smoothl1.  Every function takes the array namespace
``xp`` and uses only functions of the Python array API standard, so the same code
runs on NumPy, CuPy, torch, JAX, dask and array-api-strict, eagerly, traced under
``jax.jit`` or lazily.  No function here looks at array *values* from Python.

With :math:`d = x - y` and :math:`z = |d|`:

.. math::

    \operatorname{smooth\_l1}_\beta(d) =
    \begin{cases} \tfrac{1}{2} z^2 / \beta & z < \beta \\ z - \tfrac{1}{2}\beta & \text{otherwise}
    \end{cases}
    \qquad
    \operatorname{huber}_\delta(d) =
    \begin{cases} \tfrac{1}{2} z^2 & z < \delta \\
    \delta (z - \tfrac{1}{2}\delta) & \text{otherwise}
    \end{cases}

and their derivatives with respect to :math:`d`

.. math::

    \partial_d \operatorname{smooth\_l1}_\beta =
    \begin{cases} d / \beta & z < \beta \\ \operatorname{sign}(d) & \text{otherwise} \end{cases}
    \qquad
    \partial_d \operatorname{huber}_\delta =
    \begin{cases} d & z < \delta \\ \delta \operatorname{sign}(d) & \text{otherwise} \end{cases}

with :math:`\beta = 0` meaning the L1 loss :math:`z` and derivative
:math:`\operatorname{sign}(d)` (0 at :math:`d = 0`, NaN at NaN).

Every expression is evaluated in the order torch's CPU kernels use, so float32 and
float64 results are bit-identical to torch's.  The one departure is the quadratic
branch of Smooth L1: torch forms :math:`\tfrac12 z^2` before dividing by
:math:`\beta`, which overflows to ``inf`` or underflows to 0 (or to a subnormal
with few bits left) although the true value is an ordinary number.  Exactly where
that intermediate is not a finite normal number, :math:`\tfrac12 z\,(z/\beta)`
is used instead; every other element keeps torch's bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from ._compat import Array

__all__ = [
    "Formula", "clamp", "derivative", "factored_loss", "formula_for", "linear_mask", "loss",
    "loss_products", "mean_scale", "param_derivative", "slope",
]

Kind = Literal["smooth_l1", "huber", "l1"]

#: Smallest positive normal number of float32 and float64.
_TINY = {32: 2.0**-126, 64: 2.0**-1022}
#: Largest z for which 0.5*z*z (rounded after each operation) is finite.
_SQRT_2HUGE = {32: float.fromhex("0x1.6a09e6p+64"), 64: float.fromhex("0x1.6a09e667f3bccp+512")}


@dataclass(frozen=True)
class Formula:
    """One loss with its parameter, as Python values fixed before any array work.

    Attributes
    ----------
    kind
        ``"smooth_l1"``, ``"huber"`` or ``"l1"`` (Smooth L1 with ``beta == 0``).
    param
        ``beta`` or ``delta``, already rounded to the working precision (as
        torch's kernels round it to ``scalar_t``): a Python float, or an array
        in the working precision that broadcasts against the losses (a
        threshold per element; see :func:`per_element`).
    bits
        Working precision: 32 or 64.
    """

    kind: Kind
    param: float | Array
    bits: int

    @property
    def per_element(self) -> bool:
        """Whether ``param`` is an array (every case then decided by ``where``)."""
        return not isinstance(self.param, (int, float))


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


def formula_for(kind: Kind, param: float, bits: int) -> Formula:
    """The formula a loss computes in the working precision ``bits`` (32 or 64).

    ``param`` is rounded as torch's kernels round it; a Smooth L1 ``beta`` that is
    0 (or becomes 0 in float32) is the L1 loss, whose derivative is sign(d), 0
    at d == 0, exactly torch's forward and backward.
    """
    p = _round_param(param, bits)
    return Formula(kind="l1" if kind == "smooth_l1" and p == 0.0 else kind, param=p, bits=bits)


def mean_scale(count: int) -> float:
    """The factor of a mean: ``1/N``, and 1 for ``N <= 1`` (torch's ``norm``)."""
    return 1.0 / count if count > 1 else 1.0


def loss(xp: ModuleType, f: Formula, z: Array, linear: Array | None, *,
         guard: bool = True) -> Array:
    """Elementwise loss from ``z = |d|``; ``linear`` is the mask ``z >= param``.

    Textbook: ``where(z < beta, 0.5 * z**2 / beta, z - 0.5 * beta)`` (Smooth L1) and
    ``where(z < delta, 0.5 * z**2, delta * (z - 0.5 * delta))`` (Huber), in torch's
    order of operations; then the repair of torch's overflow and underflow.

    NaN elements are not ``linear``; they come out of the quadratic branch as NaN.
    ``guard=False`` skips zeroing the linear elements before they are squared:
    the same values, but overflow there is then reported by NumPy (callers that
    silence it anyway save an operation).
    """
    p = f.param
    if f.kind == "l1":
        return z
    if f.per_element:
        return _loss_per_element(xp, f, z, linear)
    # The quadratic branch is only used where z < p.  Zeroing z elsewhere changes
    # no value that is used and keeps unused elements from overflowing, which
    # NumPy-backed lazy libraries such as dask would report as warnings.
    # (Comparisons and ``where`` only: compat's minimum/maximum with a Python
    # scalar make torch.compile break the graph.)
    zq = xp.where(linear, 0.0, z) if guard else z
    if f.kind == "huber":
        return xp.where(linear, p * (z - 0.5 * p), 0.5 * zq * zq)
    if p == 1.0:  # x/1 is x, and the repair below is then 0.5*z*z itself: the same bits
        return xp.where(linear, z - 0.5, 0.5 * zq * zq)
    c = _SQRT_2HUGE[f.bits]
    # 0.5*zs*zs is finite (only matters for a huge beta: below it, z < p <= c)
    zs = zq if p <= c else xp.where(z < c, zq, 0.0)
    half_square = 0.5 * zs * zs
    quad = half_square / p  # torch's order of operations: its bits
    # Where torch's 0.5*z*z overflows (z > c, zeroed above) or underflows to a
    # subnormal, torch's value is wrong; the reassociated form is exact there.
    lost = half_square < _TINY[f.bits]
    # (``abs`` around z/p, which is >= 0 anyway: XLA rewrites (a/b)*c as (a*c)/b,
    # which would bring the overflow back; an operation in between stops it)
    quad = xp.where(lost, 0.5 * zq * xp.abs(zq / p), quad)
    return xp.where(linear, z - 0.5 * p, quad)


def _valid(xp: ModuleType, f: Formula, out: Array) -> Array:
    """``out``, and NaN where a per-element threshold is not valid.

    A ``beta`` must be ``>= 0`` and a ``delta`` ``> 0`` (as a Python number is
    checked); an element that is negative, NaN (or a ``delta`` of 0) gives NaN
    there, on every backend, since values cannot be checked without reading them.
    """
    ok = f.param > 0 if f.kind == "huber" else f.param >= 0
    return xp.where(ok, out, float("nan"))


def _loss_per_element(xp: ModuleType, f: Formula, z: Array, linear: Array | None) -> Array:
    """:func:`loss` with an array ``param``: each element exactly the scalar formula's value.

    The scalar code's Python branches become ``where``: ``beta = 0`` is L1 (every
    ``z >= 0`` is linear: ``z - 0``), ``beta = inf`` is 0 (the quadratic branch
    ``0.5*z*z/inf``, with the repair where ``z`` is huge), ``beta = 1`` divides
    by 1 (exact, so the same bits as the scalar code's shortcut).
    """
    p = f.param
    zq = xp.where(linear, 0.0, z)  # as in ``loss``: z is only squared where z < p
    if f.kind == "huber":
        return _valid(xp, f, xp.where(linear, p * (z - 0.5 * p), 0.5 * zq * zq))
    c = _SQRT_2HUGE[f.bits]
    zs = xp.where(z < c, zq, 0.0)  # z >= c only matters for p > c: z < p elsewhere
    half_square = 0.5 * zs * zs
    quad = half_square / p
    lost = half_square < _TINY[f.bits]
    quad = xp.where(lost, 0.5 * zq * xp.abs(zq / p), quad)
    return _valid(xp, f, xp.where(linear, z - 0.5 * p, quad))


def _unit(xp: ModuleType, d: Array) -> Array:
    """+1 where ``d > 0``, else -1; only used where ``d`` is non-zero and not NaN.

    (Not ``xp.sign``: array-api-compat's NaN-aware torch ``sign`` assigns through
    a boolean mask, which ``torch.func.vmap`` refuses.)
    """
    return 2.0 * xp.astype(d > 0, d.dtype) - 1.0


def derivative(xp: ModuleType, f: Formula, d: Array, z: Array, linear: Array | None) -> Array:
    """Elementwise derivative of the loss with respect to ``d = input - target``.

    NaN gives NaN (also for L1, where torch gives 0).  The expression is itself
    differentiable with the right second derivative: ``(z < p) / p`` for Smooth L1,
    ``z < p`` for Huber and 0 for L1.
    """
    p = f.param
    if f.kind == "l1":
        # sign(d): 0 at d == 0 and NaN at NaN, with a zero derivative
        return xp.where(z > 0, _unit(xp, d), xp.where(d == d, 0.0, d))
    dq = xp.where(linear, 0.0, d)  # as in ``loss``: d is only used where |d| < p
    if f.per_element:  # beta = 0 is L1 here too: sign(d), 0 at d == 0
        if f.kind == "huber":
            return _valid(xp, f, xp.where(linear, p * _unit(xp, d), dq))
        unit = xp.where(z > 0, _unit(xp, d), 0.0)
        return _valid(xp, f, xp.where(linear, unit, dq / p))
    if f.kind == "huber":
        return xp.where(linear, p * _unit(xp, d), dq)
    return xp.where(linear, _unit(xp, d), dq / p)


def param_derivative(xp: ModuleType, f: Formula, z: Array, linear: Array) -> Array:
    r"""Elementwise derivative of the loss with respect to a per-element ``param``.

    .. math::

        \partial_eta \operatorname{smooth\_l1}_eta =
        egin{cases} -	frac12 (z/eta)^2 & z < eta \ -	frac12 & z \ge eta \end{cases}
        \qquad
        \partial_\delta \operatorname{huber}_\delta =
        egin{cases} 0 & z < \delta \ z - \delta & z \ge \delta \end{cases}

    Both are continuous at the kink :math:`z = eta` (the losses are
    continuously differentiable in the threshold), so the branch taken there
    (the linear one, as everywhere in smoothl1) gives the one value.  The one
    point where the two sides differ is :math:`z = eta = 0`: the derivative
    there is 0, the right-sided limit from the thresholds that exist
    (:math:`eta > 0`, where the loss of :math:`z = 0` is 0).  NaN ``z`` gives
    NaN; invalid thresholds give NaN (see :func:`_valid`).  :math:`(z/eta)^2 < 1`
    in the quadratic zone: no overflow.
    """
    p = f.param
    if f.kind == "huber":
        # 0 * z: NaN for a NaN z (never linear), 0 for every finite z
        return _valid(xp, f, xp.where(linear, z - p, 0.0 * z))
    zq = xp.where(linear, 0.0, z)
    r = zq / p
    edge = xp.where(z > 0, -0.5, xp.zeros_like(z))  # z == p == 0: the right-sided limit, 0
    return _valid(xp, f, xp.where(linear, edge, -0.5 * r * r))


def linear_mask(xp: ModuleType, f: Formula, z: Array) -> Array | None:
    """Where the linear branch applies: ``z >= param``, or ``None`` for L1.

    (torch's quadratic condition is the strict ``z < param``.)
    """
    if f.kind == "l1":
        return None
    return z >= f.param



def clamp(xp: ModuleType, f: Formula, d: Array) -> Array | None:
    """``c = clip(d, -param, param)``: the part of ``d`` in the quadratic zone; ``None`` for L1."""
    if f.kind == "l1":
        return None
    return xp.clip(d, -f.param, f.param)


def slope(xp: ModuleType, f: Formula, d: Array, c: Array | None) -> Array:
    r"""The derivative from the clamp: :math:`c/\beta` (Smooth L1), :math:`c` (Huber), sign (L1).

    Bit for bit :func:`derivative`: inside the quadratic zone ``c`` is ``d``;
    outside, ``c = ±param`` and ``param / param`` is exactly 1.  NaN stays NaN.
    """
    if c is None:
        return xp.sign(d)
    if f.kind == "huber" or f.param == 1.0:
        return c
    if f.param == math.inf:  # d = ±inf is in the linear zone (slope ±1), not inf/inf
        z = xp.abs(d)
        return derivative(xp, f, d, z, linear_mask(xp, f, z))
    return c / f.param


def loss_products(xp: ModuleType, f: Formula, z: Array) -> Array:
    r"""The losses as products, for reductions: :math:`r\,(z - \tfrac12 \beta r)`.

    With :math:`r = \min(z/\beta, 1)`, this is the factorisation of
    :func:`dot_terms` in terms of :math:`z = |d|` (Huber:
    :math:`m (z - \tfrac12 m)` with :math:`m = \min(z, \delta)`; L1: :math:`z`):
    a few cheap operations that a compiler (XLA) fuses into the reduction,
    instead of the branch selection of :func:`loss`.  Linear zone: exactly
    torch's :math:`z - \beta/2`; quadratic zone: within an ulp or two, and exact
    where torch's :math:`\tfrac12 z^2` overflows or underflows, since
    :math:`r \le 1` (:math:`z/\beta = \infty` also gives :math:`r = 1`).  No
    quotient is multiplied by anything, so XLA's rewrite of :math:`(a/b)\,c`
    into :math:`(a c)/b` cannot bring the overflow back.  NaN stays NaN.  The
    elementwise ``reduction='none'`` uses :func:`loss`.
    """
    if f.kind == "l1":
        return z
    p = f.param
    if f.kind == "huber":
        m = xp.minimum(z, p)
        return m * (z - 0.5 * m)
    if p == math.inf:
        # r = 0 and r * beta = 0 * inf = NaN; the loss is 0 (NaN where z is inf
        # or NaN, as torch's z - beta/2 = inf - inf)
        return z * 0.0
    r = xp.minimum(z if p == 1.0 else z / p, 1.0)
    return r * (z - 0.5 * (r if p == 1.0 else r * p))


def factored_loss(xp: ModuleType, f: Formula, d: Array, c: Array | None, s: Array) -> Array:
    r"""The losses from the clamp and the slope: :math:`s\,(d - \tfrac12 c)`, for reductions.

    With the clamp :math:`c = \operatorname{clip}(d, -p, p)` (:func:`clamp`) and the
    slope :math:`s = \ell'(d)` (:func:`slope`), every loss here is

    .. math::

        \ell(d) = s\,\bigl(d - \tfrac12 c\bigr)

    (quadratic zone: :math:`(d/\beta)(d/2)`; linear zone:
    :math:`\pm 1\cdot(d \mp \beta/2) = |d| - \beta/2`; Huber: :math:`c\,(d - c/2)`;
    L1: :math:`\operatorname{sign}(d)\, d`).  Executors that have the slope anyway
    (for a gradient) get the loss in three cheap operations instead of the branch
    selection of :func:`loss`.  For Smooth L1, :math:`|s| \le 1`, so the product
    neither overflows nor underflows where the loss itself does not: exact also
    where torch's :math:`\tfrac12 z^2` is not.  The products may differ from
    :func:`loss` in the last bit, so this form serves reductions only (summed in
    float64 by the caller).  NaN stays NaN; ``beta = inf`` gives 0 for finite
    ``d`` and NaN (``inf - inf``) for infinite ``d``, as torch.
    """
    if c is None:
        return s * d
    return s * (d - 0.5 * c)
