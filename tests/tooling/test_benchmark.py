"""The benchmark suite runs at tiny sizes, checks its contenders and writes its outputs.

No time is asserted: only that every contender was checked, measured and reported.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import suite as bench

pytest.importorskip("torch")
pytest.importorskip("optax")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def report():
    cfg = bench.Config(log2_sizes=(6, 9), dtypes=("float32", "float64"), repeats=2,
                       min_sample_seconds=1e-4, accuracy_log2=12)
    return bench.run(cfg, log=lambda line: None)


def test_every_contender_is_measured_for_every_case(report):
    names = {r.contender for r in report.results}
    assert names == set(bench.CONTENDERS)
    for dtype in ("float32", "float64"):
        for log2n in (6, 9):
            for op in bench.OPS:
                got = {r.contender for r in report.results
                       if (r.dtype, r.log2n, r.op) == (dtype, log2n, op)}
                assert got == names, (dtype, log2n, op)
    for r in report.results:
        assert r.seconds > 0
        assert len(r.samples) == 2
        assert r.max_rel_error <= (1e-4 if r.dtype == "float32" else 1e-10)


def test_accuracy_and_targets_are_reported(report):
    assert report.accuracy["rel_error"] < 1e-6
    rows = bench.targets(report)
    assert len(rows) == 2 * 10
    assert all(got is not None and got > 0 for _, _, got, _ in rows)


def test_outputs_are_written(report, tmp_path):
    paths = bench.write_outputs(report, tmp_path)
    assert {p.name for p in paths} == {"results.json", "results.md", "throughput.png"}
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["results"]) == len(report.results)
    assert data["machine"]["numpy"] == np.__version__
    md = (tmp_path / "results.md").read_text()
    assert "## Targets of the performance issue" in md
    assert "| smoothl1 (NumPy) |" in md
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_wrong_contender_is_refused():
    x, y = bench._data(64, "float32")
    wrong = bench.Prepared(lambda: np.float32(0.0), np.asarray, lambda r: None)
    with pytest.raises(AssertionError, match="relative error"):
        bench._check(wrong, x, y, "mean")


def test_command_line_quick_run(tmp_path):
    """The documented command, from the clone's root (the suite is not in the package)."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True, cwd=root)
    assert "the project's performance targets" in out.stdout
    assert (tmp_path / "results.md").exists()
    assert (tmp_path / "forms.md").exists()


def test_the_benchmark_is_not_in_the_package():
    import smoothl1

    package = Path(smoothl1.__file__).parent
    assert not list(package.rglob("*bench*"))
    assert importlib.util.find_spec("smoothl1._benchmark") is None


def test_call_forms_are_checked_measured_and_tabled():
    from benchmarks import forms

    results = forms.run(1 << 12, repeats=2, min_sample_seconds=1e-4, log=lambda line: None)
    seen = {(r.form, r.dtype) for r in results}
    assert seen == {(f.name, d) for f in forms.FORMS for d in f.dtypes}
    thresholds = {f.name for f in forms.FORMS if f.threshold_per_feature}
    for form, dtype in seen:
        got = {r.contender for r in results if (r.form, r.dtype) == (form, dtype)}
        want = {"smoothl1 (NumPy)", "smoothl1 (torch CPU)", "torch", "plain array-API (NumPy)"}
        if form in thresholds:  # the same array as a weight, in the same round robin
            want |= {"smoothl1 (NumPy) weight instead", "smoothl1 (torch CPU) weight instead"}
        assert got == want, form
    assert all(r.seconds > 0 and len(r.samples) == 2 for r in results)
    table = forms.markdown(results, 1 << 12)
    assert table.count("\n| ") == len(seen) + 1  # a row per form and dtype, and the header
    assert "| weight=, Huber mean | float32 |" in table
    paired = forms.threshold_table(results)
    rows = [line for line in paired.splitlines() if line.startswith("| beta per feature")]
    assert len(rows) == 2 * 2 * len(thresholds)  # NumPy and torch CPU, two dtypes
    assert all(line.endswith("x |") for line in rows)


def test_a_wrong_call_form_contender_is_refused(monkeypatch):
    from benchmarks import forms

    real = forms._plain
    monkeypatch.setattr(forms, "_plain", lambda *a: (lambda: real(*a)() * 1.01))
    with pytest.raises(AssertionError, match="relative error"):
        forms.run(1 << 12, repeats=1, forms=forms.FORMS[:1], log=lambda line: None)


def test_sizes_spec():
    assert bench.sizes("10:16:2") == (10, 12, 14, 16)
    assert bench.sizes("20,24") == (20, 24)
