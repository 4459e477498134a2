r"""The loss-and-gradient figure: Smooth L1 for several beta beside L1, MSE and Huber.

Drawn with matplotlib (an optional dependency, imported here only) from
smoothl1's own NumPy results, so the picture shows what the library computes.
Used by the demo (``python -m smoothl1`` writes it to a file) and by the
documentation, which draws it at build time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._functional import huber, huber_grad, smooth_l1, smooth_l1_grad

__all__ = ["loss_and_gradient_figure", "save_loss_and_gradient_figure"]


def loss_and_gradient_figure(betas: Sequence[float] = (0.5, 1.0, 2.0), delta: float = 2.0,
                             span: float = 3.0) -> Any:
    """A matplotlib figure: the losses (left) and their derivatives (right) against ``d``.

    Smooth L1 for each ``beta``, L1 (``beta = 0``), half the squared error
    (:math:`d^2/2`, the ``beta -> inf`` shape of ``beta * smooth_l1``) and Huber
    with ``delta``.  Every curve is computed by smoothl1 with
    ``reduction="none"`` (and ``*_grad`` with ``reduction="none"``).
    """
    import matplotlib.pyplot as plt

    d = np.linspace(-span, span, 1201)
    zero = np.zeros_like(d)
    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    grey = {"color": "0.45", "linewidth": 1.2}
    ax_loss.plot(d, smooth_l1(d, zero, 0.0, "none"), linestyle=":", label="L1 (beta = 0)", **grey)
    ax_grad.plot(d, smooth_l1_grad(d, zero, 0.0, "none"), linestyle=":", **grey)
    ax_loss.plot(d, 0.5 * d * d, linestyle="--", label=r"MSE / 2 = $d^2/2$", **grey)
    ax_grad.plot(d, d, linestyle="--", **grey)
    for beta in betas:
        line, = ax_loss.plot(d, smooth_l1(d, zero, beta, "none"),
                             label=f"Smooth L1, beta = {beta:g}")
        ax_grad.plot(d, smooth_l1_grad(d, zero, beta, "none"), color=line.get_color())
        for ax in (ax_loss, ax_grad):  # where the quadratic zone ends
            ax.axvline(beta, color=line.get_color(), alpha=0.25, linewidth=0.8)
            ax.axvline(-beta, color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax_loss.plot(d, huber(d, zero, delta, "none"), color="black", linewidth=1.0,
                 label=f"Huber, delta = {delta:g} (= {delta:g} x Smooth L1, beta = {delta:g})")
    ax_grad.plot(d, huber_grad(d, zero, delta, "none"), color="black", linewidth=1.0)
    ax_loss.set(title="loss", xlabel="d = input - target", ylim=(0, span))
    ax_grad.set(title="derivative with respect to input", xlabel="d = input - target",
                ylim=(-1.15 * max(1.0, delta), 1.15 * max(1.0, delta)))
    for ax in (ax_loss, ax_grad):
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8, loc="upper center")
    return fig


def save_loss_and_gradient_figure(path: str | Path, **kwargs: Any) -> Path:
    """Draw :func:`loss_and_gradient_figure` and write it to ``path`` (PNG, SVG, PDF...)."""
    import matplotlib.pyplot as plt

    fig = loss_and_gradient_figure(**kwargs)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
