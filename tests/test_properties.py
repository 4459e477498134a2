"""Property tests (hypothesis): the mathematical facts every backend must satisfy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import smoothl1

from ._backends import asarray, to_numpy

# no subnormals: XLA on CPU flushes them to zero (see docs/semantics.md)
FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)
ARRAYS = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
                    elements=FINITE)
BETA = st.floats(1e-6, 1e4)
REDUCTION = st.sampled_from(["none", "mean", "sum"])
PROPS = settings(max_examples=40, deadline=None)


def _run(xp, fn, x, y, *args):
    return to_numpy(fn(asarray(xp, x), asarray(xp, y), *args))


@PROPS
@given(x=ARRAYS, data=st.data(), beta=BETA)
def test_non_negative_and_symmetric(xp, x, data, beta):
    y = data.draw(hnp.arrays(np.float64, x.shape, elements=FINITE))
    a = _run(xp, smoothl1.smooth_l1, x, y, beta, "none")
    b = _run(xp, smoothl1.smooth_l1, y, x, beta, "none")
    assert (a >= 0).all()
    np.testing.assert_array_equal(a, b)


@PROPS
@given(x=ARRAYS, reduction=REDUCTION)
def test_beta_to_zero_gives_l1(xp, x, reduction):
    y = np.zeros_like(x)
    l1 = _run(xp, smoothl1.smooth_l1, x, y, 0.0, reduction)
    # each element differs from L1 by at most beta/2
    np.testing.assert_allclose(_run(xp, smoothl1.smooth_l1, x, y, 1e-12, reduction), l1,
                               rtol=1e-12, atol=1e-12 * max(x.size, 1))
    # (atol: a mean of normal numbers may be subnormal, which XLA on CPU flushes to zero)
    np.testing.assert_allclose(l1, np.abs(x) if reduction == "none" else
                               getattr(np, reduction)(np.abs(x)) if x.size else l1,
                               atol=np.finfo(np.float64).tiny)


@PROPS
@given(x=ARRAYS, delta=BETA, reduction=REDUCTION)
def test_huber_is_delta_times_smooth_l1(xp, x, delta, reduction):
    y = np.zeros_like(x)
    h = _run(xp, smoothl1.huber, x, y, delta, reduction)
    s = _run(xp, smoothl1.smooth_l1, x, y, delta, reduction)
    np.testing.assert_allclose(h, delta * s, rtol=1e-12, atol=1e-300)
    hg = _run(xp, smoothl1.huber_grad, x, y, delta, reduction)
    sg = _run(xp, smoothl1.smooth_l1_grad, x, y, delta, reduction)
    np.testing.assert_allclose(hg, delta * sg, rtol=1e-12, atol=1e-300)


@PROPS
@given(x=hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(-50, 50)),
       beta=st.floats(0.1, 10.0), reduction=REDUCTION, kind=st.sampled_from(["smooth_l1",
                                                                             "huber"]))
def test_gradient_equals_central_differences(xp, x, beta, reduction, kind):
    fn, grad_fn = ((smoothl1.smooth_l1, smoothl1.smooth_l1_grad) if kind == "smooth_l1"
                   else (smoothl1.huber, smoothl1.huber_grad))
    y = np.linspace(-1, 1, x.size)
    # keep away from the kink, where the one-sided derivatives differ only in curvature
    h = 1e-6
    near_kink = np.abs(np.abs(x - y) - beta) < 10 * h
    x = np.where(near_kink, x + 20 * h, x)
    analytic = _run(xp, grad_fn, x, y, beta, reduction)
    numeric = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        total = lambda v: np.sum(_run(xp, fn, v, y, beta, reduction))  # noqa: E731
        numeric[i] = (total(x + e) - total(x - e)) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * max(beta, 1))


@PROPS
@given(beta=st.floats(1e-3, 1e3), sign=st.sampled_from([-1.0, 1.0]))
def test_continuous_at_the_kink(xp, beta, sign):
    d = sign * np.array([np.nextafter(beta, 0), beta, np.nextafter(beta, np.inf)])
    loss = _run(xp, smoothl1.smooth_l1, d, np.zeros(3), beta, "none")
    np.testing.assert_allclose(loss, 0.5 * beta, rtol=1e-14)
    grad = _run(xp, smoothl1.smooth_l1_grad, d, np.zeros(3), beta, "sum")
    np.testing.assert_allclose(grad, sign, rtol=1e-14)
    assert grad[1] == sign  # exactly ±1 at |d| == beta, as torch


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@PROPS
@given(data=st.data(), beta=BETA)
def test_matches_float64_math(xp, dtype, data, beta):
    x = data.draw(hnp.arrays(dtype, st.integers(0, 20), elements=st.floats(-1e4, 1e4, width=32,
                                                                          allow_subnormal=False)))
    y = np.zeros_like(x)
    z = np.abs(x.astype(np.float64))
    exact = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)
    got = _run(xp, smoothl1.smooth_l1, x, y, beta, "none")
    np.testing.assert_allclose(got, exact.astype(dtype), rtol=4 * np.finfo(dtype).eps,
                               atol=np.finfo(dtype).smallest_normal)
