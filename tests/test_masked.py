"""Masked arrays (``numpy.ma``, dask arrays of masked chunks): masked elements count nowhere.

The oracle is the computation on the unmasked elements alone, and ``numpy.ma``'s
own reductions of the elementwise losses.
"""

from __future__ import annotations

import numpy as np
import pytest

import smoothl1

from ._backends import backend_namespace, to_numpy
from ._lazy import no_compute

KINDS = {"smooth_l1": (smoothl1.smooth_l1, smoothl1.smooth_l1_grad, 0.7),
         "huber": (smoothl1.huber, smoothl1.huber_grad, 0.7)}


@pytest.fixture(params=list(KINDS))
def kind(request):
    return KINDS[request.param]


def _masked(rng, shape, p, fill):
    a = np.ma.masked_array(rng.standard_normal(shape), mask=rng.random(shape) < p)
    a.data[a.mask] = fill  # what lies under a mask must never leak into a result
    return a


@pytest.fixture
def pair(rng):
    x, y = _masked(rng, (6, 7), 0.3, np.nan), _masked(rng, (6, 7), 0.2, np.inf)
    return x, y, np.ma.getmaskarray(x) | np.ma.getmaskarray(y)


def test_the_issue_reproduction():
    x = np.ma.masked_greater(np.array([0.5, 100.0, 2.0, -3.0]), 50)
    got = smoothl1.smooth_l1(x, np.ma.zeros(4), reduction="none")
    assert isinstance(got, np.ma.MaskedArray)
    assert got.mask.tolist() == [False, True, False, False]
    assert got.compressed().tolist() == [0.125, 1.5, 2.5]
    assert smoothl1.smooth_l1(x, np.ma.zeros(4)) == 1.375  # was 26.03: the masked 100 counted


def test_full_reductions_equal_the_unmasked_elements_alone(kind, pair):
    loss, grad, p = kind
    x, y, m = pair
    keep = ~m
    xs, ys = x.data[keep], y.data[keep]
    for reduction in ("mean", "sum"):
        got = loss(x, y, p, reduction)
        assert isinstance(got, np.ma.MaskedArray)
        assert not got.mask
        np.testing.assert_allclose(got.data, loss(xs, ys, p, reduction), rtol=1e-15)
        g = grad(x, y, p, reduction)
        assert isinstance(g, np.ma.MaskedArray)
        np.testing.assert_array_equal(g.mask, m)
        np.testing.assert_allclose(g.data[keep], grad(xs, ys, p, reduction), rtol=1e-15)
        np.testing.assert_array_equal(g.data[m], 0.0)


@pytest.mark.parametrize("axis", [0, 1, -1, (0, 1)])
@pytest.mark.parametrize(("reduction", "weighted"), [
    ("mean", False), ("sum", False), ("mean", True), ("sum", True), ("weighted_mean", True)])
def test_per_axis_reductions_match_numpy_ma(kind, pair, axis, reduction, weighted):
    loss, _, p = kind
    x, y, m = pair
    w = np.arange(1.0, 8.0) if weighted else None
    elementwise = np.ma.masked_array(loss(x.data, y.data, p, "none", weight=w), mask=m)
    if reduction == "sum":
        want = elementwise.sum(axis=axis)
    elif reduction == "mean":
        want = elementwise.sum(axis=axis) / (~m).sum(axis=axis)
    else:
        want = elementwise.sum(axis=axis) / np.ma.masked_array(np.broadcast_to(w, m.shape),
                                                              mask=m).sum(axis=axis)
    want = np.ma.asarray(want)  # a full reduction gives a NumPy scalar
    got = loss(x, y, p, reduction, weight=w, axis=axis)
    assert isinstance(got, np.ma.MaskedArray)
    np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
    np.testing.assert_allclose(got.compressed(), want.compressed(), rtol=1e-14)


def test_none_keeps_the_union_of_the_masks(kind, pair):
    loss, grad, p = kind
    x, y, m = pair
    got = loss(x, y, p, "none")
    np.testing.assert_array_equal(got.mask, m)
    np.testing.assert_array_equal(got.data[~m], loss(x.data[~m], y.data[~m], p, "none"))
    assert np.isfinite(got.data).all()  # NaN and inf under the masks stayed there
    g = grad(x, y, p, "none", grad_output=np.full(m.shape, 2.0))
    np.testing.assert_array_equal(g.data[~m], grad(x.data[~m], y.data[~m], p, "none",
                                                   grad_output=2.0))


def test_everything_masked_gives_a_masked_result():
    x = np.ma.masked_all((3, 2))
    y = np.zeros((3, 2))
    for reduction in ("mean", "sum"):
        assert smoothl1.smooth_l1(x, y, reduction=reduction).mask
        assert smoothl1.smooth_l1(x, y, reduction=reduction, weight=np.ones(2)).mask
    per_row = smoothl1.smooth_l1(np.ma.masked_array(np.ones((2, 2)), mask=[[1, 1], [0, 1]]),
                                 np.zeros((2, 2)), axis=1)
    assert per_row.mask.tolist() == [True, False]
    assert per_row[1] == 0.5


def test_a_masked_weight_masks_its_elements():
    x, y = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    w = np.ma.masked_array([1.0, 5.0, 1.0], mask=[False, True, False])
    got = smoothl1.smooth_l1(x, y, weight=w, reduction="weighted_mean")
    assert got == smoothl1.smooth_l1(x[[0, 2]], y[[0, 2]])
    assert smoothl1.smooth_l1(x, y, weight=w) == smoothl1.smooth_l1(x[[0, 2]], y[[0, 2]])


def test_a_masked_cotangent_counts_as_zero():
    x, y = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    go = np.ma.masked_array([1.0, np.nan, 1.0], mask=[False, True, False])
    g = smoothl1.smooth_l1_grad(x, y, reduction="none", grad_output=go)
    assert g.tolist() == [1.0, 0.0, 1.0]


def test_broadcast_masked_inputs_give_gradients_of_their_own_shape(rng):
    x = np.ma.masked_array(rng.standard_normal((4, 1)), mask=[[0], [1], [0], [0]])
    y = np.ma.masked_array(rng.standard_normal((1, 5)), mask=[[0, 0, 1, 0, 0]])
    m = np.broadcast_to(x.mask, (4, 5)) | np.broadcast_to(y.mask, (4, 5))
    with pytest.warns(UserWarning, match="target size"):
        g = smoothl1.smooth_l1_grad(x, y, reduction="sum")
    assert g.shape == (4, 1)
    assert g.mask.tolist() == [[False], [True], [False], [False]]
    xb, yb = np.broadcast_to(x.data, (4, 5)), np.broadcast_to(y.data, (4, 5))
    want = np.where(m, 0.0, smoothl1.smooth_l1_grad(xb, yb, reduction="none")).sum(1, keepdims=True)
    np.testing.assert_allclose(g.data, want, rtol=1e-15)


def test_value_and_grad_and_loss_objects_honour_masks(pair):
    x, y, m = pair
    value, grad = smoothl1.smooth_l1_value_and_grad(x, y)
    assert value == smoothl1.smooth_l1(x, y)
    np.testing.assert_array_equal(grad.mask, m)
    assert smoothl1.SmoothL1Loss()(x, y) == value


def test_masked_inputs_are_not_mutated(pair):
    x, y, _ = pair
    x0, y0 = x.copy(), y.copy()
    smoothl1.smooth_l1_value_and_grad(x, y)
    smoothl1.smooth_l1(x, y, reduction="none")
    for a, b in ((x, x0), (y, y0)):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.data, b.data)


def test_float32_masked_results_stay_float32(pair):
    x, y, _ = pair
    x, y = x.astype("f4"), y.astype("f4")
    for reduction in ("none", "mean"):
        assert smoothl1.smooth_l1(x, y, reduction=reduction).dtype == np.float32
        assert smoothl1.smooth_l1_grad(x, y, reduction=reduction).dtype == np.float32


# -------------------------------------------------------------------------------- dask


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_dask_masked_chunks_are_honoured_and_lazy(pair, reduction):
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    x, y, _ = pair
    lx = da.from_array(x, chunks=(4, 3), asarray=False)
    ly = da.from_array(y, chunks=(4, 3), asarray=False)
    for fn in (smoothl1.smooth_l1, smoothl1.smooth_l1_grad):
        with dask.config.set(scheduler=no_compute):
            out = fn(lx, ly, 0.7, reduction)
        assert isinstance(out._meta, np.ma.MaskedArray)
        got, want = out.compute(scheduler="sync"), fn(x, y, 0.7, reduction)
        np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want))
        np.testing.assert_allclose(np.ma.filled(got, 0), np.ma.filled(want, 0), rtol=1e-15)


def test_dask_masked_chunks_behind_a_plain_meta_are_refused():
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.arange(6.0), chunks=3).map_blocks(
        lambda b: np.ma.masked_greater(b, 3), meta=np.empty((0,)))
    loss = smoothl1.smooth_l1(x, da.zeros(6, chunks=3))
    with pytest.raises(TypeError, match="masked chunks but a plain NumPy meta"):
        loss.compute(scheduler="sync")


# ------------------------------------------------------------------------------ marray
# marray wraps any array-API library's arrays with masks; smoothl1 gives it numpy.ma's
# semantics (checked above against the unmasked elements alone), on the wrapped library.


@pytest.fixture(params=["numpy", "array_api_strict", "torch", "jax"])
def mxp(request):
    marray = pytest.importorskip("marray")
    return marray.masked_namespace(backend_namespace(request.param))


def _marray(mxp, a):
    """A numpy.ma array (or a plain one) as an marray of ``mxp``'s library."""
    data = np.ma.getdata(a)
    return mxp.asarray(data, mask=np.ma.getmaskarray(a))


def _same_as_numpy_ma(got, want):
    """An marray result holds numpy.ma's result: same mask, same values where unmasked."""
    assert type(got).__name__ == "MArray"
    mask = np.broadcast_to(np.ma.getmaskarray(want), np.shape(want))
    np.testing.assert_array_equal(to_numpy(got.mask), mask)
    data = to_numpy(got.data)
    np.testing.assert_allclose(data[~mask], np.ma.getdata(want)[~mask], rtol=1e-6
                               if data.dtype == np.float32 else 1e-15)
    np.testing.assert_array_equal(data[mask], 0.0)  # nothing under a mask leaks out


def test_marray_reproduction_of_the_issue(mxp):
    """README's seven elements with the two largest masked: the mean of the other five."""
    x = mxp.asarray(np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]),
                    mask=np.array([1, 0, 0, 0, 0, 0, 1], bool))
    y = mxp.asarray(np.zeros(7))
    loss = smoothl1.smooth_l1(x, y)
    assert type(loss).__name__ == "MArray"
    assert float(to_numpy(loss.data)) == 0.25  # was 0.1786: divided by 7
    none = smoothl1.smooth_l1(x, y, reduction="none")
    assert np.ma.masked_array(to_numpy(none.data), mask=to_numpy(none.mask)).mean() == 0.25
    w = mxp.asarray(np.array([5.0, 1, 1, 1, 1, 1, 5]))
    assert float(to_numpy(smoothl1.smooth_l1(x, y, weight=w,
                                             reduction="weighted_mean").data)) == 0.25


@pytest.mark.parametrize("axis", [None, 1])
@pytest.mark.parametrize(("reduction", "weighted"), [
    ("none", False), ("mean", False), ("sum", False), ("mean", True), ("weighted_mean", True),
    ("none", True)])
def test_marray_matches_numpy_ma(kind, pair, mxp, axis, reduction, weighted):
    loss, grad, p = kind
    x, y, _ = pair
    w = np.ma.masked_array(np.arange(1.0, 8.0), mask=[0, 0, 1, 0, 0, 0, 0]) if weighted else None
    kwargs = {"axis": axis} if reduction != "none" else {}
    mw = None if w is None else _marray(mxp, w)
    _same_as_numpy_ma(loss(_marray(mxp, x), _marray(mxp, y), p, reduction, weight=mw, **kwargs),
                      loss(x, y, p, reduction, weight=w, **kwargs))
    _same_as_numpy_ma(grad(_marray(mxp, x), _marray(mxp, y), p, reduction, weight=mw, **kwargs),
                      grad(x, y, p, reduction, weight=w, **kwargs))


def test_marray_value_and_grad_and_float32(pair, mxp):
    x, y, _ = pair
    mx, my = _marray(mxp, x.astype("f4")), _marray(mxp, y.astype("f4"))
    value, grad = smoothl1.smooth_l1_value_and_grad(mx, my)
    assert value.dtype == grad.dtype == mx.dtype  # float32 stays float32, in its library
    assert type(value.data) is type(mx.data)
    _same_as_numpy_ma(value, smoothl1.smooth_l1(x.astype("f4"), y.astype("f4")))
    _same_as_numpy_ma(grad, smoothl1.smooth_l1_grad(x.astype("f4"), y.astype("f4")))
    _same_as_numpy_ma(smoothl1.SmoothL1Loss()(mx, my), value_np := smoothl1.smooth_l1(
        x.astype("f4"), y.astype("f4")))
    assert not np.ma.getmaskarray(value_np)


def test_marray_everything_masked_and_inputs_untouched(mxp):
    x = mxp.asarray(np.full((3, 2), np.nan), mask=np.ones((3, 2), bool))
    y = mxp.asarray(np.zeros((3, 2)))
    for reduction in ("mean", "sum"):
        assert bool(to_numpy(smoothl1.smooth_l1(x, y, reduction=reduction).mask))
    assert np.isnan(to_numpy(x.data)).all()
    assert to_numpy(x.mask).all()
