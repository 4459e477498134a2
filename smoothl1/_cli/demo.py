"""The demo behind ``python -m smoothl1``: the same data through every installed backend."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .._compat import Array
from .._functional import smooth_l1_value_and_grad
from ..testing._backends import LIBRARIES, Library, library

__all__ = ["Row", "reference", "run_demo"]


@dataclass
class Row:
    """One line of the demo table."""

    backend: str
    device: str
    dtype: str
    loss: float
    loss_error: float  # relative, against the float64 reference
    grad_error: float  # max absolute, against the float64 reference, in units of 1/N
    millis: float  # median wall time of one value_and_grad call


@dataclass
class Backend:
    """How the demo moves data into one library and back, and waits for results."""

    name: str
    to_backend: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    wait: Callable[[Any], Any] = lambda out: out


def _backends() -> Iterator[Backend]:
    for lib in LIBRARIES:
        for device, reason in lib.targets():
            if not reason:
                yield Backend(lib.name, partial(_moved, lib, device), lib.to_numpy, lib.sync)


def _moved(lib: Library, device: Any, a: np.ndarray) -> Any:
    return lib.from_numpy(a, device)


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Regression-like data: targets, predictions with noise and 5% gross outliers."""
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(n).astype(np.float32)
    noise = 0.3 * rng.standard_normal(n)
    outliers = rng.random(n) < 0.05
    noise[outliers] = rng.normal(0.0, 8.0, outliers.sum())
    return (target + noise).astype(np.float32), target


def reference(x: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, np.ndarray]:
    """The float64 textbook formula, written independently of smoothl1's code."""
    d = x.astype(np.float64) - y.astype(np.float64)
    z = np.abs(d)
    loss = np.where(z < beta, 0.5 * z**2 / beta, z - 0.5 * beta).mean()
    grad = np.where(z < beta, d / beta, np.sign(d)) / d.size
    return float(loss), grad


def _device(arr: Array) -> str:
    import array_api_compat

    name = str(array_api_compat.device(arr))
    # a device without a name of its own (ndonnx's) prints as "<... object at 0x...>"
    return "default" if " object at 0x" in name else name


def run_demo(n: int = 1_000_000, beta: float = 1.0, repeats: int = 7) -> list[Row]:
    """Run ``smooth_l1_value_and_grad`` on every installed backend and compare."""
    x, y = make_data(n)
    ref_loss, ref_grad = reference(x, y, beta)
    rows = []
    for b in _backends():
        xb, yb = b.to_backend(x), b.to_backend(y)
        times = []
        for _ in range(repeats + 1):  # the first call warms caches and compilers up
            start = time.perf_counter()
            out = smooth_l1_value_and_grad(xb, yb, beta)
            b.wait(out)
            times.append(time.perf_counter() - start)
        loss, grad = (b.to_numpy(o) for o in out)
        rows.append(Row(
            backend=b.name,
            device=_device(xb),
            dtype=str(grad.dtype),
            loss=float(loss),
            loss_error=abs(float(loss) - ref_loss) / abs(ref_loss),
            grad_error=float(np.max(np.abs(grad - ref_grad))) * n,
            millis=statistics.median(times[1:]) * 1e3,
        ))
    if not library("torch").missing():
        rows.append(_torch_reference_row(x, y, beta, ref_loss, ref_grad, repeats))
    return rows


def _torch_reference_row(
    x: np.ndarray, y: np.ndarray, beta: float, ref_loss: float, ref_grad: np.ndarray,
    repeats: int,
) -> Row:
    """Torch's own F.smooth_l1_loss forward and backward, for comparison."""
    import torch

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        leaf = tx.detach().requires_grad_()
        loss = torch.nn.functional.smooth_l1_loss(leaf, ty, beta=beta)
        loss.backward()
        times.append(time.perf_counter() - start)
    assert leaf.grad is not None
    grad = leaf.grad.numpy()
    value = float(loss.detach())
    return Row(
        backend="torch F.smooth_l1_loss (for comparison)",
        device="cpu",
        dtype=str(grad.dtype),
        loss=value,
        loss_error=abs(value - ref_loss) / abs(ref_loss),
        grad_error=float(np.max(np.abs(grad - ref_grad))) * x.size,
        millis=statistics.median(times[1:]) * 1e3,
    )


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    head = ("| backend | device | dtype | loss | rel. loss error | max grad error (×1/N) "
            "| time (ms, median) |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        lines.append(f"| {r.backend} | {r.device} | {r.dtype} | {r.loss:.9g} | "
                     f"{r.loss_error:.1e} | {r.grad_error:.1e} | {r.millis:.2f} |")
    return "\n".join(lines)
