"""Robust regression in pure NumPy: a line through data with outliers, Smooth L1 vs least squares.

Gradient descent on the mean Smooth L1 loss of the residuals, with
``smoothl1.smooth_l1_value_and_grad`` giving the loss and its gradient with
respect to the predictions in one call (no torch, no JAX, no autodiff: the
chain rule to the line's slope and intercept is one matrix product).  Least
squares is pulled towards the outliers; Smooth L1 is not.

Run::

    python examples/robust_regression.py        # prints both fits, writes robust_regression.png
    python examples/robust_regression.py --points 200 --figure fit.svg
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import smoothl1


def make_data(points: int, outliers: float = 0.15, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``y = 2 x + 1`` with small noise, and a fraction of points thrown far above the line."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, points)
    y = 2.0 * x + 1.0 + rng.normal(0.0, 0.5, points)
    bad = rng.random(points) < outliers
    y[bad] += rng.uniform(10.0, 30.0, bad.sum())
    return x, y, bad


def fit_smooth_l1(x: np.ndarray, y: np.ndarray, beta: float = 1.0, steps: int = 2000,
                  lr: float = 0.05) -> tuple[np.ndarray, list[float]]:
    """``[slope, intercept]`` minimising the mean Smooth L1 loss, by gradient descent."""
    X = np.stack([x, np.ones_like(x)], axis=1)  # predictions are X @ [slope, intercept]
    params = np.zeros(2)
    history = []
    for _ in range(steps):
        # the loss and its gradient with respect to the predictions, in one call
        loss, grad_pred = smoothl1.smooth_l1_value_and_grad(X @ params, y, beta=beta)
        params -= lr * (X.T @ grad_pred)  # chain rule: d loss / d params
        history.append(float(loss))
    return params, history


def fit_least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[slope, intercept]`` of ordinary least squares."""
    X = np.stack([x, np.ones_like(x)], axis=1)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def plot(x: np.ndarray, y: np.ndarray, bad: np.ndarray, robust: np.ndarray,
         lsq: np.ndarray, history: list[float], path: str | None = None):
    """The data, both fitted lines and the loss curve (returns the figure; saves it if ``path``)."""
    import matplotlib.pyplot as plt

    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained",
                                      gridspec_kw={"width_ratios": [3, 2]})
    ax.scatter(x[~bad], y[~bad], s=10, color="0.4", label="data")
    ax.scatter(x[bad], y[bad], s=14, color="tab:red", marker="x", label="outliers")
    grid = np.linspace(x.min(), x.max(), 2)
    ax.plot(grid, 2 * grid + 1, color="black", linestyle=":", label="true line y = 2x + 1")
    ax.plot(grid, robust[0] * grid + robust[1], color="tab:blue",
            label=f"Smooth L1: y = {robust[0]:.2f}x + {robust[1]:.2f}")
    ax.plot(grid, lsq[0] * grid + lsq[1], color="tab:orange",
            label=f"least squares: y = {lsq[0]:.2f}x + {lsq[1]:.2f}")
    ax.set(xlabel="x", ylabel="y", title="robust regression with outliers")
    ax.legend(fontsize=8)
    ax_loss.plot(np.arange(1, len(history) + 1), history, color="tab:blue")
    ax_loss.set(xlabel="gradient descent step", ylabel="mean Smooth L1 loss", xscale="log",
                title="training")
    ax_loss.grid(alpha=0.3)
    if path:
        fig.savefig(path, dpi=120)
    return fig


def main(argv: list[str] | None = None) -> int:
    """Fit both lines, print them, save the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=400)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--figure", default="robust_regression.png", help="'' for no figure")
    args = p.parse_args(argv)
    x, y, bad = make_data(args.points)
    robust, history = fit_smooth_l1(x, y, steps=args.steps)
    lsq = fit_least_squares(x, y)
    print(f"{args.points} points, {bad.sum()} outliers; true line: y = 2.00x + 1.00")
    print(f"Smooth L1 fit:     y = {robust[0]:.3f}x + {robust[1]:.3f}   "
          f"(loss {history[0]:.3f} -> {history[-1]:.3f})")
    print(f"least squares fit: y = {lsq[0]:.3f}x + {lsq[1]:.3f}")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        plot(x, y, bad, robust, lsq, history, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
