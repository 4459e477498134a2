"""The streaming path (cache-sized blocks, threads) against the general path and float64 math.

Small block sizes and thresholds are patched in, so that moderate arrays run
through many blocks, rows, tails, both threads and the periodic folding of the
partial sums.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

import smoothl1
from smoothl1 import _core, _streaming
from smoothl1._functional import _request

FUNCS = {
    "smooth_l1": ("smooth_l1", "beta"),
    "huber": ("huber", "delta"),
}


@pytest.fixture(params=["one thread", "two threads"])
def small_blocks(request, monkeypatch):
    """Blocks of 1 KiB (and 4 KiB budgets) from 3000 elements on: many blocks per call."""
    monkeypatch.setattr(_streaming, "BLOCK_BYTES", 1 << 10)
    monkeypatch.setattr(_streaming, "MEMORY_BUDGET", 1 << 16)
    monkeypatch.setattr(_streaming, "_ROW", 64)
    monkeypatch.setattr(_streaming, "_GROUP", 4)
    monkeypatch.setattr(_streaming, "PARALLEL_MIN", 3000)
    _streaming.set_threads(1 if request.param == "one thread" else 2)
    yield request.param
    _streaming.set_threads(None)


def _data(n, dtype, seed=0, specials=True):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    if specials and n > 20:
        x[:10] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, 1e30]
        y[:10] = [0.0, 1.0, 2.0, -0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0]
    return x, y


def _general(kind, x, y, param, reduction, value=True, grad=False, grad_output=None):
    """The general (block-free) path of the core for the same request."""
    req = _request(kind, kind, param, reduction, None, False, value=value, grad=grad)
    return _core.evaluate(req, x, y, None, grad_output)


def _f64_loss(kind, x, y, param):
    d = x.astype(np.float64) - y.astype(np.float64)
    z = np.abs(d)
    if kind == "huber":
        return np.where(z < param, 0.5 * z * z, param * (z - 0.5 * param))
    if param == 0:
        return z
    with np.errstate(all="ignore"):
        return np.where(z < param, 0.5 * z * (z / param), z - 0.5 * param)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 2999, 3000, 3001, 40_000])
@pytest.mark.parametrize(("kind", "param"), [
    ("smooth_l1", 1.0), ("smooth_l1", 0.3), ("smooth_l1", 0.0), ("smooth_l1", np.inf),
    ("huber", 1.0), ("huber", 2.5),
])
def test_elementwise_results_are_bit_identical_to_the_general_path(
        small_blocks, dtype, n, kind, param):
    x, y = _data(n, dtype)
    fn, grad_fn = getattr(smoothl1, kind), getattr(smoothl1, f"{kind}_grad")
    name = FUNCS[kind][1]
    for reduction in ("mean", "sum", "none"):
        want_value, want_grad = _general(kind, x, y, param, reduction, grad=True)
        got_grad = grad_fn(x, y, reduction=reduction, **{name: param})
        np.testing.assert_array_equal(got_grad, want_grad, strict=True)
        if reduction == "none":
            np.testing.assert_array_equal(fn(x, y, reduction="none", **{name: param}),
                                          want_value, strict=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 65, 3001, 40_000])
@pytest.mark.parametrize(("kind", "param"), [
    ("smooth_l1", 1.0), ("smooth_l1", 0.3), ("smooth_l1", 0.0), ("huber", 2.5),
])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_match_float64_math(small_blocks, dtype, n, kind, param, reduction):
    x, y = _data(n, dtype, specials=False)
    fn = getattr(smoothl1, kind)
    got = fn(x, y, reduction=reduction, **{FUNCS[kind][1]: param})
    exact = _f64_loss(kind, x, y, param)
    exact = exact.mean() if reduction == "mean" else exact.sum()
    assert type(got) is np.ndarray
    assert got.dtype == dtype
    assert got.shape == ()
    # float32: the correctly rounded value, or its neighbour; float64: a few ulps
    np.testing.assert_allclose(got, exact, rtol=1.2e-7 if dtype == np.float32 else 1e-14)
    value, grad = getattr(smoothl1, f"{kind}_value_and_grad")(
        x, y, reduction=reduction, **{FUNCS[kind][1]: param})
    np.testing.assert_array_equal(value, got, strict=True)
    np.testing.assert_array_equal(
        grad, _general(kind, x, y, param, reduction, value=False, grad=True)[1], strict=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_specials_give_torchs_nan_and_inf(small_blocks, dtype):
    x, y = _data(5000, dtype)
    for reduction in ("mean", "sum"):
        assert np.isnan(smoothl1.smooth_l1(x, y, reduction=reduction))  # one NaN element
        x2 = x.copy()
        x2[0] = 0.0
        assert np.isposinf(smoothl1.smooth_l1(x2, y, reduction=reduction))
        assert np.isposinf(smoothl1.huber(x2, y, reduction=reduction))
        assert np.isnan(smoothl1.smooth_l1(x2, y, beta=np.inf, reduction=reduction))


def test_exact_where_torchs_half_square_underflows_or_overflows(small_blocks):
    n = 4000
    tiny = np.full(n, 1e-20, np.float32)  # 0.5*z*z underflows; z*z/(2 beta) is 5e-21
    got = smoothl1.smooth_l1(tiny, np.zeros(n, np.float32), beta=1e-20, reduction="sum")
    np.testing.assert_allclose(got, n * 0.5e-20, rtol=1e-6)
    big = np.full(n, 1e30, np.float32)  # 0.5*z*z overflows; the loss is 2.5e29
    got = smoothl1.smooth_l1(big, np.zeros(n, np.float32), beta=2e30, reduction="mean")
    np.testing.assert_allclose(got, 0.25e30, rtol=1e-6)


@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_grad_output_scales_the_streamed_gradient(small_blocks, kind):
    x, y = _data(5000, np.float64)
    grad_fn = getattr(smoothl1, f"{kind}_grad")
    go = np.asarray(0.75)
    np.testing.assert_array_equal(
        grad_fn(x, y, grad_output=go),
        _general(kind, x, y, 1.0, "mean", value=False, grad=True, grad_output=go)[1])
    full = np.linspace(-1, 1, 5000)
    np.testing.assert_array_equal(
        grad_fn(x, y, reduction="none", grad_output=full),
        _general(kind, x, y, 1.0, "none", value=False, grad=True, grad_output=full)[1])


def test_shapes_keepdims_and_inputs_left_alone(small_blocks):
    x, y = _data(6 * 700, np.float32)
    x, y = x.reshape(6, 7, 100), y.reshape(6, 7, 100)
    x0, y0 = x.copy(), y.copy()
    out = smoothl1.smooth_l1(x, y, keepdims=True)
    assert out.shape == (1, 1, 1)
    assert smoothl1.smooth_l1(x, y, axis=(0, 1, 2)).shape == ()
    assert smoothl1.smooth_l1(x, y, reduction="none").shape == (6, 7, 100)
    assert smoothl1.smooth_l1_grad(x, y).shape == (6, 7, 100)
    np.testing.assert_array_equal(x, x0, strict=True)
    np.testing.assert_array_equal(y, y0, strict=True)


@pytest.mark.parametrize("case", ["transposed", "broadcast", "mixed dtypes", "weight", "axis"])
def test_other_layouts_take_the_general_path_with_the_same_numbers(small_blocks, case):
    x, y = _data(4000, np.float64, specials=False)
    x, y = x.reshape(40, 100), y.reshape(40, 100)
    kwargs = {}
    if case == "transposed":
        x, y = x.T, y.T
    elif case == "broadcast":
        y = y[:1]
    elif case == "mixed dtypes":
        y = y.astype(np.float32)
    elif case == "weight":
        kwargs["weight"] = np.linspace(0, 1, 100)
    else:
        kwargs["axis"] = 1
    req = _request("smooth_l1", "smooth_l1", 1.0, "mean", kwargs.get("axis"), False)
    assert not _streaming.applies(req, x, y, kwargs.get("weight"), None)
    want = _core.evaluate(req, x, y, kwargs.get("weight"), warn=False)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's broadcasting warning
        np.testing.assert_array_equal(smoothl1.smooth_l1(x, y, **kwargs), want)


def test_one_and_two_threads_agree():
    x, y = _data(1 << 19, np.float32, specials=False)
    results = []
    for threads in (1, 2):
        _streaming.set_threads(threads)
        try:
            results.append((smoothl1.smooth_l1(x, y), smoothl1.smooth_l1_grad(x, y)))
        finally:
            _streaming.set_threads(None)
    np.testing.assert_array_equal(results[0][0], results[1][0], strict=True)
    np.testing.assert_array_equal(results[0][1], results[1][1], strict=True)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_reduced_loss_allocates_no_array_of_the_inputs_size(threads):
    """Peak traced allocation of a mean over 2**21 float32 (8 MiB per input): under 1 MiB."""
    x, y = _data(1 << 21, np.float32, specials=False)
    _streaming.set_threads(threads)
    try:
        smoothl1.smooth_l1(x, y, beta=0.5)  # warm up (thread pool, imports)
        tracemalloc.start()
        try:
            smoothl1.smooth_l1(x, y, beta=0.5)
            smoothl1.huber(x, y, reduction="sum")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        _streaming.set_threads(None)
    assert peak < 1 << 20
