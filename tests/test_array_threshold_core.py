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
