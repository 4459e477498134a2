"""torch glue: a ``torch.autograd.Function`` whose derivatives are smoothl1's analytic ones.

Reverse mode (``backward``), forward mode (``jvp``), ``torch.func`` transforms
(``setup_context`` style, ``generate_vmap_rule``) and double backward (the backward
is made of differentiable torch ops) all use :mod:`smoothl1._core`.  Dynamo
refuses Functions that define ``jvp``, so under ``torch.compile`` an otherwise
identical Function without it is used.

Eagerly, CPU tensors are viewed as NumPy arrays through DLPack (zero-copy) and
evaluated by :mod:`smoothl1._streaming` in cache-sized blocks, where that module
applies; results come back as tensors sharing the NumPy arrays' memory.  Not
under ``torch.compile``, not on other devices, not for tensors DLPack cannot
export (``torch.func`` wrappers), and not for a backward that must itself be
differentiable (``create_graph=True``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch.utils.dlpack import from_dlpack

from . import _streaming
from ._core import Request, backward, evaluate, validate, value_and_tangent
from ._namespace import torch_namespace

__all__ = ["fast_evaluate", "loss"]

_XP = torch_namespace()


def _numpy_view(t: object) -> Any:
    """A zero-copy NumPy view of a CPU tensor (numbers and None pass through), or ``None``."""
    if t is None or isinstance(t, (int, float)):
        return t
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.layout != torch.strided:
        return None
    try:
        return np.from_dlpack(t.detach())
    except (RuntimeError, BufferError, TypeError, ValueError):  # e.g. torch.func wrappers
        return None


def fast_evaluate(req: Request, input: Any, target: Any, weight: object,
                  grad_output: object = None) -> tuple[Any, Any] | None:
    """``(loss, grad)`` of CPU tensors through :mod:`smoothl1._streaming`, or ``None``.

    ``None`` when the streaming path does not apply; the caller then uses the
    general path.  Arguments must have been validated.
    """
    if weight is not None or torch.compiler.is_compiling():
        return None
    x, y = _numpy_view(input), _numpy_view(target)
    if x is None or y is None:
        return None
    go = _numpy_view(grad_output)
    if go is None and grad_output is not None:
        return None
    if not _streaming.applies(req, x, y, None, go):
        return None
    value, grad = _streaming.evaluate(req, x, y, go)
    return (None if value is None else from_dlpack(value),
            None if grad is None else from_dlpack(grad))


class _Loss(torch.autograd.Function):
    """The loss, with reverse-mode derivatives (the variant used under ``torch.compile``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, req: Request,
    ) -> Any:
        fast = fast_evaluate(req, input, target, weight)
        if fast is not None:
            return fast[0]
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
        need = ctx.needs_input_grad
        if not torch.is_grad_enabled() and not need[2]:  # no double backward to support
            req = dataclasses.replace(ctx.req, value=False, grad=True)
            fast = fast_evaluate(req, input, target, weight, grad_output)
            if fast is not None:
                g = fast[1]
                g_tg = (torch.neg(g) if need[0] else g.neg_()) if need[1] else None
                return (g if need[0] else None), g_tg, None, None
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
