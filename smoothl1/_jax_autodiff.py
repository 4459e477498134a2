"""JAX glue: a ``jax.custom_jvp`` whose derivative is smoothl1's analytic one.

A custom JVP serves forward mode (``jvp``, ``jacfwd``) and, transposed by JAX,
reverse mode (``grad``, ``jacrev``, ``value_and_grad``); its rule is made of
differentiable ``jax.numpy`` operations, so higher derivatives (``hessian``) are
the analytic second derivative ``(|d| < beta) / beta``.  ``beta``/``delta`` and
``reduction`` are static (non-differentiable) arguments.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from ._core import Request, evaluate, validate, value_and_tangent

__all__ = ["loss"]


@partial(jax.custom_jvp, nondiff_argnums=(3,))
def _loss(input: jax.Array, target: jax.Array, weight: jax.Array | None, req: Request) -> Any:
    value, _ = evaluate(req, input, target, weight, xp=jnp, warn=False)
    return value


@_loss.defjvp
def _loss_jvp(
    req: Request, primals: tuple[Any, Any, Any], tangents: tuple[Any, Any, Any]
) -> tuple[Any, Any]:
    input, target, weight = primals
    input_t, target_t, weight_t = tangents
    return value_and_tangent(req, input, target, weight, input_t, target_t, weight_t, xp=jnp)


def loss(req: Request, input: jax.Array, target: jax.Array, weight: Any) -> Any:
    """The loss of two JAX arrays, differentiable with smoothl1's derivatives."""
    validate(req, input, target, weight, xp=jnp)  # errors and warnings point at the caller
    if weight is not None:
        # a float weight in the working precision: JAX gives boolean and integer
        # primals float0 tangents, and a Python number is no array at all
        work = jnp.promote_types(jnp.result_type(input, target), jnp.float32)
        weight = jnp.asarray(weight, dtype=work)
    return _loss(input, target, weight, req)
