"""torch glue: a ``torch.autograd.Function`` whose derivatives are smoothl1's analytic ones.

Reverse mode (``backward``), forward mode (``jvp``), ``torch.func`` transforms
(``setup_context`` style, ``generate_vmap_rule``) and double backward (the backward
is made of differentiable torch ops) all use :mod:`smoothl1._core`.  Dynamo
refuses Functions that define ``jvp``, so under ``torch.compile`` an otherwise
identical Function without it is used.
"""

from __future__ import annotations

from typing import Any

import torch

from ._core import Request, backward, evaluate, validate, value_and_tangent
from ._namespace import torch_namespace

__all__ = ["loss"]

_XP = torch_namespace()


def _request(func: str, kind: str, param: float) -> Request:
    return Request(func, kind, param)  # type: ignore[arg-type]


class _Loss(torch.autograd.Function):
    """The loss, with reverse-mode derivatives (the variant used under ``torch.compile``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        input: torch.Tensor,
        target: torch.Tensor,
        func: str,
        kind: str,
        param: float,
        reduction: str,
    ) -> Any:
        value, _ = evaluate(_request(func, kind, param), input, target, reduction, xp=_XP,
                            warn=False)
        return value

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        input, target, func, kind, param, reduction = inputs
        ctx.save_for_backward(input, target)
        ctx.args = (func, kind, param, reduction)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        input, target = ctx.saved_tensors
        func, kind, param, reduction = ctx.args
        g_in, g_tg = backward(
            _request(func, kind, param), input, target, reduction, grad_output,
            need_input=ctx.needs_input_grad[0], need_target=ctx.needs_input_grad[1], xp=_XP,
        )
        return g_in, g_tg, None, None, None, None


class _LossWithJvp(_Loss):
    """The loss with reverse- and forward-mode derivatives (eager and ``torch.func``)."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _Loss.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0], inputs[1])

    @staticmethod
    def jvp(ctx: Any, input_t: Any, target_t: Any, *_: Any) -> Any:
        input, target = ctx.saved_tensors
        func, kind, param, reduction = ctx.args
        _, out = value_and_tangent(_request(func, kind, param), input, target, reduction,
                                   input_t, target_t, xp=_XP)
        return out


def loss(req: Request, input: torch.Tensor, target: torch.Tensor, reduction: str) -> Any:
    """The loss of two torch tensors, differentiable with smoothl1's derivatives."""
    validate(req, input, target, reduction, xp=_XP)  # errors and warnings point at the caller
    fn = _Loss if torch.compiler.is_compiling() else _LossWithJvp
    return fn.apply(input, target, req.func, req.kind, req.param, reduction)  # type: ignore[no-untyped-call]
