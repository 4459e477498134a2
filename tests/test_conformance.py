"""The conformance kit: smoothl1 passes it everywhere; wrong implementations do not."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from smoothl1.testing import assert_conformant, load_cases, provenance, run_cases

from ._backends import backend_name

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_smoothl1_conforms_on_every_backend(xp):
    report = assert_conformant(xp)
    # no bfloat16 but in torch and JAX (6 cases), no float16 in array-api-strict (15)
    expected = {"torch": 140, "jax": 140, "cupy": 134, "array_api_strict": 125}.get(
        backend_name(xp), 134)
    assert report.passed == expected
    assert report.worst_ulps["loss"] <= 3


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_smoothl1_conforms_through_autodiff(name):
    from ._backends import backend_namespace

    report = assert_conformant(backend_namespace(name), gradients="autodiff")
    assert report.passed == 140


# ----------------------------------------------------------- deliberately wrong ports
def _good(x, y, beta, reduction):
    d = x - y
    z = np.abs(d)
    with np.errstate(all="ignore"):
        loss = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta) if beta else z
    return {"mean": np.mean, "sum": np.sum}.get(reduction, np.asarray)(loss)


def _good_grad(x, y, beta, reduction):
    d = np.broadcast_arrays(x, y)[0] - y
    with np.errstate(all="ignore"):
        g = np.where(np.abs(d) < beta, d / beta, np.sign(d)) if beta else np.sign(d)
    g = np.where(np.isnan(d), d, g)
    if reduction == "mean":
        g = g / d.size
    extra = g.ndim - x.ndim
    g = g.sum(axis=tuple(range(extra))) if extra else g
    axes = tuple(i for i, n in enumerate(x.shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _lte_boundary(x, y, beta, reduction):
    z = np.abs(x - y)
    with np.errstate(all="ignore"):
        loss = np.where(z <= beta, 0.5 * z * z / beta, z - 0.5 * beta) if beta else z
    return {"mean": np.mean, "sum": np.sum}.get(reduction, np.asarray)(loss)


def _nan_at_zero_grad(x, y, beta, reduction):
    g = _good_grad(x, y, beta, reduction)
    if beta == 0:
        with np.errstate(all="ignore"):
            d = x - y
            g = np.where(d == 0, np.nan, g) if np.shape(g) == np.shape(d) else g
    return g


def _mean_over_input_size(x, y, beta, reduction):
    out = _good(x, y, beta, "sum" if reduction == "mean" else reduction)
    return out / max(x.size, 1) if reduction == "mean" else out


def _no_sum_back(x, y, beta, reduction):
    d = np.broadcast_arrays(x, y)[0] - y
    with np.errstate(all="ignore"):
        g = np.where(np.abs(d) < beta, d / beta, np.sign(d)) if beta else np.sign(d)
    return g / d.size if reduction == "mean" else g


def test_a_correct_port_passes():
    report = assert_conformant(smooth_l1=_good, smooth_l1_grad=_good_grad,
                               dtypes=("float32", "float64"), reference="torch")
    assert report.passed > 40
    assert all("huber" in reason or "torch is wrong" in reason or "weight/axis" in reason
               for reason in report.skipped.values())


@pytest.mark.parametrize(("wrong", "grad", "caught"), [
    (_lte_boundary, _good_grad, "boundary-beta"),
    (_good, _nan_at_zero_grad, "beta0-l1"),
    (_mean_over_input_size, _good_grad, "broadcast-"),
    (_good, _no_sum_back, "broadcast-"),
])
def test_wrong_ports_are_caught(wrong, grad, caught):
    report = run_cases(smooth_l1=wrong, smooth_l1_grad=grad, dtypes=("float32", "float64"),
                       reference="torch")
    assert not report.ok
    assert any(f.case.id.startswith(caught) for f in report.failures)
    with pytest.raises(AssertionError, match=caught):
        assert_conformant(smooth_l1=wrong, smooth_l1_grad=grad, dtypes=("float64",),
                          reference="torch")


def test_torch_itself_fails_the_exact_reference_on_its_defects():
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xt

    def f(x, y, b, r):
        return torch.nn.functional.smooth_l1_loss(x, y, beta=b, reduction=r)

    def h(x, y, d, r):
        return torch.nn.functional.huber_loss(x, y, delta=d, reduction=r)

    exact = run_cases(xt, smooth_l1=f, huber=h, gradients="autodiff")
    failed = {f.case.id for f in exact.failures}
    # (torch takes no threshold arrays: the extended cases are not run for it)
    assert failed == {c.id for c in load_cases() if c.torch_differs and not c.extended}
    assert {"f16-overflow", "f32-overflow-before-division", "beta0-nan-float64"} <= failed
    assert run_cases(xt, smooth_l1=f, huber=h, gradients="autodiff", reference="torch").ok


# ----------------------------------------------------------- the data file
def test_cases_have_provenance_and_cover_the_parity_reference():
    p = provenance()
    assert p["torch_version"].startswith("2.13")
    assert p["generator"] == "tools/generate_conformance_cases.py"
    cases = load_cases()
    ids = {c.id for c in cases}
    for needed in ("boundary-beta0.1-float32", "beta0-l1-float64", "beta-inf-float64",
                   "nonfinite-float32", "empty-float64-mean", "zero-d-float32-none",
                   "broadcast-float32-mean", "half-bfloat16-none", "f16-underflow",
                   "f32-tiny-beta-underflow"):
        assert needed in ids
    assert {c.kind for c in cases} == {"smooth_l1", "huber"}
    extended = [c for c in cases if c.extended]
    assert {c.reduction for c in extended} == {"none", "mean", "sum", "weighted_mean"}
    assert any(c.axis is not None and c.keepdims for c in extended)
    assert {c.dtype for c in cases} == {"float16", "bfloat16", "float32", "float64"}


def test_stored_values_regenerate_identically():
    """Recompute every case from its stored inputs with the generator: same numbers."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "generate_conformance_cases", ROOT / "tools" / "generate_conformance_cases.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    stored = json.loads((ROOT / "smoothl1" / "testing" / "cases.json").read_text())["cases"]
    fresh = {c["id"]: c for c in gen.cases()}
    assert set(fresh) == {c["id"] for c in stored}
    for case in stored:
        assert fresh[case["id"]] == case, case["id"]


def test_check_command_table_and_json():
    out = subprocess.run([sys.executable, "-m", "smoothl1", "check", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True
    rows = {(r["backend"], r["gradients"]): r for r in data["rows"]}
    installed = [b for b, module in (("numpy", "numpy"), ("array_api_strict", "array_api_strict"),
                                     ("torch", "torch"), ("jax", "jax"), ("dask", "dask"))
                 if importlib.util.find_spec(module) is not None]
    for backend in installed:
        assert rows[(backend, "function")]["status"] == "ok"
        assert rows[(backend, "function")]["failed"] == 0
    if "torch" in installed:
        assert rows[("torch", "autodiff")]["passed"] == 140
    assert any(r["status"] in {"not installed", "installed, but no CUDA device", "ok"}
               for r in data["rows"] if r["backend"] == "cupy")
