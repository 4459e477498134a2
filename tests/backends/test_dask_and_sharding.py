"""Scale-out: lazy dask arrays (chunked, masked, distributed), JAX arrays sharded over devices."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import smoothl1

from .._lazy import leaves, no_compute, task_names

ROOT = pathlib.Path(__file__).resolve().parents[2]
FUNCS = [smoothl1.smooth_l1, smoothl1.smooth_l1_grad, smoothl1.smooth_l1_value_and_grad,
         smoothl1.huber, smoothl1.huber_grad, smoothl1.huber_value_and_grad]


def _layout(name, rng, dtype):
    """NumPy input, target, weight, and the same as dask arrays laid out as ``name`` says."""
    da = pytest.importorskip("dask.array")
    x = rng.standard_normal((60, 30)).astype(dtype)
    y = rng.standard_normal((60, 30)).astype(dtype)
    w = rng.random((60, 30)).astype(dtype)
    if name == "same chunks":
        return (x, y, None), (da.from_array(x, chunks=(16, 30)), da.from_array(y, chunks=(16, 30)),
                              None)
    if name == "different chunks":
        return (x, y, None), (da.from_array(x, chunks=(7, 11)), da.from_array(y, chunks=(25, 30)),
                              None)
    if name == "broadcast":
        return (x, y[0], None), (da.from_array(x, chunks=(16, 10)),
                                 da.from_array(y[0], chunks=7), None)
    if name == "weighted":
        return (x, y, w), tuple(da.from_array(a, chunks=(16, 30)) for a in (x, y, w))
    assert name.startswith("unknown sizes")  # rows picked by a boolean mask: shape (nan, 30)
    keep = x[:, 0] > 0
    lazy = [da.from_array(a, chunks=(16, 30)) for a in (x, y, w)]
    mask = lazy[0][:, 0] > 0
    lazy = [a[mask] for a in lazy]
    assert np.isnan(lazy[0].shape[0])
    weighted = name.endswith("weighted")
    return (x[keep], y[keep], w[keep] if weighted else None), (
        lazy[0], lazy[1], lazy[2] if weighted else None)


LAYOUTS = ["same chunks", "different chunks", "broadcast", "weighted", "unknown sizes",
           "unknown sizes, weighted"]


@pytest.mark.filterwarnings("ignore:Using a target size")  # the broadcast layout, as torch
@pytest.mark.parametrize(("layout", "reduction"), [
    (layout, reduction) for layout in LAYOUTS
    for reduction in ("mean", "sum", "none") + (("weighted_mean",) if "weighted" in layout else ())
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_dask_is_lazy_and_equals_numpy(fn, reduction, dtype, layout, rng):
    dask = pytest.importorskip("dask")
    (x, y, w), (lx, ly, lw) = _layout(layout, rng, dtype)
    args = {"weight": lw} if lw is not None else {}
    with dask.config.set(scheduler=no_compute):
        out = leaves(fn(lx, ly, 0.5, reduction, **args))
    expected = leaves(fn(x, y, 0.5, reduction, **({"weight": w} if w is not None else {})))
    for o, e in zip(out, expected, strict=True):
        got = o.compute(scheduler="threads")
        assert got.dtype == e.dtype
        assert got.shape == e.shape
        # reductions are summed in another order (float64 blocks on NumPy, float32 on the
        # general path), and weighted_mean's gradient divides by a total weight that the
        # float32 general path sums in float32: a few float32 ulps
        np.testing.assert_allclose(got, e, rtol=1e-14 if dtype == "float64" else 5e-7, atol=0)


@pytest.mark.parametrize("layout", ["same chunks", "different chunks", "unknown sizes"])
@pytest.mark.parametrize("fn", [smoothl1.smooth_l1, smoothl1.smooth_l1_value_and_grad],
                         ids=lambda f: f.__name__)
def test_dask_takes_one_streaming_task_per_chunk(fn, layout, rng):
    """Plain layouts go through the per-chunk executor, not a dozen array-API tasks."""
    _, (lx, ly, _) = _layout(layout, rng, "float32")
    for o in leaves(fn(lx, ly, 1.0, "mean")):
        names = task_names(o)
        assert "smoothl1-chunk" in names
        assert not any(n.startswith(("abs", "sub", "clip", "minimum")) for n in names), names


@pytest.mark.parametrize("threshold", ["per feature", "per feature, other chunks",
                                       "per element", "per element, other chunks", "0-d"])
@pytest.mark.parametrize(("reduction", "axis"), [("mean", None), ("sum", 0), ("none", None)])
@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_an_array_threshold_takes_one_task_per_chunk(fn, reduction, axis, threshold, rng):
    """An array beta/delta is one more operand of the per-chunk tasks: lazy, NumPy's bits."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    x = (rng.standard_normal((60, 6)) * 2).astype(np.float32)
    y = rng.standard_normal((60, 6)).astype(np.float32)
    per_feature = threshold.startswith("per feature")
    p = rng.uniform(0.2, 2.0, (6,) if per_feature else (() if threshold == "0-d" else (60, 6)))
    p = p.astype(np.float32)
    if per_feature:
        p[:3] = [0.0, np.inf, -1.0]  # L1, zero loss, invalid (NaN) columns
    chunks = {"per feature": 3, "per feature, other chunks": 2, "0-d": (),
              "per element": (25, 3), "per element, other chunks": (7, 6)}[threshold]
    lx, ly = da.from_array(x, chunks=(25, 3)), da.from_array(y, chunks=(25, 3))
    lp = da.from_array(p, chunks=chunks)
    kwargs = {"axis": axis} if axis is not None else {}
    with dask.config.set(scheduler=no_compute), np.errstate(invalid="ignore"):
        out = leaves(fn(lx, ly, lp, reduction, **kwargs))
    expected = leaves(fn(x, y, p, reduction, **kwargs))
    for o, e in zip(out, expected, strict=True):
        names = task_names(o)
        assert "smoothl1-chunk" in names
        assert not any(n.startswith(("abs", "sub", "clip", "minimum", "divide")) for n in names)
        got = o.compute(scheduler="threads")
        assert got.shape == e.shape
        if o.ndim == x.ndim:  # elementwise: the same blocks, per chunk
            np.testing.assert_array_equal(got, e)
        else:  # float64 totals added up in another order
            np.testing.assert_allclose(got, e, rtol=1e-6, atol=0, equal_nan=True)


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("layout", ["weighted", "broadcast", "different chunks"])
@pytest.mark.parametrize(("reduction", "axis"), [("mean", None), ("weighted_mean", 0),
                                                 ("sum", 1), ("mean", (0, 1)), ("none", None)])
@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_every_call_form_takes_one_task_per_chunk(fn, reduction, axis, layout, rng):
    """Weights, broadcasting and per-axis reductions go through the NumPy blocks per chunk."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    (x, y, w), (lx, ly, lw) = _layout(layout, rng, "float32")
    if lw is None:
        w, lw = np.linspace(0, 1, 30, dtype=np.float32), da.from_array(
            np.linspace(0, 1, 30, dtype=np.float32), chunks=7)
    kwargs = {"axis": axis} if axis is not None else {}
    with dask.config.set(scheduler=no_compute):
        out = leaves(fn(lx, ly, 0.5, reduction, weight=lw, **kwargs))
    expected = leaves(fn(x, y, 0.5, reduction, weight=w, **kwargs))
    elementwise = [reduction == "none", reduction != "weighted_mean"]  # value, gradient
    if fn in (smoothl1.smooth_l1_grad, smoothl1.huber_grad):
        elementwise = elementwise[1:]
    for o, e, exact in zip(out, expected, elementwise, strict=False):
        names = task_names(o)
        assert "smoothl1-chunk" in names
        assert not any(n.startswith(("abs", "sub", "clip", "minimum")) for n in names)
        got = o.compute(scheduler="threads")
        assert got.dtype == e.dtype
        assert got.shape == e.shape
        if exact:  # the same blocks, per chunk: torch's bits
            np.testing.assert_array_equal(got, e)
        else:  # float64 totals added per chunk, then across chunks
            np.testing.assert_allclose(got, e, rtol=5e-7, atol=0)


@pytest.mark.parametrize("axis", [0, 1, (0, 1)])
@pytest.mark.parametrize("fn", [smoothl1.huber, smoothl1.huber_grad], ids=lambda f: f.__name__)
def test_dask_unknown_sizes_reduced_along_an_axis(fn, axis, rng):
    dask = pytest.importorskip("dask")
    (x, y, _), (lx, ly, _) = _layout("unknown sizes", rng, "float64")
    with dask.config.set(scheduler=no_compute):
        out = fn(lx, ly, 0.7, "mean", axis=axis, keepdims=True)
    np.testing.assert_allclose(out.compute(), fn(x, y, 0.7, "mean", axis=axis, keepdims=True),
                               rtol=1e-15)


def test_dask_python_number_cotangent_and_keepdims(rng):
    da = pytest.importorskip("dask.array")
    x, y = rng.standard_normal((50, 8)), rng.standard_normal((50, 8))
    lx, ly = da.from_array(x, chunks=(9, 8)), da.from_array(y, chunks=(9, 8))
    for reduction in ("mean", "sum", "none"):
        got = smoothl1.smooth_l1_grad(lx, ly, 0.3, reduction, grad_output=2.5)
        assert "smoothl1-chunk" in task_names(got)
        np.testing.assert_array_equal(
            got.compute(), smoothl1.smooth_l1_grad(x, y, 0.3, reduction, grad_output=2.5))
    loss = smoothl1.smooth_l1(lx, ly, 0.3, keepdims=True)
    assert loss.shape == (1, 1)
    np.testing.assert_allclose(loss.compute(), smoothl1.smooth_l1(x, y, 0.3, keepdims=True),
                               rtol=1e-15)


def test_dask_empty_after_masking_gives_nan_mean_and_empty_gradient():
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.arange(10.0), chunks=4)
    x = x[x > 100]
    loss, grad = smoothl1.smooth_l1_value_and_grad(x, x * 2)
    assert np.isnan(loss.compute())
    assert grad.compute().shape == (0,)
    assert smoothl1.smooth_l1(x, x, reduction="sum").compute() == 0.0


def test_dask_inputs_are_not_mutated(rng):
    da = pytest.importorskip("dask.array")
    x, y = rng.standard_normal(5000), rng.standard_normal(5000)
    x0, y0 = x.copy(), y.copy()
    smoothl1.smooth_l1_value_and_grad(da.from_array(x, chunks=999),
                                      da.from_array(y, chunks=999))[1].compute()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.slow
@pytest.mark.parametrize("unknown", [False, True], ids=["known size", "unknown size"])
def test_dask_mean_over_more_than_2_to_the_31_elements(unknown):
    """No 32-bit or float32 count: a mean over 2**31 + 2**20 elements is exact."""
    da = pytest.importorskip("dask.array")
    big, small = 1 << 31, 1 << 20
    chunk = 1 << 26
    x = da.concatenate([da.ones(big, dtype=np.float32, chunks=chunk),
                        da.zeros(small, dtype=np.float32, chunks=small)])
    y = da.zeros_like(x)
    if unknown:
        x = x[x >= 0]  # keeps everything, but dask no longer knows how much
        y = y[y >= 0]
        assert np.isnan(x.shape[0])
    loss = smoothl1.smooth_l1(x, y, beta=1.0)  # each 1 gives 0.5, each 0 gives 0
    expected = np.float32(0.5 * big / (big + small))  # 0.49975..., in float64 then rounded
    assert loss.compute(scheduler="threads") == expected
    assert smoothl1.smooth_l1(x, y, beta=1.0, reduction="sum").compute() == np.float32(0.5 * big)


def _example(*args: str, timeout: float = 600) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "out_of_core_dask.py"),
                          "--json", *args], capture_output=True, text=True, timeout=timeout,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_out_of_core_example_small_on_a_local_cluster():
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    threads = _example("--elements", str(1 << 22), "--chunk-mib", "2")
    cluster = _example("--elements", str(1 << 22), "--chunk-mib", "2", "--cluster",
                       "--threads", "1")
    assert cluster["workers"] == 2
    assert cluster["loss"] == threads["loss"]
    assert threads["grad_error_in_units_of_1_over_n"] == 0.0
    assert cluster["grad_error_in_units_of_1_over_n"] == 0.0


@pytest.mark.slow
def test_out_of_core_memory_is_bounded_by_chunks_not_by_size():
    """2 x 4 GiB float32, 64 MiB chunks: mean loss + gradient to Zarr in < 1.2 GiB.

    Each run is a fresh subprocess measuring its own peak resident memory; on a
    LocalCluster of two worker processes each worker stays under 1 GiB (the
    cluster's workers are also started with a 1 GiB memory limit).
    """
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    threads = _example("--full", "--threads", "2")
    assert threads["elements"] == 1 << 30
    assert threads["peak_rss_mib"] < 1.2 * 1024, threads
    cluster = _example("--full", "--cluster", "--workers", "2", "--threads", "1")
    assert len(cluster["worker_peak_rss_mib"]) == 2
    assert max(cluster["worker_peak_rss_mib"]) < 1024, cluster
    assert cluster["loss"] == threads["loss"]
    assert abs(threads["loss"] - 0.72008) < 1e-4  # E|smooth_l1| of N(0, 2) noise: 0.72008...
    assert threads["grad_error_in_units_of_1_over_n"] == 0.0


def test_scale_out_benchmark_runs_and_writes_its_table(tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale_out.py"), "--elements", str(1 << 18),
         "--chunk-mib", "0.25", "--numpy-elements", str(1 << 18), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    table = (tmp_path / "scale-out.md").read_text()
    assert table.count("| smoothl1") == 4
    data = json.loads((tmp_path / "scale-out.json").read_text())
    losses = {round(r["loss"], 6) for name, r in data["results"].items()
              if "loss" in r and "in-memory" not in name and "in memory" not in name}
    assert len(losses) == 1  # every dask run computed the same loss


_SHARDED = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import smoothl1

    jax.config.update("jax_enable_x64", True)
    report = {"devices": len(jax.devices()), "cases": []}
    rng = np.random.default_rng(0)
    mesh1 = jax.make_mesh((4,), ("x",))
    mesh2 = jax.make_mesh((2, 2), ("b", "n"))

    def case(name, fn, arrays, shardings, static, kwargs=None):
        # jax.make_mesh makes Explicit axes: eager jax.grad then wants the mesh set
        with jax.set_mesh(shardings[0].mesh):
            _case(name, fn, arrays, shardings, static, kwargs or {})

    def _case(name, fn, arrays, shardings, static, kwargs):
        placed = [jax.device_put(a, s) for a, s in zip(arrays, shardings)]
        f = jax.jit(lambda *a: fn(*a, *static, **kwargs))
        out = f(*placed)
        jax.block_until_ready(out)
        ref = fn(*[jnp.asarray(a) for a in arrays], *static, **kwargs)
        out = out if isinstance(out, tuple) else (out,)
        ref = ref if isinstance(ref, tuple) else (ref,)
        hlo = f.lower(*placed).compile().as_text()
        eager = fn(*placed, *static, **kwargs)
        eager = eager if isinstance(eager, tuple) else (eager,)
        report["cases"].append({
            "name": name,
            "ulps": [float(np.max(np.abs(np.asarray(o) - np.asarray(r))
                                  / np.spacing(np.abs(np.asarray(r)).astype(np.asarray(r).dtype))))
                     for o, r in zip(out, ref)],
            "eager_equal": [bool(np.array_equal(np.asarray(e), np.asarray(o)))
                            for e, o in zip(eager, out)],
            "specs": [str(o.sharding.spec) for o in out],
            "input_spec": str(placed[0].sharding.spec),
            "all_reduce": "all-reduce" in hlo,
            "all_gather": "all-gather" in hlo,
        })

    for dt in (np.float32, np.float64):
        x, y = (rng.standard_normal(1 << 16).astype(dt) for _ in range(2))
        s1 = NamedSharding(mesh1, P("x"))
        for red in ("mean", "sum"):
            case(f"{dt.__name__} loss {red}", smoothl1.smooth_l1, (x, y), (s1, s1), (0.5, red))
            case(f"{dt.__name__} value_and_grad {red}", smoothl1.huber_value_and_grad,
                 (x, y), (s1, s1), (2.0, red))
        case(f"{dt.__name__} grad none", smoothl1.smooth_l1_grad, (x, y), (s1, s1), (0.5, "none"))
        grad = lambda a, b: jax.grad(smoothl1.smooth_l1)(a, b, 0.5)
        case(f"{dt.__name__} jax.grad", grad, (x, y), (s1, s1), ())
        X, Y, W = (rng.standard_normal((64, 256)).astype(dt) for _ in range(3))
        s2 = NamedSharding(mesh2, P("b", "n"))
        case(f"{dt.__name__} 2-D per-row mean", smoothl1.smooth_l1, (X, Y), (s2, s2), (0.5,),
             {"axis": 1})
        case(f"{dt.__name__} 2-D weighted_mean", lambda a, b, w: smoothl1.smooth_l1(
             a, b, weight=w, reduction="weighted_mean"), (X, Y, np.abs(W)), (s2, s2, s2), ())
        case(f"{dt.__name__} 2-D jax.grad weighted", lambda a, b, w: jax.grad(
             lambda p: smoothl1.huber(p, b, 1.5, weight=w))(a), (X, Y, W), (s2, s2, s2), ())
    print(json.dumps(report))
""")


def test_sharded_jax_reduces_across_devices_without_gathering():
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _SHARDED], capture_output=True, text=True,
                         timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    assert len(report["cases"]) == 18
    for c in report["cases"]:
        name = c["name"]
        # same loss within 1 ulp, same gradients; a per-row mean of 256 float32
        # elements added up in two halves on two devices: within 2 ulps
        assert max(c["ulps"]) <= (2 if "per-row" in name else 1), c
        assert all(c["eager_equal"]), c  # eager on sharded arrays: the jitted values
        assert not c["all_gather"], c  # the inputs are never gathered onto one device
        for spec in c["specs"]:
            if spec != "P()":  # a gradient or unreduced loss keeps the input's sharding
                assert spec == c["input_spec"] or (
                    "per-row" in name and spec == "P('b',)"), c
        if any(k in name for k in ("loss", "value_and_grad", "per-row", "weighted_mean")):
            assert c["all_reduce"], c  # partial sums added across devices
