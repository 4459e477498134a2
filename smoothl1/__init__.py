"""smoothl1: the Smooth L1 and Huber losses, exactly as PyTorch computes them, on any array library.

One implementation written against the Python array API standard and dispatched
through array-api-compat runs on NumPy, CuPy, torch, JAX, dask and
array-api-strict arrays, giving ``torch.nn.functional.smooth_l1_loss``'s numbers
and an analytic gradient.

Importing smoothl1 imports no array framework besides NumPy.
"""

from __future__ import annotations

from ._functional import (
    huber,
    huber_grad,
    huber_value_and_grad,
    smooth_l1,
    smooth_l1_grad,
    smooth_l1_value_and_grad,
)
from ._loss_classes import HuberLoss, SmoothL1Loss
from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "HuberLoss",
    "SmoothL1Loss",
    "__version__",
    "get_num_threads",
    "huber",
    "huber_grad",
    "huber_value_and_grad",
    "set_num_threads",
    "smooth_l1",
    "smooth_l1_grad",
    "smooth_l1_value_and_grad",
]
