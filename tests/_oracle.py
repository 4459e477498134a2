"""References: torch 2.13 (the behaviour oracle) and exact rational arithmetic."""

from __future__ import annotations

import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_value_and_grads(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    param: float,
    reduction: str,
    grad_output: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's loss and its autograd gradients for input and target, as NumPy."""
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
