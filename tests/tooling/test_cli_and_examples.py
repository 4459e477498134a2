"""The README's main job (the demo) and the examples run and say true things."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from smoothl1.__main__ import main

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_demo_table_covers_installed_backends_and_agrees(capsys):
    assert main(["-n", "5000", "--repeats", "2", "--figure", ""]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")][1:]
    backends = {r[0].strip() for r in rows}
    installed = {b for b, module in (("numpy", "numpy"), ("array_api_strict", "array_api_strict"),
                                     ("torch", "torch"), ("jax", "jax"), ("dask", "dask.array"))
                 if importlib.util.find_spec(module.partition(".")[0]) is not None}
    assert installed <= backends
    losses = {float(r[3]) for r in rows}
    assert max(losses) - min(losses) < 1e-6 * max(losses)
    for r in rows:
        assert float(r[4]) < 1e-6  # relative loss error against float64
        assert float(r[5]) < 1e-5  # gradient error, in units of 1/N


def test_demo_rejects_bad_sizes():
    with pytest.raises(SystemExit):
        main(["-n", "0"])


#: Each example at a small size (CI runs them all); an example missing here runs as it is.
SMALL = {
    "robust_regression.py": ["--points", "120", "--steps", "400"],
    "jax_optax_training.py": ["--steps", "150", "--hidden", "8"],
    "torch_drop_in.py": ["--steps", "40"],
    "out_of_core_dask.py": ["--elements", str(1 << 20), "--chunk-mib", "1"],
    "sharded_jax.py": ["--rows", "4096", "--steps", "40"],
}
NEEDS = {"jax_optax_training.py": ["jax", "optax"], "torch_drop_in.py": ["torch"],
         "out_of_core_dask.py": ["dask", "zarr"], "sharded_jax.py": ["jax"],
         "robust_regression.py": ["matplotlib"]}


def _run_example(script: pathlib.Path, args: list[str], cwd: pathlib.Path) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg"}  # headless: figures go to files
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                         timeout=300, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    for module in NEEDS.get(script.name, []):
        pytest.importorskip(module)
    stdout = _run_example(script, SMALL.get(script.name, []), tmp_path)
    assert "loss" in stdout


def test_robust_regression_beats_least_squares_and_saves_its_figure(tmp_path):
    pytest.importorskip("matplotlib")
    stdout = _run_example(ROOT / "examples" / "robust_regression.py",
                          ["--points", "200", "--steps", "1500", "--figure", "fit.png"], tmp_path)
    fits = {line.split(":")[0]: line.split("y = ")[1].split()[0]
            for line in stdout.splitlines() if "fit:" in line}
    robust = float(fits["Smooth L1 fit"].rstrip("x"))
    lsq = float(fits["least squares fit"].rstrip("x"))
    assert abs(robust - 2.0) < 0.05 < abs(lsq - 2.0)  # the true slope is 2
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torch_drop_in_gives_the_same_training_curve(tmp_path):
    pytest.importorskip("torch")
    stdout = _run_example(ROOT / "examples" / "torch_drop_in.py", ["--steps", "60"], tmp_path)
    worst = float(stdout.strip().splitlines()[-1].rsplit(":", 1)[1])
    assert worst < 1e-5  # float32 rounding of the mean, not a different loss


def test_demo_writes_the_figure_and_says_where(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert main(["-n", "2000", "--repeats", "1", "--figure", "curves.png"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "curves.png") in out
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "smoothl1", "-n", "1000", "--repeats", "1",
                          "--figure", ""],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "| numpy | cpu | float32 |" in out.stdout
