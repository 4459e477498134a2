"""Scale-out benchmark: peak memory and throughput of smoothl1 on dask, beside the alternatives.

Every measurement runs in a fresh subprocess, so that its peak resident memory
(``VmHWM`` from ``/proc/self/status``, which starts afresh at ``exec``) is its
own.  Measured, on the same lazily generated float32
inputs (``2 x --elements``, chunks of ``--chunk-mib``):

- smoothl1 on the threaded scheduler and on a ``dask.distributed`` LocalCluster
  (``examples/out_of_core_dask.py``): mean loss, gradient written to Zarr;
- dask generating the two inputs and summing them, nothing else (the floor);
- the plain array-API formula on the same dask arrays (loss and gradient written
  to Zarr the same way), as anyone would write it without smoothl1;
- smoothl1's in-memory NumPy path on ``--numpy-elements`` elements (what fits),
  and smoothl1 on dask arrays made of the same in-memory arrays (``from_array``,
  gradient computed into memory): the cost of dask itself, without generating
  or storing anything.

Run: ``python benchmarks/scale_out.py [--full] [--out DIR]``.  Writes
``scale-out.md`` and ``scale-out.json`` to ``--out`` (default
``benchmark-results/``).  No time is asserted anywhere; the test suite runs it
and checks the memory bounds.
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
EXAMPLE = ROOT / "examples" / "out_of_core_dask.py"

_CHILD_COMMON = """
import json, sys, tempfile, time
import numpy as np
import dask, dask.array as da
n, chunk = int(sys.argv[1]), int(sys.argv[2])
def peak():  # VmHWM starts afresh at exec (ru_maxrss would include the parent's peak)
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
def inputs():
    x = da.random.default_rng(1).standard_normal(n, dtype=np.float32, chunks=chunk)
    y = da.random.default_rng(2).standard_normal(n, dtype=np.float32, chunks=chunk)
    return x, y
"""

_GENERATE_ONLY = _CHILD_COMMON + """
x, y = inputs()
start = time.perf_counter()
dask.compute(x.sum(), y.sum(), scheduler="threads", num_workers=2)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mib": peak()}))
"""

_PLAIN_FORMULA = _CHILD_COMMON + """
import array_api_compat
x, y = inputs()
xp = array_api_compat.array_namespace(x, y)
d = x - y
ad = xp.abs(d)
loss = xp.mean(xp.where(ad < 1.0, 0.5 * d * d, ad - 0.5))
grad = xp.minimum(xp.maximum(d, -1.0), 1.0) / n   # not xp.clip: see backend-pitfalls
with tempfile.TemporaryDirectory() as tmp:
    stored = da.to_zarr(grad, tmp + "/grad.zarr", compute=False, compressors=None)
    start = time.perf_counter()
    value, _ = dask.compute(loss, stored, scheduler="threads", num_workers=2)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak(), "loss": float(value)}))
"""

_NUMPY = """
import json, sys, time
import numpy as np
import smoothl1
n, chunk = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.standard_normal(n, dtype=np.float32)
y = rng.standard_normal(n, dtype=np.float32)
if chunk:  # the same arrays as dask chunks, computed on the threaded scheduler
    import dask, dask.array as da
    x, y = da.from_array(x, chunks=chunk), da.from_array(y, chunks=chunk)
times = []
for _ in range(3):
    start = time.perf_counter()
    loss, grad = smoothl1.smooth_l1_value_and_grad(x, y, beta=1.0)
    if chunk:
        loss, grad = dask.compute(loss, grad, scheduler="threads", num_workers=2)
    times.append(time.perf_counter() - start)
    del grad
seconds = sorted(times)[1]
with open("/proc/self/status") as status:
    hwm = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": seconds, "loss": float(loss), "peak_rss_mib": hwm}))
"""


def _run(argv: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(elements: int, chunk_mib: float, numpy_elements: int, *, plain: bool = True,
            timeout: float = 900) -> dict[str, Any]:
    """Run every measurement; return them keyed by name."""
    chunk = max(1, int(chunk_mib * 2**20) // 4)
    py = sys.executable
    example = [py, str(EXAMPLE), "--json", "--elements", str(elements),
               "--chunk-mib", str(chunk_mib)]
    results: dict[str, Any] = {
        "smoothl1, threads (2)": _run([*example, "--threads", "2"], timeout),
        "smoothl1, LocalCluster (2 processes x 1 thread)":
            _run([*example, "--cluster", "--workers", "2", "--threads", "1"], timeout),
        "generate inputs only, threads (2)":
            _run([py, "-c", _GENERATE_ONLY, str(elements), str(chunk)], timeout),
    }
    if plain:
        results["plain array-API formula, threads (2)"] = _run(
            [py, "-c", _PLAIN_FORMULA, str(elements), str(chunk)], timeout)
    for name, c in ((f"smoothl1, NumPy in memory, N = {numpy_elements}", 0),
                    (f"smoothl1, dask over the same in-memory arrays, N = {numpy_elements}",
                     chunk)):
        results[name] = {**_run([py, "-c", _NUMPY, str(numpy_elements), str(c)], timeout),
                         "elements": numpy_elements}
    for r in results.values():
        r.setdefault("elements", elements)
        r["elements_per_second"] = r["elements"] / r["seconds"]
    return results


def report(results: dict[str, Any], elements: int, chunk_mib: float) -> str:
    """A Markdown table of the measurements."""
    gib = 2 * elements * 4 / 2**30
    lines = [
        f"# Scale-out: mean Smooth L1 loss + gradient stored to Zarr, 2 x {elements} float32 "
        f"({gib:g} GiB of input), {chunk_mib:g} MiB chunks",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}."
        " Each row ran in a fresh subprocess; peak memory is its `VmHWM`.",
        "",
        "| run | peak RSS (MiB) | workers' peak RSS (MiB) | seconds | M elements/s | loss |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        workers = " + ".join(f"{w:.0f}" for w in r.get("worker_peak_rss_mib", [])) or "-"
        loss = f"{r['loss']:.7f}" if "loss" in r else "-"
        lines.append(f"| {name} | {r['peak_rss_mib']:.0f} | {workers} | {r['seconds']:.1f} | "
                     f"{r['elements_per_second'] / 1e6:.0f} | {loss} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write ``scale-out.md`` and ``scale-out.json``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--elements", type=int, default=1 << 26)
    p.add_argument("--full", action="store_true", help="2**30 elements per array (2 x 4 GiB)")
    p.add_argument("--chunk-mib", type=float, default=64.0)
    p.add_argument("--numpy-elements", type=int, default=1 << 28)
    p.add_argument("--no-plain", action="store_true", help="skip the plain-formula run")
    p.add_argument("--out", type=Path, default=ROOT / "benchmark-results")
    args = p.parse_args(argv)
    elements = 1 << 30 if args.full else args.elements
    results = measure(elements, args.chunk_mib, args.numpy_elements, plain=not args.no_plain)
    table = report(results, elements, args.chunk_mib)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale-out.md").write_text(table)
    (args.out / "scale-out.json").write_text(json.dumps(
        {"elements": elements, "chunk_mib": args.chunk_mib, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
