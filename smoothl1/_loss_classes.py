"""Loss objects mirroring ``torch.nn.SmoothL1Loss`` and ``torch.nn.HuberLoss``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ._compat import Array, describe
from ._functional import (
    huber,
    huber_grad,
    huber_value_and_grad,
    smooth_l1,
    smooth_l1_grad,
    smooth_l1_value_and_grad,
)
from ._request import is_threshold_array
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


class _LossObject:
    """What the loss objects share: calling, gradients, repr, equality."""

    _param_name: ClassVar[str]  # "beta" or "delta"
    _loss: ClassVar[Callable[..., Array]]
    _grad: ClassVar[Callable[..., Array]]
    _value_and_grad: ClassVar[Callable[..., tuple[Array, Array]]]

    reduction: Reduction
    axis: int | tuple[int, ...] | None
    keepdims: bool

    def _setup(self, name: str, reduction: object, axis: object, keepdims: object) -> None:
        self.reduction = check_reduction(name, reduction)
        self.axis = check_axis_type(name, axis)
        self.keepdims = check_keepdims(name, keepdims)

    @property
    def _param(self) -> Any:
        """``beta``/``delta``: a float, or an array (a threshold per element)."""
        return getattr(self, self._param_name)

    def _kw(self, weight: Array | float | None) -> dict[str, Any]:
        return {"weight": weight, "axis": self.axis, "keepdims": self.keepdims}

    def __call__(self, input: Array, target: Array, weight: Array | float | None = None) -> Array:
        """The loss of ``input`` against ``target`` (optionally weighted)."""
        return type(self)._loss(input, target, self._param, self.reduction, **self._kw(weight))

    def grad(self, input: Array, target: Array, grad_output: Array | float | None = None,
             weight: Array | float | None = None) -> Array:
        """Gradient of the loss with respect to ``input``."""
        return type(self)._grad(input, target, self._param, self.reduction, grad_output,
                                **self._kw(weight))

    def value_and_grad(self, input: Array, target: Array,
                       weight: Array | float | None = None) -> tuple[Array, Array]:
        """Loss and gradient with respect to ``input`` in one pass."""
        return type(self)._value_and_grad(input, target, self._param, self.reduction,
                                          **self._kw(weight))

    def _key(self) -> tuple[Any, ...]:
        p = self._param
        # an array threshold is the same only as itself (arrays have no value equality)
        param = ("array", id(p)) if is_threshold_array(p) else p
        return (type(self), self.reduction, param, self.axis, self.keepdims)

    def __repr__(self) -> str:
        extra = "" if self.axis is None else f", axis={self.axis!r}"
        extra += ", keepdims=True" if self.keepdims else ""
        p = self._param
        shown = (f"<{describe(p)} of shape {tuple(p.shape)}>" if is_threshold_array(p)
                 else repr(p))
        return (f"{type(self).__name__}(reduction={self.reduction!r}, "
                f"{self._param_name}={shown}{extra})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _LossObject):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class SmoothL1Loss(_LossObject):
    """Callable Smooth L1 loss with fixed ``beta`` and ``reduction``.

    Mirrors ``torch.nn.SmoothL1Loss``'s constructor, including torch's deprecated
    ``size_average``/``reduce`` arguments, which, when given, override
    ``reduction`` exactly as torch does (with torch's warning).  Unlike torch,
    the arguments are validated here, at construction.  Calls take an optional
    ``weight``; ``axis`` and ``keepdims`` are fixed here (see
    :func:`smoothl1.smooth_l1`).  It takes any library's arrays and is not a
    ``torch.nn.Module``; in torch models use :class:`smoothl1.nn.SmoothL1Loss`.

    Parameters
    ----------
    size_average, reduce : bool, optional
        Deprecated torch arguments; prefer ``reduction``.
    reduction : {'mean', 'sum', 'none', 'weighted_mean'}, default 'mean'
    beta : float or array, default 1.0
        As for :func:`~smoothl1.smooth_l1`: a number (checked now) or a threshold
        array (checked with the inputs at each call).
    axis : int or tuple of int, optional
    keepdims : bool, default False

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

    _param_name = "beta"
    _loss = staticmethod(smooth_l1)
    _grad = staticmethod(smooth_l1_grad)
    _value_and_grad = staticmethod(smooth_l1_value_and_grad)

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
        self._setup("SmoothL1Loss", legacy_reduction(size_average, reduce, reduction), axis,
                    keepdims)
        # a number is checked now; an array with the inputs, at every call
        self.beta: Any = beta if is_threshold_array(beta) else check_beta("SmoothL1Loss", beta)


class HuberLoss(_LossObject):
    """Callable Huber loss with fixed ``delta`` and ``reduction``.

    Mirrors ``torch.nn.HuberLoss(reduction='mean', delta=1.0)``; calls take an
    optional ``weight``, and ``axis``/``keepdims`` are fixed here (see
    :func:`smoothl1.huber`).  In torch models use :class:`smoothl1.nn.HuberLoss`.

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

    _param_name = "delta"
    _loss = staticmethod(huber)
    _grad = staticmethod(huber_grad)
    _value_and_grad = staticmethod(huber_value_and_grad)

    def __init__(
        self,
        reduction: Reduction = "mean",
        delta: float = 1.0,
        *,
        axis: int | tuple[int, ...] | None = None,
        keepdims: bool = False,
    ) -> None:
        self._setup("HuberLoss", reduction, axis, keepdims)
        self.delta: Any = (delta if is_threshold_array(delta)
                           else check_delta("HuberLoss", delta))
