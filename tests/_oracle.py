"""References: torch 2.13 (the behaviour oracle), float64 math and exact rational arithmetic.

torch is optional.  Without it, a test that asks for torch (its functions, or
:func:`torch_value_and_grads`) is skipped *when it asks*, with the reason; the
module still imports, so every test of the same file that needs no torch runs,
and :func:`value_and_grads` answers from float64 math instead.
"""

from __future__ import annotations

import importlib.util
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import pytest


class _Missing:
    """Stands in for torch where it is not installed: any use skips the test using it."""

    def __getattr__(self, name: str) -> Any:
        pytest.skip("torch is not installed, and this test's oracle is torch")


HAVE_TORCH = importlib.util.find_spec("torch") is not None
if HAVE_TORCH:
    import torch
else:
    torch = _Missing()  # type: ignore[assignment]


def torch_value_and_grads(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    param: float,
    reduction: str,
    grad_output: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's loss and its autograd gradients for input and target, as NumPy."""
    F = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tensor(y, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broadcasting warning is tested on its own
        if kind == "huber":
            out = F.huber_loss(tx, ty, delta=param, reduction=reduction)
        else:
            out = F.smooth_l1_loss(tx, ty, beta=param, reduction=reduction)
    g = torch.ones_like(out) if grad_output is None else torch.tensor(grad_output)
    gx, gy = torch.autograd.grad(out, (tx, ty), g)
    return out.detach().numpy(), gx.numpy(), gy.numpy()


def exact_loss(kind: str, d: float, param: float) -> float:
    """The loss of one difference ``d`` in exact rational arithmetic, rounded once to float."""
    if np.isnan(d):
        return float("nan")
    z = abs(Fraction(d)) if np.isfinite(d) else None
    if z is None or param == float("inf"):
        return _limit(kind, abs(d), param)
    p = Fraction(param)
    if kind == "smooth_l1":
        if p == 0:
            return float(z)
        return float(z * z / 2 / p) if z < p else float(z - p / 2)
    return float(z * z / 2) if z < p else float(p * (z - p / 2))


def _limit(kind: str, z: float, param: float) -> float:
    # infinite |d| or infinite parameter: follow IEEE arithmetic as torch does
    with np.errstate(all="ignore"):
        if z < param:
            return 0.0 if kind == "smooth_l1" else float(0.5 * np.float64(z) * z)
        if kind == "smooth_l1":
            return float(np.float64(z) - 0.5 * param)
        return float(np.float64(param) * (z - 0.5 * param))


def exact_losses(kind: str, d: np.ndarray, param: float, dtype: Any) -> np.ndarray:
    """Elementwise exact losses of the differences ``d``, rounded to ``dtype``."""
    flat = [exact_loss(kind, float(v), param) for v in np.ravel(d)]
    with np.errstate(over="ignore"):
        return np.asarray(flat, dtype=np.float64).astype(dtype).reshape(np.shape(d))


def float64_value_and_grads(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    param: float,
    reduction: str,
    grad_output: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loss and its gradients from the math, in float64, rounded once to the result dtype.

    Written from the definitions (not from smoothl1's code): the loss exactly
    (:func:`exact_losses`), the derivative ``d/beta`` inside, ``sign(d)`` outside
    (Huber: ``clip(d, -delta, delta)``), divided by the element count for a mean.
    """
    dtype = np.result_type(x, y)
    xb, yb = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    with np.errstate(all="ignore"):
        d = xb - yb
        loss = exact_losses(kind, d, param, np.float64)
        if kind == "huber":
            slope = np.clip(d, -param, param)
        elif param == 0:
            slope = np.sign(d)
        else:
            slope = np.where(np.abs(d) < param, d / param, np.sign(d))
        n = d.size if reduction == "mean" else 1
        out = {"none": loss, "sum": loss.sum(), "mean": loss.sum() / n if n else np.nan}[reduction]
        g = np.ones(np.shape(out)) if grad_output is None else np.asarray(grad_output, np.float64)
        elementwise = slope * np.broadcast_to(g, d.shape) / n
    return (np.asarray(out).astype(dtype), _sum_to(elementwise, np.shape(x)).astype(dtype),
            (-_sum_to(elementwise, np.shape(y))).astype(dtype))


def _sum_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    lead = a.ndim - len(shape)
    a = a.sum(axis=tuple(range(lead))) if lead else a
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
    return a.sum(axis=axes, keepdims=True) if axes else a


def value_and_grads(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    param: float,
    reduction: str,
    grad_output: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's numbers where torch is installed, else float64 math's (for tolerant comparisons)."""
    if HAVE_TORCH:
        return torch_value_and_grads(kind, x, y, param, reduction, grad_output)
    return float64_value_and_grads(kind, x, y, param, reduction, grad_output)
