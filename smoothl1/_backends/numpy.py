"""NumPy arrays in cache-sized blocks on a thread pool: every call form, in one pass over memory.

An eager library evaluates an expression one operation at a time, and each
operation reads and writes an array of the input's size: the plain formula over
two float32 arrays of 2**24 elements moves about 25 times the 128 MiB that the
inputs occupy and allocates several 64 MiB temporaries.  This module runs the
*same* array-API formulas (:mod:`smoothl1._formulas`, with ``xp = numpy``) on
blocks of the broadcast loss that fit in a core's cache, so that a reduced loss
allocates nothing of the input's size and a gradient or ``'none'`` allocates
only its result.  Every call form a user writes goes this way: weights of any
broadcastable shape and dtype, broadcasting of input, target and weight, any
``axis``/``keepdims``, every reduction, ``grad_output`` of any valid shape,
float16 (computed in float32 per block and rounded once), mixed dtypes, and
non-contiguous, Fortran-order, negative-stride or byte-swapped inputs (read a
block at a time, never copied whole).  CPU torch tensors reach it through
zero-copy views (:mod:`smoothl1._backends.torch`), and so does each chunk of a
dask array (:mod:`smoothl1._backends.dask`).

How a call is laid out (:class:`_Layout`): the loss's axes are ordered kept
axes first, then reduced axes, each group in the order the input lies in
memory, and neighbouring axes that every operand steps through evenly are
merged (a C-contiguous full reduction becomes one axis).  A block is a box of
kept outputs times a box of the reduced elements (:func:`_boxes`).

How reductions are summed, so that the result depends on neither the block
size nor the number of threads: the per-element losses
(:func:`~smoothl1._formulas.factored_loss`, times the weight) of each reduced
value are cut into *units* of at most :data:`ROW` elements along the reduced
axes; each unit is added up pairwise in float64, the unit totals pairwise in
float64 in *groups* of at most :data:`GROUP` units, and the group totals
pairwise.  Units and groups are fixed by the shapes and the memory layout
alone; blocks and threads only ever hold whole units and whole groups.  A
mean is the float64 total divided by the element count, rounded once to the
result's dtype (exact where torch's float32 sum overflows).

Elementwise results (``'none'``, gradients) are torch's bits: the formulas
evaluated in torch's order, per element.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from .. import _formulas
from .._request import Call, _is_scalar, _Memo
from .._threads import get_num_threads, map_parts

__all__ = [
    "BF16", "GROUP", "MEMORY_BUDGET", "PARALLEL_MIN", "ROW", "Totals", "accepts", "evaluate",
    "run",
]

#: Bytes that all threads' block-sized temporaries together may hold.
MEMORY_BUDGET = 960 << 10
#: Elements from which the work is split over the cores; below it threads cost
#: more than they save.
PARALLEL_MIN = 1 << 18
#: Elements per unit of a reduction (see the module docstring).
ROW = 4096
#: Units per group of a reduction.
GROUP = 128

_ALL = slice(None)

#: The dtypes :func:`_where` selects by bits.  (A benchmark that repeats one mask
#: lets the branch predictor learn it and makes NumPy's ``where`` look branch-free
#: for float64: in the loss, with masks of new data, the bits make float64
#: ``'none'`` 1.7x faster.)
_BITS: dict[Any, Any] = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def _where(cond: Any, a: Any, b: Any, out: np.ndarray | None = None) -> Any:
    """``numpy.where`` without a branch per element, where both choices are float arrays.

    NumPy's ``where`` branches on every element: with an unpredictable mask, as a
    loss's branch mask is, that costs 3-5 ns per element.  Selecting the bit
    patterns, ``b ^ ((a ^ b) & mask)``, gives the same bits (NaN payloads, signed
    zeros) in about 0.5 ns.  ``out``: an array of the result's shape and dtype to
    put it in (returned), if not a new one.
    """
    bits = _BITS.get(getattr(a, "dtype", None))
    if (bits is None or type(a) is not np.ndarray or type(b) is not np.ndarray
            or type(cond) is not np.ndarray or b.dtype != a.dtype
            or not a.shape == b.shape == cond.shape):
        found = np.where(cond, a, b)
        if out is None:
            return found
        np.copyto(out, found)
        return out
    mask = np.subtract(0, cond, dtype=bits)  # all ones where cond holds
    b_bits = b.view(bits)
    found = np.bitwise_xor(a.view(bits), b_bits)
    found &= mask
    if out is None:
        found ^= b_bits
        return found.view(a.dtype)
    np.bitwise_xor(found, b_bits, out=out.view(bits))
    return out


#: The namespace the formulas run on here: NumPy itself (``numpy>=2.1`` implements
#: the standard in its main namespace), with a branch-free :func:`_where`, and
#: ``clip`` as the ufunc (``numpy.clip`` wraps it in three layers of Python).
_XP: Any = SimpleNamespace(**{**vars(np), "where": _where,
                         "clip": getattr(getattr(np, "_core", np), "umath", np).clip})

# ------------------------------------------------------------------------------ dtypes


@dataclass(frozen=True)
class BF16:
    """The bits of a bfloat16 array as ``uint16`` (NumPy has no bfloat16; torch glue uses it)."""

    bits: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.bits.shape

    @property
    def ndim(self) -> int:
        return self.bits.ndim


#: float16 -> float32 of the exponent and mantissa bits: x 2**112 re-biases the
#: exponent (15 -> 127) and turns float16 subnormals into float32 normals, exactly.
_F16_SCALE = np.float32(2.0**112)


def _f16_to_f32(h: np.ndarray) -> np.ndarray:
    """float16 -> float32, exactly as ``astype`` but about 4x faster.

    NumPy's own cast is a scalar loop on many machines (2 ns per element);
    integer operations on the bits are vectorised.  Sign-extended to int32 and
    shifted, the bits are the float32 ones but for three stray exponent bits;
    x 2**112 re-biases the exponent.  inf and NaN (exponent 31) come out of the
    multiplication as finite numbers of magnitude >= 2**16, above float16's
    largest (65504), and get the all-ones exponent back.
    """
    i = np.asarray(h).view(np.int16).astype(np.int32)
    i <<= 13
    u = i.view(np.uint32)
    u &= 0x8FFFFFFF
    f = u.view(np.float32)
    f *= _F16_SCALE
    if f.size and (f.max() >= 65536.0 or f.min() <= -65536.0):
        u[np.abs(f) >= 65536.0] |= 0x7F800000
    return f


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16(f: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounding to nearest even, as torch converts."""
    u = np.ascontiguousarray(f, dtype=np.float32).view(np.uint32)
    rounded = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():  # all NaNs as 0xFFFF, as torch's vectorised conversion gives them
        rounded[nan] = 0xFFFF
    return rounded


def _identity(v: Any) -> Any:
    return v


def _loader(a: Any, work: type) -> Callable[[Any], Any]:
    """How to read a block of an operand in the working precision."""
    if isinstance(a, BF16):
        return _bf16_to_f32
    dtype = a.dtype
    if dtype == work and dtype.isnative:
        return _identity
    if dtype == np.float16 and work is np.float32:
        return _f16_to_f32
    return lambda v: v.astype(work)  # mixed dtypes, byte order, bool/int weights


# ------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class _Layout:
    """The loss's axes for one pass: ordered, merged, split into kept and reduced.

    ``perm`` lists the loss axes longer than 1, kept ones first; ``groups`` says
    which of them each merged axis holds; the first ``nkept`` merged axes are
    kept, the rest reduced.
    """

    loss_shape: tuple[int, ...]
    perm: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]
    shape: tuple[int, ...]  # the merged extents
    nkept: int

    @property
    def kept(self) -> tuple[int, ...]:
        return self.shape[: self.nkept]

    @property
    def reduced(self) -> tuple[int, ...]:
        return self.shape[self.nkept:]

    @property
    def units(self) -> _Units:
        return _units(self.reduced)

    @property
    def transpose(self) -> tuple[int, ...] | None:
        """From the loss's (longer than 1) axes in their order to the layout's; None: the same."""
        order = sorted(self.perm)
        t = tuple(order.index(i) for i in self.perm)
        return None if t == tuple(range(len(t))) else t


def _aligned(a: np.ndarray, ndim: int, repeats_as_ones: bool = True) -> np.ndarray:
    """``a`` with leading axes of length 1 up to ``ndim``; axes of stride 0 as length 1.

    (Not for input and target, which together span the loss: a block of them
    must have the block's full shape.)
    """
    if a.ndim < ndim:
        a = a.reshape((1,) * (ndim - a.ndim) + a.shape)
    if repeats_as_ones and 0 in a.strides:  # a broadcast view: repeated axes as length 1
        a = a[tuple(slice(0, 1) if s == 0 and n > 1 else _ALL
                    for n, s in zip(a.shape, a.strides, strict=True))]
    return a


_LAYOUTS: _Memo[tuple[object, ...], _Layout] = _Memo()


def _layout(loss_shape: tuple[int, ...], reduced: tuple[int, ...],
            operands: list[np.ndarray]) -> _Layout:
    """Order and merge the axes (``operands`` aligned to the loss's ndim; the first leads).

    Remembered by shapes and strides: working it out costs more than a small block.
    """
    key = (loss_shape, reduced, tuple((a.shape, a.strides) for a in operands))
    lay = _LAYOUTS.get(key)
    if lay is None:
        lay = _LAYOUTS.put(key, _work_out_layout(loss_shape, reduced, operands))
    return lay


def _work_out_layout(loss_shape: tuple[int, ...], reduced: tuple[int, ...],
                     operands: list[np.ndarray]) -> _Layout:
    long = [i for i, n in enumerate(loss_shape) if n != 1]

    def memory_order(i: int) -> int:  # outermost first: the largest stride of a full operand
        return -max((abs(a.strides[i]) for a in operands[:2] if a.shape[i] != 1), default=0)

    kept = sorted((i for i in long if i not in reduced), key=memory_order)
    red = sorted((i for i in long if i in reduced), key=memory_order)
    perm = kept + red

    def mergeable(p: int, q: int) -> bool:  # p outer, q inner
        for a in operands:
            ep, eq = a.shape[p], a.shape[q]
            if ep == 1 and eq == 1:
                continue
            if ep == 1 or eq == 1 or a.strides[p] != a.strides[q] * eq:
                return False
        return True

    groups: list[list[int]] = []
    nkept = 0
    for pos, axis in enumerate(perm):
        first_reduced = pos == len(kept)
        if groups and not first_reduced and mergeable(groups[-1][-1], axis):
            groups[-1].append(axis)
        else:
            groups.append([axis])
            if pos < len(kept):
                nkept += 1
    return _Layout(loss_shape, tuple(perm), tuple(tuple(g) for g in groups),
                   tuple(math.prod(loss_shape[i] for i in g) for g in groups), nkept)


def _in_layout(a: np.ndarray, lay: _Layout) -> np.ndarray:
    """An aligned operand viewed in the layout's merged axes (extents 1 or full)."""
    if len(lay.groups) == 1 and len(lay.perm) == a.ndim and a.flags.c_contiguous:
        return a.reshape(-1)  # the commonest case: everything merges
    a = a.reshape([a.shape[i] for i in sorted(lay.perm)])  # drop the loss's length-1 axes
    transpose = lay.transpose
    if transpose is not None:
        a = a.transpose(transpose)
    merged, k = [], 0
    for g in lay.groups:
        merged.append(math.prod(a.shape[k:k + len(g)]))
        k += len(g)
    return a.reshape(merged)


def _logical(a: np.ndarray, lay: _Layout, shape: tuple[int, ...]) -> np.ndarray:
    """An array in the layout's merged axes, viewed in the loss's axis order and ``shape``."""
    order = sorted(lay.perm)
    a = a.reshape([lay.loss_shape[i] for i in lay.perm])
    a = a.transpose([lay.perm.index(i) for i in order])
    return a.reshape(shape)


# ------------------------------------------------------------------------------- boxes

Index = tuple[Any, ...]


def _boxes(shape: tuple[int, ...], start: int, stop: int,
           limit: int) -> Iterator[tuple[Index, int]]:
    """Cut the C-order range ``[start, stop)`` of ``shape`` into boxes of at most ``limit``.

    A box is an index of leading integers and one slice (the axes after it are
    whole): ``(index, elements)``.  Boxes are as large as the limit and the
    alignment of ``start`` allow; one innermost element is always allowed.
    """
    if not shape:
        yield (), 1
        return
    suffix = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    pos = start
    while pos < stop:
        for j, step in enumerate(suffix):
            if pos % step:
                continue
            at = (pos // step) % shape[j]
            k = min(shape[j] - at, (stop - pos) // step, max(1, limit) // step)
            if k >= 1:
                break
        else:  # unreachable: the innermost axis has step 1
            raise AssertionError((shape, pos, stop))
        index = (*tuple(pos // suffix[i] % shape[i] for i in range(j)), slice(at, at + k))
        yield index, k * step
        pos += k * step


def _unit_sums(t: np.ndarray, nk: int, rows: int, length: int, inner: int,
               unit: int) -> np.ndarray:
    """Float64 totals of the units in a block, ``(nk, units)`` in unit order.

    ``t`` holds ``nk`` outputs times ``rows`` rows of ``length`` steps of
    ``inner`` elements (C order); units are ``unit`` steps long (the last of a
    row may be shorter).  Each unit is added pairwise over its elements in C
    order: ``reshape`` copies ``t`` into that order if it is laid out otherwise.
    """
    full, tail = divmod(length, unit)
    if not tail:
        sums: np.ndarray = np.add.reduce(t.reshape(nk, rows * full, unit * inner), axis=-1,
                                         dtype=np.float64)
        return sums
    t = t.reshape(nk, rows, length, inner)
    sums = np.empty((nk, rows, full + 1))
    if full:
        head = t[:, :, : full * unit].reshape(nk, rows, full, unit * inner)
        np.add.reduce(head, axis=-1, dtype=np.float64, out=sums[:, :, :full])
    np.add.reduce(t[:, :, full * unit:].reshape(nk, rows, tail * inner), axis=-1,
                  dtype=np.float64, out=sums[:, :, full])
    return sums.reshape(nk, rows * (full + 1))


@dataclass(frozen=True)
class _Units:
    """How the reduced axes are cut into units and groups (shapes alone decide)."""

    axis: int  # the reduced axis the units run along (index into the reduced shape)
    prefix: tuple[int, ...]  # reduced axes before it: one unit row per index
    length: int  # its extent
    inner: int  # elements per step along it (the reduced axes after it)
    unit: int  # steps per unit
    per_row: int  # units per row
    rows_per_group: int  # whole rows per group (when per_row <= GROUP), else 0

    @property
    def rows(self) -> int:
        return math.prod(self.prefix)

    @property
    def groups(self) -> int:
        if self.rows_per_group:
            return -(-self.rows // self.rows_per_group)
        return self.rows * -(-self.per_row // GROUP)


_UNITS: _Memo[tuple[object, ...], _Units] = _Memo()


def _units(reduced: tuple[int, ...]) -> _Units:
    """The units and groups of reduced axes of these extents (remembered)."""
    key = (reduced, ROW, GROUP)
    u = _UNITS.get(key)
    if u is None:
        u = _UNITS.put(key, _work_out_units(reduced))
    return u


def _work_out_units(reduced: tuple[int, ...]) -> _Units:
    if math.prod(reduced) <= ROW:  # one unit: everything reduced
        return _Units(0, (), math.prod(reduced), 1, math.prod(reduced) or 1, 1, 1)
    t = next(i for i in range(len(reduced)) if math.prod(reduced[i + 1:]) <= ROW)
    inner = math.prod(reduced[t + 1:])
    unit = max(1, ROW // inner)
    per_row = -(-reduced[t] // unit)
    return _Units(t, reduced[:t], reduced[t], inner, unit, per_row,
                  max(1, GROUP // per_row) if per_row <= GROUP else 0)


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for n in reversed(shape):
        i, r = divmod(i, n)
        out.append(r)
    return tuple(reversed(out))


def _reduced_boxes(u: _Units, group: int, limit: int) -> Iterator[tuple[Index, int, int, bool]]:
    """The boxes of one group: ``(index over the reduced axes, rows, steps, last in group)``."""
    row_elements = u.length * u.inner
    if u.rows_per_group:
        lo = group * u.rows_per_group
        hi = min(lo + u.rows_per_group, u.rows)
        if row_elements <= limit:  # whole rows per box
            boxes = list(_boxes(u.prefix, lo, hi, limit // row_elements))
            for k, (index, rows) in enumerate(boxes):
                yield index, rows, u.length, k == len(boxes) - 1
            return
        spans = [(r, 0, u.per_row) for r in range(lo, hi)]
    else:
        chunks = -(-u.per_row // GROUP)
        row, chunk = divmod(group, chunks)
        spans = [(row, chunk * GROUP, min((chunk + 1) * GROUP, u.per_row))]
    per_box = max(1, limit // (u.unit * u.inner))
    for n, (row, first, last) in enumerate(spans):
        prefix = _unravel(row, u.prefix)
        for a in range(first, last, per_box):
            b = min(a + per_box, last)
            lo_step, hi_step = a * u.unit, min(b * u.unit, u.length)
            yield ((*prefix, slice(lo_step, hi_step)), 1, hi_step - lo_step,
                   n == len(spans) - 1 and b == last)


# ------------------------------------------------------------------------------ a pass


@dataclass
class Totals:
    """Float64 totals of a reduction per output: the kept shape, reduced axes as length 1."""

    loss: np.ndarray
    weight: np.ndarray | None  # the summed broadcast weights (weighted_mean), or None


class _Operand:
    """An operand in a layout: its view, which merged axes it repeats, how to read it."""

    __slots__ = ("broadcast", "load", "rows", "tile", "view")

    load: Callable[[Any], Any]

    def __init__(self, a: Any, lay: _Layout | None, work: type) -> None:
        """``a``: aligned to the loss's ndim (:func:`_aligned`), or such an array's BF16 bits.

        ``lay=None``: ``a`` is used as it is (the small-call lane).
        """
        self.rows = False  # whether blocks of rows get it repeated (see take)
        self.tile: np.ndarray | None = None
        if lay is None:
            self.view, self.broadcast, self.load = a, None, _identity
            return
        self.view = _in_layout(a.bits if isinstance(a, BF16) else a, lay)
        full = tuple(n == m for n, m in zip(self.view.shape, lay.shape, strict=True))
        self.broadcast = None if all(full) else tuple(not f for f in full)
        self.load = _loader(a, work)
        # One row repeated over the rows of a two-axis layout (a weight, a threshold
        # or a target per feature): NumPy runs a broadcast operation's inner loop
        # once per row, about twice the time of the same operation on contiguous
        # arrays, so blocks of rows get the row repeated into a contiguous block,
        # made once and shared by every block and thread (read only).
        self.rows = (len(full) == 2 and not full[0] and full[1] and lay.shape[0] > 1
                     and lay.shape[1] <= _SHORT_ROW)

    def take(self, index: Index) -> Any:
        if self.broadcast is None:
            return self.load(self.view[index])
        if self.rows and len(index) == 1 and index[0].start is not None:  # rows a:b
            k = index[0].stop - index[0].start
            tile = self.tile  # one read: another thread may replace it
            if tile is None or tile.shape[0] < k:
                tile = np.ascontiguousarray(np.broadcast_to(self.load(self.view),
                                                            (k, self.view.shape[1])))
                tile.flags.writeable = False
                self.tile = tile
            return tile[:k]
        return self.load(self.view[tuple(
            (0 if type(i) is int else _ALL) if b else i
            for i, b in zip(index, self.broadcast, strict=False))])


#: Row length up to which an operand per feature is repeated into contiguous blocks
#: of rows (:class:`_Operand`); longer rows run NumPy's inner loops at full speed.
_SHORT_ROW = 1024


Scalar = float | int | None


@dataclass
class _Job:
    """What one pass computes per block (built by :func:`run`)."""

    formula: _formulas.Formula
    x: _Operand
    y: _Operand
    weight: _Operand | Scalar
    none_value: np.ndarray | None  # 'none': write the elementwise losses here (layout order)
    reduce: bool  # reduce factored losses (and the weights, for weighted_mean)
    reduce_weight: bool
    norm: _Operand | float  # gradient factor (1/N, 1, or 1/total weight per output)
    grad_output: _Operand | Scalar
    grads: tuple[tuple[np.ndarray, int], ...]  # elementwise gradients: (out, sign)
    grad_sum: bool  # reduce the gradient itself (a broadcast argument's gradient)
    #: an array threshold: what its blocks read, prepared once per call
    threshold: _ThresholdOperands | None = None

    def block(self, index: Index) -> tuple[Any, Any]:
        """One block: writes elementwise results, returns what is to be reduced."""
        w, norm, go = self.weight, self.norm, self.grad_output
        d = self.x.take(index) - self.y.take(index)
        w = w.take(index) if isinstance(w, _Operand) else w
        norm = norm.take(index) if isinstance(norm, _Operand) else norm
        go = go.take(index) if isinstance(go, _Operand) else go
        t = self.threshold
        if t is None:
            return _compute(self, index, d, w, norm, go)
        return _compute(self, index, d, w, norm, go, t.prep, _take(t.values, index),
                        _take(t.aux, index), _take(t.inv, index), _take(t.twice, index))


def _take(op: _Operand | None, index: Index) -> Any:
    return None if op is None else op.take(index)


def _compute(job: _Job, index: Index, d: Any, w: Any, norm: Any, go: Any,
             prep: _Threshold | None = None, param: Any = None, aux: Any = None,
             inv: Any = None, twice: Any = None) -> tuple[Any, Any]:
    """The math of one block of ``d = input - target`` (the formulas, in torch's order).

    Writes the elementwise results of ``index``; returns ``(losses, weights)``
    to reduce (the gradient itself for a broadcast argument's gradient).
    With an array threshold (``job.formula.param`` is then NaN): ``prep`` says
    how it was prepared (:func:`_prepare_threshold`), and ``param``, ``aux``,
    ``inv`` and ``twice`` are the blocks of what it made (``param`` is None
    when only ``inv`` is read).
    """
    xp, f = _XP, job.formula
    special = False
    if prep is not None:
        special = prep.special
        if not prep.checked:  # a threshold per element: checked here, block by block
            param, special = _checked_threshold(f.kind, param)
    if job.none_value is not None:
        # the block of the result itself, where the losses can be computed into it (one
        # pass less than a copy): the working dtype, the block's shape
        dest: np.ndarray | None = job.none_value[index]  # (a 0-d result's [()] is a scalar)
        if type(dest) is not np.ndarray or dest.dtype != d.dtype or dest.shape != d.shape:
            dest = None
        into = dest if w is None else None
        if prep is None and f.kind == "smooth_l1" and f.param != 1.0:
            # a number beta other than 1: the per-element passes, the same bits as the
            # formula's (its repair of 0.5*z*z tested by extremes, not by masks)
            if _squares_hold(f.bits, f.param, f.param):
                v = _smooth_l1_losses(2.0 * f.param, d, 0.5 * f.param, out=into)
            else:
                v = _losses_per_element(f.kind, f.param, d, 0.5 * f.param,
                                        f.param > _formulas._SQRT_2HUGE[f.bits], out=into)
        elif prep is None:
            z = xp.abs(d)
            v = _formulas.loss(xp, f, z, _formulas.linear_mask(xp, f, z), guard=False)
            del z
        elif twice is not None:  # (Smooth L1, checked once, every threshold within bounds)
            v = _smooth_l1_losses(twice, d, aux, out=into)
        else:
            v = _losses_per_element(f.kind, param, d, None if prep.aux_clamps else aux,
                                    prep.big, out=into)
        if dest is None:
            _write(job.none_value, index, v if w is None else v * w)
        elif w is not None:
            np.multiply(v, w, out=dest)
        elif v is not dest:
            np.copyto(dest, v)
        del v, dest, into
    if not (job.reduce or job.grads or job.grad_sum):
        return None, None
    total = weights = None
    if prep is None:
        c = _formulas.clamp(xp, f, d)
        s = _formulas.slope(xp, f, d, c)
        if job.reduce:
            total = _formulas.factored_loss(xp, f, d, c, s)
        del c
    else:  # the lean forms below, the same bits
        s, total = _slope_and_losses_per_element(f.kind, param, aux, special, d,
                                                 job.reduce, inv)
    if job.reduce and w is not None:
        total = total * w
        if job.reduce_weight:
            weights = np.broadcast_to(w, total.shape)
    del d
    if job.grads or job.grad_sum:  # torch's order: norm * derivative * grad_output
        g = s if isinstance(norm, float) and norm == 1.0 else norm * s
        del s
        if w is not None:
            g = g * w
        if go is not None:
            g = g * go
        for out, sign in job.grads:
            _write(out, index, g, sign)
        if job.grad_sum:
            total = g
    return total, weights


class _Threshold(NamedTuple):
    """An array threshold, prepared once per call (:func:`_prepare_threshold`).

    (A named tuple: made at every call, and a frozen dataclass costs a microsecond to make.)
    """

    #: aligned to the loss's ndim; checked (invalid elements NaN) and in the working
    #: precision where ``checked``, else as given (each block checks its own)
    values: np.ndarray
    checked: bool
    special: bool  # (checked) an element 0 or inf (Smooth L1): the slope's sign repair
    big: bool  # an element above sqrt(2 * largest): 0.5*z*z may overflow below it
    aux: np.ndarray | None  # (checked) :func:`_threshold_aux` of the values
    aux_clamps: bool  # aux is Huber's -delta (else beta/2, delta/2)
    #: (checked) 1 / values, for a reduction of the value alone with no element 0,
    #: inf or so small that its inverse is inf: blocks multiply instead of dividing
    inv: np.ndarray | None
    #: (checked, Smooth L1) 2 * values, for a job that writes the elementwise losses
    #: and whose elements are all within :func:`_smooth_l1_losses`'s bounds: the
    #: losses are then ``d*d / (2*beta)``, from it and aux
    twice: np.ndarray | None
    #: whether blocks read the values themselves (not for a reduction of the value
    #: alone with ``inv``, nor for losses alone with ``twice``)
    read: bool


class _ThresholdOperands(NamedTuple):
    """What a pass's blocks read of a :class:`_Threshold` (``values`` None: only ``inv``)."""

    prep: _Threshold
    values: _Operand | None
    aux: _Operand | None
    inv: _Operand | None
    twice: _Operand | None


def _prepare_threshold(kind: str, bits: int, param: Any, aligned: np.ndarray, n: int,
                       work: type, clamps: bool, value_only: bool,
                       losses: bool = False, tile: tuple[int, ...] | None = None
                       ) -> _Threshold:
    """An array threshold ``aligned`` (``param``'s array, aligned) for a loss of ``n`` elements.

    One at least :data:`_CHECK_ONCE` times smaller than the loss (per feature,
    per row) is checked here, once, and what its blocks need besides it is made
    once; one per element is checked block by block (a copy of it here would be
    a full-size temporary).  ``clamps``: the call reduces or takes gradients
    (Huber's blocks then clamp to ``-delta``); ``value_only``: a reduction of
    the value alone; ``losses``: the call writes the elementwise losses
    (``'none'``); ``tile``: the small-call lane's shape, to which what its block
    reads of a remembered threshold is repeated (an operation with an operand per
    feature runs NumPy's inner loop once per row, about twice the time).  One of
    at most :data:`_REMEMBER_BYTES` is remembered by its bytes (from two elements
    up): a threshold fixed over a training loop is prepared once (a hit costs
    0.4-1.5 us against 3.5-4.6 us; new values about 1 us more than no memo).
    """
    if aligned.size > n // _CHECK_ONCE:
        return _Threshold(aligned, False, False, True, None, False, None, None, True)
    if type(aligned) is np.ndarray and aligned.size > 1 and aligned.nbytes <= _REMEMBER_BYTES:
        # a small threshold is remembered by its bytes (the same bits: the same
        # preparation), so a threshold fixed over a training loop is checked once;
        # not one value, as a schedule passes (a new value at every call, for which
        # a memo only costs)
        # (BF16: aligned holds its bits; the working dtype follows bits; the dtype as its
        # character and byte order, which are read and hashed fast, unlike a dtype object,
        # a type or the dtype's str: 0.7 us a lookup, not 1.3)
        dtype = aligned.dtype
        key = (kind, bits, clamps, value_only, losses, tile, type(param) is BF16, dtype.char,
               dtype.isnative, aligned.shape, aligned.tobytes())
        found = _PREPARED.get(key)
        if found is not None:
            return found
        # prepared from a copy: what is remembered must not be the caller's array, which
        # the caller may change later (aux and inv are new arrays anyway)
        return _PREPARED.put(key, _prepared(kind, bits, param, aligned.copy(), work, clamps,
                                            value_only, losses, tile))
    return _prepared(kind, bits, param, aligned, work, clamps, value_only, losses)


#: Thresholds up to this many bytes are remembered by :func:`_prepare_threshold`.
_REMEMBER_BYTES = 4096
_PREPARED: _Memo[tuple[object, ...], _Threshold] = _Memo(64)


def _prepared(kind: str, bits: int, param: Any, aligned: np.ndarray, work: type,
              clamps: bool, value_only: bool, losses: bool,
              tile: tuple[int, ...] | None = None) -> _Threshold:
    """:func:`_prepare_threshold`'s work: a threshold checked once, and what blocks need of it."""
    values = _loader(param, work)(aligned)
    # (the extremes as Python floats, exactly: comparing NumPy scalars costs more, and
    # float() less than .item())
    lo = float(np.minimum.reduce(values, axis=None))
    hi = float(np.maximum.reduce(values, axis=None))
    twice = None
    if lo > 0 and (kind == "huber" or hi < math.inf):  # the common case: all in (0, inf)
        if kind != "huber" and losses and _squares_hold(bits, lo, hi):
            twice = values + values  # (exact below the bound)
        special, big = False, hi > _formulas._SQRT_2HUGE[bits]
        # 1/p is largest at the smallest p (rounding is monotonic), and finite from the
        # smallest normal number up
        tiny = lo < _TINY_HUGE[values.dtype][0] and bool(
            np.isinf(np.divide(1, values.dtype.type(lo))))
    else:  # NaN, or some outside (0, inf): made NaN
        values, special = _checked_threshold(kind, values)
        big = bool((values > _formulas._SQRT_2HUGE[bits]).any())
        with np.errstate(all="ignore"):
            tiny = bool(np.isinf(1 / values).any())
    aux_clamps = kind == "huber" and clamps
    inv = None
    if kind != "huber" and not special and value_only and not tiny:
        # (1/beta's bits, half the call's cost; a threshold below 1/max would make it
        # inf: divide instead)
        inv = np.reciprocal(values)
    aux = _threshold_aux(kind, values, aux_clamps)
    read = inv is None and (twice is None or clamps)
    if tile is not None:  # (what is not read stays as it is)
        def tiled(a: np.ndarray | None) -> Any:
            return None if a is None else np.ascontiguousarray(np.broadcast_to(a, tile))

        if read:
            values = tiled(values)
        aux, inv, twice = tiled(aux), tiled(inv), tiled(twice)
    return _Threshold(values, True, special, big, aux, aux_clamps, inv, twice, read)


def _threshold_operands(prep: _Threshold, param: Any, lay: _Layout,
                        work: type) -> _ThresholdOperands:
    def op(a: np.ndarray | None) -> _Operand | None:
        return None if a is None else _Operand(a, lay, work)

    values = None
    if prep.read:
        values = _Operand(BF16(prep.values) if isinstance(param, BF16) and not prep.checked
                          else prep.values, lay, work)
    return _ThresholdOperands(prep, values, op(prep.aux), op(prep.inv), op(prep.twice))


def _checked_threshold(kind: str, p: np.ndarray) -> tuple[np.ndarray, bool]:
    """A threshold with its invalid elements (negative, NaN; delta 0) made NaN, and a flag.

    The flag says whether a valid element is 0 or inf (Smooth L1), where the
    slope's ``c / beta`` is ``0 / 0`` or ``inf / inf`` for some ``d``.  The common
    case (every element in ``(0, inf)``) costs two reductions and no copy.
    """
    if p.size == 0:
        return p, False
    lo, hi = p.min(), p.max()  # NaN propagates: then the slow way below
    if lo > 0 and (kind == "huber" or hi < np.inf):
        return p, False
    ok = p > 0 if kind == "huber" else p >= 0
    special = kind != "huber" and bool(((p == 0) | (p == np.inf)).any())
    return (p if ok.all() else np.where(ok, p, np.nan)), special


def _losses_per_element(kind: str, p: Any, d: Any, aux: Any = None, big: bool = True,
                        out: np.ndarray | None = None) -> Any:
    """The elementwise losses with a threshold per element: :func:`~smoothl1._formulas.loss`'s bits.

    ``where(z < beta, 0.5*z*z / beta, z - 0.5*beta)`` in torch's order, then the
    repair where ``0.5*z*z`` underflowed or overflowed in the quadratic zone (the
    same ``0.5*z*|z/beta|`` as the formula), only in blocks that have such
    elements (the extremes of ``0.5*z*z`` tell, without a mask).  ``beta = 0``
    is ``z - 0`` (every z is linear), ``beta = inf`` is ``0.5*z*z / inf = 0`` (or
    the repair's 0), invalid thresholds NaN.  ``aux``: :func:`_threshold_aux`
    of ``p`` (``beta / 2``), when the caller has it; ``big=False``: the caller
    knows that no threshold is above ``sqrt(2 * largest)``, so ``0.5*z*z`` cannot
    overflow in the quadratic zone (one reduction less).  ``out``: where to put
    them (an array of ``d``'s shape and dtype), if not in a new array.
    """
    z = np.abs(d)  # (p: invalid elements made NaN)
    quadratic = z < p
    if kind == "huber":
        return _where(quadratic, 0.5 * z * z, p * (z - (0.5 * p if aux is None else aux)),
                      out=out)
    half_square = 0.5 * z
    half_square *= z  # (0.5*z)*z, torch's order
    out = _where(quadratic, half_square / p, z - (0.5 * p if aux is None else aux), out=out)
    tiny, huge = _TINY_HUGE[out.dtype]
    if not (np.minimum.reduce(half_square, axis=None) >= tiny  # (or NaN)
            and (not big or np.maximum.reduce(half_square, axis=None) <= huge)):
        lost = ((half_square < tiny) | (half_square > huge)) & quadratic
        if lost.any():
            np.copyto(out, 0.5 * z * np.abs(z / p), where=lost)
    return out


#: Smallest normal and largest finite number by dtype (the repair's bounds).
_TINY_HUGE: dict[Any, tuple[Any, Any]] = {
    np.dtype(np.float32): (np.float32(2.0**-126), np.finfo(np.float32).max),
    np.dtype(np.float64): (2.0**-1022, np.finfo(np.float64).max)}

#: By working precision, the thresholds for which :func:`_smooth_l1_losses` holds: from
#: twice the smallest normal number (``beta/2`` is exact) to the bound (``2*beta`` is
#: exact, and ``d*d`` finite wherever ``|d| < beta``).
_SQUARES_EXACT = {32: 2.0**63, 64: 2.0**511}
_SQUARES_LEAST = {32: 2.0**-125, 64: 2.0**-1021}
#: By dtype, what :func:`_smooth_l1_losses` reads once per block: four times the smallest
#: normal number (from it up, ``d*d`` halves exactly), the signed integers of the
#: dtype's width (an arithmetic shift spreads a sign bit), and the unsigned ones
#: (the selection of bit patterns).
_SQUARES_BLOCK: dict[Any, tuple[Any, Any, Any]] = {
    np.dtype(np.float32): (4 * _TINY_HUGE[np.dtype(np.float32)][0], np.int32, np.uint32),
    np.dtype(np.float64): (4 * _TINY_HUGE[np.dtype(np.float64)][0], np.int64, np.uint64)}


def _squares_hold(bits: int, lo: float, hi: float) -> bool:
    """Whether thresholds from ``lo`` to ``hi`` are within :func:`_smooth_l1_losses`'s bounds."""
    return _SQUARES_LEAST[bits] <= lo and hi <= _SQUARES_EXACT[bits]


def _smooth_l1_losses(twice: Any, d: np.ndarray, aux: Any,
                      out: np.ndarray | None = None) -> Any:
    """Smooth L1's elementwise losses: :func:`_losses_per_element`'s bits, in fewer passes.

    ``where(|d| - beta/2 < beta/2, d*d / (2*beta), |d| - beta/2)`` from
    ``twice = 2*beta`` and ``aux = beta/2``, for thresholds from twice the
    smallest normal number to :data:`_SQUARES_EXACT` (so both are exact).

    - The test: ``(|d| - beta/2) - beta/2 < 0`` is ``|d| < beta`` (Sterbenz:
      for ``|d|`` from ``beta/2`` to ``beta`` the first difference is exact;
      below, both are negative; from ``beta`` up, they round to at least
      ``beta/2`` and 0), so the threshold itself is not read, and the sign bit
      of that difference, shifted over the word, is the selection's mask
      (``|d|`` has no sign, so a NaN there stays a positive NaN and selects the
      linear branch, as ``z < beta`` does).
    - The quadratic branch: where ``d*d`` is at least four times the smallest
      normal number, ``(0.5*z)*z`` (torch's order) is exactly ``(d*d) / 2``
      (halving is exact there), so ``d*d / (2*beta)`` rounds the same real number
      as torch's ``0.5*z*z / beta``; ``d*d`` is finite where ``|d| < beta``, and
      ``0.5*z*z`` is normal, so no repair is needed.  Elements with a smaller
      ``d*d`` (``d == 0`` among them) are given :func:`_losses_per_element`'s
      values, in the blocks that have them.

    ``out``: as for :func:`_losses_per_element`.
    """
    if d.ndim == 0:  # (NumPy's operations make scalars of 0-d arrays)
        return _losses_per_element("smooth_l1", 0.5 * twice, d, aux, out=out)
    h = np.multiply(d, d)
    bound, signed, bits = _SQUARES_BLOCK[h.dtype]
    low = None
    if not np.minimum.reduce(h, axis=None) >= bound:  # (or NaN: then a mask finds none)
        low = h < bound
    line = np.abs(d)
    np.subtract(line, aux, out=line)
    mask = np.subtract(line, aux)
    np.right_shift(mask.view(signed), 8 * h.itemsize - 1, out=mask.view(signed))
    np.divide(h, twice, out=h)
    # the bits of the quadratic branch where the mask is all ones, else of the line's
    # (as _where does, in the temporaries of this block)
    found, line_bits = h.view(bits), line.view(bits)
    np.bitwise_xor(found, line_bits, out=found)
    np.bitwise_and(found, mask.view(bits), out=found)
    if out is None:
        out = line
    np.bitwise_xor(found, line_bits, out=out.view(bits))
    if low is not None and low.any():
        def at(a: Any) -> Any:
            return np.broadcast_to(a, d.shape)[low] if isinstance(a, np.ndarray) else a

        out[low] = _losses_per_element("smooth_l1", 0.5 * at(twice), d[low], at(aux))
    return out



def _threshold_aux(kind: str, p: np.ndarray, clamp: bool) -> np.ndarray:
    """What blocks use besides a threshold.

    ``beta / 2`` (Smooth L1); Huber's ``-delta`` for a job that clamps
    (reductions, gradients), else ``delta / 2``.
    """
    return -p if kind == "huber" and clamp else 0.5 * p


def _slope_and_losses_per_element(kind: str, p: Any, aux: Any, special: bool, d: Any,
                                  losses: bool, inv: Any = None) -> tuple[Any, Any]:
    """The slope of a block with a threshold per element, and its losses for a reduction.

    Smooth L1: the slope ``s = clip(d / beta, -1, 1)`` has the bits of
    :func:`~smoothl1._formulas.derivative` (``|d| >= beta`` gives
    ``|d / beta| >= 1``, since rounding is monotonic; inside, ``d / beta``
    itself), and the losses are ``s * (d - (beta/2) * s)``: ``|d| - beta/2``
    exactly in the linear zone, ``(d/beta) * (d/2)`` within an ulp or two in the
    quadratic one (the products of :func:`~smoothl1._formulas.factored_loss`),
    and, as ``|s| <= 1``, finite wherever the loss is.  Five passes over the
    block, as many as the scalar threshold with a weight takes.  Only
    ``beta = 0`` and ``beta = inf`` (``special``) give ``0 / 0`` or
    ``inf / inf``, where the derivative is ``sign(d)``: such blocks put the sign
    back there and take the losses from the clamp.  Huber: the clamp
    ``c = min(max(d, -delta), delta)`` is the slope, ``c * (d - c/2)`` the
    losses.  NaN (``d``, or an invalid threshold made NaN) stays NaN.  ``aux``:
    :func:`_threshold_aux` of ``p``, when the caller has it.  ``inv``: ``1 / p``
    for a reduction of the value alone (no slope is returned then): ``d * inv``
    instead of ``d / p`` gives the losses within an ulp or two more, for a
    multiplication instead of a division (a float64 division takes several
    times as long).
    """
    if kind == "huber":
        c = np.maximum(d, -p if aux is None else aux)
        np.minimum(c, p, out=c)  # (NumPy's clip is slow with array bounds)
        return c, _formulas.factored_loss(_XP, _HUBER, d, c, c) if losses else None
    s = np.divide(d, p) if inv is None else np.multiply(d, inv)
    _XP.clip(s, -1.0, 1.0, out=s)
    if not special:
        if not losses:
            return s, None
        t = np.multiply(0.5 * p if aux is None else aux, s)
        np.subtract(d, t, out=t)
        t *= s
        return s, t
    lost = np.isnan(s)
    if lost.any():  # 0/0 or inf/inf with a valid threshold and a number d: sign(d)
        fix = lost & ~np.isnan(d) & ~np.isnan(np.broadcast_to(p, s.shape))
        np.copyto(s, np.sign(d), where=fix)
    if not losses:
        return s, None
    c = np.minimum(np.maximum(d, -p), p)
    return s, _formulas.factored_loss(_XP, _SMOOTH_L1, d, c, s)


#: Formulas whose kind is all :func:`~smoothl1._formulas.factored_loss` reads.
_HUBER = _formulas.formula_for("huber", 1.0, 64)
_SMOOTH_L1 = _formulas.formula_for("smooth_l1", 1.0, 64)


class _Sink:
    """Where a reduction's float64 totals go, output by output (threads write disjoint ones).

    ``finish(start, losses, weights)`` turns the totals of the outputs
    ``[start, start + n)`` (in the layout's kept order) into results.
    """

    def __init__(self, n_out: int, finish: Callable[[Any, Any], Any] | None, dtype: Out,
                 weights: bool) -> None:
        self.finish = finish
        if finish is None:  # raw totals
            self.loss = np.empty(n_out)
            self.weight = np.empty(n_out) if weights else None
        else:
            self.out = _empty((n_out,), dtype)

    def put(self, start: int, losses: Any, weights: Any) -> None:
        stop = start + losses.shape[0]
        if self.finish is None:
            self.loss[start:stop] = losses
            if self.weight is not None:
                self.weight[start:stop] = weights
        else:
            _write(self.out, (slice(start, stop),), self.finish(losses, weights))


def _run_pass(job: _Job, lay: _Layout, budget: int, threads: int, sink: _Sink | None) -> None:
    """Run ``job`` over every block of ``lay`` (on ``threads`` threads); totals into ``sink``.

    ``budget``: elements per block.  Outputs are independent, so any range of
    them can go to any thread; the groups of one output are split between
    threads only when there are too few outputs to go round.
    """
    kept = lay.kept
    n_out = math.prod(kept)
    if sink is None:  # elementwise only: boxes over all the axes

        def elementwise(lo: int, hi: int) -> None:
            with np.errstate(all="ignore"):  # inf/NaN are results here, per thread
                for index, _n in _boxes(kept, lo, hi, budget):
                    job.block(index)

        map_parts(elementwise, _splits(n_out, threads), threads)
        return

    u = lay.units
    if u.per_row == 1 and not u.prefix:  # one unit per output: no groups to keep

        def single(lo: int, hi: int) -> None:
            with np.errstate(all="ignore"):
                for index, nk in _boxes(kept, lo, hi, max(1, budget // u.length)):
                    total, weight = job.block(index)
                    sink.put(_position(index, kept),
                             np.add.reduce(total.reshape(nk, -1), axis=1, dtype=np.float64),
                             None if weight is None else
                             np.add.reduce(weight.reshape(nk, -1), axis=1, dtype=np.float64))

        map_parts(single, _splits(n_out, threads), threads)
        return

    group_size = (u.rows_per_group * u.length * u.inner if u.rows_per_group
                  else GROUP * u.unit * u.inner)
    per_block = max(1, budget // group_size)  # outputs side by side in one block
    if n_out >= 2 * threads or u.groups < 2 * threads:
        parts = [(lo, hi, 0, u.groups) for lo, hi in _splits(n_out, threads, per_block)]
    else:
        parts = [(0, n_out, lo, hi) for lo, hi in _splits(u.groups, threads)]

    def reduce(lo: int, hi: int, g_lo: int, g_hi: int) -> list[tuple[int, list[Any],
                                                                         list[Any]]]:
        """Outputs ``[lo, hi)``, groups ``[g_lo, g_hi)``: their group totals, in order."""
        done = []
        with np.errstate(all="ignore"):
            for kindex, nk in _boxes(kept, lo, hi, per_block):
                kfull = kindex + (_ALL,) * (len(kept) - len(kindex))
                losses: list[Any] = []
                weights: list[Any] = []
                units: list[Any] = []
                units_w: list[Any] = []
                for g in range(g_lo, g_hi):
                    for rindex, rows, length, last in _reduced_boxes(u, g, budget // nk):
                        total, weight = job.block(kfull + rindex)
                        units.append(_unit_sums(total, nk, rows, length, u.inner, u.unit))
                        if weight is not None:
                            units_w.append(_unit_sums(weight, nk, rows, length, u.inner,
                                                      u.unit))
                        del total, weight  # before the next block's are made
                        if last:  # the group's total, as a column
                            losses.append(_fold(units)[:, None])
                            units = []
                            if units_w:
                                weights.append(_fold(units_w)[:, None])
                                units_w = []
                done.append((_position(kindex, kept), losses, weights))
        return done

    found: dict[int, tuple[list[Any], list[Any]]] = {}
    for done in map_parts(reduce, parts, threads):
        for start, losses, weights in done:
            entry = found.setdefault(start, ([], []))
            entry[0].extend(losses)
            entry[1].extend(weights)
    for start, (losses, weights) in found.items():
        sink.put(start, _fold(losses), _fold(weights) if weights else None)


def _fold(parts: list[Any]) -> np.ndarray:
    """Pairwise float64 sums of ``(nk, k)`` partial sums put side by side: one per output."""
    both = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return np.add.reduce(both, axis=1)  # type: ignore[no-any-return]


def _position(index: Index, shape: tuple[int, ...]) -> int:
    """The C-order position of a box's first element."""
    pos = 0
    for i, n in enumerate(shape):
        at = 0
        if i < len(index):
            at = index[i] if type(index[i]) is int else index[i].start
        pos = pos * n + at
    return pos


def _splits(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """At most ``parts`` ranges covering ``range(n)``, cut at multiples of ``align``."""
    units = -(-n // align)
    per = max(1, -(-units // parts))
    return [(i * per * align, min(n, (i + 1) * per * align))
            for i in range(parts) if i * per * align < n] or [(0, 0)]


# -------------------------------------------------------------------------- entry points

Out = np.dtype[Any] | type[BF16]


class GradSpec(NamedTuple):
    """One gradient to return: of ``input`` (sign +1) or ``target`` (-1), its shape and dtype.

    (A named tuple: made at every call, and a frozen dataclass costs a microsecond to make.)
    """

    sign: int
    shape: tuple[int, ...]
    dtype: Out


def accepts(a: object) -> bool:
    """Whether ``a`` is an array this executor reads as it is (NumPy's own, no subclass)."""
    return type(a) is np.ndarray or type(a) is np.memmap


#: Bytes NumPy's buffered float64 reduction holds per thread (8192 elements).
_REDUCE_BUFFER = 8192 * 8
#: Largest block-sized array: glibc's malloc maps larger ones afresh (``mmap``) at every
#: allocation, and the page faults would cost more than the work.
_LARGEST_TEMPORARY = 120 << 10


def _block_elements(job: _Job, itemsize: int, threads: int) -> int:
    """Elements per block, so that all threads' block-sized arrays fit :data:`MEMORY_BUDGET`.

    Arrays one thread holds at once: for ``'none'``'s branch selection |d|, its
    masks and both branches; for a reduction d, the clamp, the slope and two
    products, and the float64 reduction's buffer; a gradient one more.
    """
    live = 8 if job.none_value is not None else 5
    # a threshold: its block (and, checked block by block, its NaN copy and mask); one
    # checked once per call replaces a clamp's temporaries with its own slope's
    live += (bool(job.grads) + (job.weight is not None)
             + (0 if job.threshold is None else 1 if job.threshold.prep.checked else 3))
    room = MEMORY_BUDGET // threads - (_REDUCE_BUFFER if job.reduce or job.grad_sum else 0)
    return max(1, min(room // live, _LARGEST_TEMPORARY) // itemsize)


#: Bytes of the one allocation :func:`_settle_allocator` makes and frees.
_SETTLE_BYTES = 8 << 20
_allocator_settled = False


def _settle_allocator() -> None:
    """Have glibc's malloc serve block-sized temporaries from its heap, without trimming it.

    Blocks allocate and free a few temporaries of up to 120 KiB each.  glibc
    returns the top of its heap to the system when more than its trim threshold
    is free there (``M_TRIM_THRESHOLD``, 128 KiB by default, and twice the mmap
    threshold once that has moved), so depending on what the process freed
    before, every block could get fresh pages: measured, a float32 mean of
    2^22 elements took 26-28 ms with 11,700 page faults per call in such a
    process, and 4.7 ms with 190 in the same process after this.  Freeing one
    8 MiB chunk that glibc mapped raises its mmap threshold to that size and
    the trim threshold to twice it (mallopt(3), "dynamic mmap threshold"), the
    state any program reaches once it has freed a mid-sized array.  Once per
    process; elsewhere than glibc the allocation is just freed.
    """
    global _allocator_settled
    _allocator_settled = True
    if sys.platform.startswith("linux"):
        np.empty(_SETTLE_BYTES, np.uint8)  # allocated (mapped, untouched) and freed


def _threads_for(n: int) -> int:
    return get_num_threads() if n >= PARALLEL_MIN else 1


def _logical_kept(a: np.ndarray, lay: _Layout, shape: tuple[int, ...]) -> np.ndarray:
    """Per-output values in the layout's kept order, viewed in the loss's order and ``shape``."""
    kept = lay.perm[: sum(len(g) for g in lay.groups[: lay.nkept])]
    a = a.reshape([lay.loss_shape[i] for i in kept])
    a = a.transpose([kept.index(i) for i in sorted(kept)])
    return a.reshape(shape)


def _write(out: np.ndarray, index: Index, value: Any, sign: int = 1) -> None:
    """A block of a result (negated for ``sign < 0``), rounded to the result's dtype."""
    if sign < 0:
        value = -value
    with np.errstate(all="ignore"):  # rounding to a smaller dtype may overflow: inf, as torch
        out[index] = _f32_to_bf16(value) if out.dtype == np.uint16 else value


def _native(dtype: Any) -> Any:
    """Results are in native byte order, whatever the inputs' (as NumPy's own functions)."""
    return dtype if dtype is BF16 else np.dtype(dtype).newbyteorder("=")


def _empty(shape: tuple[int, ...], dtype: Out) -> np.ndarray:
    return np.empty(shape, dtype=np.uint16 if dtype is BF16 else dtype)


def _ints(shape: Any) -> tuple[int, ...]:
    """A shape of a call on eager arrays: every size is known."""
    return tuple(int(n) for n in shape)


def _total_weight(call: Call, weight: Any, aligned: np.ndarray | None) -> Any:
    """weighted_mean's divisor per output, float64, broadcasting like the kept shape."""
    reduced = call.reduced_axes
    loss_shape = _ints(call.loss_shape)
    count = math.prod(loss_shape[i] for i in reduced)
    if weight is None:
        return float(count)
    if aligned is None:  # a Python number
        return float(weight) * count
    raw = _bf16_to_f32(aligned) if isinstance(weight, BF16) else aligned
    own = tuple(i for i in reduced if raw.shape[i] != 1)
    repeats = math.prod(loss_shape[i] for i in reduced if raw.shape[i] == 1)
    return np.sum(raw, axis=own, keepdims=True, dtype=np.float64) * repeats


def _safe_inverse(total: Any, work: type) -> Any:
    """1/total in the working precision, NaN where the total weight is 0."""
    if isinstance(total, float):
        return math.nan if total == 0 else float(work(1.0) / work(total))
    t = total.astype(work)
    with np.errstate(all="ignore"):
        return np.where(t == 0, work(math.nan), work(1.0) / t)


def run(call: Call, input: Any, target: Any, weight: Any, grad_output: Any, *,
        out_dtype: Out, grads: tuple[GradSpec, ...] = (), value: bool | None = None,
        threads: int | None = None, norm: Any = None,
        raw: bool = False, param: Any = None) -> tuple[Any, list[Any]] | None:
    """The value and the gradients ``grads``; ``None`` for empty arrays.

    Arrays are NumPy arrays (or :class:`BF16` bits) that ``call`` was checked
    with, or views of them; numbers stay numbers.  Results are NumPy arrays in
    ``out_dtype`` and each gradient's dtype, in the memory order of the inputs.
    ``value`` overrides whether the request's value is computed.  For executors
    that split an array themselves (dask chunks): ``threads`` overrides
    :func:`smoothl1.set_num_threads`, ``norm`` the gradient's factor (``1/N`` of the whole
    array), and ``raw`` returns a reduction's float64 :class:`Totals` instead
    of the value.  ``param``: an array threshold (``call.param == "array"``),
    streamed block by block like the weight.
    """
    req = call.req
    want_value = req.value if value is None else value
    if _fits_one_block(call, input, target, weight, grad_output, param):
        return _small(call, input, target, weight, grad_output, out_dtype, grads, want_value,
                      norm, raw, param)
    loss_shape = _ints(call.loss_shape)
    n = math.prod(loss_shape)
    if n == 0:
        return None  # the general path knows what empty arrays give
    if not _allocator_settled:
        _settle_allocator()
    f = call.formula
    work: type = np.float64 if f.bits == 64 else np.float32
    ndim = len(loss_shape)
    if threads is None:
        threads = _threads_for(n)
    reduced = call.reduced_axes
    aligned = [_aligned(a.bits if isinstance(a, BF16) else a, ndim, repeats_as_ones=False)
               for a in (input, target)]
    w_aligned = None
    if weight is not None and not isinstance(weight, (int, float)):
        w_aligned = _aligned(weight.bits if isinstance(weight, BF16) else weight, ndim)
    prep = p_aligned = None
    if param is not None:
        p_aligned = _aligned(param.bits if isinstance(param, BF16) else param, ndim)
        prep = _prepare_threshold(f.kind, f.bits, param, p_aligned, n, work,
                                  bool(grads or req.reduction != "none"),
                                  not grads and want_value and req.reduction != "none",
                                  want_value and req.reduction == "none")
    go_aligned = None
    if grad_output is not None and not isinstance(grad_output, (int, float)):
        g = grad_output.bits if isinstance(grad_output, BF16) else grad_output
        if req.reduction != "none":  # a cotangent per result: broadcast over what it reduces
            g = np.broadcast_to(g, _ints(call.out_shape)).reshape(_ints(call.kept_shape))
        go_aligned = _aligned(g, ndim)
    factor: Any = norm  # the gradient's factor: a number, or one per output
    if factor is None and grads:
        factor = 1.0
        if req.reduction == "mean":
            factor = _formulas.mean_scale(call.count or 1)
        elif req.reduction == "weighted_mean":
            factor = _safe_inverse(_total_weight(call, weight, w_aligned), work)

    def operands(lay: _Layout) -> dict[str, Any]:
        def op(a: Any, al: Any) -> Any:
            if al is None:
                return a
            return _Operand(BF16(al) if isinstance(a, BF16) else al, lay, work)

        return {"x": op(input, aligned[0]), "y": op(target, aligned[1]),
                "weight": op(weight, w_aligned),
                "norm": (factor if factor is None or isinstance(factor, float)
                         else _Operand(_aligned(factor, ndim), lay, work)),
                "grad_output": op(grad_output, go_aligned),
                "threshold": None if prep is None else _threshold_operands(
                    prep, param, lay, work)}

    elementwise = [gs for gs in grads if gs.shape == loss_shape]
    summed = [gs for gs in grads if gs.shape != loss_shape]
    # every array operand decides which axes merge; input and target lead the order
    order = aligned + [a for a in (w_aligned, go_aligned, p_aligned) if a is not None]
    if not (factor is None or isinstance(factor, float)):
        order.append(_aligned(factor, ndim))
    result: Any = None
    results: dict[int, Any] = {}
    itemsize = 8 if work is np.float64 else 4
    if want_value or elementwise:
        reducing = want_value and req.reduction != "none"
        lay = _layout(loss_shape, reduced if reducing else (), order)
        outs = [(_empty(lay.shape, gs.dtype), gs.sign) for gs in elementwise]
        none_value = (_empty(lay.shape, out_dtype) if want_value and req.reduction == "none"
                      else None)
        job = _Job(f, none_value=none_value, reduce=reducing,
                   reduce_weight=req.reduction == "weighted_mean" and w_aligned is not None,
                   grads=tuple(outs), grad_sum=False, **operands(lay))
        sink = None
        if reducing:
            finish = None if raw else _value_finisher(call, weight, work)
            sink = _Sink(math.prod(lay.kept), finish, out_dtype, job.reduce_weight)
        _run_pass(job, lay, _block_elements(job, itemsize, threads), threads, sink)
        if none_value is not None:
            result = _logical(none_value, lay, loss_shape)
        elif sink is not None and raw:  # per output, the reduced axes kept as length 1
            kept1 = _ints(call.kept_shape)
            result = Totals(_logical_kept(sink.loss, lay, kept1),
                            None if sink.weight is None else
                            _logical_kept(sink.weight, lay, kept1))
        elif sink is not None:
            result = _logical_kept(sink.out, lay, _ints(call.out_shape))
        for gs, (out, _) in zip(elementwise, outs, strict=True):
            results[id(gs)] = _logical(out, lay, loss_shape)
    for gs in summed:
        mine = aligned[0 if gs.sign > 0 else 1]
        sums = tuple(i for i in range(ndim) if mine.shape[i] == 1 and loss_shape[i] != 1)
        lay = _layout(loss_shape, sums, order)
        job = _Job(f, none_value=None, reduce=False, reduce_weight=False, grads=(),
                   grad_sum=True, **operands(lay))
        sink = _Sink(math.prod(lay.kept), partial(_signed, gs.sign), gs.dtype, False)
        _run_pass(job, lay, _block_elements(job, itemsize, threads), threads, sink)
        shape = tuple(1 if i in sums else n for i, n in enumerate(loss_shape))
        grad = _logical_kept(sink.out, lay, shape)
        results[id(gs)] = grad.reshape(gs.shape)
    return result, [results[id(gs)] for gs in grads]


#: A threshold at least this many times smaller than the loss is checked (and
#: negated, for the clamp) once per call instead of block by block.
_CHECK_ONCE = 16

_PLAIN = (np.dtype(np.float32), np.dtype(np.float64))
#: Units the small-call lane takes as one block: within one group (so that the sum
#: is added up in the same order as in blocks) and within the memory budget.
_SMALL_UNITS = 4


def _fits_one_block(call: Call, input: Any, target: Any, weight: Any, grad_output: Any,
                    param: Any = None) -> bool:
    """Whether a call goes to the small-call lane (:func:`_small`).

    Two C-contiguous arrays of one shape and float dtype, at most
    :data:`_SMALL_UNITS` units, reduced over everything (or not at all); the
    weight and an array threshold, if any, numbers or arrays of that dtype
    (which validation has seen broadcast to that shape); the cotangent a number
    or a 0-d array of that dtype (or none).  A sum with a weight or threshold
    of another shape or layout keeps to one unit: the blocks' layout does not
    merge such an operand's axes, and one unit is added up in C order there too.
    """
    if not (type(input) is np.ndarray and type(target) is np.ndarray
            and input.dtype in _PLAIN and target.dtype == input.dtype
            and input.shape == target.shape
            and input.flags.c_contiguous and target.flags.c_contiguous
            and (grad_output is None or isinstance(grad_output, (int, float))
                 or (type(grad_output) is np.ndarray and grad_output.ndim == 0
                     and grad_output.dtype == input.dtype))
            and (call.axis is None or len(call.axis) == input.ndim
                 or call.req.reduction == "none")):
        return False
    limit = ROW * min(GROUP, _SMALL_UNITS)
    for a in (weight, param):
        if a is None or isinstance(a, (int, float)):
            continue
        if type(a) is not np.ndarray or a.dtype != input.dtype:
            return False  # (the blocks cast other dtypes as they read them)
        if (a.shape != input.shape or not a.flags.c_contiguous) and call.req.reduction != "none":
            limit = ROW
    return 0 < input.size <= limit


def _small(call: Call, input: np.ndarray, target: np.ndarray, weight: Any, grad_output: Any,
           out_dtype: Out, grads: tuple[GradSpec, ...], want_value: bool, norm: float | None,
           raw: bool, param: np.ndarray | None = None) -> tuple[Any, list[Any]]:
    """:func:`run` as one block, with the fewest calls: the same numbers.

    (The blocks' layout merges such arrays into one axis, or for a smaller
    weight or threshold keeps them to one unit, and a unit is added up
    pairwise in C order: exactly what this does.  An array threshold is
    prepared as the blocks prepare it.)
    """
    req = call.req
    reducing = want_value and req.reduction != "none"
    f = call.formula
    if (not raw and weight is None and param is None and norm is None and input.size <= ROW
            and req.reduction in ("mean", "sum") and (reducing or (grads and not want_value))):
        # the commonest small calls, a plain mean or sum and/or its gradient: the steps of
        # _compute, inline (the gradient in torch's order: norm * derivative * grad_output)
        xp = _XP
        with np.errstate(all="ignore"):
            d = input - target
            c = _formulas.clamp(xp, f, d)
            slope = _formulas.slope(xp, f, d, c)
            value: Any = None
            if reducing:
                losses = _formulas.factored_loss(xp, f, d, c, slope)
                total = np.add.reduce(losses, axis=None, dtype=np.float64).item()
                if req.reduction == "mean":
                    total /= call.count or 1
                value = np.array(total, dtype=out_dtype).reshape(_ints(call.out_shape))
            found = []
            if grads:
                scale = _formulas.mean_scale(call.count or 1) if req.reduction == "mean" else 1.0
                g = slope * scale if scale != 1.0 else slope
                if grad_output is not None:
                    g = g * grad_output
                found = [g if gs.sign > 0 else -g for gs in grads]
            return value, found
    work = input.dtype.type
    array_weight = not (weight is None or isinstance(weight, (int, float)))
    outs = tuple((np.empty(input.shape, gs.dtype), gs.sign) for gs in grads)
    factor: Any = norm
    if factor is None and grads:
        factor = 1.0
        if req.reduction == "mean":
            factor = _formulas.mean_scale(call.count or 1)
        elif req.reduction == "weighted_mean":
            factor = _safe_inverse(_total_weight(
                call, weight, _aligned(weight, input.ndim) if array_weight else None), work)
    none_value = np.empty(input.shape, out_dtype) if want_value and not reducing else None
    reduce_weight = req.reduction == "weighted_mean" and array_weight
    job = _Job(f, None, None, weight, none_value, reducing,  # type: ignore[arg-type]
               reduce_weight, factor, grad_output, outs, False)
    threshold: tuple[Any, ...] = ()
    if param is not None:  # (the values are not read where there is an inverse)
        prep = _prepare_threshold(f.kind, f.bits, param, param, input.size, work,
                                  bool(grads or req.reduction != "none"),
                                  not grads and reducing, want_value and not reducing,
                                  input.shape if param.shape != input.shape
                                  and input.size <= ROW else None)
        threshold = (prep, prep.values, prep.aux, prep.inv, prep.twice)
    with np.errstate(all="ignore"):
        total, weights = _compute(job, (), input - target, weight, factor, grad_output,
                                  *threshold)
        result: Any = none_value
        if reducing:
            n = input.size
            totals = _small_totals(total, n)
            w_totals = None if weights is None else _small_totals(weights, n)
            if raw:
                kept = _ints(call.kept_shape)
                result = Totals(totals.reshape(kept),
                                None if w_totals is None else w_totals.reshape(kept))
            elif req.reduction in ("mean", "sum"):  # torch: the sum, then / N, rounded once
                value = totals.item() / (call.count or 1 if req.reduction == "mean" else 1)
                result = np.array(value, dtype=out_dtype).reshape(_ints(call.out_shape))
            else:
                result = np.empty(_ints(call.out_shape), out_dtype)
                result[...] = _value_finisher(call, weight, work)(totals, w_totals)
    return result, [out for out, _ in outs]


def _small_totals(t: np.ndarray, n: int) -> np.ndarray:
    """The float64 total ``(1,)`` of a small call's ``n`` losses (or weights), as blocks add it."""
    if n <= ROW:  # one unit (C order: reshape copies a broadcast weight into it)
        return np.add.reduce(t.reshape(1, -1), axis=1, dtype=np.float64)  # type: ignore[no-any-return]
    return _fold([_unit_sums(t, 1, 1, n, 1, ROW)])  # units of ROW, one group


def _signed(sign: int, total: Any, _: Any) -> Any:
    return total * sign


def _value_finisher(call: Call, weight: Any, work: type) -> Callable[[Any, Any], Any]:
    """From float64 totals per output to the result: a sum, a mean or a weighted mean."""
    reduction = call.req.reduction
    if reduction == "mean":  # torch: the sum, then / N
        count = call.count or 1
        return lambda total, _: total / count
    if reduction == "weighted_mean":
        # a number for no weight or a number; array weights are summed in the pass
        divisor = _total_weight(call, weight, None) if _is_scalar(weight) else None

        def weighted(total: Any, weights: Any) -> Any:
            d = divisor if weights is None else weights
            with np.errstate(all="ignore"):
                return np.where(d == 0, np.nan, total / d)

        return weighted
    return lambda total, _: total


def evaluate(call: Call, input: np.ndarray, target: np.ndarray, weight: Any,
             grad_output: Any, param: Any = None) -> tuple[Any, Any] | None:
    """``(loss, grad)`` of NumPy arrays as :func:`smoothl1._core.evaluate` gives them.

    ``None`` (the caller then takes the general path) for arrays this module
    does not read as they are, and for empty ones.
    """
    if param is not None and not accepts(param):
        return None
    if not (accepts(weight) or weight is None or isinstance(weight, (int, float))):
        return None
    if not (accepts(grad_output) or grad_output is None or isinstance(grad_output, (int, float))):
        return None
    dtype = input.dtype
    if not (target.dtype == dtype and dtype.isnative):
        dtype = _native(np.result_type(input, target))
    grads = (GradSpec(1, input.shape, _native(input.dtype)),) if call.req.grad else ()
    out = run(call, input, target, weight, grad_output, out_dtype=dtype, grads=grads,
              param=param)
    if out is None:
        return None
    value, found = out
    if value is not None and value.ndim == 0:
        value = np.asarray(value)
    return value, (found[0] if found else None)
