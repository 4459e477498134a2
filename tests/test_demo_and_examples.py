"""The README's main job (the demo) and the examples run and say true things."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from smoothl1.__main__ import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo_table_covers_installed_backends_and_agrees(capsys):
    assert main(["-n", "5000", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")][1:]
    backends = {r[0].strip() for r in rows}
    assert {"numpy", "array_api_strict", "torch", "jax", "dask"} <= backends
    losses = {float(r[3]) for r in rows}
    assert max(losses) - min(losses) < 1e-6 * max(losses)
    for r in rows:
        assert float(r[4]) < 1e-6  # relative loss error against float64
        assert float(r[5]) < 1e-5  # gradient error, in units of 1/N


def test_demo_rejects_bad_sizes():
    with pytest.raises(SystemExit):
        main(["-n", "0"])


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(script):
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "loss" in out.stdout


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "smoothl1", "-n", "1000", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "| numpy | cpu | float32 |" in out.stdout
