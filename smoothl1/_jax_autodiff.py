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


@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _loss(input: jax.Array, target: jax.Array, req: Request, reduction: str) -> Any:
    value, _ = evaluate(req, input, target, reduction, xp=jnp, warn=False)
    return value


@_loss.defjvp
def _loss_jvp(
    req: Request, reduction: str, primals: tuple[Any, Any], tangents: tuple[Any, Any]
) -> tuple[Any, Any]:
    input, target = primals
    input_t, target_t = tangents
    return value_and_tangent(req, input, target, reduction, input_t, target_t, xp=jnp)


def loss(req: Request, input: jax.Array, target: jax.Array, reduction: str) -> Any:
    """The loss of two JAX arrays, differentiable with smoothl1's derivatives."""
    validate(req, input, target, reduction, xp=jnp)  # errors and warnings point at the caller
    return _loss(input, target, req, reduction)
