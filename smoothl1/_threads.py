"""How many threads the CPU executor uses, and the pool that runs them.

The public control is :func:`set_num_threads` / :func:`get_num_threads`.  The
pool obeys three rules, each because the alternative hangs or fails a user's
call:

* **After ``fork``** the child inherits the pool object but none of its
  threads, so a submitted task would wait forever.  :func:`os.register_at_fork`
  drops the pool (and makes a fresh lock: another thread may have held it at
  the fork) in the child; the child's first parallel call makes its own pool.
* **Reconfiguring while other threads compute** replaces the pool; a caller
  still holding the old one, whose ``submit`` now raises, runs its remaining
  parts in its own thread.
* **At interpreter exit** (``atexit`` handlers, daemon threads) the standard
  library refuses new work for every pool; the parts run in the caller's
  thread the same way.

A call therefore never fails because of the pool: at worst it runs serially.
Which thread computes a part never changes a result's bits (the executor's
sums are fixed by shapes and layout alone).
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["get_num_threads", "map_parts", "set_num_threads"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
#: One by default.  NumPy releases the GIL only inside each call, and a block's
#: calls last a few microseconds (blocks must fit the memory budget and the
#: cache), so threads spend more time handing the GIL over than they save:
#: measured on the project's machines, two threads were 1.2-2x *slower* than one
#: for every call form (``docs/performance.md``).
_threads = 1


def set_num_threads(n: int) -> None:
    """Set the number of threads smoothl1's CPU executor uses for large NumPy arrays.

    Parameters
    ----------
    n : int
        At least 1.  ``1`` (the default) computes in the calling thread.  More
        threads split a call of at least 2**18 elements into ``n`` parts on a
        private pool; whether that is faster depends on how quickly Python
        hands the GIL between threads on your machine, so measure it
        (``python benchmarks/run.py``).  Results are bit-identical for every
        ``n``.

    Raises
    ------
    TypeError
        If ``n`` is not an integer (``bool`` included).
    ValueError
        If ``n`` is less than 1.

    Notes
    -----
    The setting is process-wide and safe to change while other threads
    compute: calls in flight finish on the pool they started with, or in their
    own thread.  A process forked from this one starts its own pool on first
    use.  This does not change the threads of NumPy, torch or JAX themselves.

    Examples
    --------
    >>> import smoothl1
    >>> smoothl1.set_num_threads(2)
    >>> smoothl1.get_num_threads()
    2
    >>> smoothl1.set_num_threads(1)
    """
    try:
        if isinstance(n, bool):  # an int to Python, never meant as a count
            raise TypeError
        n = operator.index(n)  # int, NumPy integers
    except TypeError:
        raise TypeError(
            f"set_num_threads: n must be an int, got {type(n).__name__} {n!r}") from None
    if n < 1:
        raise ValueError(f"set_num_threads: n must be at least 1, got {n}")
    global _threads, _pool
    with _lock:
        _threads = n
        old, _pool = _pool, None
    if old is not None:
        # Not waited for: its threads finish the parts already handed to them.
        old.shutdown(wait=False)


def get_num_threads() -> int:
    """The number of threads smoothl1's CPU executor uses (see :func:`set_num_threads`)."""
    return _threads


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            old, _pool = _pool, ThreadPoolExecutor(max_workers=n, thread_name_prefix="smoothl1")
            _pool_size = n
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def map_parts(fn: Callable[..., Any], parts: Sequence[tuple[Any, ...]], threads: int) -> list[Any]:
    """``[fn(*part) for part in parts]``, one part per pool thread where ``threads > 1``."""
    if threads <= 1 or len(parts) <= 1:
        return [fn(*p) for p in parts]
    pool = _executor(threads)
    futures: list[Future[Any]] = []
    for i, part in enumerate(parts):
        try:
            futures.append(pool.submit(fn, *part))
        except RuntimeError:
            # The pool was replaced (set_num_threads) or the interpreter is
            # exiting: the rest runs here.  Parts already submitted still run.
            return [f.result() for f in futures] + [fn(*p) for p in parts[i:]]
    return [f.result() for f in futures]


def _after_fork_in_child() -> None:
    global _lock, _pool, _pool_size
    _lock = threading.Lock()
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_after_fork_in_child)
