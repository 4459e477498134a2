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


class _Loss(torch.autograd.Function):
    """The loss, with reverse-mode derivatives (the variant used under ``torch.compile``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, req: Request,
    ) -> Any:
        value, _ = evaluate(req, input, target, weight, xp=_XP, warn=False)
        return value

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        input, target, weight, req = inputs
        ctx.save_for_backward(input, target, weight)
        ctx.req = req

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        input, target, weight = ctx.saved_tensors
        g_in, g_tg, g_w = backward(
            ctx.req, input, target, weight, grad_output,
            need=tuple(ctx.needs_input_grad[:3]), xp=_XP,
        )
        return g_in, g_tg, g_w, None


class _LossWithJvp(_Loss):
    """The loss with reverse- and forward-mode derivatives (eager and ``torch.func``)."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _Loss.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0], inputs[1], inputs[2])

    @staticmethod
    def jvp(ctx: Any, input_t: Any, target_t: Any, weight_t: Any, *_: Any) -> Any:
        input, target, weight = ctx.saved_tensors
        _, out = value_and_tangent(ctx.req, input, target, weight, input_t, target_t,
                                   weight_t, xp=_XP)
        return out


def loss(req: Request, input: torch.Tensor, target: torch.Tensor, weight: Any) -> Any:
    """The loss of two torch tensors, differentiable with smoothl1's derivatives."""
    validate(req, input, target, weight, xp=_XP)  # errors and warnings point at the caller
    if weight is not None and not isinstance(weight, torch.Tensor):
        weight = torch.full((), float(weight), dtype=input.dtype, device=input.device)
    fn = _Loss if torch.compiler.is_compiling() else _LossWithJvp
    return fn.apply(input, target, weight, req)  # type: ignore[no-untyped-call]
