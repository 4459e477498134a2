"""Edge cases from the torch-parity reference: beta 0, NaN/inf, empty, 0-d, and torch's defects."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import smoothl1
from smoothl1 import _formulas

from ._backends import asarray, backend_name, dtype_name, is_exact_backend, to_numpy
from ._oracle import exact_losses, torch, torch_value_and_grads

INF, NAN = float("inf"), float("nan")


def skip_float16(xp, dtype: str = "float16") -> None:
    if dtype == "float16" and backend_name(xp) == "array_api_strict":
        pytest.skip("array-api-strict has no float16")


def test_torch_default_example(xp):
    x = asarray(xp, [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    zeros = asarray(xp, np.zeros(7))
    np.testing.assert_allclose(to_numpy(smoothl1.smooth_l1(x, zeros)), 6.25 / 7, rtol=1e-15)
    np.testing.assert_allclose(to_numpy(smoothl1.smooth_l1_grad(x, zeros)),
                               np.array([-1, -1, -0.5, 0, 0.5, 1, 1]) / 7, rtol=1e-15)


@pytest.mark.parametrize("beta", [0.0, -0.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_beta_zero_is_l1_with_zero_gradient_at_zero(xp, beta, reduction):
    x = np.array([-2.0, -0.0, 0.0, 1e-300, 3.0])
    y = np.zeros(5)
    expected, gx, _ = torch_value_and_grads("smooth_l1", x, y, beta, reduction)
    value, grad = smoothl1.smooth_l1_value_and_grad(asarray(xp, x), asarray(xp, y), beta,
                                                    reduction)
    np.testing.assert_array_equal(to_numpy(value), expected)
    np.testing.assert_array_equal(to_numpy(grad), gx)
    assert to_numpy(grad)[1] == 0
    assert to_numpy(grad)[2] == 0


def test_beta_zero_gradient_is_nan_at_nan(xp):
    """torch's sgn(NaN) = 0 hides NaN at beta 0 (torch-parity §3.6); we propagate it."""
    x = asarray(xp, [NAN, 1.0, 0.0])
    grad = to_numpy(smoothl1.smooth_l1_grad(x, asarray(xp, np.zeros(3)), 0.0, "sum"))
    np.testing.assert_array_equal(grad, [NAN, 1.0, 0.0])


# (dtype, d, beta): torch's value is wrong (torch-parity §3.1-3.5 and partial underflow)
TORCH_DEFECTS = [
    ("float16", 400.0, 1000.0),  # fp16 0.5*z*z overflows: torch inf, exact 80
    ("float16", 1e-4, 1e-3),  # fp16 underflow: torch 0, exact 5e-6
    ("float16", 100.0, 1e5),  # beta not representable in fp16: torch 0, exact 0.05
    ("float16", 400.0, 1e5),  # torch inf/inf = NaN, exact 0.8
    ("float32", 1e20, 1e30),  # 0.5*z*z overflows before the division: torch inf
    ("float64", 1e160, 1e300),
    ("float32", 5e-31, 1e-30),  # tiny beta, 0.5*z*z underflows: torch 0
    ("float64", 5e-201, 1e-200),
    ("float32", 1e-20, 1e-19),  # 0.5*z*z is subnormal: torch keeps ~6 of 24 bits
    ("float64", 1e-160, 1e-150),
]


@pytest.mark.parametrize(("dtype", "d", "beta"), TORCH_DEFECTS)
def test_exact_where_torch_is_wrong(xp, dtype, d, beta):
    skip_float16(xp, dtype)
    x = np.array([d, -d, 0.5 * d], dtype=dtype)
    y = np.zeros(3, dtype=dtype)
    exact = exact_losses("smooth_l1", x.astype(np.float64), beta, dtype)
    out = to_numpy(smoothl1.smooth_l1(asarray(xp, x), asarray(xp, y), beta, "none"))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_max_ulp(out, exact, maxulp=1)
    # and torch is really wrong there (keeps this test honest when torch changes)
    torch_out, _, _ = torch_value_and_grads("smooth_l1", x, y, beta, "none")
    with np.errstate(invalid="ignore"):
        assert not np.isclose(torch_out, exact, rtol=1e-6, atol=0).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_correct_values_keep_their_bits_near_the_fix(xp, dtype):
    """Elements where torch's 0.5*z*z is a finite normal number keep torch's bits."""
    fi = np.finfo(dtype)
    largest = _formulas._SQRT_2HUGE[fi.bits]  # largest z with 0.5*z*z finite
    tiny_z = np.sqrt(fi.smallest_normal) * np.array([2, 3, 8, 1e3])
    huge_beta = float(fi.max) if dtype == "float32" else 1e300
    cases = [(tiny_z, 0.7), (largest * np.array([0.75, 0.9, 1.0]), huge_beta)]
    if not is_exact_backend(xp):
        # XLA turns z/beta into z*(1/beta), and 1/beta is subnormal here: flushed to 0
        cases = cases[:1]
    for z, beta in cases:
        z = z.astype(dtype)
        y = np.zeros_like(z)
        expected, _, _ = torch_value_and_grads("smooth_l1", z, y, beta, "none")
        assert np.isfinite(expected).all()
        assert (expected > 0).all()
        out = to_numpy(smoothl1.smooth_l1(asarray(xp, z), asarray(xp, y), beta, "none"))
        if is_exact_backend(xp):
            np.testing.assert_array_equal(out, expected)
        else:
            np.testing.assert_array_max_ulp(out, expected, maxulp=1)
    # one step further torch overflows; we do not
    above = np.nextafter(z[-1:], np.inf)
    out = to_numpy(smoothl1.smooth_l1(asarray(xp, above), asarray(xp, y[:1]), beta, "none"))
    assert np.isfinite(out).all()


NONFINITE = [
    # d, beta: torch 2.13 semantics (loss and gradient)
    (NAN, 1.0), (INF, 1.0), (-INF, 1.0), (INF, INF), (1e30, INF), (1.0, INF), (0.0, INF),
    (INF, 0.0), (-INF, 0.0),
]


# inf - inf and 0/0 are genuine NaNs; dask's NumPy chunks report them when computed,
# as NumPy itself does
GENUINE_NAN = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@GENUINE_NAN
@pytest.mark.parametrize(("d", "beta"), NONFINITE)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_follow_torch(xp, d, beta, dtype):
    x = np.array([d, 0.5], dtype=dtype)
    y = np.zeros(2, dtype=dtype)
    expected, gx, _ = torch_value_and_grads("smooth_l1", x, y, beta, "none", np.ones(2, dtype))
    if np.isfinite(d) and beta == INF:
        # float32 torch: 0.5*z*z overflows to inf, inf/inf = NaN; the exact loss is 0
        expected[0] = 0.0
    value, grad = smoothl1.smooth_l1_value_and_grad(asarray(xp, x), asarray(xp, y), beta, "none")
    np.testing.assert_array_equal(to_numpy(value), expected)
    np.testing.assert_array_equal(to_numpy(grad), gx)


@GENUINE_NAN
@pytest.mark.parametrize(("d", "delta"), [(NAN, 1.0), (INF, 1.0), (-INF, 2.0), (INF, INF),
                                          (3.0, INF)])
def test_huber_nan_and_inf_follow_torch(xp, d, delta):
    x = np.array([d, 0.5])
    y = np.zeros(2)
    expected, gx, _ = torch_value_and_grads("huber", x, y, delta, "none", np.ones(2))
    value, grad = smoothl1.huber_value_and_grad(asarray(xp, x), asarray(xp, y), delta, "none")
    np.testing.assert_array_equal(to_numpy(value), expected)
    np.testing.assert_array_equal(to_numpy(grad), gx)


@pytest.mark.parametrize(("beta", "note"), [(1e-50, "rounds to 0 in float32"),
                                            (1e300, "rounds to inf in float32")])
def test_beta_outside_float32_range(xp, beta, note):
    x = np.array([0.0, -0.0, 1.0, -2.0, 1e30], dtype="float32")
    y = np.zeros(5, dtype="float32")
    expected, _gx, _ = torch_value_and_grads("smooth_l1", x, y, beta, "none", np.ones(5, "float32"))
    value, grad = smoothl1.smooth_l1_value_and_grad(asarray(xp, x), asarray(xp, y), beta, "none")
    if beta > 1:  # torch: 0.5*z*z/inf, which is inf/inf = NaN at 1e30; exact: 0 everywhere
        expected = np.zeros(5, "float32")
    np.testing.assert_array_equal(to_numpy(value), expected)
    # torch's vector path gives -1 at d == 0 for beta=1e-50 (§3.7); the right value is 0
    expected_grad = np.sign(x) if beta < 1 else np.zeros(5, "float32")
    np.testing.assert_array_equal(to_numpy(grad), expected_grad)


@pytest.mark.parametrize("form", ["plain", "weighted", "float16", "strided", "none", "grad",
                                  "huber"])
def test_genuine_nans_are_results_not_warnings(xp, form):
    """inf - inf is NaN, silently, as in torch, on every path (before: a RuntimeWarning on
    the general path, e.g. array-api-strict, and FloatingPointError under seterr='raise')."""
    dtype = "float16" if form == "float16" else "float64"
    skip_float16(xp, dtype)
    x = np.array([INF, 1.0, -INF, 0.5], dtype=dtype)
    y = np.array([INF, 0.0, -INF, 0.5], dtype=dtype)
    if form == "strided":
        x, y = np.repeat(x, 2)[::2], np.repeat(y, 2)[::2]
    a, b = asarray(xp, x), asarray(xp, y)
    calls = {
        "plain": lambda: smoothl1.smooth_l1(a, b),
        "weighted": lambda: smoothl1.smooth_l1(a, b, weight=asarray(xp, np.ones(4, dtype))),
        "float16": lambda: smoothl1.smooth_l1(a, b),
        "strided": lambda: smoothl1.smooth_l1(a, b),
        "none": lambda: smoothl1.smooth_l1(a, b, reduction="none"),
        "grad": lambda: smoothl1.smooth_l1_grad(a, b, reduction="none"),
        "huber": lambda: smoothl1.huber_value_and_grad(a, b)[1],
    }
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        got = to_numpy(calls[form]())
    assert np.isnan(got).any()
    if form in ("none", "grad"):
        assert not np.isnan(got[[1, 3]]).any()


def test_a_float32_mean_whose_sum_overflows(xp):
    """5000 losses of 1e36: the mean is 1e36 though a float32 sum overflows (torch: inf).

    Exact on NumPy, torch, dask, cubed and marray (float64 sums) and JAX (a rescue that
    runs only where the sum is inf); the general path (array-api-strict, CuPy, ndonnx,
    sparse) gives torch's inf, a documented limit.
    """
    x = asarray(xp, np.full((3, 5000), 1e36, "float32"))
    y = asarray(xp, np.zeros((3, 5000), "float32"))
    general = ("array_api_strict", "cupy", "ndonnx", "sparse")
    want = np.float32(1e36) if backend_name(xp) not in general else np.inf
    assert to_numpy(smoothl1.smooth_l1(x, y)) == want
    np.testing.assert_array_equal(to_numpy(smoothl1.smooth_l1(x, y, axis=1)), [want] * 3)
    value, _ = smoothl1.smooth_l1_value_and_grad(x, y)
    assert to_numpy(value) == want
    w = asarray(xp, np.full(5000, 0.5, "float32"))
    assert to_numpy(smoothl1.smooth_l1(x, y, weight=w)) == (want / 2 if np.isfinite(want)
                                                            else want)


def test_jax_overflow_rescue_under_transforms():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.full((2, 5000), 1e36, "float32").at[1, 0].set(jnp.inf)
    y = jnp.zeros_like(x)
    value, grad = jax.jit(jax.value_and_grad(lambda a: smoothl1.smooth_l1(a, y[0])))(x[0])
    assert value == np.float32(1e36)
    np.testing.assert_array_equal(grad, np.full(5000, np.float32(1 / 5000)))
    np.testing.assert_array_equal(jax.vmap(smoothl1.smooth_l1)(x, y), [np.float32(1e36), np.inf])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("dtype", "beta"), [("float32", INF), ("float64", INF),
                                             ("float32", 1e300)])
def test_reductions_with_an_infinite_beta_are_zero(xp, reduction, dtype, beta):
    """Every loss is 0.5*z**2/inf = 0; JAX's factorised reduction gave NaN (0 * inf)."""
    x = np.array([3.0, -1.0, 0.25, 0.0], dtype=dtype)
    y = np.zeros(4, dtype=dtype)
    value, grad = smoothl1.smooth_l1_value_and_grad(asarray(xp, x), asarray(xp, y), beta,
                                                    reduction)
    assert to_numpy(value) == 0
    np.testing.assert_array_equal(to_numpy(grad), np.zeros(4, dtype))
    weighted = smoothl1.smooth_l1(asarray(xp, x), asarray(xp, y), beta, reduction,
                                  weight=asarray(xp, np.arange(4, dtype=dtype)), axis=0)
    assert to_numpy(weighted) == 0


@GENUINE_NAN
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)])
def test_empty_input(xp, reduction, shape):
    x = np.zeros(shape)
    expected, _gx, _ = torch_value_and_grads("smooth_l1", x, x, 1.0, reduction)
    value, grad = smoothl1.smooth_l1_value_and_grad(asarray(xp, x), asarray(xp, x), 1.0, reduction)
    assert value.shape == expected.shape
    assert grad.shape == shape
    np.testing.assert_array_equal(to_numpy(value), expected)  # mean: NaN, sum: 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_zero_dimensional_inputs(xp, reduction):
    x, y = asarray(xp, np.asarray(2.5)), asarray(xp, np.asarray(0.5))
    value, grad = smoothl1.smooth_l1_value_and_grad(x, y, 1.0, reduction)
    assert value.shape == ()
    assert grad.shape == ()
    assert float(to_numpy(value)) == 1.5
    assert float(to_numpy(grad)) == 1.0


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_are_zero_d_arrays_of_the_input_library(xp, reduction):
    x = asarray(xp, np.linspace(-2, 2, 9, dtype="float32"))
    out = smoothl1.smooth_l1(x, x * 0.5, reduction=reduction)
    assert type(out) is type(x)  # not a Python float or a NumPy scalar
    assert out.shape == ()
    assert dtype_name(out) == "float32"


def test_float16_reductions_accumulate_in_float32(xp):
    skip_float16(xp)
    n = 2**17  # more than float16's largest finite number of elements
    x = asarray(xp, np.full(n, 0.5, dtype="float16"))
    y = asarray(xp, np.zeros(n, dtype="float16"))
    mean = to_numpy(smoothl1.smooth_l1(x, y))
    assert mean.dtype == np.float16
    assert mean == np.float16(0.125)
    grad = to_numpy(smoothl1.smooth_l1_grad(x, y))  # 0.5 / 2**17, never 0.5 / inf
    assert grad.dtype == np.float16
    np.testing.assert_array_equal(grad, np.float16(0.5 / n))
    total = to_numpy(smoothl1.smooth_l1(x, y, reduction="sum"))
    assert total == np.float16(16384.0)


def test_float16_is_float32_rounded_once(xp, rng):
    skip_float16(xp)
    x = (rng.standard_normal(5000) * 3).astype("float16")
    y = rng.standard_normal(5000).astype("float16")
    exact = exact_losses("smooth_l1", x.astype(np.float64) - y.astype(np.float64), 0.7, "float16")
    out = to_numpy(smoothl1.smooth_l1(asarray(xp, x), asarray(xp, y), 0.7, "none"))
    assert out.dtype == np.float16
    np.testing.assert_array_max_ulp(out, exact, maxulp=1)


def test_inputs_are_not_mutated_and_may_be_read_only_or_strided(rng):
    x = rng.standard_normal((6, 5))
    y = rng.standard_normal((5, 6)).T  # non-contiguous
    x.flags.writeable = False
    x_copy, y_copy = x.copy(), y.copy()
    value, grad = smoothl1.smooth_l1_value_and_grad(x, y, 0.5, "none")
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)
    np.testing.assert_array_equal(value, smoothl1.smooth_l1(x_copy, np.ascontiguousarray(y), 0.5,
                                                            "none"))
    assert grad.flags.writeable  # a fresh array the caller owns


def test_torch_transposed_input_gives_the_same_bits(rng):
    base = torch.tensor(rng.standard_normal((64, 33)))
    y = torch.tensor(rng.standard_normal((33, 64)))
    out_t = smoothl1.smooth_l1(base.T, y, 0.3, "none")
    out_c = smoothl1.smooth_l1(base.T.contiguous(), y, 0.3, "none")
    assert torch.equal(out_t, out_c)
    assert torch.equal(out_t, torch.nn.functional.smooth_l1_loss(base.T, y, reduction="none",
                                                                 beta=0.3))
