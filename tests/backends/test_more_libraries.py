"""ndonnx, pydata sparse and cubed, beyond the behaviour suite that the ``xp`` fixture runs.

(marray is in ``tests/test_masked.py``, beside ``numpy.ma``.)
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import smoothl1
import smoothl1._core

from .._lazy import leaves

ROOT = pathlib.Path(__file__).resolve().parents[2]
FUNCS = [smoothl1.smooth_l1, smoothl1.smooth_l1_grad, smoothl1.smooth_l1_value_and_grad,
         smoothl1.huber, smoothl1.huber_grad, smoothl1.huber_value_and_grad]


# ------------------------------------------------------------------------------ ndonnx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("reduction", "weighted"), [("mean", False), ("none", True),
                                                     ("weighted_mean", True), ("sum", False)])
def test_ndonnx_exports_loss_and_gradient_as_one_onnx_model(dtype, reduction, weighted, rng):
    """Per-feature weights as a model input, any batch size: onnxruntime gives NumPy's bits."""
    ndx = pytest.importorskip("ndonnx")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    kind = getattr(ndx, dtype)
    x, y = ndx.argument(shape=("N", 3), dtype=kind), ndx.argument(shape=("N", 3), dtype=kind)
    args = {"input": x, "target": y}
    kwargs = {}
    if weighted:
        args["weight"] = kwargs["weight"] = ndx.argument(shape=(3,), dtype=kind)
    loss, grad = smoothl1.huber_value_and_grad(x, y, 0.5, reduction, **kwargs)
    model = ndx.build(args, {"loss": loss, "grad": grad})
    onnx.checker.check_model(model, full_check=True)
    exact = ort.SessionOptions()
    exact.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), exact)
    for n in (1, 7, 40):  # one model for every batch size
        feed = {"input": rng.standard_normal((n, 3)).astype(dtype),
                "target": rng.standard_normal((n, 3)).astype(dtype)}
        if weighted:
            feed["weight"] = np.array([1.0, 0.5, 2.0], dtype)
        got = session.run(["loss", "grad"], feed)
        want = smoothl1.huber_value_and_grad(
            feed["input"], feed["target"], 0.5, reduction,
            **({"weight": feed["weight"]} if weighted else {}))
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            if reduction == "none" or g.ndim:  # elementwise: NumPy's (torch's) bits
                np.testing.assert_array_equal(g, w)
            else:  # onnxruntime sums in its own order and precision
                np.testing.assert_allclose(g, w, rtol=2e-6 if dtype == "float32" else 1e-15)


def test_ndonnx_eager_arrays_give_numpys_bits(rng):
    ndx = pytest.importorskip("ndonnx")
    x, y = rng.standard_normal(50), rng.standard_normal(50)
    for fn in FUNCS:
        for got, want in zip(leaves(fn(ndx.asarray(x), ndx.asarray(y), 0.3, "none")),
                             leaves(fn(x, y, 0.3, "none")), strict=True):
            assert isinstance(got, ndx.Array)
            np.testing.assert_array_equal(got.unwrap_numpy(), want)


# ------------------------------------------------------------------------------ sparse


@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_sparse_implicit_zeros_are_elements_and_results_stay_sparse(fn):
    sparse = pytest.importorskip("sparse")
    x = sparse.random((40, 50), density=0.05, random_state=1)
    y = sparse.random((40, 50), density=0.05, random_state=2)
    for reduction in ("none", "mean", "sum"):
        out = leaves(fn(x, y, 0.4, reduction))
        want = leaves(fn(x.todense(), y.todense(), 0.4, reduction))  # zeros are elements
        for o, w in zip(out, want, strict=True):
            assert isinstance(o, sparse.COO)
            assert o.shape == w.shape
            assert o.dtype == w.dtype
            if o.ndim:  # elementwise: zero where x == y == 0, stored only elsewhere
                assert o.fill_value == 0
                assert o.nnz <= x.nnz + y.nnz
                np.testing.assert_array_equal(o.todense(), w)
            else:  # a 0-d COO; summed in sparse's order
                np.testing.assert_allclose(o.todense(), w, rtol=1e-15)


def test_sparse_per_axis_and_weighted(rng):
    sparse = pytest.importorskip("sparse")
    x = sparse.random((30, 20), density=0.1, random_state=3)
    y = sparse.random((30, 20), density=0.1, random_state=4)
    w = rng.random(20)
    got = smoothl1.smooth_l1(x, y, 0.5, "weighted_mean", weight=sparse.COO.from_numpy(w), axis=0)
    want = smoothl1.smooth_l1(x.todense(), y.todense(), 0.5, "weighted_mean", weight=w, axis=0)
    assert isinstance(got, sparse.COO)
    np.testing.assert_allclose(got.todense(), want, rtol=1e-14)


# ------------------------------------------------------------------------------- cubed


def _cubed_pair(rng, dtype, shape=(30, 40), chunks=(7, 9)):
    xp = pytest.importorskip("cubed.array_api")
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    return (x, y), (xp.asarray(x, chunks=chunks), xp.asarray(y, chunks=chunks))


def _general(*args, **kwargs):
    raise AssertionError("the general path, not one task per chunk")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("reduction", "axis", "weight"), [
    ("mean", None, None), ("sum", None, None), ("none", None, None), ("mean", 1, None),
    ("sum", (0, 1), "array"), ("weighted_mean", 0, "array"), ("mean", None, "row"),
    ("weighted_mean", None, 2.0), ("none", None, "array")])
@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_cubed_takes_one_task_per_chunk_lazily(fn, reduction, axis, weight, dtype, rng,
                                               monkeypatch):
    cubed = pytest.importorskip("cubed")
    xp = pytest.importorskip("cubed.array_api")
    (x, y), (cx, cy) = _cubed_pair(rng, dtype)
    w = cw = weight
    if weight == "array":
        w = rng.random(x.shape).astype(dtype)
        cw = xp.asarray(w, chunks=(7, 9))
    elif weight == "row":  # broadcast along the rows
        w = rng.random(x.shape[1]).astype(dtype)
        cw = xp.asarray(w, chunks=11)
    kwargs = {"axis": axis} if axis is not None else {}
    if weight is not None:
        kwargs["weight"] = cw
    grad_of_weighted_mean = reduction == "weighted_mean" and weight == "array" and (
        fn not in (smoothl1.smooth_l1, smoothl1.huber))
    with monkeypatch.context() as patch, cubed.raise_if_computes():
        if not grad_of_weighted_mean:  # that one takes the general path, lazily too
            patch.setattr(smoothl1._core, "evaluate", _general)
        out = leaves(fn(cx, cy, 0.5, reduction, **kwargs))
    if weight is not None:
        kwargs["weight"] = w
    want = leaves(fn(x, y, 0.5, reduction, **kwargs))
    for o, e in zip(out, want, strict=True):
        assert isinstance(o, cubed.Array)
        got = o.compute()
        assert got.dtype == e.dtype
        assert got.shape == e.shape
        if reduction == "none" or (got.shape == x.shape and not grad_of_weighted_mean):
            np.testing.assert_array_equal(got, e)  # the same blocks, per chunk: torch's bits
        else:  # float64 totals summed in another order; the general path's float32 total
            # weight (weighted_mean's gradient) is summed in float32: a few float32 ulps
            np.testing.assert_allclose(got, e, rtol=1e-15 if dtype == "float64" else 5e-7)


@pytest.mark.parametrize("threshold", ["per feature", "per element", "per element, other chunks"])
@pytest.mark.parametrize(("reduction", "axis"), [("mean", None), ("sum", 0), ("none", None)])
@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_cubed_takes_an_array_threshold_per_chunk_lazily(fn, reduction, axis, threshold, rng,
                                                         monkeypatch):
    """An array beta/delta is broadcast to the input's chunks, as a smaller weight is."""
    cubed = pytest.importorskip("cubed")
    xp = pytest.importorskip("cubed.array_api")
    (x, y), (cx, cy) = _cubed_pair(rng, "float32")
    if threshold == "per feature":
        p = rng.uniform(0.2, 2.0, x.shape[1]).astype(np.float32)
        p[:3] = [0.0, np.inf, -1.0]  # L1, zero loss, invalid (NaN) columns
        cp = xp.asarray(p, chunks=11)
    else:
        p = rng.uniform(0.2, 2.0, x.shape).astype(np.float32)
        cp = xp.asarray(p, chunks=(7, 9) if threshold == "per element" else (10, 40))
    kwargs = {"axis": axis} if axis is not None else {}
    with monkeypatch.context() as patch, cubed.raise_if_computes(), np.errstate(invalid="ignore"):
        patch.setattr(smoothl1._core, "evaluate", _general)
        out = leaves(fn(cx, cy, cp, reduction, **kwargs))
    with np.errstate(invalid="ignore"):
        want = leaves(fn(x, y, p, reduction, **kwargs))
    for o, e in zip(out, want, strict=True):
        with np.errstate(invalid="ignore"):
            got = o.compute()
        assert got.shape == e.shape
        if got.shape == x.shape:  # the same blocks, per chunk
            np.testing.assert_array_equal(got, e)
        else:  # float64 totals summed in another order
            np.testing.assert_allclose(got, e, rtol=5e-7, equal_nan=True)


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_cubed_broadcast_inputs_take_the_general_path_lazily(rng):
    cubed = pytest.importorskip("cubed")
    xp = pytest.importorskip("cubed.array_api")
    x, y = rng.standard_normal((20, 6)), rng.standard_normal(6)
    with cubed.raise_if_computes():
        value, grad = smoothl1.smooth_l1_value_and_grad(xp.asarray(x, chunks=(7, 6)),
                                                        xp.asarray(y, chunks=6))
    want = smoothl1.smooth_l1_value_and_grad(x, y)
    np.testing.assert_allclose(value.compute(), want[0], rtol=1e-15)
    np.testing.assert_allclose(grad.compute(), want[1], rtol=1e-15)


def test_cubed_float32_mean_is_exact_where_a_float32_sum_overflows():
    xp = pytest.importorskip("cubed.array_api")
    x = xp.asarray(np.full((3, 5000), 1e36, np.float32), chunks=(1, 2000))
    assert smoothl1.smooth_l1(x, xp.zeros_like(x)).compute() == np.float32(1e36)


def _scale_out_cubed(tmp_path, *args):
    pytest.importorskip("cubed")
    pytest.importorskip("zarr")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale_out_cubed.py"), *args, "--repeat", "1",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "scale-out-cubed.md").read_text().count("| ") >= 4
    results = json.loads((tmp_path / "scale-out-cubed.json").read_text())["results"]
    for name in ("smoothl1", "kernel", "formula"):  # checked against float64 math
        assert results[name]["loss_error"] < 1e-7, results[name]
        assert results[name]["grad_error_in_units_of_1_over_n"] < 1e-7, results[name]
    return results


def test_cubed_arrays_larger_than_allowed_mem_stay_within_their_chunks(tmp_path):
    """2 x 64 MiB float32 in 2 MiB chunks, allowed_mem 40 MB: smoothl1 holds chunks, not arrays."""
    results = _scale_out_cubed(tmp_path, "--elements", str(1 << 24), "--chunk-mib", "2",
                               "--allowed-mem", "40MB")
    ours, floor = results["smoothl1"]["peak_rss_mib"], results["generate"]["peak_rss_mib"]
    assert ours < floor + 32, results  # half of one input array: nothing array-sized is held


@pytest.mark.slow
def test_cubed_peak_is_no_higher_than_a_hand_written_per_chunk_kernel(tmp_path):
    """The issue's setting: 2 x 2**27 float32, 16 MiB chunks, allowed_mem 250 MB."""
    results = _scale_out_cubed(tmp_path)
    assert results["smoothl1"]["peak_rss_mib"] <= results["kernel"]["peak_rss_mib"], results
