"""Helpers for lazy arrays, shared by the test modules (no test module imports another)."""

from __future__ import annotations

from typing import Any


def leaves(out: Any) -> tuple[Any, ...]:
    """A public function's result as a tuple (value_and_grad gives two arrays)."""
    return out if isinstance(out, tuple) else (out,)


def no_compute(*args: Any, **kwargs: Any) -> Any:
    """A dask scheduler that fails the test on any compute (``dask.config.set(scheduler=...)``)."""
    raise AssertionError("smoothl1 triggered a dask compute while building the graph")


def task_names(a: Any) -> set[str]:
    """The names of the tasks in a dask array's graph (without their tokens)."""
    return {(k[0] if isinstance(k, tuple) else k).rsplit("-", 1)[0]
            for k in dict(a.__dask_graph__())}
