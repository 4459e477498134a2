"""torch: a ``torch.autograd.Function`` with smoothl1's analytic derivatives, CPU tensors in blocks.

Reverse mode (``backward``), forward mode (``jvp``), ``torch.func`` transforms
(``setup_context`` style, ``generate_vmap_rule``) and double backward (the
general backward is made of differentiable torch ops) all use
:mod:`smoothl1._core`.  Dynamo refuses Functions that define ``jvp``, so under
``torch.compile`` an otherwise identical Function without it is used.

Eagerly, CPU tensors are viewed as NumPy arrays (zero-copy) and computed by the
NumPy blocks (:mod:`smoothl1._backends.numpy`), forward and backward; results
come back as tensors sharing the NumPy arrays' memory.  A view is used only
where it is exactly the tensor's value: plain ``torch.Tensor`` objects (no
subclass: no masked or fake tensors), strided, on the CPU, without a pending
negation (``is_neg``), not the lazily zero tensor of ``_efficientzerotensor``
and not a ``functionalize`` wrapper (whose storage is not its value); bfloat16
is read as its bits.  Everything else, and
everything under ``torch.compile`` or for a backward that must itself be
differentiable (``create_graph=True``), takes the general path on torch ops.

A loss that no tensor needs a gradient of (or with grad mode off) is computed
directly, without an autograd node.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.autograd import forward_ad
from torch.masked import MaskedTensor

from .. import _core
from .._compat import torch_namespace
from .._request import EXACT_TYPES, Call, Request, validate
from .._validation import check_devices
from . import numpy as blocks

# (Dynamo's symbolic sizes never reach the memo: it is off under torch.compile.)
EXACT_TYPES.add(torch.Tensor)

__all__ = ["evaluate", "loss"]

_XP = torch_namespace()
_DTYPES: dict[Any, Any] = {torch.float16: np.dtype(np.float16), torch.float32: np.dtype(np.float32),
                           torch.float64: np.dtype(np.float64), torch.bfloat16: blocks.BF16}


def _view(t: object) -> Any:
    """The tensor's values as a zero-copy NumPy array (or BF16 bits); numbers pass; else None."""
    if t is None or isinstance(t, (int, float)):
        return t
    if (type(t) is not torch.Tensor or not t.is_cpu or t.layout is not torch.strided
            or t.is_neg() or t._is_zerotensor() or torch._is_functional_tensor(t)):
        return None
    try:
        if t.requires_grad:
            t = t.detach()
        if t.dtype is torch.bfloat16:
            return blocks.BF16(t.view(torch.int16).numpy().view(np.uint16))
        return t.numpy()
    except (RuntimeError, TypeError, ValueError):  # e.g. torch.func wrappers
        return None


def _tensor(a: Any, dtype: Any) -> torch.Tensor:
    """A NumPy result as a tensor sharing its memory (bfloat16 from its bits)."""
    if dtype is torch.bfloat16:
        return torch.from_numpy(np.asarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.asarray(a))


def _blocks(call: Call, input: Any, target: Any, weight: Any, grad_output: Any, *,
            value: bool, grads: tuple[int, ...] = (),
            compiling: bool | None = None, param: Any = None) -> tuple[Any, list[Any]] | None:
    """The value and the gradients (+1: input, -1: target) through the NumPy blocks, or None.

    ``compiling``: whether Dynamo traces this, if the caller knows.
    """
    if torch.compiler.is_compiling() if compiling is None else compiling:
        return None
    x, y = _view(input), _view(target)
    if x is None or y is None:
        return None
    w, go, p = _view(weight), _view(grad_output), _view(param)
    if ((w is None) != (weight is None) or (go is None) != (grad_output is None)
            or (p is None) != (param is None)):
        return None
    args = [input if sign > 0 else target for sign in grads]
    specs = tuple(blocks.GradSpec(sign, tuple(a.shape), _DTYPES[a.dtype])
                  for sign, a in zip(grads, args, strict=True))
    out_dtype = input.dtype if input.dtype is target.dtype else torch.result_type(input, target)
    found = blocks.run(call, x, y, w, go, out_dtype=_DTYPES[out_dtype], grads=specs,
                       value=value, param=p)
    if found is None:
        return None
    v, gs = found
    return (None if v is None else _tensor(v, out_dtype),
            [_tensor(g, a.dtype) for g, a in zip(gs, args, strict=True)])


def evaluate(req: Request, input: torch.Tensor, target: torch.Tensor, weight: object,
             grad_output: object = None, param: object = None) -> tuple[Any, Any]:
    """``(loss, grad)`` of two tensors, without an autograd node (the grad functions)."""
    if param is not None:  # an array threshold: one more operand of the blocks
        call = _validate(req, input, target, weight, grad_output, param=param)
        found = _blocks(call, input, target, weight, grad_output, value=req.value,
                        grads=(1,) if req.grad else (), param=param)
        if found is not None:
            return found[0], (found[1][0] if found[1] else None)
        return _core.evaluate(call, input, target, weight, grad_output, param=param)
    call = _validate(req, input, target, weight, grad_output)
    found = _blocks(call, input, target, weight, grad_output, value=req.value,
                    grads=(1,) if req.grad else ())
    if found is not None:
        return found[0], (found[1][0] if found[1] else None)
    return _core.evaluate(call, input, target, weight, grad_output)


def _forward(call: Call, input: Any, target: Any, weight: Any) -> Any:
    found = _blocks(call, input, target, weight, None, value=True)
    if found is not None:
        return found[0]
    return _core.evaluate(call, input, target, weight)[0]


def _save(ctx: Any, input: Any, target: Any, weight: Any, call: Call, *,
          forward_mode: bool) -> None:
    tensor_weight = weight if isinstance(weight, torch.Tensor) else None
    ctx.save_for_backward(input, target, tensor_weight)
    if forward_mode and forward_ad._current_level >= 0:  # tangents are computed now or never
        ctx.save_for_forward(input, target, tensor_weight)
    ctx.weight = None if tensor_weight is not None else weight  # a Python number, or None
    ctx.call = call


def _saved(ctx: Any) -> tuple[Any, Any, Any]:
    input, target, weight = ctx.saved_tensors
    return input, target, ctx.weight if weight is None else weight


def _backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
    need = tuple(ctx.needs_input_grad[:3])
    ready = getattr(ctx, "grads", None)
    if ready is not None and not torch.is_grad_enabled():  # computed with the loss
        it = iter(ready)  # torch's order: (norm * derivative [* weight]) * grad_output
        return ((next(it) * grad_output) if need[0] else None,
                (next(it) * grad_output) if need[1] else None, None, None)
    input, target, weight = _saved(ctx)
    if not torch.is_grad_enabled() and not need[2]:  # no double backward to support
        found = _blocks(ctx.call, input, target, weight, grad_output, value=False,
                        grads=(1,) * need[0] + (-1,) * need[1])
        if found is not None:
            gs = iter(found[1])
            return (next(gs) if need[0] else None), (next(gs) if need[1] else None), None, None
    g_in, g_tg, g_w = _core.backward(ctx.call, input, target, weight, grad_output, need=need)
    return g_in, g_tg, g_w, None


def _jvp(ctx: Any, input_t: Any, target_t: Any, weight_t: Any, *_: Any) -> Any:
    input, target, weight = _saved(ctx)
    return _core.value_and_tangent(ctx.call, input, target, weight, input_t, target_t,
                                   weight_t)[1]


class _Loss(torch.autograd.Function):
    """The loss, with reverse-mode derivatives (the variant used under ``torch.compile``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: torch.Tensor, target: torch.Tensor, weight: Any, call: Call) -> Any:
        return _forward(call, input, target, weight)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _save(ctx, *inputs, forward_mode=False)

    backward = staticmethod(_backward)


class _LossWithJvp(_Loss):
    """The loss with reverse- and forward-mode derivatives, for ``torch.func`` transforms."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _save(ctx, *inputs, forward_mode=True)

    jvp = staticmethod(_jvp)


#: Elements up to which the eager Function computes a full reduction's gradient with
#: the loss, in the same pass: its backward is then one multiplication by the cotangent
#: (the per-call cost of small losses in training loops).  Above it the backward reads
#: input and target again instead of holding a gradient from forward to backward.
PRECOMPUTE = 1 << 15

_EXACT = (torch.float32, torch.float64)


def _precomputable(ctx: Any, input: Any, target: Any, weight: Any, call: Call) -> bool:
    need = ctx.needs_input_grad
    return (input.numel() <= PRECOMPUTE and (need[0] or need[1]) and not need[2]
            and call.axis is None and call.req.reduction != "none"
            and input.dtype in _EXACT and target.dtype is input.dtype
            and forward_ad._current_level < 0)


class _EagerLoss(torch.autograd.Function):
    """The same loss and derivatives for plain eager autograd (no ``torch.func`` transform).

    The old ``forward(ctx, ...)`` style: for a Function with ``setup_context``,
    ``apply`` binds the arguments with ``inspect.signature`` at every call,
    about 25 us, more than a small loss costs.
    """

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, weight: Any,
                call: Call) -> Any:
        _save(ctx, input, target, weight, call, forward_mode=True)
        if _precomputable(ctx, input, target, weight, call):
            need = ctx.needs_input_grad
            found = _blocks(call, input, target, weight, None, value=True,
                            grads=(1,) * need[0] + (-1,) * need[1], compiling=False)
            if found is not None:
                ctx.grads = found[1]
                return found[0]
        return _forward(call, input, target, weight)

    backward = staticmethod(_backward)
    jvp = staticmethod(_jvp)


# ------------------------------------------------------------ with an array threshold
# Its own Functions: the threshold is one more differentiable input.  Input's and
# target's derivatives come from the NumPy blocks where they can (as without it),
# the threshold's from smoothl1._core (torch ops).


def _threshold_save(ctx: Any, inputs: tuple[Any, ...], *, forward_mode: bool) -> None:
    input, target, weight, param, call = inputs
    tensor_weight = weight if isinstance(weight, torch.Tensor) else None
    ctx.save_for_backward(input, target, tensor_weight, param)
    if forward_mode and forward_ad._current_level >= 0:
        ctx.save_for_forward(input, target, tensor_weight, param)
    ctx.weight = None if tensor_weight is not None else weight
    ctx.call = call


def _threshold_saved(ctx: Any) -> tuple[Any, Any, Any, Any]:
    input, target, weight, param = ctx.saved_tensors
    return input, target, ctx.weight if weight is None else weight, param


def _threshold_backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
    need = tuple(ctx.needs_input_grad[:4])
    input, target, weight, param = _threshold_saved(ctx)
    found = None
    ready = getattr(ctx, "grads", None)
    if ready is not None and not torch.is_grad_enabled():  # computed with the loss
        it = iter(ready)
        g_in = (next(it) * grad_output) if need[0] else None
        g_tg = (next(it) * grad_output) if need[1] else None
        g_p = (_core.param_backward(ctx.call, input, target, weight, param, grad_output)
               if need[3] else None)
        return g_in, g_tg, None, g_p, None
    if not torch.is_grad_enabled() and not need[2] and (need[0] or need[1]):
        # no double backward to support: input's and target's through the blocks
        found = _blocks(ctx.call, input, target, weight, grad_output, value=False,
                        grads=(1,) * need[0] + (-1,) * need[1], param=param)
    if found is not None:
        gs = iter(found[1])
        g_in, g_tg, g_w = (next(gs) if need[0] else None), (next(gs) if need[1] else None), None
    else:
        g_in, g_tg, g_w = _core.backward(ctx.call, input, target, weight, grad_output,
                                         need=need[:3], param=param)
    g_p = (_core.param_backward(ctx.call, input, target, weight, param, grad_output)
           if need[3] else None)
    return g_in, g_tg, g_w, g_p, None


def _threshold_jvp(ctx: Any, input_t: Any, target_t: Any, weight_t: Any, param_t: Any,
                   *_: Any) -> Any:
    input, target, weight, param = _threshold_saved(ctx)
    return _core.value_and_tangent(ctx.call, input, target, weight, input_t, target_t,
                                   weight_t, param=param, param_tangent=param_t)[1]


class _ThresholdLoss(torch.autograd.Function):
    """The loss with an array threshold; reverse mode (the variant for ``torch.compile``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: torch.Tensor, target: torch.Tensor, weight: Any, param: torch.Tensor,
                call: Call) -> Any:
        found = _blocks(call, input, target, weight, None, value=True, param=param)
        if found is not None:
            return found[0]
        return _core.evaluate(call, input, target, weight, param=param)[0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _threshold_save(ctx, inputs, forward_mode=False)

    backward = staticmethod(_threshold_backward)


class _ThresholdLossWithJvp(_ThresholdLoss):
    """The same with forward mode, for ``torch.func`` transforms."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _threshold_save(ctx, inputs, forward_mode=True)

    jvp = staticmethod(_threshold_jvp)


class _EagerThresholdLoss(torch.autograd.Function):
    """The same for plain eager autograd: old ``forward(ctx, ...)`` style, as :class:`_EagerLoss`.

    A small full reduction's input and target gradients are computed with the
    loss (one pass of the blocks, one preparation of the threshold); the
    threshold's own, when asked for, in the backward.
    """

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, weight: Any,
                param: torch.Tensor, call: Call) -> Any:
        _threshold_save(ctx, (input, target, weight, param, call), forward_mode=True)
        if _precomputable(ctx, input, target, weight, call):
            need = ctx.needs_input_grad
            found = _blocks(call, input, target, weight, None, value=True,
                            grads=(1,) * need[0] + (-1,) * need[1], compiling=False,
                            param=param)
            if found is not None:
                ctx.grads = found[1]
                return found[0]
        return _ThresholdLoss.forward(input, target, weight, param, call)

    backward = staticmethod(_threshold_backward)
    jvp = staticmethod(_threshold_jvp)


def _validate(req: Request, input: Any, target: Any, weight: Any,
              grad_output: Any = None, compiling: bool | None = None,
              param: Any = None) -> Call:
    """:func:`~smoothl1._request.validate`, fit for ``torch.compile``.

    Under Dynamo: without its memo, and with the namespace given
    (array-api-compat's lookup is ``lru_cache``d, which Dynamo warns about).
    """
    if torch.compiler.is_compiling() if compiling is None else compiling:
        return validate(req, input, target, weight, grad_output, xp=_XP, remember=False,
                        param=param)
    if not (type(input) is type(target) is torch.Tensor
            and type(weight) in _PLAIN and type(grad_output) in _PLAIN and type(param) in _PLAIN):
        _refuse_masked(req, input=input, target=target, weight=weight, grad_output=grad_output,
                       **{req.param_name: param})
    call = validate(req, input, target, weight, grad_output, param=param)
    if not (input.is_cpu and target.is_cpu and _on_cpu(weight) and _on_cpu(grad_output)
            and _on_cpu(param)):
        # torch's rule: a 0-d CPU tensor may join tensors on any device
        check_devices(req.func, {
            name: a.device for name, a in (("input", input), ("target", target),
                                           ("weight", weight), ("grad_output", grad_output),
                                           (req.param_name, param))
            if isinstance(a, torch.Tensor) and not (a.is_cpu and a.ndim == 0)})
    return call


def _on_cpu(a: object) -> bool:
    return not isinstance(a, torch.Tensor) or a.is_cpu


_PLAIN = (torch.Tensor, float, int, type(None))


def _refuse_masked(req: Request, **args: object) -> None:
    """``torch.masked`` tensors: refused, as torch's own loss does (its ops recurse without end)."""
    for name, a in args.items():
        if isinstance(a, MaskedTensor):
            raise TypeError(
                f"{req.func}: {name} is a torch.masked.MaskedTensor, which torch's own loss "
                "refuses too; pass its data and its mask as weight=, e.g. "
                f"{req.func}(x.get_data(), y, weight=x.get_mask(), reduction='weighted_mean')")


def _needs_grad(*tensors: object) -> bool:
    """Whether autograd (reverse or forward mode) may ask for a derivative of the loss."""
    if forward_ad._current_level >= 0:  # inside a dual level: forward mode
        return True
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def loss(req: Request, input: torch.Tensor, target: torch.Tensor, weight: Any,
         param: Any = None) -> Any:
    """The loss of two torch tensors, differentiable with smoothl1's derivatives."""
    if param is not None:  # an array threshold: differentiable too
        compiling = torch.compiler.is_compiling()
        call = _validate(req, input, target, weight, compiling=compiling, param=param)
        if not compiling and not _needs_grad(input, target, weight, param):
            found = _blocks(call, input, target, weight, None, value=True, compiling=False,
                            param=param)
            if found is not None:
                return found[0]
            return _core.evaluate(call, input, target, weight, param=param)[0]
        fn: type[torch.autograd.Function]
        if compiling:
            fn = _ThresholdLoss
        elif torch._C._are_functorch_transforms_active():
            fn = _ThresholdLossWithJvp
        else:
            fn = _EagerThresholdLoss
        return fn.apply(input, target, weight, param, call)  # type: ignore[no-untyped-call]
    compiling = torch.compiler.is_compiling()
    call = _validate(req, input, target, weight, compiling=compiling)
    if not compiling and not _needs_grad(input, target, weight):
        # nothing to differentiate: no autograd node (torch.func transforms wrap
        # their tensors, which _blocks declines, and always take the Function)
        found = _blocks(call, input, target, weight, None, value=True, compiling=False)
        if found is not None:
            return found[0]
        wrapped = torch._C._functorch.is_functorch_wrapped_tensor
        if not (wrapped(input) or wrapped(target)) or (
                # functionalize: torch has no rule for Functions there ("NYI"); its ops are fine
                torch._is_functional_tensor(input) or torch._is_functional_tensor(target)):
            return _core.evaluate(call, input, target, weight)[0]
    if compiling:
        fn = _Loss
    elif torch._C._are_functorch_transforms_active():
        fn = _LossWithJvp
    else:
        fn = _EagerLoss
    return fn.apply(input, target, weight, call)  # type: ignore[no-untyped-call]
