"""Streaming evaluation of CPU-resident arrays in cache-sized blocks.

An eager library evaluates an expression one operation at a time, and each
operation reads and writes a full-size temporary: the plain formula over two
float32 arrays of 2**24 elements moves about 25 times the 128 MiB that the inputs
occupy, and allocates five 64 MiB temporaries.  This module runs the *same*
array-API formulas (:mod:`smoothl1._formulas`) on blocks of whole rows of
:data:`_ROW` elements, so that every temporary stays in a core's cache and a
reduced loss allocates nothing of the input's size:

- ``'mean'``/``'sum'``: per row the dot products of
  :func:`~smoothl1._formulas.dot_terms`, added up in float64 in a fixed order
  (:class:`_Sums`), so that the value does not depend on blocks or threads;
- the gradient: the slope of the same block (times ``1/N`` and the cotangent),
  written into the output, so ``value_and_grad`` reads the inputs once;
- ``'none'``: :func:`~smoothl1._formulas.loss` per block (torch's bits).

Large arrays are split into one range of whole row groups per core and run on
a thread pool (NumPy releases the GIL inside its loops).

:func:`applies` says whether the arguments qualify: C-contiguous NumPy arrays
of one float32/float64 dtype and one shape, unweighted, reduced over all axes
(or not at all).  torch CPU tensors reach it through zero-copy DLPack views
(:mod:`smoothl1._torch_autograd`).  Anything else (other libraries,
broadcasting, weights, per-axis reductions) takes the general path of
:mod:`smoothl1._core`.  The kernel namespace is NumPy's own (``numpy>=2.1``
implements the standard in its main namespace, with less per-call overhead than
the compat wrapper); results are NumPy arrays.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from . import _formulas
from ._core import Request, formula_for
from ._namespace import numpy_kernel_namespace
from ._validation import check_axis

__all__ = [
    "BLOCK_BYTES", "MEMORY_BUDGET", "PARALLEL_MIN", "applies", "evaluate", "set_threads", "stream",
]

#: Bytes of each operand per block in the caller's thread: a block's handful of
#: temporaries stay in a core's L2 cache.
BLOCK_BYTES = 1 << 16
#: Bytes that all worker threads' block-sized temporaries together may hold
#: (the rest of 1 MiB is left for small objects).
MEMORY_BUDGET = 960 << 10
#: Elements from which the work is split over the cores; below it threads cost
#: more than they save.
PARALLEL_MIN = 1 << 18

_XP = numpy_kernel_namespace()
_REDUCTIONS = ("mean", "sum", "none")
#: Row length of the dot products: OpenBLAS starts threads of its own for a dot
#: product over more than 10000 elements, which would fight with ours.
_ROW = 4096
#: Rows whose terms are added up together (the partial sums kept per thread).
_GROUP = 128
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_threads: int | None = None


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int | None) -> None:
    """Use ``n`` threads for large arrays (``None``: one per available core)."""
    global _threads, _pool
    with _lock:
        _threads = n
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def _thread_count() -> int:
    return _threads if _threads is not None else min(_available_cores(), 8)


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="smoothl1")
            _pool_size = n
        return _pool


def _is_plain(a: object, dtype: object, shape: tuple[int, ...]) -> bool:
    return (type(a) is np.ndarray and a.dtype == dtype and a.shape == shape
            and bool(a.flags.c_contiguous))


def applies(req: Request, input: Any, target: Any, weight: object,
            grad_output: object) -> bool:
    """Whether :func:`evaluate` handles these arguments (plain Python checks only)."""
    if type(input) is not np.ndarray or weight is not None or req.reduction not in _REDUCTIONS:
        return False
    dtype, shape = input.dtype, input.shape
    if dtype not in (np.float32, np.float64) or input.size == 0:
        return False
    if not (bool(input.flags.c_contiguous) and _is_plain(target, dtype, shape)):
        return False
    if req.axis is not None:
        try:
            axes = check_axis(req.func, req.reduction, req.axis, len(shape))
        except ValueError:  # the general path reports it
            return False
        if axes != tuple(range(len(shape))):
            return False
    if grad_output is None or isinstance(grad_output, (int, float)):
        return True
    go_shape = shape if req.reduction == "none" else ()
    return _is_plain(grad_output, dtype, go_shape)


def _ranges(n: int, unit: int, parts: int) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous ranges covering ``range(n)``, cut at multiples of ``unit``.

    (At least one range, possibly empty, so that a tail after ``n`` is run.)
    """
    units = -(-n // unit)
    per = max(1, -(-units // parts))
    return [(i * per * unit, min(n, (i + 1) * per * unit))
            for i in range(parts) if i * per * unit < n] or [(0, 0)]


_FORMULAS: dict[tuple[Request, int], _formulas.Formula] = {}


def _formula(req: Request, bits: int) -> _formulas.Formula:
    """:func:`~smoothl1._core.formula_for`, remembered (rounding beta costs microseconds)."""
    key = (req, bits)
    f = _FORMULAS.get(key)
    if f is None:
        if len(_FORMULAS) > 1024:
            _FORMULAS.clear()
        f = _FORMULAS[key] = formula_for(req, bits)
    return f


def _live_blocks(f: _formulas.Formula, req: Request) -> int:
    """How many block-sized arrays one thread holds at once on this path."""
    if req.value and req.reduction == "none":
        return 8  # the branch selection of ``loss``: |d|, masks, both branches
    slope_copy = f.kind == "smooth_l1" and f.param != 1.0  # s = c / beta
    return 2 + slope_copy + req.grad  # d, c (, s) (, the scaled gradient)


class _Sums:
    """Float64 sums of the dot terms in a fixed order, whatever the blocks and threads.

    The terms come per row of :data:`_ROW` elements (the array's last row may be
    shorter); every :data:`_GROUP` rows, counted from the start of the array, are
    added up pairwise in float64, and the group totals are added up pairwise at
    the end.  Threads work on whole groups.  So the result depends only on the
    data: the same from one thread or two, from the loss or ``value_and_grad``.
    """

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp
        self.sd: list[Any] = []  # this group's row terms so far, (rows,) arrays
        self.sc: list[Any] = []
        self.rows = 0
        self.groups: list[Any] = []  # (2,) float64 totals of finished groups

    def add(self, sd: Any, sc: Any) -> None:
        """Add the row terms of one block: arrays of shape ``(rows,)``."""
        self.sd.append(sd)
        self.sc.append(sc)
        self.rows += sd.shape[0]
        if self.rows >= _GROUP:
            self._fold(_GROUP)

    def _fold(self, rows: int) -> None:
        xp = self.xp
        sd = xp.concat(self.sd) if len(self.sd) > 1 else self.sd[0]
        sc = xp.concat(self.sc) if len(self.sc) > 1 else self.sc[0]
        both = xp.astype(xp.stack([sd[:rows], sc[:rows]]), xp.float64)
        self.groups.append(xp.sum(both, axis=1))
        self.sd, self.sc = ([sd[rows:]], [sc[rows:]]) if sd.shape[0] > rows else ([], [])
        self.rows -= rows
        if self.rows >= _GROUP:
            self._fold(_GROUP)

    def totals(self) -> list[Any]:
        """The group totals, the last (partial) group included."""
        if self.rows:
            self._fold(self.rows)
        return self.groups


def evaluate(req: Request, input: np.ndarray, target: np.ndarray,
             grad_output: object = None) -> tuple[Any, Any]:
    """``(loss, grad)`` as :func:`smoothl1._core.evaluate` gives them, streamed.

    The caller has checked :func:`applies`, which accepts only arguments that
    validation accepts unchanged.
    """
    n = input.size
    norm = 1.0 / n if req.reduction == "mean" and n > 1 else 1.0
    value, grad = stream(req, input, target, grad_output, norm=norm)
    if req.value and req.reduction != "none":
        with np.errstate(all="ignore"):
            value = _XP.astype(value / n if req.reduction == "mean" else value, input.dtype)
        value = _XP.reshape(_XP.asarray(value), (1,) * input.ndim if req.keepdims else ())
    return value, grad


def stream(req: Request, input: np.ndarray, target: np.ndarray, grad_output: object = None,
           *, norm: float = 1.0, threads: int | None = None) -> tuple[Any, Any]:
    """The streamed quantities :func:`evaluate` and other executors build results from.

    Returns ``(loss, grad)``: for ``'mean'`` and ``'sum'`` the loss is the
    *unnormalised* float64 total ``s.d - s.c/2`` (a 0-d array), for ``'none'`` the
    elementwise losses; the gradient is ``norm * slope * grad_output`` in
    torch's order.  ``threads`` overrides :func:`set_threads` (an executor that
    runs blocks in parallel itself, such as dask, passes 1).  The arrays are
    viewed as rows of :data:`_ROW` elements (plus a shorter tail), and blocks
    are whole rows.
    """
    xp = _XP
    dtype = input.dtype
    f = _formula(req, 64 if dtype == np.float64 else 32)
    n = input.size
    if n <= _ROW:
        return _one_row(xp, f, req, input, target, grad_output, norm)
    rows, tail = divmod(n, _ROW)
    reduced = req.reduction != "none"
    sums = req.value and reduced
    go: Any = grad_output
    values = xp.empty(input.shape, dtype=dtype) if req.value and not reduced else None
    grad = xp.empty(input.shape, dtype=dtype) if req.grad else None

    def split(a: Any) -> tuple[Any, Any]:
        """An array of the input's size as (rows, _ROW) and its tail (views)."""
        flat = xp.reshape(a, (-1,))
        return xp.reshape(flat[: rows * _ROW], (rows, _ROW)), flat[rows * _ROW:]

    none: tuple[Any, Any] = (None, None)
    x_parts, y_parts = split(input), split(target)
    v_parts = none if values is None else split(values)
    g_parts = none if grad is None else split(grad)
    go_blocks = isinstance(go, np.ndarray) and go.ndim > 0  # else a number, 0-d or None
    sliced = (x_parts, y_parts, v_parts, g_parts, split(go) if go_blocks else none)

    def block(k: int, r: slice, acc: _Sums) -> None:
        """One block: rows ``r`` of the 2-D views (k = 0), or the tail (k = 1)."""
        x, y, v, g_out, g_in = (
            None if p[k] is None else p[k][r] if k == 0 else p[k] for p in sliced
        )  # type: tuple[Any, Any, Any, Any, Any]
        if not go_blocks:
            g_in = go
        d = x - y
        if v is not None:
            z = xp.abs(d)
            v[...] = _formulas.loss(xp, f, z, _formulas.linear_mask(xp, f, z))
            del z
        if g_out is None and not sums:
            return
        c = _formulas.clamp(xp, f, d)
        s = _formulas.slope(xp, f, d, c)
        if sums:
            sd, sc = _formulas.dot_terms(xp, f, d, c, s)
            if k:  # the tail is one more row
                sd, sc = xp.reshape(sd, (1,)), None if sc is None else xp.reshape(sc, (1,))
            acc.add(sd, xp.zeros_like(sd) if sc is None else sc)
        del d, c  # before the next block's are made: fewer live blocks
        if g_out is not None:  # torch's order: norm * derivative * grad_output
            g = s if norm == 1.0 else norm * s
            del s
            if g_in is not None:
                g *= g_in
            g_out[...] = g

    def run(lo: int, hi: int, step: int) -> list[Any]:
        """Rows ``[lo, hi)`` block by block (and the tail after the last row)."""
        acc = _Sums(xp)
        with np.errstate(all="ignore"):  # per thread; inf/NaN are results here
            for i in range(lo, hi, step):
                block(0, slice(i, min(i + step, hi)), acc)
            if hi == rows and tail:
                block(1, slice(None), acc)
        return acc.totals() if sums else []

    groups = [t for part in _run_all(run, rows, tail, dtype.itemsize, _live_blocks(f, req),
                                     threads)
              for t in part]
    if sums:
        with np.errstate(all="ignore"):
            acc = xp.sum(xp.stack(groups), axis=0)
            return acc[0] - 0.5 * acc[1], grad  # s.d - s.c/2, in float64
    return values, grad


def _one_row(xp: ModuleType, f: _formulas.Formula, req: Request, input: Any, target: Any,
             go: Any, norm: float) -> tuple[Any, Any]:
    """:func:`stream` for at most one row: the same numbers, with the fewest calls."""
    value = grad = None
    with np.errstate(all="ignore"):
        d = input - target
        if req.value and req.reduction == "none":
            z = xp.abs(d)
            value = _formulas.loss(xp, f, z, _formulas.linear_mask(xp, f, z))
        if req.grad or value is None:
            c = _formulas.clamp(xp, f, d)
            s = _formulas.slope(xp, f, d, c)
            if value is None and req.value:
                def flat(a: Any) -> Any:
                    return a if a.ndim == 1 else xp.reshape(a, (-1,))

                sd, sc = _formulas.dot_terms(xp, f, flat(d), None if c is None else flat(c),
                                             flat(s))
                value = xp.astype(sd, xp.float64)
                if sc is not None:  # as _Sums does for one row: s.d - s.c/2 in float64
                    value = value - 0.5 * xp.astype(sc, xp.float64)
            if req.grad:
                grad = s if norm == 1.0 else norm * s
                if go is not None:
                    grad = grad * go
    if input.ndim == 0:  # NumPy gives 0-d results as scalars
        value = None if value is None else xp.asarray(value)
        grad = None if grad is None else xp.asarray(grad)
    return value, grad


def _run_all(run: Callable[[int, int, int], list[Any]], rows: int, tail: int, itemsize: int,
             live: int, threads: int | None = None) -> list[list[Any]]:
    """``run(lo, hi, step)`` over the rows: in the caller's thread, or one range per core.

    In the caller's thread, blocks of :data:`BLOCK_BYTES` per operand.  Pool
    threads take whole groups of rows, in blocks as large as
    :data:`MEMORY_BUDGET` allows for ``live`` block-sized arrays per thread: each
    NumPy call then runs long enough that handing the GIL between threads costs
    little, and (with glibc) a worker's own malloc arena reuses the blocks'
    memory instead of mapping it anew.
    """
    n = rows * _ROW + tail
    if threads is None:
        threads = _thread_count() if n >= PARALLEL_MIN else 1
    if threads <= 1:
        return [run(0, rows, max(1, BLOCK_BYTES // (itemsize * _ROW)))]
    step = max(1, MEMORY_BUDGET // (threads * live * itemsize * _ROW))
    pool = _executor(threads)
    futures = [pool.submit(run, lo, hi, step) for lo, hi in _ranges(rows, _GROUP, threads)]
    return [fut.result() for fut in futures]
