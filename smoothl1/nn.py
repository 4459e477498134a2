r"""torch modules: drop-in replacements for ``torch.nn.SmoothL1Loss`` and ``torch.nn.HuberLoss``.

Training scripts treat a criterion as a module: ``criterion.to(device)``,
``criterion.cuda()``, registering it as a submodule, ``state_dict()``, hooks,
``torch.compile(model_with_criterion)``.  These classes are ``torch.nn.Module``
objects (subclasses of the base class of torch's own losses,
``torch.nn.modules.loss._Loss``), with torch's constructors and attributes
(``reduction``, ``beta``/``delta``), so any of that works, and their forward is
:func:`smoothl1.smooth_l1` / :func:`smoothl1.huber`: torch's numbers, with
smoothl1's exact values where torch's arithmetic is wrong, its analytic
gradient under autograd, and smoothl1's extras (``weight=`` at call time,
``reduction='weighted_mean'``, ``axis``/``keepdims``).

Importing this module imports torch; ``import smoothl1`` does not.  The
framework-neutral loss objects are :class:`smoothl1.SmoothL1Loss` and
:class:`smoothl1.HuberLoss`.

Examples
--------
>>> import torch
>>> import smoothl1.nn
>>> criterion = smoothl1.nn.SmoothL1Loss(beta=0.5)
>>> criterion
SmoothL1Loss()
>>> isinstance(criterion, torch.nn.Module), criterion.state_dict()
(True, OrderedDict())
>>> criterion(torch.tensor([0.25, 2.0]), torch.zeros(2))
tensor(0.9062)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import torch
    from torch.nn.modules.loss import _Loss
except ImportError as e:  # pragma: no cover - tested in a subprocess without torch
    raise ImportError(
        "smoothl1.nn holds torch modules and needs torch: pip install 'smoothl1[torch]' "
        "(the loss functions and smoothl1.SmoothL1Loss work without it)") from e

from ._functional import huber, smooth_l1
from ._validation import check_axis_type, check_beta, check_delta, check_keepdims, check_reduction

__all__ = ["HuberLoss", "SmoothL1Loss"]


class _SmoothL1Base(_Loss):
    """Validation of the arguments smoothl1 adds to torch's (``axis``, ``keepdims``)."""

    def _setup(self, name: str, axis: object, keepdims: object) -> None:
        # torch's _Loss has mapped size_average/reduce (with torch's warning); the
        # reduction is validated now rather than at the first call, as everywhere in smoothl1
        self.reduction = check_reduction(name, self.reduction)
        self.axis = check_axis_type(name, axis)
        self.keepdims = check_keepdims(name, keepdims)


def _threshold(module: torch.nn.Module, name: str, value: object,
               check: Callable[[str, object], float]) -> None:
    """A number (checked now), a buffer, or a parameter (an ``nn.Parameter``)."""
    owner = type(module).__name__
    if isinstance(value, torch.nn.Parameter):
        setattr(module, name, value)  # registered as a parameter by nn.Module
    elif isinstance(value, torch.Tensor):
        module.register_buffer(name, value)
    else:
        setattr(module, name, check(owner, value))


class SmoothL1Loss(_SmoothL1Base):
    r"""``torch.nn.SmoothL1Loss``, computed by :func:`smoothl1.smooth_l1`.

    Parameters
    ----------
    size_average, reduce : bool, optional
        torch's deprecated arguments, mapped to ``reduction`` exactly as torch maps them.
    reduction : {'mean', 'sum', 'none', 'weighted_mean'}, default 'mean'
    beta : float or torch.Tensor, default 1.0
        Where the loss turns from :math:`\tfrac12 d^2/\beta` to :math:`|d| - \tfrac12\beta`.
        A tensor is a threshold per element (per feature, ...): registered as a
        buffer (moved by ``.to()``, saved in ``state_dict()``), or as a parameter
        if it is a ``torch.nn.Parameter`` (learned, with smoothl1's derivative).
    axis : int or tuple of int, optional
        Keyword only: the axes to reduce (default all), as for :func:`smoothl1.smooth_l1`.
    keepdims : bool, default False
        Keyword only.

    Examples
    --------
    >>> import torch
    >>> from smoothl1.nn import SmoothL1Loss
    >>> model = torch.nn.Linear(3, 1)
    >>> model.criterion = SmoothL1Loss()  # a submodule: moved with .to(), listed in modules()
    >>> x = torch.ones(4, 3)
    >>> model.criterion(model(x), torch.zeros(4, 1)).backward()
    >>> model.weight.grad.shape
    torch.Size([1, 3])
    """

    beta: Any

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean", beta: float = 1.0, *,
                 axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> None:
        super().__init__(size_average, reduce, reduction)
        _threshold(self, "beta", beta, check_beta)
        self._setup("SmoothL1Loss", axis, keepdims)

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor | float | None = None) -> torch.Tensor:
        """The loss (see :func:`smoothl1.smooth_l1`), optionally weighted per element."""
        out: torch.Tensor = smooth_l1(input, target, self.beta, self.reduction,  # type: ignore[arg-type]
                                      weight=weight, axis=self.axis, keepdims=self.keepdims)
        return out


class HuberLoss(_SmoothL1Base):
    r"""``torch.nn.HuberLoss``, computed by :func:`smoothl1.huber`.

    Parameters
    ----------
    reduction : {'mean', 'sum', 'none', 'weighted_mean'}, default 'mean'
    delta : float or torch.Tensor, default 1.0
        Where the loss turns from :math:`\tfrac12 d^2` to :math:`\delta(|d| - \tfrac12\delta)`;
        a tensor as ``beta`` of :class:`SmoothL1Loss`.
    axis : int or tuple of int, optional
        Keyword only, as for :func:`smoothl1.huber`.
    keepdims : bool, default False
        Keyword only.
    """

    delta: Any

    def __init__(self, reduction: str = "mean", delta: float = 1.0, *,
                 axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> None:
        super().__init__(reduction=reduction)
        _threshold(self, "delta", delta, check_delta)
        self._setup("HuberLoss", axis, keepdims)

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor | float | None = None) -> torch.Tensor:
        """The loss (see :func:`smoothl1.huber`), optionally weighted per element."""
        out: torch.Tensor = huber(input, target, self.delta, self.reduction,  # type: ignore[arg-type]
                                  weight=weight, axis=self.axis, keepdims=self.keepdims)
        return out
