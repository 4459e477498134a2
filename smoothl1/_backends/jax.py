r"""JAX: a ``jax.custom_jvp`` whose derivative is smoothl1's analytic one, in one jitted kernel.

A custom JVP serves forward mode (``jvp``, ``jacfwd``) and, transposed by JAX,
reverse mode (``grad``, ``jacrev``, ``value_and_grad``); its rule is made of
differentiable ``jax.numpy`` operations, so higher derivatives (``hessian``) are
the analytic second derivative ``(|d| < beta) / beta``.  ``beta``/``delta`` and
``reduction`` are static (non-differentiable) arguments.

The whole loss is one ``jax.jit`` per request (:func:`_kernels`, the last
:data:`KERNELS` requests kept): eager calls run one compiled XLA kernel instead
of a dozen dispatched operations, and under an outer ``jit``/``grad``/``vmap``
it is inlined.  Reductions reduce the factorised
products :math:`s\,(d - c/2)` (:func:`smoothl1._formulas.loss_products`), whose
slope ``s`` the derivative shares; XLA fuses them into one loop.  The arguments
are checked once per eager call (where errors point at the caller); inside the
kernel the check runs only when JAX traces it, and is then remembered.
"""

from __future__ import annotations

import dataclasses
from functools import cache, lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp

from .. import _core
from .._request import Call, Request, validate
from .._validation import check_devices

__all__ = ["evaluate", "loss"]


def _call(req: Request, input: Any, target: Any, weight: Any, grad_output: Any = None,
          param: Any = None) -> Any:
    return validate(req, input, target, weight, grad_output, xp=jnp, warn=False, param=param)


@partial(jax.custom_jvp, nondiff_argnums=(4,))
def _loss(input: jax.Array, target: jax.Array, weight: jax.Array | None,
          param: jax.Array | None, req: Request) -> Any:
    call = _call(req, input, target, weight, param=param)
    value, _ = _core.evaluate(call, input, target, weight, products=True, param=param)
    return _rescue_overflow(call, value, input, target, weight, param)


@_loss.defjvp
def _loss_jvp(
    req: Request, primals: tuple[Any, Any, Any, Any], tangents: tuple[Any, Any, Any, Any]
) -> tuple[Any, Any]:
    input, target, weight, param = primals
    input_t, target_t, weight_t, param_t = tangents
    call = _call(req, input, target, weight, param=param)
    value, tangent = _core.value_and_tangent(call, input, target, weight, input_t, target_t,
                                             weight_t, products=True, param=param,
                                             param_tangent=param_t)
    return _rescue_overflow(call, value, input, target, weight, param), tangent


def _evaluate(input: jax.Array, target: jax.Array, weight: Any, grad_output: Any,
              param: Any, req: Request) -> Any:
    call = _call(req, input, target, weight, grad_output, param)
    value, grad = _core.evaluate(call, input, target, weight, grad_output, products=True,
                                 param=param)
    if value is not None:
        value = _rescue_overflow(call, value, input, target, weight, param)
    return value, grad


#: Exact power-of-two scalings for the rescued mean.
_TINY, _HUGE = 2.0**-64, 2.0**64


def _rescue_overflow(call: Call, value: Any, input: Any, target: Any, weight: Any,
                     param: Any = None) -> Any:
    """A mean whose sum of finite losses overflowed, recomputed from scaled losses.

    XLA sums in the working precision, so the float32 mean of 5000 losses of
    1e36 would be ``inf`` (as torch's) although it is 1e36.  ``lax.cond`` runs
    the rescue only where a result is infinite (a scalar test otherwise; under
    ``vmap`` both branches run).  Losses that are themselves infinite give
    ``inf`` either way, NaN stays NaN.
    """
    req, count = call.req, call.count
    if req.reduction != "mean" or not count:  # unknown (None) or empty: nothing to rescue
        return value

    def rescue() -> Any:
        none = _call(dataclasses.replace(req, reduction="none", axis=None, keepdims=False,
                                         value=True, grad=False), input, target, weight,
                     param=param)
        losses = jnp.asarray(_core.evaluate(none, input, target, weight, param=param)[0],
                             call.work_dtype)
        total = jnp.sum(losses * _TINY, axis=call.axis, keepdims=req.keepdims)
        return (total / count * _HUGE).astype(value.dtype)

    return jax.lax.cond(jnp.any(jnp.isinf(value)), rescue, lambda: value)


#: Requests whose compiled kernels are kept.  A kernel is compiled per request
#: (``beta`` and ``reduction`` are static) and holds its executables as long as
#: it lives: unbounded, 150 distinct ``beta`` values cost about 240 MiB.  The
#: least recently used request's kernels are dropped, and JAX frees them.
KERNELS = 32


@lru_cache(maxsize=KERNELS)
def _kernels(req: Request) -> tuple[Any, Any]:
    """The jitted loss and the jitted ``(loss, grad)`` of one request.

    An array threshold is an argument of the kernels, not part of the request:
    every value of it (traced or not) runs the one compiled kernel.
    """
    return (jax.jit(lambda i, t, w, p: _loss(i, t, w, p, req)),
            jax.jit(lambda i, t, w, g, p: _evaluate(i, t, w, g, p, req)))


def evaluate(req: Request, input: jax.Array, target: jax.Array, weight: object,
             grad_output: object = None, param: object = None) -> tuple[Any, Any]:
    """``(loss, grad)`` as one compiled kernel, with the same values as :func:`loss`."""
    # errors and warnings point at the caller
    validate(req, input, target, weight, grad_output, param=param)
    _check_devices(req, input, target, weight, grad_output, param)
    return _kernels(req)[1](  # type: ignore[no-any-return]
        input, target, _weight(input, target, weight), grad_output,
        _weight(input, target, param))


@cache
def _one_device() -> bool:
    """Whether JAX has one device (fixed once JAX has started): nothing to check then."""
    return len(jax.devices()) == 1


def _check_devices(req: Request, *arrays: Any) -> None:
    """Committed arrays on one device (JAX moves uncommitted ones where they are needed)."""
    if _one_device() or isinstance(arrays[0], jax.core.Tracer):
        return
    names = ("input", "target", "weight", "grad_output", "param")
    check_devices(req.func, {
        name: _device(a) for name, a in zip(names, arrays, strict=False)
        if isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer)
        and getattr(a, "committed", True)})


def _device(a: jax.Array) -> Any:
    devices = a.devices()
    return next(iter(devices)) if len(devices) == 1 else devices


def _weight(input: jax.Array, target: jax.Array, weight: Any) -> Any:
    """A weight (or an array threshold) as a float array in the working precision (or None).

    JAX gives boolean and integer primals float0 tangents, and a Python number
    is no array at all.
    """
    if weight is None:
        return None
    work = jnp.promote_types(jnp.result_type(input, target), jnp.float32)
    return jnp.asarray(weight, dtype=work)


def loss(req: Request, input: jax.Array, target: jax.Array, weight: Any,
         param: Any = None) -> Any:
    """The loss of two JAX arrays, differentiable with smoothl1's derivatives.

    An array threshold ``param`` is differentiable too (forward and reverse mode).
    """
    validate(req, input, target, weight, param=param)  # errors and warnings point at the caller
    _check_devices(req, input, target, weight, None, param)
    return _kernels(req)[0](input, target, _weight(input, target, weight),
                            _weight(input, target, param))
