"""Smooth L1 out of core: a mean loss and its gradient over arrays larger than memory, with dask.

The inputs are generated lazily in chunks; smoothl1 builds a lazy graph (no
compute), and one ``dask.compute`` evaluates the mean loss and writes the
gradient to a Zarr store on disk, chunk by chunk.  Memory is bounded by the
chunk size times the number of worker threads, not by the array size.

Run::

    python examples/out_of_core_dask.py                 # 2 x 64 MiB float32, a few seconds
    python examples/out_of_core_dask.py --full          # 2 x 4 GiB float32 (2**30 elements each)
    python examples/out_of_core_dask.py --cluster       # on a local dask.distributed cluster
    python examples/out_of_core_dask.py --scheduler tcp://10.0.0.5:8786   # on your cluster

``--json`` prints the measurements as one JSON line (the scale-out benchmark
reads it).  With ``--scheduler`` the store directory must be one the workers
can reach (``--store``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np

import smoothl1


def _peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux's ``VmHWM`` starts afresh at ``exec``; ``ru_maxrss`` would also count
    the peak of the process this one was started from.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--elements", type=int, default=1 << 24,
                   help="elements per array (default 2**24: 64 MiB of float32)")
    p.add_argument("--full", action="store_true", help="2**30 elements per array (4 GiB)")
    p.add_argument("--chunk-mib", type=float, default=64.0, help="chunk size in MiB")
    p.add_argument("--threads", type=int, default=2, help="threads (per worker on a cluster)")
    p.add_argument("--cluster", action="store_true",
                   help="start a dask.distributed LocalCluster of --workers processes")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-memory", default="1GiB", help="memory limit of each worker")
    p.add_argument("--scheduler", help="address of an existing dask.distributed scheduler")
    p.add_argument("--store", type=Path, help="directory for the gradient's Zarr store")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    args = p.parse_args(argv)
    if args.full:
        args.elements = 1 << 30
    if args.elements < 1:
        p.error("--elements must be at least 1")
    return args


def build(n: int, chunk: int) -> tuple[da.Array, da.Array, da.Array, da.Array]:
    """Lazy inputs, and the lazy mean loss and gradient: nothing is computed here."""
    x = da.random.default_rng(1).standard_normal(n, dtype=np.float32, chunks=chunk)
    y = da.random.default_rng(2).standard_normal(n, dtype=np.float32, chunks=chunk)
    loss, grad = smoothl1.smooth_l1_value_and_grad(x, y, beta=1.0)
    return x, y, loss, grad


def run(args: argparse.Namespace, store: Path) -> dict[str, object]:
    """Compute the loss and store the gradient; return what was measured."""
    chunk = max(1, int(args.chunk_mib * 2**20) // 4)
    x, y, loss, grad = build(args.elements, chunk)
    stored = da.to_zarr(grad, str(store), compute=False, compressors=None)
    client = cluster = None
    if args.cluster or args.scheduler:
        from dask.distributed import Client, LocalCluster

        if args.scheduler:
            client = Client(args.scheduler)
        else:
            cluster = LocalCluster(
                n_workers=args.workers, threads_per_worker=args.threads, processes=True,
                host="127.0.0.1", dashboard_address=":0", memory_limit=args.worker_memory,
            )
            client = Client(cluster)
    try:
        start = time.perf_counter()
        if client is None:
            value, _ = dask.compute(loss, stored, scheduler="threads", num_workers=args.threads)
        else:
            value, _ = dask.compute(loss, stored)
        seconds = time.perf_counter() - start
        peak = _peak_rss_mib()  # before the check below reads a chunk into memory
        workers = client.run(_peak_rss_mib) if client is not None else {}
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    # check one chunk of the stored gradient against NumPy on the same data
    import zarr

    first = slice(0, min(chunk, args.elements))
    x0, y0 = np.asarray(x[first]), np.asarray(y[first])
    expected = smoothl1.smooth_l1_grad(x0, y0, beta=1.0, reduction="sum") / np.float32(
        args.elements)
    on_disk = zarr.open_array(str(store), mode="r")[first]
    grad_error = float(np.max(np.abs(on_disk - expected)) * args.elements)
    return {
        "elements": args.elements,
        "chunk_mib": args.chunk_mib,
        "scheduler": "distributed" if client is not None else "threads",
        "threads": args.threads,
        "workers": len(workers),
        "loss": float(value),
        "seconds": seconds,
        "elements_per_second": args.elements / seconds,
        "peak_rss_mib": peak,
        "worker_peak_rss_mib": sorted(workers.values()),
        "grad_error_in_units_of_1_over_n": grad_error,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the example; print the loss, the time and the peak memory."""
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="smoothl1-grad-") as tmp:
        result = run(args, args.store or Path(tmp) / "grad.zarr")
    if args.json:
        print(json.dumps(result))
        return 0
    gib = 2 * args.elements * 4 / 2**30
    print(f"mean Smooth L1 loss over 2 x {args.elements} float32 ({gib:.2f} GiB of input): "
          f"{result['loss']:.7f}")
    print(f"gradient written to a Zarr store, chunk by chunk; first chunk matches NumPy "
          f"(max error {result['grad_error_in_units_of_1_over_n']:.1e} x 1/N)")
    print(f"{result['scheduler']} scheduler: {result['seconds']:.1f} s, "
          f"{result['elements_per_second'] / 1e6:.0f} M elements/s")
    print(f"peak resident memory: this process {result['peak_rss_mib']:.0f} MiB", end="")
    workers = result["worker_peak_rss_mib"]
    if workers:
        print(", workers " + " + ".join(f"{w:.0f}" for w in workers) + " MiB")  # type: ignore[union-attr]
    else:
        print()
    return 0


if __name__ == "__main__":  # dask.distributed starts worker processes: keep this guard
    sys.exit(main())
