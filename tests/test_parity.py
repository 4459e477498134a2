"""Differential tests against torch 2.13, the behaviour oracle, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import smoothl1

from ._backends import asarray, backend_name, dtype_name, is_exact_backend, to_numpy
from ._oracle import float64_value_and_grads, torch, torch_value_and_grads

BETAS = [1.0, 0.1, 0.05, 0.2, 0.4, 0.8, 1.6, 5.0, 1e-3]
LOSSES = {
    "smooth_l1": (smoothl1.smooth_l1, smoothl1.smooth_l1_grad, smoothl1.smooth_l1_value_and_grad),
    "huber": (smoothl1.huber, smoothl1.huber_grad, smoothl1.huber_value_and_grad),
}


def _data(rng: np.random.Generator, dtype: str, param: float, n: int = 2000):
    """Random differences of several scales, with |d| == param exactly at the front."""
    x = (rng.standard_normal(n) * rng.choice([1e-3, 0.1, 1.0, 10.0], n)).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    y[:8] = np.array([0.0, 1.0, -2.0, 0.5] * 2, dtype=dtype)
    x[:8] = y[:8] + np.array([param, -param] * 4, dtype=dtype)  # boundary |d| == param
    return x, y


def _call(fn, xp, x, y, param, **kw):
    return fn(asarray(xp, x), asarray(xp, y), param, **kw)


def assert_same_as_torch(actual: np.ndarray, expected: np.ndarray, exact: bool) -> None:
    """Bit for bit on exact backends, within 1 ulp on JAX (XLA rewrites divisions)."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if exact:
        np.testing.assert_array_equal(actual, expected, strict=True)
    else:
        np.testing.assert_array_max_ulp(actual, expected, maxulp=1)


def grad_ulps(xp) -> int:
    """torch's backward differs between its scalar and vector paths by 1 ulp; XLA
    also turns divisions into multiplications by reciprocals and fuses products."""
    return 1 if is_exact_backend(xp) else 4


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("param", BETAS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_loss_is_torchs(xp, rng, kind, param, dtype):
    x, y = _data(rng, dtype, param)
    expected, _, _ = torch_value_and_grads(kind, x, y, param, "none")
    out = _call(LOSSES[kind][0], xp, x, y, param, reduction="none")
    assert dtype_name(out) == dtype
    assert_same_as_torch(to_numpy(out), expected, is_exact_backend(xp))


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("param", [1.0, 0.1, 5.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_is_torch_autograds(xp, rng, kind, reduction, param, dtype):
    x, y = _data(rng, dtype, param)
    g_up = None
    if reduction == "none":
        g_up = rng.standard_normal(x.shape).astype(dtype)
    else:
        g_up = np.asarray(1.5, dtype=dtype)
    _, gx, _ = torch_value_and_grads(kind, x, y, param, reduction, g_up)
    grad = _call(LOSSES[kind][1], xp, x, y, param, reduction=reduction,
                 grad_output=asarray(xp, g_up))
    actual = to_numpy(grad)
    assert actual.dtype == gx.dtype
    assert actual.shape == gx.shape
    np.testing.assert_array_max_ulp(actual, gx, maxulp=grad_ulps(xp))


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reductions_match_torch_and_float64(xp, rng, kind, reduction, dtype):
    x, y = _data(rng, dtype, 1.0, n=10_000)
    expected, _, _ = torch_value_and_grads(kind, x, y, 1.0, reduction)
    out = _call(LOSSES[kind][0], xp, x, y, 1.0, reduction=reduction)
    assert out.shape == ()
    assert dtype_name(out) == dtype
    exact64, _, _ = torch_value_and_grads(kind, x.astype("float64"), y.astype("float64"),
                                          1.0, reduction)
    rtol = 2e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(to_numpy(out), expected, rtol=rtol)
    np.testing.assert_allclose(to_numpy(out), exact64, rtol=rtol)


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("param", [1.0, 0.1, 5.0, 0.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_gradients_match_float64_math(xp, rng, kind, reduction, param, dtype):
    """Needs no torch: the loss and gradient from the definitions, in float64.

    Elementwise values carry the rounding of ``d = x - y`` (doubled by the square) and
    those of torch's ``0.5*z*z/beta`` beyond the exact value; gradients those of
    ``norm * (d/beta) * g``, with ``norm`` itself the rounded ``1/N``: up to 4 ulps in
    float32.
    """
    if kind == "huber" and param == 0.0:
        param = 0.25  # delta must be positive
    x, y = _data(rng, dtype, param)
    g_up = (rng.standard_normal(x.shape) if reduction == "none" else np.asarray(1.5))
    g_up = g_up.astype(dtype)
    want, want_gx, _ = float64_value_and_grads(kind, x, y, param, reduction, g_up)
    _, _, both = LOSSES[kind]
    value, grad = both(asarray(xp, x), asarray(xp, y), param, reduction)
    got_gx = to_numpy(LOSSES[kind][1](asarray(xp, x), asarray(xp, y), param, reduction,
                                      grad_output=asarray(xp, g_up)))
    assert to_numpy(value).dtype == want.dtype == got_gx.dtype
    if reduction == "none":
        np.testing.assert_array_max_ulp(to_numpy(value), want, maxulp=4)
    else:
        np.testing.assert_allclose(to_numpy(value), want, rtol=2e-6 if dtype == "float32"
                                   else 1e-13)
    np.testing.assert_array_max_ulp(got_gx, want_gx, maxulp=4 + 2 * (not is_exact_backend(xp)))
    assert to_numpy(grad).shape == x.shape


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_grad_equals_separate_calls(xp, rng, kind, reduction):
    x, y = _data(rng, "float64", 0.5)
    loss_fn, grad_fn, both_fn = LOSSES[kind]
    value, grad = _call(both_fn, xp, x, y, 0.5, reduction=reduction)
    np.testing.assert_array_equal(to_numpy(value),
                                  to_numpy(_call(loss_fn, xp, x, y, 0.5, reduction=reduction)))
    np.testing.assert_array_equal(to_numpy(grad),
                                  to_numpy(_call(grad_fn, xp, x, y, 0.5, reduction=reduction)))


BROADCAST_SHAPES = [((3, 4), (3, 1)), ((3, 4), (4,)), ((4,), (3, 4)), ((2, 1, 5), (3, 1)),
                    ((), (5,)), ((1,), ())]


@pytest.mark.parametrize(("in_shape", "tg_shape"), BROADCAST_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_broadcasting_warns_and_matches_torch(xp, rng, in_shape, tg_shape, reduction):
    x = rng.standard_normal(in_shape) * 2
    y = rng.standard_normal(tg_shape)
    expected, gx, _ = torch_value_and_grads("smooth_l1", x, y, 1.0, reduction)
    with pytest.warns(UserWarning, match=r"Using a target size \(.*\) that is different to the "
                      r"input size \(.*\)\. This will likely lead to incorrect results due to "
                      r"broadcasting\. Please ensure they have the same size\.") as record:
        out = smoothl1.smooth_l1(asarray(xp, x), asarray(xp, y), reduction=reduction)
    assert record[0].filename == __file__  # attributed to the caller, as torch does
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-15)
    with pytest.warns(UserWarning, match="different to the input size"):
        grad = smoothl1.smooth_l1_grad(asarray(xp, x), asarray(xp, y), reduction=reduction)
    assert grad.shape == in_shape
    np.testing.assert_allclose(to_numpy(grad), gx, rtol=1e-15, atol=1e-17)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_mixed_precision_follows_torch(xp, rng, reduction):
    x = rng.standard_normal(100).astype("float32") * 3
    y = rng.standard_normal(100)
    expected, gx, _ = torch_value_and_grads("smooth_l1", x, y, 0.5, reduction)
    value, grad = smoothl1.smooth_l1_value_and_grad(asarray(xp, x), asarray(xp, y), 0.5,
                                                    reduction=reduction)
    assert dtype_name(value) == "float64"
    assert dtype_name(grad) == "float32"
    np.testing.assert_allclose(to_numpy(value), expected, rtol=1e-15)
    np.testing.assert_array_max_ulp(to_numpy(grad), gx, maxulp=grad_ulps(xp))


def _opinfo_samples():
    """torch's own sample inputs (common_methods_invocations, common_nn, common_modules)."""
    rng = np.random.default_rng(8672)
    u = lambda lo, hi, shape: rng.uniform(lo, hi, shape)  # noqa: E731
    for shape in [(), (5,), (5, 5), (5, 5, 5)]:
        for reduction in ["mean", "sum", "none"]:
            yield "smooth_l1", u(-9, 9, shape), u(-9, 9, shape), 1.0, reduction
            yield "huber", u(-9, 9, shape), u(-9, 9, shape), float(rng.uniform(1e-3, 9)), reduction
    yield "smooth_l1", u(0, 2, (5, 5)), u(-2, 0, (5, 5)), 5.0, "mean"
    yield "smooth_l1", u(-9, 9, (5, 5)), u(-9, 9, (5, 5)), 0.0, "mean"
    for beta in [1.0, 0.5, 0.0]:
        yield "smooth_l1", u(-1, 1, (2, 3, 4)), u(-1, 1, (2, 3, 4)), beta, "none"
    yield "smooth_l1", u(-1, 1, ()), u(-1, 1, ()), 1.0, "none"
    yield "huber", u(-1, 1, (2, 3, 4)), u(-1, 1, (2, 3, 4)), 0.5, "none"
    for reduction in ["mean", "sum", "none"]:
        yield "smooth_l1", u(-1, 1, (3,)), u(-1, 1, (3,)), 1.0, reduction
        yield "smooth_l1", u(-1, 1, (5, 10)), u(-1, 1, (5, 10)), 1.0, reduction
        yield "huber", u(-1, 1, ()), u(-1, 1, ()), 1.0, reduction


def _sample_id(s) -> str:
    return f"{s[0]}-{s[1].shape}-{s[3]:.3g}-{s[4]}"


@pytest.mark.parametrize("sample", list(_opinfo_samples()), ids=_sample_id)
def test_torch_opinfo_samples(xp, sample):
    kind, x, y, param, reduction = sample
    expected, gx, gy = torch_value_and_grads(kind, x, y, param, reduction)
    loss_fn, grad_fn, _ = LOSSES[kind]
    out = _call(loss_fn, xp, x, y, param, reduction=reduction)
    if reduction == "none":
        assert_same_as_torch(to_numpy(out), expected, is_exact_backend(xp))
    else:
        np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-14)
    np.testing.assert_array_max_ulp(to_numpy(_call(grad_fn, xp, x, y, param, reduction=reduction)),
                                    gx, maxulp=grad_ulps(xp))
    # the gradient for target is the negation, evaluated with the roles swapped
    np.testing.assert_array_max_ulp(to_numpy(_call(grad_fn, xp, y, x, param, reduction=reduction)),
                                    gy, maxulp=grad_ulps(xp))


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bfloat16_is_torchs_float32_rounded_once(xp, rng, kind, reduction):
    if backend_name(xp) not in {"torch", "jax"}:
        pytest.skip("bfloat16 exists only in torch and JAX")
    x = torch.randn(4096, dtype=torch.bfloat16) * 3
    y = torch.randn(4096, dtype=torch.bfloat16)
    fn = torch.nn.functional.huber_loss if kind == "huber" else torch.nn.functional.smooth_l1_loss
    expected = fn(x, y, reduction=reduction).float().numpy()
    xs, ys = (asarray(xp, t.float().numpy(), "bfloat16") for t in (x, y))
    out = LOSSES[kind][0](xs, ys, reduction=reduction)
    assert dtype_name(out) == "bfloat16"
    if reduction == "none" and kind == "smooth_l1" and backend_name(xp) == "torch":
        np.testing.assert_array_equal(to_numpy(out), expected)  # torch: float32, rounded once
    else:
        # torch's Huber is op-by-op bfloat16 and its reductions round differently;
        # JAX's float32 division may differ by 1 float32 ulp before the rounding
        np.testing.assert_allclose(to_numpy(out), expected, rtol=2**-6, atol=2**-120)
