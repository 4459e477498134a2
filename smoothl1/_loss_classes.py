"""Loss objects mirroring ``torch.nn.SmoothL1Loss`` and ``torch.nn.HuberLoss``."""

from __future__ import annotations

from typing import Any

from ._functional import (
    huber,
    huber_grad,
    huber_value_and_grad,
    smooth_l1,
    smooth_l1_grad,
    smooth_l1_value_and_grad,
)
from ._namespace import Array
from ._validation import (
    Reduction,
    check_axis_type,
    check_beta,
    check_delta,
    check_keepdims,
    check_reduction,
    legacy_reduction,
)

__all__ = ["HuberLoss", "SmoothL1Loss"]


class SmoothL1Loss:
    """Callable Smooth L1 loss with fixed ``beta`` and ``reduction``.

    Mirrors ``torch.nn.SmoothL1Loss``'s constructor, including torch's deprecated
    ``size_average``/``reduce`` arguments, which, when given, override
    ``reduction`` exactly as torch does (with torch's warning).  Unlike torch,
    the arguments are validated here, at construction.

    Parameters
    ----------
    size_average, reduce : bool, optional
        Deprecated torch arguments; prefer ``reduction``.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
    beta : float, default 1.0

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import SmoothL1Loss
    >>> loss_fn = SmoothL1Loss(beta=0.5)
    >>> loss_fn
    SmoothL1Loss(reduction='mean', beta=0.5)
    >>> loss_fn(np.array([0.25, 2.0]), np.zeros(2))
    array(0.90625)
    """

    def __init__(
        self,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: Reduction = "mean",
        beta: float = 1.0,
        *,
        axis: int | tuple[int, ...] | None = None,
        keepdims: bool = False,
    ) -> None:
        self.reduction: Reduction = check_reduction(
            "SmoothL1Loss", legacy_reduction(size_average, reduce, reduction)
        )
        self.beta: float = check_beta("SmoothL1Loss", beta)
        self.axis = check_axis_type("SmoothL1Loss", axis)
        self.keepdims = check_keepdims("SmoothL1Loss", keepdims)

    def _kw(self, weight: Array | float | None) -> dict[str, Any]:
        return {"weight": weight, "axis": self.axis, "keepdims": self.keepdims}

    def __call__(self, input: Array, target: Array, weight: Array | float | None = None) -> Array:
        """The loss of ``input`` against ``target``; see :func:`smoothl1.smooth_l1`."""
        return smooth_l1(input, target, self.beta, self.reduction, **self._kw(weight))

    def grad(self, input: Array, target: Array, grad_output: Array | float | None = None,
             weight: Array | float | None = None) -> Array:
        """Gradient with respect to ``input``; see :func:`smoothl1.smooth_l1_grad`."""
        return smooth_l1_grad(input, target, self.beta, self.reduction, grad_output,
                              **self._kw(weight))

    def value_and_grad(self, input: Array, target: Array,
                       weight: Array | float | None = None) -> tuple[Array, Array]:
        """Loss and gradient in one pass; see :func:`smoothl1.smooth_l1_value_and_grad`."""
        return smooth_l1_value_and_grad(input, target, self.beta, self.reduction,
                                        **self._kw(weight))

    def _key(self) -> tuple[Any, ...]:
        return (self.reduction, self.beta, self.axis, self.keepdims)

    def __repr__(self) -> str:
        extra = "" if self.axis is None else f", axis={self.axis!r}"
        extra += ", keepdims=True" if self.keepdims else ""
        return f"SmoothL1Loss(reduction={self.reduction!r}, beta={self.beta!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SmoothL1Loss):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((SmoothL1Loss, *self._key()))


class HuberLoss:
    """Callable Huber loss with fixed ``delta`` and ``reduction``.

    Mirrors ``torch.nn.HuberLoss(reduction='mean', delta=1.0)``.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1 import HuberLoss
    >>> loss_fn = HuberLoss(reduction="sum", delta=2.0)
    >>> loss_fn
    HuberLoss(reduction='sum', delta=2.0)
    >>> loss_fn(np.array([0.5, 3.0]), np.zeros(2))
    array(4.125)
    """

    def __init__(
        self,
        reduction: Reduction = "mean",
        delta: float = 1.0,
        *,
        axis: int | tuple[int, ...] | None = None,
        keepdims: bool = False,
    ) -> None:
        self.reduction: Reduction = check_reduction("HuberLoss", reduction)
        self.delta: float = check_delta("HuberLoss", delta)
        self.axis = check_axis_type("HuberLoss", axis)
        self.keepdims = check_keepdims("HuberLoss", keepdims)

    def _kw(self, weight: Array | float | None) -> dict[str, Any]:
        return {"weight": weight, "axis": self.axis, "keepdims": self.keepdims}

    def __call__(self, input: Array, target: Array, weight: Array | float | None = None) -> Array:
        """The loss of ``input`` against ``target``; see :func:`smoothl1.huber`."""
        return huber(input, target, self.delta, self.reduction, **self._kw(weight))

    def grad(self, input: Array, target: Array, grad_output: Array | float | None = None,
             weight: Array | float | None = None) -> Array:
        """Gradient with respect to ``input``; see :func:`smoothl1.huber_grad`."""
        return huber_grad(input, target, self.delta, self.reduction, grad_output,
                          **self._kw(weight))

    def value_and_grad(self, input: Array, target: Array,
                       weight: Array | float | None = None) -> tuple[Array, Array]:
        """Loss and gradient in one pass; see :func:`smoothl1.huber_value_and_grad`."""
        return huber_value_and_grad(input, target, self.delta, self.reduction,
                                    **self._kw(weight))

    def _key(self) -> tuple[Any, ...]:
        return (self.reduction, self.delta, self.axis, self.keepdims)

    def __repr__(self) -> str:
        extra = "" if self.axis is None else f", axis={self.axis!r}"
        extra += ", keepdims=True" if self.keepdims else ""
        return f"HuberLoss(reduction={self.reduction!r}, delta={self.delta!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HuberLoss):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((HuberLoss, *self._key()))
