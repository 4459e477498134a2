"""Scale-out on cubed: peak memory of smoothl1 beside cubed's own kernels, on the same data.

cubed plans every task's memory against ``allowed_mem`` before it runs, but it
cannot see the temporaries a task's NumPy code makes.  Each measurement runs
in a fresh subprocess (its peak resident memory, ``VmHWM``, is its own) on the
same lazily generated float32 inputs, ``x = sin(0.001 i) * 3`` and
``y = cos(0.0007 i)`` for ``i < --elements`` in chunks of ``--chunk-mib``,
computing the mean Smooth L1 loss (``beta = 1``) and storing its gradient to
Zarr in one ``cubed.compute``:

- smoothl1 (``smooth_l1_value_and_grad``: one task per chunk, NumPy blocks);
- a hand-written per-chunk kernel (``cubed.map_blocks`` of float32 NumPy code:
  the loss's partial sums per chunk, then the gradient), the floor any cubed
  user would write by hand;
- the plain array-API formula on cubed's namespace, as anyone would write it
  without smoothl1;
- generating the two inputs and summing them, nothing else (the floor).

After the timed part, each run reads back the stored loss and gradient and
checks them against float64 math on the same inputs (computed chunk by chunk).

Run: ``python benchmarks/scale_out_cubed.py [--elements N] [--out DIR]``.
Writes ``scale-out-cubed.md`` and ``scale-out-cubed.json`` to ``--out``
(default ``benchmark-results/``).  No time is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

RUNS = {
    "smoothl1": "smoothl1.smooth_l1_value_and_grad",
    "kernel": "hand-written per-chunk kernel (map_blocks)",
    "formula": "plain array-API formula",
    "generate": "generate inputs only",
}

_CHILD = """
import json, sys, tempfile, time
import numpy as np
import cubed, cubed.array_api as xp, zarr
import smoothl1
run, n, chunk, allowed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def peak():  # VmHWM starts afresh at exec
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
def generated(i):  # the same operations in cubed and in the check below: the same bits
    return (np.sin(i * 0.001) * 3.0).astype(np.float32), np.cos(i * 0.0007).astype(np.float32)
tmp = tempfile.mkdtemp()
spec = cubed.Spec(work_dir=tmp, allowed_mem=allowed)
i = xp.arange(n, dtype=xp.float64, chunks=chunk, spec=spec)
x = xp.astype(xp.sin(i * 0.001) * 3.0, xp.float32)
y = xp.astype(xp.cos(i * 0.0007), xp.float32)
one = ((1,) * len(x.chunks[0]),)
if run == "smoothl1":
    loss, grad = smoothl1.smooth_l1_value_and_grad(x, y)
elif run == "kernel":
    def partial_sum(a, b):
        z = np.abs(a - b)
        return np.array([np.where(z < 1, 0.5 * z * z, z - 0.5).sum(dtype=np.float64)])
    def gradient(a, b):
        return np.clip(a - b, -1, 1) / np.float32(n)
    parts = cubed.map_blocks(partial_sum, x, y, dtype=np.float64, chunks=one)
    loss = xp.astype(xp.sum(parts) / n, xp.float32)
    grad = cubed.map_blocks(gradient, x, y, dtype=np.float32)
elif run == "formula":
    d = x - y
    ad = xp.abs(d)
    loss = xp.mean(xp.where(ad < 1.0, 0.5 * d * d, ad - 0.5))
    grad = xp.minimum(xp.maximum(d, -1.0), 1.0) / n
else:  # generate only
    loss, grad = xp.astype(xp.sum(x, dtype=xp.float64) + xp.sum(y, dtype=xp.float64),
                           xp.float32), None
targets = [cubed.to_zarr(loss, tmp + "/loss.zarr", compute=False)]
if grad is not None:
    targets.append(cubed.to_zarr(grad, tmp + "/grad.zarr", compute=False))
start = time.perf_counter()
cubed.compute(*targets, _return_in_memory_array=False)
seconds = time.perf_counter() - start
result = {"seconds": seconds, "peak_rss_mib": peak(), "elements": n}
if grad is not None:  # the check against float64 math, chunk by chunk (not timed)
    stored, total, worst = zarr.open_array(tmp + "/grad.zarr"), 0.0, 0.0
    for s in range(0, n, chunk):
        a, b = generated(np.arange(s, min(s + chunk, n), dtype=np.float64))
        d = a.astype(np.float64) - b
        z = np.abs(d)
        total += np.where(z < 1, 0.5 * z * z, z - 0.5).sum()
        want = np.clip(d, -1, 1) / n
        worst = max(worst, float(np.max(np.abs(stored[s:s + chunk] - want))) * n)
    value = float(zarr.open_array(tmp + "/loss.zarr")[()])
    result.update(loss=value, loss_error=abs(value - total / n) / (total / n),
                  grad_error_in_units_of_1_over_n=worst)
print(json.dumps(result))
"""


def _run(run: str, elements: int, chunk: int, allowed_mem: str, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, "-c", _CHILD, run, str(elements), str(chunk), allowed_mem]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        raise RuntimeError(f"{run} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(elements: int, chunk_mib: float, allowed_mem: str, repeat: int = 1,
            timeout: float = 900) -> dict[str, Any]:
    """Every run ``repeat`` times (interleaved); each keeps its median peak and time."""
    chunk = max(1, int(chunk_mib * 2**20) // 4)
    samples: dict[str, list[dict[str, Any]]] = {run: [] for run in RUNS}
    for _ in range(repeat):
        for run in RUNS:
            samples[run].append(_run(run, elements, chunk, allowed_mem, timeout))
    results = {}
    for run, found in samples.items():
        found.sort(key=lambda r: r["peak_rss_mib"])
        median = found[len(found) // 2]
        median["peak_rss_mib_all"] = [r["peak_rss_mib"] for r in found]
        median["seconds"] = sorted(r["seconds"] for r in found)[len(found) // 2]
        results[run] = median
    return results


def report(results: dict[str, Any], elements: int, chunk_mib: float, allowed_mem: str) -> str:
    """A Markdown table of the measurements, with the peaks' ratios to the hand-written kernel."""
    gib = 2 * elements * 4 / 2**30
    kernel = results["kernel"]["peak_rss_mib"]
    lines = [
        f"# Scale-out on cubed: mean Smooth L1 loss + gradient stored to Zarr, 2 x {elements} "
        f"float32 ({gib:g} GiB of input), {chunk_mib:g} MiB chunks, allowed_mem={allowed_mem}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ", cubed's default (single-threaded) executor. Each row ran in a fresh subprocess; peak "
        "memory is its `VmHWM` (median of the runs; all of them in brackets).",
        "",
        "| run | peak RSS (MiB) | peak / kernel's | seconds | loss | loss rel. error "
        "| max grad error (1/N) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, r in results.items():
        peaks = ", ".join(f"{p:.0f}" for p in r["peak_rss_mib_all"])
        loss = f"{r['loss']:.7f}" if "loss" in r else "-"
        error = f"{r['loss_error']:.1e}" if "loss_error" in r else "-"
        grad = f"{r['grad_error_in_units_of_1_over_n']:.1e}" if "loss" in r else "-"
        lines.append(f"| {RUNS[run]} | {r['peak_rss_mib']:.0f} [{peaks}] | "
                     f"{r['peak_rss_mib'] / kernel:.2f} | {r['seconds']:.1f} | {loss} | {error} "
                     f"| {grad} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write ``scale-out-cubed.md`` and ``scale-out-cubed.json``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--elements", type=int, default=1 << 27)
    p.add_argument("--chunk-mib", type=float, default=16.0)
    p.add_argument("--allowed-mem", default="250MB")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmark-results")
    args = p.parse_args(argv)
    results = measure(args.elements, args.chunk_mib, args.allowed_mem, args.repeat)
    table = report(results, args.elements, args.chunk_mib, args.allowed_mem)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale-out-cubed.md").write_text(table)
    (args.out / "scale-out-cubed.json").write_text(json.dumps(
        {"elements": args.elements, "chunk_mib": args.chunk_mib,
         "allowed_mem": args.allowed_mem, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
