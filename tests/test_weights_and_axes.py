"""Sample weights (``weight=``, ``reduction='weighted_mean'``) and per-axis reductions."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import smoothl1

from ._backends import asarray, backend_name, to_numpy
from ._lazy import no_compute

torch = pytest.importorskip("torch")
F = torch.nn.functional

LOSS = {"smooth_l1": (smoothl1.smooth_l1, smoothl1.smooth_l1_grad,
                      smoothl1.smooth_l1_value_and_grad),
        "huber": (smoothl1.huber, smoothl1.huber_grad, smoothl1.huber_value_and_grad)}


def oracle(kind, x, y, param, reduction, weight=None, axis=None, keepdims=False, g=None):
    """torch float64 autograd through an explicit composition of torch's own loss."""
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    fn = F.huber_loss if kind == "huber" else F.smooth_l1_loss
    kw = {"delta": param} if kind == "huber" else {"beta": param}
    tx_b, ty_b = torch.broadcast_tensors(tx, ty)
    elem = fn(tx_b, ty_b, reduction="none", **kw)
    tw = None
    if weight is not None:
        tw = torch.tensor(np.asarray(weight, dtype=np.float64), requires_grad=True)
        elem_w = elem * tw
    else:
        elem_w = elem
    dims = tuple(range(elem.ndim)) if axis is None else axis
    if reduction == "none":
        out = elem_w
    elif reduction == "sum":
        out = elem_w.sum(dim=dims, keepdim=keepdims)
    elif reduction == "mean":
        count = int(np.prod([elem.shape[d] for d in np.atleast_1d(dims)])) if elem.ndim else 1
        out = elem_w.sum(dim=dims, keepdim=keepdims) / count
    else:
        wb = torch.ones_like(elem) if tw is None else torch.ones_like(elem) * tw
        out = elem_w.sum(dim=dims, keepdim=keepdims) / wb.sum(dim=dims, keepdim=keepdims)
    gout = torch.ones_like(out) if g is None else torch.tensor(g, dtype=torch.float64)
    inputs = (tx, ty) + ((tw,) if tw is not None else ())
    grads = torch.autograd.grad(out, inputs, gout, allow_unused=True)
    return out.detach().numpy(), [gr.numpy() for gr in grads]


@pytest.fixture
def data(rng):
    x = rng.standard_normal((4, 3, 5)) * 2
    y = rng.standard_normal((3, 5))
    w = rng.uniform(0, 2, (4, 1, 5))
    return x, y, w


AXES = [None, 0, -1, (0, 2), (-1, -2), (1,)]


@pytest.mark.parametrize("kind", list(LOSS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "weighted_mean"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.filterwarnings("ignore:Using a target size")
def test_values_and_gradients_match_torch_composition(xp, data, rng, kind, reduction, axis,
                                                      keepdims, weighted):
    x, y, w = data
    weight = w if weighted else None
    expected, grads = oracle(kind, x, y, 0.7, reduction, weight, axis, keepdims)
    g = rng.standard_normal(expected.shape)
    _, grads_g = oracle(kind, x, y, 0.7, reduction, weight, axis, keepdims, g)
    fn, grad_fn, both = LOSS[kind]
    kw = {"axis": axis, "keepdims": keepdims,
          "weight": None if weight is None else asarray(xp, weight)}
    out = fn(asarray(xp, x), asarray(xp, y), 0.7, reduction, **kw)
    assert out.shape == expected.shape
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-13)
    value, grad = both(asarray(xp, x), asarray(xp, y), 0.7, reduction, **kw)
    np.testing.assert_array_equal(to_numpy(value), to_numpy(out))
    np.testing.assert_allclose(to_numpy(grad), grads[0], rtol=1e-13, atol=1e-16)
    grad = grad_fn(asarray(xp, x), asarray(xp, y), 0.7, reduction, asarray(xp, g), **kw)
    np.testing.assert_allclose(to_numpy(grad), grads_g[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_huber_weight_matches_torch_weight_argument(xp, rng, reduction):
    x, y = rng.standard_normal((6, 4)) * 2, rng.standard_normal((6, 4))
    w = rng.uniform(0, 3, (6, 4))
    tx = torch.tensor(x, requires_grad=True)
    ref = F.huber_loss(tx, torch.tensor(y), reduction=reduction, delta=0.8,
                       weight=torch.tensor(w))
    (gx,) = torch.autograd.grad(ref, (tx,), torch.ones_like(ref))
    value, grad = smoothl1.huber_value_and_grad(asarray(xp, x), asarray(xp, y), 0.8, reduction,
                                                weight=asarray(xp, w))
    np.testing.assert_allclose(to_numpy(value), ref.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(to_numpy(grad), gx.numpy(), rtol=1e-14)


def test_weighted_mean_divides_by_total_weight_and_zero_total_is_nan(xp):
    x = asarray(xp, np.array([[1.0, 3.0], [2.0, 4.0]]))
    y = asarray(xp, np.zeros((2, 2)))
    w = asarray(xp, np.array([[1.0, 3.0], [0.0, 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning storm, also when dask computes
        out = to_numpy(smoothl1.smooth_l1(x, y, 1.0, "weighted_mean", weight=w, axis=1))
        grad = to_numpy(smoothl1.smooth_l1_grad(x, y, 1.0, "weighted_mean", weight=w, axis=1))
        total = to_numpy(smoothl1.smooth_l1(x, y, 1.0, "weighted_mean", weight=w))
    np.testing.assert_allclose(out[0], (0.5 * 1 + 3 * 2.5) / 4)
    assert np.isnan(out[1])
    np.testing.assert_allclose(total, (0.5 * 1 + 3 * 2.5) / 4)
    np.testing.assert_allclose(grad[0], [0.25, 0.75])
    assert np.isnan(grad[1]).all()  # undefined where the total weight is 0


def test_boolean_masks_and_integer_weights(xp):
    x = asarray(xp, np.array([[0.5, 2.0, 9.0], [1.0, 0.0, 7.0]]))
    y = asarray(xp, np.zeros((2, 3)))
    mask = asarray(xp, np.array([[True, True, False], [True, False, False]]))
    counts = asarray(xp, np.array([[1, 2, 0], [1, 0, 0]], dtype="int32"))
    out = to_numpy(smoothl1.smooth_l1(x, y, weight=mask, reduction="weighted_mean", axis=-1))
    np.testing.assert_allclose(out, [(0.125 + 1.5) / 2, 0.5])
    out = to_numpy(smoothl1.smooth_l1(x, y, weight=counts, reduction="sum", axis=-1))
    np.testing.assert_allclose(out, [0.125 + 3.0, 0.5])
    assert smoothl1.smooth_l1(x, y, weight=mask).dtype == x.dtype


def test_negative_weights_contribute_negatively(xp):
    x = asarray(xp, np.array([2.0, 2.0]))
    y = asarray(xp, np.zeros(2))
    w = asarray(xp, np.array([1.0, -0.5]))
    assert float(to_numpy(smoothl1.smooth_l1(x, y, weight=w, reduction="sum"))) == 0.75
    np.testing.assert_array_equal(
        to_numpy(smoothl1.smooth_l1_grad(x, y, weight=w, reduction="sum")), [1.0, -0.5])


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_python_number_weight_scales(xp, data):
    x, y, _ = data
    a = to_numpy(smoothl1.smooth_l1(asarray(xp, x), asarray(xp, y), weight=2.5))
    b = to_numpy(smoothl1.smooth_l1(asarray(xp, x), asarray(xp, y)))
    np.testing.assert_allclose(a, 2.5 * b, rtol=1e-15)


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_bad_weights_and_axes(xp):
    x, y = asarray(xp, np.ones((3, 4))), asarray(xp, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"smooth_l1: weight of shape \(5,\) and loss of shape "
                       r"\(3, 4\) cannot be broadcast"):
        smoothl1.smooth_l1(x, y, weight=asarray(xp, np.ones(5)))
    with pytest.raises(ValueError, match=r"weight of shape \(2, 3, 4\) does not broadcast to "
                       r"the loss shape \(3, 4\)"):
        smoothl1.smooth_l1(x, y, weight=asarray(xp, np.ones((2, 3, 4))))
    # dask's compat namespace has complex isdtype trouble; ndonnx has no complex dtypes
    if backend_name(xp) not in ("dask", "ndonnx"):
        with pytest.raises(TypeError, match=r"weight must have a boolean, integer or real "
                           r"floating-point dtype"):
            smoothl1.smooth_l1(x, y, weight=asarray(xp, np.ones(4, dtype="complex64")))
    with pytest.raises(ValueError, match=r"smooth_l1: axis 2 is out of range for a loss of 2 "
                       r"dimensions"):
        smoothl1.smooth_l1(x, y, axis=2)
    with pytest.raises(ValueError, match=r"axis -3 is out of range"):
        smoothl1.smooth_l1_grad(x, y, axis=(0, -3))
    with pytest.raises(ValueError, match=r"axis \(1, -1\) repeats an axis"):
        smoothl1.huber(x, y, axis=(1, -1))
    with pytest.raises(ValueError, match=r"axis=0 needs a reduction"):
        smoothl1.smooth_l1(x, y, reduction="none", axis=0)
    with pytest.raises(TypeError, match=r"axis must be None, an int or a tuple of ints"):
        smoothl1.smooth_l1(x, y, axis=1.0)
    with pytest.raises(TypeError, match=r"keepdims must be True or False"):
        smoothl1.smooth_l1(x, y, axis=0, keepdims=1)
    with pytest.raises(ValueError, match=r"grad_output of shape \(3,\) and result of shape "
                       r"\(4,\) cannot be broadcast"):
        smoothl1.smooth_l1_grad(x, y, axis=0, grad_output=asarray(xp, np.ones(3)))


def test_loss_objects_take_axis_and_weight(xp, data):
    x, y, w = data
    loss_fn = smoothl1.HuberLoss(reduction="weighted_mean", delta=0.7, axis=(1, 2))
    assert repr(loss_fn) == "HuberLoss(reduction='weighted_mean', delta=0.7, axis=(1, 2))"
    with pytest.warns(UserWarning, match="different to the input size"):
        out = loss_fn(asarray(xp, x), asarray(xp, y), weight=asarray(xp, w))
    expected, _ = oracle("huber", x, y, 0.7, "weighted_mean", w, (1, 2))
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-13)
    assert smoothl1.SmoothL1Loss(axis=1, keepdims=True) != smoothl1.SmoothL1Loss(axis=1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "weighted_mean", "none"])
@pytest.mark.filterwarnings("ignore:Using a target size")
def test_torch_autograd_for_input_target_and_weight(data, reduction):
    x, y, w = data
    axis = None if reduction == "none" else (0, 2)
    expected, grads = oracle("smooth_l1", x, y, 0.7, reduction, w, axis)
    tx, ty, tw = (torch.tensor(a, requires_grad=True) for a in (x, y, w))
    out = smoothl1.smooth_l1(tx, ty, 0.7, reduction, weight=tw, axis=axis)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-13)
    got = torch.autograd.grad(out, (tx, ty, tw), torch.ones_like(out))
    for a, b in zip(got, grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-12, atol=1e-15)

    def f(a, b, c):
        return smoothl1.smooth_l1(a, b, 0.7, reduction, weight=c, axis=axis)

    small = tuple(torch.tensor(a[:2, :, :3] if a.ndim == 3 else a[:, :3], requires_grad=True)
                  for a in (x, y, w))
    assert torch.autograd.gradcheck(f, small, check_forward_ad=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "weighted_mean"])
@pytest.mark.filterwarnings("ignore:Using a target size")
def test_jax_grad_jit_and_vmap_with_weights(data, reduction):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, y, w = data
    expected, grads = oracle("huber", x, y, 0.7, reduction, w, -1)

    def f(a, b, c):
        return jnp.sum(smoothl1.huber(a, b, 0.7, reduction, weight=c, axis=-1))

    value, got = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(
        jnp.asarray(x), jnp.asarray(y), jnp.asarray(w))
    np.testing.assert_allclose(value, expected.sum(), rtol=1e-13)
    for a, b in zip(got, grads, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-15)
    _, jvp_out = jax.jvp(f, (jnp.asarray(x), jnp.asarray(y), jnp.asarray(w)),
                         (jnp.zeros_like(x), jnp.zeros(y.shape), jnp.ones_like(w)))
    np.testing.assert_allclose(jvp_out, grads[2].sum(), rtol=1e-12)
    per_sample = jax.vmap(functools.partial(smoothl1.huber, delta=0.7, reduction=reduction))(
        jnp.asarray(x[:, 0]), jnp.asarray(np.broadcast_to(y[0], x[:, 0].shape)),
        weight=jnp.asarray(w[:, 0]))
    direct = smoothl1.huber(x[:, 0], np.broadcast_to(y[0], x[:, 0].shape), 0.7, reduction,
                            weight=w[:, 0], axis=-1)
    np.testing.assert_allclose(np.asarray(per_sample), direct, rtol=1e-14)


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_dask_stays_lazy_with_weights_and_axes(data):
    da = pytest.importorskip("dask.array")
    import dask


    x, y, w = data
    dx, dy, dw = (da.from_array(a, chunks=2) for a in (x, y, w))
    with dask.config.set(scheduler=no_compute):
        out = smoothl1.smooth_l1_value_and_grad(dx, dy, 0.7, "weighted_mean", weight=dw,
                                                axis=(0, 2), keepdims=True)
    expected = smoothl1.smooth_l1_value_and_grad(x, y, 0.7, "weighted_mean", weight=w,
                                                 axis=(0, 2), keepdims=True)
    for o, e in zip(out, expected, strict=True):
        np.testing.assert_allclose(o.compute(), e, rtol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "weighted_mean", "none"])
def test_torch_meta_device_with_weights_and_axes(reduction):
    x = torch.empty((4, 3, 5), device="meta")
    w = torch.empty((4, 1, 5), device="meta")
    axis = None if reduction == "none" else (0, -1)
    out, grad = smoothl1.smooth_l1_value_and_grad(x, x, 0.5, reduction, weight=w, axis=axis,
                                                  keepdims=True)
    assert out.device.type == "meta"
    assert grad.device.type == "meta"
    assert out.shape == ((4, 3, 5) if reduction == "none" else (1, 3, 1))
    assert grad.shape == (4, 3, 5)
    assert smoothl1.smooth_l1(x, x, weight=2.0).device.type == "meta"


def test_torch_compile_fullgraph_with_weights_and_axis(our_warnings):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 5, generator=g, requires_grad=True)
    y, w = torch.randn(8, 5, generator=g), torch.rand(8, 1, generator=g)

    def f(a, b, c):
        return smoothl1.smooth_l1(a, b, 0.5, "weighted_mean", weight=c, axis=1).sum()

    explanation = torch._dynamo.explain(f)(x, y, w)
    assert explanation.graph_count == 1
    assert explanation.graph_break_count == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.compile(f, fullgraph=True)(x, y, w).backward()
    assert our_warnings(caught) == []
    compiled_grad, x.grad = x.grad.clone(), None
    f(x, y, w).backward()
    torch.testing.assert_close(compiled_grad, x.grad)
