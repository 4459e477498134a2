"""JAX: grad, value_and_grad, jacfwd, jacrev, hessian, jvp, jit and vmap use smoothl1's
analytic derivatives (a custom_jvp) and give torch's numbers."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import smoothl1

from .._oracle import value_and_grads

jax = pytest.importorskip("jax")
jnp = jax.numpy

REDUCTIONS = ["mean", "sum", "none"]
KINDS = {"smooth_l1": smoothl1.smooth_l1, "huber": smoothl1.huber}


def _data(shape_x=(6, 5), shape_y=(6, 5), param=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape_x) * 2
    y = rng.standard_normal(shape_y)
    if shape_x == shape_y:  # exact ties at d == 0 and |d| == param
        x.reshape(-1)[:3] = y.reshape(-1)[:3] + np.array([0.0, param, -param])
    return x, y


def _scalar_loss(kind, param, reduction):
    fn = KINDS[kind]

    def f(a, b):
        out = fn(a, b, param, reduction)
        return jnp.sum(out) if reduction == "none" else out

    return f


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("param", [0.5, 0.0, 2.0])
@pytest.mark.parametrize(("shape_x", "shape_y"), [((6, 5), (6, 5)), ((6, 5), (5,)),
                                                  ((6, 1), (6, 5))])
@pytest.mark.filterwarnings("ignore:Using a target size")
def test_grad_matches_torch_autograd(kind, reduction, param, shape_x, shape_y):
    if kind == "huber" and param == 0.0:
        param = 1.0  # delta must be positive
    x, y = _data(shape_x, shape_y, param)
    f = _scalar_loss(kind, param, reduction)
    value, (gx, gy) = jax.value_and_grad(f, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(y))
    ref, rgx, rgy = value_and_grads(kind, x, y, param, reduction)
    np.testing.assert_allclose(value, ref.sum(), rtol=1e-14)
    assert gx.shape == x.shape
    assert gy.shape == y.shape
    jgx, jgy = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(y))
    for actual, expected in [(gx, rgx), (gy, rgy), (jgx, rgx), (jgy, rgy)]:
        if actual.shape == np.broadcast_shapes(shape_x, shape_y):
            np.testing.assert_array_max_ulp(np.asarray(actual), expected, maxulp=4)
        else:  # summed over broadcast rows, in another order than torch: may cancel to ~0
            np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-13, atol=1e-16)


def test_beta_zero_gradient_is_zero_at_zero_difference():
    x = jnp.asarray([0.0, 1.0, -1.0, 2.0])
    y = jnp.zeros(4)
    g = jax.grad(lambda a: smoothl1.smooth_l1(a, y, 0.0, "sum"))(x)
    np.testing.assert_array_equal(g, [0.0, 1.0, -1.0, 1.0])  # naive jnp.abs would give 1 at 0
    g = jax.grad(lambda a: smoothl1.smooth_l1(a, y, 1.0, "sum"))(x)
    np.testing.assert_array_equal(g, [0.0, 1.0, -1.0, 1.0])  # exactly ±1 at |d| == beta


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("param", [0.5, 0.0])
def test_forward_and_reverse_jacobians_and_hessian(kind, param):
    if kind == "huber" and param == 0.0:
        param = 1.0
    x, y = _data((7,), (7,), param)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    f = functools.partial(KINDS[kind], beta=param) if kind == "smooth_l1" else \
        functools.partial(KINDS[kind], delta=param)
    fwd = jax.jacfwd(f, argnums=(0, 1))(xj, yj)
    rev = jax.jacrev(f, argnums=(0, 1))(xj, yj)
    for a, b in zip(fwd, rev, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=0)
    _, rgx, rgy = value_and_grads(kind, x, y, param, "mean")
    np.testing.assert_array_max_ulp(np.asarray(fwd[0]), rgx, maxulp=4)
    np.testing.assert_array_max_ulp(np.asarray(fwd[1]), rgy, maxulp=4)
    hess = jax.hessian(f)(xj, yj)
    d = np.abs(x - y)
    if kind == "smooth_l1":
        diag = (d < param) / param / 7 if param else np.zeros(7)
    else:
        diag = (d < param) / 7.0
    np.testing.assert_allclose(hess, np.diag(diag), rtol=1e-15, atol=0)
    # jvp along a direction equals the directional derivative from the gradient
    v = jnp.linspace(-1.0, 1.0, 7)
    _, t = jax.jvp(f, (xj, yj), (v, jnp.zeros(7)))
    np.testing.assert_allclose(t, np.dot(rgx, np.asarray(v)), rtol=1e-13)


def test_vmap_of_grad_is_per_row():
    x, y = _data((4, 9), (4, 9))
    per_row = jax.vmap(jax.grad(functools.partial(smoothl1.smooth_l1, beta=0.5)))(
        jnp.asarray(x), jnp.asarray(y))
    for i in range(4):
        _, rgx, _ = value_and_grads("smooth_l1", x[i], y[i], 0.5, "mean")
        np.testing.assert_array_max_ulp(np.asarray(per_row[i]), rgx, maxulp=4)


def test_grad_under_jit_with_static_beta():
    x, y = _data()
    f = jax.jit(jax.grad(smoothl1.smooth_l1), static_argnames=("beta", "reduction"))
    g = f(jnp.asarray(x), jnp.asarray(y), beta=0.5, reduction="sum")
    _, rgx, _ = value_and_grads("smooth_l1", x, y, 0.5, "sum")
    np.testing.assert_array_max_ulp(np.asarray(g), rgx, maxulp=4)


def test_float32_gradients():
    x, y = _data()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    g = jax.grad(smoothl1.smooth_l1)(jnp.asarray(x32), jnp.asarray(y32))
    assert g.dtype == jnp.float32
    _, rgx, _ = value_and_grads("smooth_l1", x32, y32, 1.0, "mean")
    np.testing.assert_array_max_ulp(np.asarray(g), rgx, maxulp=4)


def test_grad_with_respect_to_a_traced_beta():
    """beta not static: a 0-d threshold array, differentiated analytically."""
    x, y = _data()
    g = float(jax.grad(smoothl1.smooth_l1, argnums=2)(jnp.asarray(x), jnp.asarray(y), 0.5))
    z = np.abs(x - y)
    np.testing.assert_allclose(g, np.where(z < 0.5, -0.5 * (z / 0.5) ** 2, -0.5).mean(),
                               rtol=1e-14)


def test_loss_objects_are_differentiable():
    x, y = _data()
    g = jax.grad(smoothl1.HuberLoss(delta=0.7))(jnp.asarray(x), jnp.asarray(y))
    _, rgx, _ = value_and_grads("huber", x, y, 0.7, "mean")
    np.testing.assert_array_max_ulp(np.asarray(g), rgx, maxulp=4)
