"""An array beta/delta through validation and the general path (issue 17, step 2).

Not public yet: these tests drive ``smoothl1._request.validate`` and
``smoothl1._core`` directly, on every backend of the ``xp`` fixture.  The
oracle is the public function with each element's threshold as a Python number.
"""

from __future__ import annotations

import numpy as np
import pytest

import smoothl1
from smoothl1 import _core
from smoothl1._request import request, validate

from ._backends import asarray, backend_name, is_exact_backend, to_numpy

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # lazy NumPy-backed: 0/0

PUBLIC = {"smooth_l1": smoothl1.smooth_l1, "huber": smoothl1.huber}
PUBLIC_GRAD = {"smooth_l1": smoothl1.smooth_l1_grad, "huber": smoothl1.huber_grad}


def _core_call(xp, kind, x, y, p, reduction="mean", weight=None, grad=False, axis=None):
    req = request(kind, kind, 1.0, reduction, axis, False, value=not grad, grad=grad)
    call = validate(req, x, y, weight, None, param=p, warn=False)
    return call, _core.evaluate(call, x, y, weight, None, param=p)


def _data(rng, kind):
    x = rng.standard_normal((40, 4)) * 2
    y = rng.standard_normal((40, 4))
    p = np.array([0.0 if kind == "smooth_l1" else 0.3, 0.5, 1.0, np.inf])
    return x, y, p


@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_per_feature_threshold_equals_each_columns_scalar_loss(xp, kind, rng):
    x, y, p = _data(rng, kind)
    X, Y, P = asarray(xp, x), asarray(xp, y), asarray(xp, p)
    _, (none, _) = _core_call(xp, kind, X, Y, P, "none")
    _, (_, grad) = _core_call(xp, kind, X, Y, P, "none", grad=True)
    none, grad = to_numpy(none), to_numpy(grad)
    for j, pj in enumerate(p):
        want = PUBLIC[kind](x[:, j], y[:, j], float(pj), "none")
        want_grad = PUBLIC_GRAD[kind](x[:, j], y[:, j], float(pj), "none")
        if is_exact_backend(xp):  # each element: the scalar formula's bits
            np.testing.assert_array_equal(none[:, j], want)
            np.testing.assert_array_equal(grad[:, j], want_grad)
        else:
            np.testing.assert_allclose(none[:, j], want, rtol=3e-16)
            np.testing.assert_allclose(grad[:, j], want_grad, rtol=3e-16)
    for reduction in ("mean", "sum"):
        _, (value, _) = _core_call(xp, kind, X, Y, P, reduction)
        total = none.sum() / (none.size if reduction == "mean" else 1)
        np.testing.assert_allclose(to_numpy(value), total, rtol=1e-14)


def _mean_loss(kind, x, y, p, w=None):
    """float64 textbook mean (weighted_mean with ``w``), for finite differences."""
    z = np.abs(x - y)
    if kind == "huber":
        loss = np.where(z < p, 0.5 * z * z, p * (z - 0.5 * p))
    else:
        loss = np.where(z < p, 0.5 * z * z / p, z - 0.5 * p)
    return loss.mean() if w is None else (loss * w).sum() / np.broadcast_to(w, loss.shape).sum()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_threshold_gradient_and_tangent_equal_finite_differences(xp, kind, weighted, rng):
    x, y = rng.standard_normal((60, 3)) * 2, rng.standard_normal((60, 3))
    p = np.array([0.4, 1.0, 2.5])
    w = rng.random(3) if weighted else None
    reduction = "weighted_mean" if weighted else "mean"
    X, Y, P = asarray(xp, x), asarray(xp, y), asarray(xp, p)
    W = None if w is None else asarray(xp, w)
    req = request(kind, kind, 1.0, reduction, None, False)
    call = validate(req, X, Y, W, None, param=P, warn=False)
    got = to_numpy(_core.param_backward(call, X, Y, W, P, None))
    h = 1e-6
    numeric = np.array([
        (_mean_loss(kind, x, y, p + h * e, w) - _mean_loss(kind, x, y, p - h * e, w)) / (2 * h)
        for e in np.eye(3)])
    assert got.shape == (3,)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-9)
    direction = np.array([0.3, -1.0, 0.7])
    value, tangent = _core.value_and_tangent(call, X, Y, W, None, None, param=P,
                                             param_tangent=asarray(xp, direction))
    np.testing.assert_allclose(to_numpy(value), _mean_loss(kind, x, y, p, w), rtol=1e-13)
    np.testing.assert_allclose(to_numpy(tangent), numeric @ direction, rtol=1e-6, atol=1e-9)


def test_threshold_is_validated_like_a_weight(xp):
    x = asarray(xp, np.ones((3, 4)))
    req = request("smooth_l1", "smooth_l1", 1.0, "mean", None, False)
    with pytest.raises(ValueError, match=r"smooth_l1: beta of shape \(2, 3, 4\) does not "
                       r"broadcast to the loss shape \(3, 4\)"):
        validate(req, x, x, param=asarray(xp, np.ones((2, 3, 4))))
    with pytest.raises(ValueError, match=r"beta of shape \(5,\) and loss of shape \(3, 4\) "
                       r"cannot be broadcast"):
        validate(req, x, x, param=asarray(xp, np.ones(5)))
    if backend_name(xp) != "numpy":
        with pytest.raises(TypeError, match="arrays from different array libraries"):
            validate(req, x, x, param=np.ones(4))
    hreq = request("huber", "huber", 1.0, "mean", None, False)
    with pytest.raises(TypeError, match="delta must have"):
        validate(hreq, x, x, param=asarray(xp, np.ones(4, dtype=bool)))


def test_an_executor_that_forgets_the_threshold_fails_loudly():
    x = np.ones(3)
    call = validate(request("smooth_l1", "smooth_l1", 1.0, "mean", None, False), x, x,
                    param=np.ones(3))
    assert np.isnan(call.formula.param)
    with pytest.raises(TypeError, match="internal error"):
        _core.evaluate(call, x, x)


# ------------------------------------------------------------- through the router (JAX: traced)
from smoothl1 import _backends  # noqa: E402


@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_the_router_gives_every_backend_the_per_element_values(xp, kind, rng):
    x, y, p = _data(rng, kind)
    X, Y, P = asarray(xp, x), asarray(xp, y), asarray(xp, p)
    req = request(kind, kind, 1.0, "none", None, False, grad=True)
    value, grad = _backends.evaluate(req, X, Y, None, None, param=P)
    loss = _backends.loss(request(kind, kind, 1.0, "sum", None, False), X, Y, None, param=P)
    for j, pj in enumerate(p):
        want = PUBLIC[kind](x[:, j], y[:, j], float(pj), "none")
        want_grad = PUBLIC_GRAD[kind](x[:, j], y[:, j], float(pj), "none")
        np.testing.assert_allclose(to_numpy(value)[:, j], want, rtol=3e-16, atol=0)
        np.testing.assert_allclose(to_numpy(grad)[:, j], want_grad, rtol=3e-16, atol=0)
    np.testing.assert_allclose(to_numpy(loss), to_numpy(value).sum(), rtol=1e-14)


def _jax_loss(kind="smooth_l1", reduction="mean"):
    jax = pytest.importorskip("jax")
    req = request(kind, kind, 1.0, reduction, None, False)
    return jax, (lambda x, y, b: _backends.loss(req, x, y, None, param=b))


def test_jax_jit_with_100_traced_betas_compiles_once(rng):
    jax, loss = _jax_loss()
    jnp = jax.numpy
    x, y = jnp.asarray(rng.standard_normal((50, 4))), jnp.asarray(rng.standard_normal((50, 4)))
    jitted = jax.jit(loss)
    grad = jax.jit(jax.grad(loss, argnums=2))
    for i in range(100):  # a schedule: a new threshold every step
        b = jnp.full(4, 0.01 + i / 50)
        value = jitted(x, y, b)
        g = grad(x, y, b)
        if i in (0, 57, 99):
            want = smoothl1.smooth_l1(np.asarray(x), np.asarray(y), float(b[0]))
            np.testing.assert_allclose(float(value), want, rtol=1e-14)
    assert jitted._cache_size() == 1
    assert grad._cache_size() == 1
    assert np.isfinite(np.asarray(g)).all()
    public = jax.jit(lambda x, y, b: smoothl1.smooth_l1(x, y, b))  # through the public function
    for i in range(100):
        public(x, y, jnp.full(4, 0.01 + i / 50))
    assert public._cache_size() == 1
    eager = _backends.jax._kernels(request("smooth_l1", "smooth_l1", jnp.ones(4), "mean", None,
                                           False))[0]
    smoothl1.smooth_l1(x, y, jnp.ones(4))  # compiled for this signature
    before = eager._cache_size()
    for i in range(20):  # eager calls: the one kernel, whatever the values
        smoothl1.smooth_l1(x, y, jnp.full(4, 0.5 + i))
    assert eager._cache_size() == before


@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_jax_grad_jvp_and_vmap_over_the_threshold(kind, rng):
    jax, loss = _jax_loss(kind)
    jnp = jax.numpy
    x, y = rng.standard_normal((60, 3)) * 2, rng.standard_normal((60, 3))
    p = np.array([0.4, 1.0, 2.5])
    X, Y, P = jnp.asarray(x), jnp.asarray(y), jnp.asarray(p)
    g = np.asarray(jax.grad(loss, argnums=2)(X, Y, P))
    h = 1e-6
    numeric = np.array([
        (_mean_loss(kind, x, y, p + h * e) - _mean_loss(kind, x, y, p - h * e)) / (2 * h)
        for e in np.eye(3)])
    np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)
    _, tangent = jax.jvp(lambda b: loss(X, Y, b), (P,), (jnp.ones(3),))
    np.testing.assert_allclose(float(tangent), numeric.sum(), rtol=1e-6)
    # the derivatives with respect to input are the scalar ones, column by column
    gx = np.asarray(jax.grad(loss)(X, Y, P))
    for j in range(3):
        want = PUBLIC_GRAD[kind](x[:, j], y[:, j], p[j], "sum") / x.size
        np.testing.assert_allclose(gx[:, j], want, rtol=1e-14)
    # vmap over the threshold: one loss per row of thresholds
    rows = np.array([[0.3, 0.6, 0.9], [1.0, 1.0, 1.0], [2.0, 0.1, 5.0]])
    got = np.asarray(jax.vmap(lambda b: loss(X, Y, b))(jnp.asarray(rows)))
    np.testing.assert_allclose(got, [_mean_loss(kind, x, y, r) for r in rows], rtol=1e-14)


def test_jax_second_derivative_in_beta(rng):
    jax, loss = _jax_loss()
    jnp = jax.numpy
    x, y = rng.standard_normal(80), rng.standard_normal(80)
    b = 1.3
    second = float(jax.grad(jax.grad(lambda b: loss(jnp.asarray(x), jnp.asarray(y), b)))(
        jnp.asarray(b)))
    z = np.abs(x - y)
    want = np.where(z < b, z * z / b**3, 0.0).mean()  # d2/db2 of z^2/(2b): z^2/b^3
    np.testing.assert_allclose(second, want, rtol=1e-12)


def _torch_loss(kind="smooth_l1", reduction="mean"):
    torch = pytest.importorskip("torch")
    req = request(kind, kind, 1.0, reduction, None, False)
    return torch, (lambda x, y, b, w=None: _backends.loss(req, x, y, w, param=b))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_torch_autograd_through_the_threshold(kind, weighted, rng):
    torch, loss = _torch_loss(kind, "weighted_mean" if weighted else "mean")
    x, y = rng.standard_normal((60, 3)) * 2, rng.standard_normal((60, 3))
    p = np.array([0.4, 1.0, 2.5])
    w = rng.random(3) if weighted else None
    X = torch.tensor(x, requires_grad=True)
    Y = torch.tensor(y)
    B = torch.tensor(p, requires_grad=True)
    W = None if w is None else torch.tensor(w)
    value = loss(X, Y, B, W)
    np.testing.assert_allclose(value.item(), _mean_loss(kind, x, y, p, w), rtol=1e-14)
    gx, gb = torch.autograd.grad(value, (X, B))
    h = 1e-6
    numeric = np.array([
        (_mean_loss(kind, x, y, p + h * e, w) - _mean_loss(kind, x, y, p - h * e, w)) / (2 * h)
        for e in np.eye(3)])
    np.testing.assert_allclose(gb.numpy(), numeric, rtol=1e-6, atol=1e-9)
    # the input's gradient is the scalar-threshold one, column by column
    for j in range(3):
        scalar = smoothl1.smooth_l1 if kind == "smooth_l1" else smoothl1.huber
        Xj = torch.tensor(x[:, j], requires_grad=True)
        wj = 1.0 if w is None else w[j] / w.sum() * 3
        (scalar(Xj, torch.tensor(y[:, j]), p[j], "sum") * wj / x.size).backward()
        np.testing.assert_allclose(gx[:, j].numpy(), Xj.grad.numpy(), rtol=1e-14)
    # forward mode equals reverse mode
    import torch.autograd.forward_ad as fwad
    with fwad.dual_level():
        tangent = fwad.unpack_dual(loss(X.detach(), Y, fwad.make_dual(B.detach(),
                                                                       torch.ones(3)), W)).tangent
    np.testing.assert_allclose(tangent.item(), gb.sum().item(), rtol=1e-12)
    # double backward: d/db of d(loss)/db
    value = loss(X.detach(), Y, B, W)
    (gb2,) = torch.autograd.grad(value, B, create_graph=True)
    (hb,) = torch.autograd.grad(gb2.sum(), B)
    assert torch.isfinite(hb).all()
    if kind == "smooth_l1" and not weighted:
        z = np.abs(x - y)
        want = np.where(z < p, z * z / p**3, 0.0).sum(0) / x.size
        np.testing.assert_allclose(hb.numpy(), want, rtol=1e-12)


def test_torch_func_and_compile_with_a_threshold_tensor(rng):
    torch, loss = _torch_loss()
    import warnings

    x = torch.tensor(rng.standard_normal((20, 4)))
    y = torch.tensor(rng.standard_normal((20, 4)))
    b = torch.tensor([0.2, 0.5, 1.0, 2.0], dtype=torch.float64)
    g = torch.func.grad(lambda b: loss(x, y, b))(b)
    leaf = b.clone().requires_grad_()
    (want,) = torch.autograd.grad(loss(x, y, leaf), leaf)
    np.testing.assert_array_equal(g.numpy(), want.numpy())
    per_row = torch.func.vmap(lambda b: loss(x, y, b))(torch.stack([b, 2 * b]))
    np.testing.assert_allclose(per_row.numpy(), [loss(x, y, b).item(), loss(x, y, 2 * b).item()],
                               rtol=1e-14)
    torch._dynamo.reset()
    counts = {"frames": 0}

    def backend(gm, example_inputs):
        counts["frames"] += 1
        return gm.forward

    compiled = torch.compile(lambda x, y, b: loss(x, y, b), backend=backend, fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, inside dynamo
        for i in range(10):  # only the value changes: no recompilation
            bb = torch.full((4,), 0.1 + i, dtype=torch.float64, requires_grad=True)
            value = compiled(x, y, bb)
            value.backward()
            np.testing.assert_allclose(value.item(), loss(x, y, bb.detach()).item(), rtol=1e-14)
            assert bb.grad is not None
    assert counts["frames"] == 1


def test_dask_with_an_array_threshold_stays_lazy(rng):
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    from ._lazy import no_compute

    x, y = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    p = np.array([0.1, 0.5, 1.0, 3.0])
    req = request("smooth_l1", "smooth_l1", 1.0, "mean", None, False, grad=True)
    with dask.config.set(scheduler=no_compute):
        value, grad = _backends.evaluate(req, da.from_array(x, chunks=10),
                                         da.from_array(y, chunks=10), None, None,
                                         param=da.from_array(p, chunks=2))
    want = _backends.evaluate(req, x, y, None, None, param=p)
    np.testing.assert_allclose(value.compute(), want[0], rtol=1e-14)
    np.testing.assert_array_equal(grad.compute(), want[1])


def test_a_masked_threshold_masks_the_losses_it_reaches():
    x, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))
    beta = np.ma.masked_array([0.5, -7.0], mask=[False, True])  # the masked value is invalid
    req = request("smooth_l1", "smooth_l1", 1.0, "mean", None, False)
    value, _ = _backends.evaluate(req, x, y, None, None, param=beta)
    assert isinstance(value, np.ma.MaskedArray)
    assert value == smoothl1.smooth_l1(x[:, 0], y[:, 0], 0.5)  # column 1 counts nowhere


@pytest.mark.parametrize("grad", [True, False], ids=["value and grad", "value"])
@pytest.mark.parametrize("thresholds", ["every kind", "in (0, inf)"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_the_blocks_give_the_general_paths_bits(library, kind, dtype, thresholds, grad, rng):
    """NumPy arrays and CPU tensors stream the threshold through the blocks: same bits.

    "in (0, inf)": no element needs the sign repair or can overflow 0.5*z*z in the
    quadratic zone, so the blocks take their leanest forms (and, for a value alone,
    the threshold's inverse); tiny differences still underflow it.
    """
    big = {"float16": 6e4, "float32": 3e38, "float64": 1e308}[dtype]
    tiny = {"float16": 1e-7, "float32": 1e-30, "float64": 1e-300}[dtype]
    half_square_overflows = {"float16": 3e4, "float32": 1e30, "float64": 1e200}[dtype]
    d_values = np.array([0.0, -0.0, tiny, -0.3, 0.5, 1.0, -2.5, 1e3, half_square_overflows, big,
                         -big, np.inf, -np.inf, np.nan])
    p_values = np.array([0.0, tiny, 0.5, 1.0, 3.0, big, np.inf, -1.0, np.nan])
    if thresholds == "in (0, inf)":
        p_values = np.array([tiny, 0.1, 0.5, 1.0, 3.0, 1e3])
    x = rng.choice(d_values, size=(3000, p_values.size)).astype(dtype)
    y = np.zeros_like(x)
    p = p_values.astype(dtype)
    convert = (lambda a: a) if library == "numpy" else pytest.importorskip("torch").from_numpy
    X, Y, P = convert(x), convert(y), convert(p)
    for reduction, axis in (("none", None), ("mean", None), ("sum", 0), ("weighted_mean", 1)):
        weight = convert(rng.random(p.size).astype(dtype)) if reduction != "none" else None
        req = request(kind, kind, 1.0, reduction, axis, False, grad=grad)
        value, g = _backends.evaluate(req, X, Y, weight, None, param=P)
        call = validate(req, x, y, None if weight is None else to_numpy(weight), None, param=p)
        want_value, want_grad = _core.evaluate(call, x, y, None if weight is None else
                                               to_numpy(weight), None, param=p)
        if grad:
            np.testing.assert_array_equal(to_numpy(g), want_grad, err_msg=reduction)
        if reduction == "none":
            np.testing.assert_array_equal(to_numpy(value), want_value)
        else:  # float64 totals of the elementwise losses (the general path's float32
            # sums overflow where a float64 total does not): against that, rounded
            # (elementwise in the working precision: float32 for float16)
            none = request(kind, kind, 1.0, "none", None, False)
            xw, yw, pw = (a.astype(np.float32) if dtype == "float16" else a for a in (x, y, p))
            losses = _core.evaluate(validate(none, xw, yw, None, None, param=pw), xw, yw, None,
                                    None, param=pw)[0].astype(np.float64)
            w64 = to_numpy(weight).astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                weighted = losses * w64
                want_value = (weighted.mean() if reduction == "mean" else
                              weighted.sum(axis=0) if reduction == "sum" else
                              weighted.sum(axis=1) / w64.sum()).astype(dtype)
            np.testing.assert_allclose(to_numpy(value), want_value, rtol=2e-3 if
                                       dtype == "float16" else 1e-6, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_thresholds_repair_an_overflowing_half_square_in_every_block(dtype, rng):
    """Blocks whose 0.5*z*z overflows below a huge beta (and has no zero that would send
    them to the element-by-element test anyway) get the scalar formula's exact value."""
    huge_beta, z = {"float32": (3e38, 1e30), "float64": (1e308, 1e200)}[dtype]
    x = rng.choice([z, -z, 2.0, -0.7], size=(20000, 3)).astype(dtype)
    y = np.zeros_like(x)
    beta = np.array([huge_beta, 1.0, 0.5], dtype)
    got = smoothl1.smooth_l1(x, y, beta=beta, reduction="none")
    for j, b in enumerate(beta):
        want = smoothl1.smooth_l1(x[:, j], y[:, j], float(b), reduction="none")
        np.testing.assert_array_equal(got[:, j], want)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_public_functions_and_objects_take_threshold_arrays_on_every_backend(xp, kind, rng):
    x, y, p = _data(rng, kind)
    X, Y, P = asarray(xp, x), asarray(xp, y), asarray(xp, p)
    value, grad = (smoothl1.smooth_l1_value_and_grad if kind == "smooth_l1"
                   else smoothl1.huber_value_and_grad)(X, Y, P, "sum")
    none = PUBLIC[kind](X, Y, P, "none")
    obj = (smoothl1.SmoothL1Loss(reduction="sum", beta=P) if kind == "smooth_l1"
           else smoothl1.HuberLoss(reduction="sum", delta=P))
    for j, pj in enumerate(p):
        np.testing.assert_allclose(to_numpy(none)[:, j],
                                   PUBLIC[kind](x[:, j], y[:, j], float(pj), "none"),
                                   rtol=3e-16, atol=0)
        np.testing.assert_allclose(to_numpy(grad)[:, j],
                                   PUBLIC_GRAD[kind](x[:, j], y[:, j], float(pj), "sum"),
                                   rtol=3e-16, atol=0)
    np.testing.assert_allclose(to_numpy(value), to_numpy(none).sum(), rtol=1e-14)
    np.testing.assert_allclose(to_numpy(obj(X, Y)), to_numpy(value), rtol=1e-15)
