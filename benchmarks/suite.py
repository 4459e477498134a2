"""The benchmark suite behind ``python benchmarks/run.py``.

In one process, for each dtype, size and operation, every contender is first
checked against float64 math, then timed round-robin with the others (one
sample of each in turn, so that a noisy neighbour slows all alike), and the
medians are reported with ratios.  Contenders:

- the memory floors: reading both inputs once (``np.dot`` over the two halves
  in two threads), and reading both and writing one array (``np.add`` into a
  preallocated output, two threads);
- torch's own ``F.smooth_l1_loss`` (forward; forward+backward for gradients);
- ``optax.huber_loss(x, y, delta) / delta`` under ``jax.jit`` (and its
  ``jax.grad``/``jax.value_and_grad``);
- the plain array-API formula a user would write (``array_namespace``, ``where``,
  ``clip``), on NumPy;
- smoothl1 on NumPy arrays, on torch CPU tensors (forward; forward+backward
  through autograd) and on JAX arrays under ``jax.jit``.

Peak extra memory is the growth of the process's resident set during one warm
call (Linux ``VmHWM`` after resetting it); it includes the result.  Nothing here
asserts a time: the numbers are printed and written to a Markdown table, a JSON
file and a PNG plot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Config", "Result", "run", "write_outputs"]

OPS = ("mean", "sum", "none", "grad", "value_and_grad")
BETA = 1.0


@dataclass
class Config:
    """What to measure."""

    log2_sizes: tuple[int, ...] = (10, 12, 14, 16, 18, 20, 22, 24)
    dtypes: tuple[str, ...] = ("float32", "float64")
    ops: tuple[str, ...] = OPS
    repeats: int = 7
    min_sample_seconds: float = 2e-3  # small calls are repeated within one sample
    accuracy_log2: int | None = None  # also check the float32 mean at this size
    contenders: tuple[str, ...] | None = None  # None: all installed


@dataclass
class Result:
    """One contender at one (dtype, N, op)."""

    contender: str
    dtype: str
    log2n: int
    op: str
    seconds: float  # median time of one call
    samples: list[float]
    peak_extra_bytes: int | None
    max_rel_error: float  # against float64 math, before timing


@dataclass
class Report:
    """Everything one run measured."""

    machine: dict[str, Any]
    config: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- data


def _data(n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Residuals with 5 % outliers: both branches of the loss are exercised."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    x[rng.random(n) < 0.05] *= 20.0
    y = rng.standard_normal(n) * 0.5
    return x.astype(dtype), y.astype(dtype)


def _reference(x: np.ndarray, y: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 textbook values: (loss for the op, gradient of the mean)."""
    d = x.astype(np.float64) - y.astype(np.float64)
    z = np.abs(d)
    loss = np.where(z < BETA, 0.5 * z * z / BETA, z - 0.5 * BETA)
    grad = np.clip(d / BETA, -1.0, 1.0) / d.size
    value = {"mean": loss.mean(), "sum": loss.sum(), "none": loss}.get(op, loss.mean())
    return np.asarray(value), (grad if op in ("grad", "value_and_grad") else None)


# ---------------------------------------------------------------------- contenders


@dataclass
class Prepared:
    """A ready-to-time call and how to read its result back."""

    call: Callable[[], Any]
    loss_of: Callable[[Any], np.ndarray | None]
    grad_of: Callable[[Any], np.ndarray | None]


Maker = Callable[[np.ndarray, np.ndarray, str], "Prepared | None"]

_pool = ThreadPoolExecutor(2)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _floor_read(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    h = x.size // 2

    def call() -> Any:
        a = _pool.submit(np.dot, x[:h], y[:h])
        b = _pool.submit(np.dot, x[h:], y[h:])
        return a.result() + b.result()

    return Prepared(call, lambda r: None, lambda r: None)


def _floor_read_write(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    h = x.size // 2
    out = np.empty_like(x)

    def call() -> Any:
        a = _pool.submit(np.add, x[:h], y[:h], out=out[:h])
        b = _pool.submit(np.add, x[h:], y[h:], out=out[h:])
        a.result()
        b.result()
        return out

    return Prepared(call, lambda r: None, lambda r: None)


def _plain_array_api(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    """The formula as a user writes it against the standard, without smoothl1."""
    from array_api_compat import array_namespace

    def loss(a: Any, b: Any, reduction: str) -> Any:
        xp = array_namespace(a, b)
        d = a - b
        ad = xp.abs(d)
        elementwise = xp.where(ad < BETA, 0.5 * d * d / BETA, ad - 0.5 * BETA)
        return {"mean": xp.mean, "sum": xp.sum}.get(reduction, lambda v: v)(elementwise)

    def grad(a: Any, b: Any) -> Any:
        xp = array_namespace(a, b)
        return xp.clip((a - b) / BETA, -1.0, 1.0) / a.size

    calls = {
        "grad": lambda: grad(x, y),
        "value_and_grad": lambda: (loss(x, y, "mean"), grad(x, y)),
    }
    call = calls.get(op, lambda: loss(x, y, op))
    return Prepared(call, *_readers(op, np.asarray))


Reader = Callable[[Any], "np.ndarray | None"]


def _readers(op: str, to_numpy: Callable[[Any], np.ndarray]) -> tuple[Reader, Reader]:
    """Result -> (loss, grad) as NumPy, for results shaped like smoothl1's."""
    if op == "grad":
        return (lambda r: None), to_numpy
    if op == "value_and_grad":
        return (lambda r: to_numpy(r[0])), (lambda r: to_numpy(r[1]))
    return to_numpy, (lambda r: None)


def _smoothl1_numpy(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    import smoothl1

    calls = {
        "grad": lambda: smoothl1.smooth_l1_grad(x, y, BETA),
        "value_and_grad": lambda: smoothl1.smooth_l1_value_and_grad(x, y, BETA),
    }
    call = calls.get(op, lambda: smoothl1.smooth_l1(x, y, BETA, op))  # type: ignore[arg-type]
    return Prepared(call, *_readers(op, np.asarray))


def _torch_call(loss_fn: Callable[..., Any], x: np.ndarray, y: np.ndarray,
                op: str) -> Prepared:
    """Forward, or forward+backward through autograd (for grad and value_and_grad)."""
    import torch

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    if op in ("mean", "sum", "none"):
        def call() -> Any:
            with torch.no_grad():
                return loss_fn(tx, ty, reduction=op, beta=BETA)

        return Prepared(call, lambda r: r.numpy(), lambda r: None)

    def fwd_bwd() -> Any:
        leaf = tx.detach().requires_grad_()
        value = loss_fn(leaf, ty, beta=BETA)
        (g,) = torch.autograd.grad(value, leaf)
        return value.detach(), g

    return Prepared(fwd_bwd, lambda r: r[0].numpy(), lambda r: r[1].numpy())


def _torch_f(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    import torch.nn.functional as F

    return _torch_call(F.smooth_l1_loss, x, y, op)


def _smoothl1_torch(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    import smoothl1

    return _torch_call(smoothl1.smooth_l1, x, y, op)


def _jax_call(loss: Callable[[Any, Any, str], Any], x: np.ndarray, y: np.ndarray,
              op: str) -> Prepared | None:
    import jax

    if x.dtype == np.float64 and not jax.config.read("jax_enable_x64"):
        return None
    jx, jy = jax.device_put(x), jax.device_put(y)

    def mean(a: Any, b: Any) -> Any:
        return loss(a, b, "mean")

    fns: dict[str, Callable[..., Any]] = {
        "grad": jax.grad(mean),
        "value_and_grad": jax.value_and_grad(mean),
    }
    fn = jax.jit(fns.get(op, lambda a, b: loss(a, b, op)))
    return Prepared(lambda: jax.block_until_ready(fn(jx, jy)), *_readers(op, np.asarray))


def _optax(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    import optax

    def loss(a: Any, b: Any, reduction: str) -> Any:
        elementwise = optax.huber_loss(a, b, delta=BETA) / BETA
        return {"mean": elementwise.mean, "sum": elementwise.sum}.get(
            reduction, lambda: elementwise)()

    return _jax_call(loss, x, y, op)


def _smoothl1_jax(x: np.ndarray, y: np.ndarray, op: str) -> Prepared | None:
    import smoothl1

    return _jax_call(lambda a, b, r: smoothl1.smooth_l1(a, b, BETA, r),  # type: ignore[arg-type]
                     x, y, op)


#: name -> (module it needs, maker); the order of the table.
CONTENDERS: dict[str, tuple[str, Maker]] = {
    "floor: read x,y (2 threads)": ("numpy", _floor_read),
    "floor: read x,y + write (2 threads)": ("numpy", _floor_read_write),
    "torch F.smooth_l1_loss": ("torch", _torch_f),
    "optax.huber_loss/delta (jit)": ("optax", _optax),
    "plain array-API (NumPy)": ("array_api_compat", _plain_array_api),
    "smoothl1 (NumPy)": ("numpy", _smoothl1_numpy),
    "smoothl1 (torch CPU)": ("torch", _smoothl1_torch),
    "smoothl1 (JAX jit)": ("jax", _smoothl1_jax),
}


# ------------------------------------------------------------------------ measuring


def _rss_peak_reset() -> int | None:
    """Reset the resident-set high-water mark; the current resident set (bytes), or None."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmRSS")
    except OSError:
        return None


def _status(key: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def _peak_extra(call: Callable[[], Any]) -> int | None:
    before = _rss_peak_reset()
    if before is None:
        return None
    result = call()
    peak = _status("VmHWM")
    del result
    return None if peak is None else max(0, peak - before)


def _rel_error(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64)
    scale = np.maximum(np.abs(want), np.max(np.abs(want)) * 1e-3)
    return float(np.max(np.abs(got - want) / scale)) if want.size else 0.0


def _check(prepared: Prepared, x: np.ndarray, y: np.ndarray, op: str) -> float:
    """Largest relative error of the contender's loss and gradient; raise if it is wrong."""
    want_loss, want_grad = _reference(x, y, op)
    result = prepared.call()
    err = 0.0
    got = prepared.loss_of(result)
    if got is not None:
        err = max(err, _rel_error(got, want_loss))
    got = prepared.grad_of(result)
    if got is not None and want_grad is not None:
        err = max(err, _rel_error(got, want_grad))
    tolerance = 1e-4 if x.dtype == np.float32 else 1e-10
    if not err <= tolerance:
        raise AssertionError(f"{op}: relative error {err:.3g} > {tolerance}")
    return err


def _calls_per_sample(call: Callable[[], Any], target: float) -> int:
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    return max(1, min(10_000, int(target / max(once, 1e-7))))


def _measure(prepared: dict[str, Prepared], repeats: int, target: float) -> dict[str, list[float]]:
    """Round-robin samples: each contender once per round, ``repeats`` rounds."""
    inner = {name: _calls_per_sample(p.call, target) for name, p in prepared.items()}
    samples: dict[str, list[float]] = {name: [] for name in prepared}
    for _ in range(repeats):
        for name, p in prepared.items():
            k = inner[name]
            start = time.perf_counter()
            for _ in range(k):
                p.call()
            samples[name].append((time.perf_counter() - start) / k)
    return samples


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for module in ("numpy", "torch", "jax", "optax", "array_api_compat"):
        if _installed(module):
            info[module] = __import__(module).__version__
    if _installed("torch"):
        import torch

        info["torch_threads"] = torch.get_num_threads()
    return info


def _available(cfg: Config, report: Report) -> dict[str, Maker]:
    makers: dict[str, Maker] = {}
    for name, (module, maker) in CONTENDERS.items():
        if cfg.contenders is not None and name not in cfg.contenders:
            continue
        if _installed(module):
            makers[name] = maker
        else:
            report.skipped[name] = f"{module} is not installed"
    return makers


def run(cfg: Config, log: Callable[[str], None] = print) -> Report:
    """Check, then time every available contender on every (dtype, N, op)."""
    if _installed("jax"):
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 contenders; float32 unchanged
    report = Report(machine=_machine(), config=asdict(cfg))
    makers = _available(cfg, report)
    for dtype in cfg.dtypes:
        for log2n in cfg.log2_sizes:
            x, y = _data(2**log2n, dtype)
            for op in cfg.ops:
                prepared: dict[str, Prepared] = {}
                errors: dict[str, float] = {}
                for name, maker in makers.items():
                    p = maker(x, y, op)
                    if p is None:
                        continue
                    errors[name] = _check(p, x, y, op) if not name.startswith("floor") else 0.0
                    prepared[name] = p
                samples = _measure(prepared, cfg.repeats, cfg.min_sample_seconds)
                for name, p in prepared.items():
                    report.results.append(Result(
                        name, dtype, log2n, op, statistics.median(samples[name]),
                        samples[name], _peak_extra(p.call), errors[name]))
                log(f"{dtype} N=2^{log2n} {op}: " + ", ".join(
                    f"{name.split(' (')[0] if name.startswith('floor') else name} "
                    f"{statistics.median(samples[name]) * 1e3:.3g} ms"
                    for name in prepared))
    if cfg.accuracy_log2 is not None:
        report.accuracy = _accuracy(cfg.accuracy_log2)
    return report


def _accuracy(log2n: int) -> dict[str, Any]:
    """The float32 mean of smoothl1 on NumPy at 2**log2n against float64 math."""
    import smoothl1

    x, y = _data(2**log2n, "float32")
    exact = float(_reference(x, y, "mean")[0])
    ours = float(smoothl1.smooth_l1(x, y, BETA))
    out: dict[str, Any] = {"log2n": log2n, "float64_math": exact, "smoothl1_float32": ours,
                           "rel_error": abs(ours - exact) / exact}
    if _installed("torch"):
        import torch

        theirs = float(torch.nn.functional.smooth_l1_loss(torch.from_numpy(x),
                                                          torch.from_numpy(y)))
        out["torch_float32"] = theirs
        out["torch_rel_error"] = abs(theirs - exact) / exact
    return out


# -------------------------------------------------------------------------- outputs


def _index(report: Report) -> dict[tuple[str, int, str, str], Result]:
    return {(r.dtype, r.log2n, r.op, r.contender): r for r in report.results}


def _ratio(idx: dict[tuple[str, int, str, str], Result], key: tuple[str, int, str],
           ours: str, op: str, theirs: str, their_op: str | None = None) -> float | None:
    dtype, log2n, _ = key
    a = idx.get((dtype, log2n, op, ours))
    b = idx.get((dtype, log2n, their_op or op, theirs))
    return None if a is None or b is None else a.seconds / b.seconds


def targets(report: Report) -> list[tuple[str, str, float | None, float]]:
    """The performance issue's ratios at the largest N of each dtype: (what, dtype, got, target)."""
    idx = _index(report)
    rows: list[tuple[str, str, float | None, float]] = []
    floor, torch_f, optax = ("floor: read x,y (2 threads)", "torch F.smooth_l1_loss",
                             "optax.huber_loss/delta (jit)")
    ours_np, ours_t, ours_j = "smoothl1 (NumPy)", "smoothl1 (torch CPU)", "smoothl1 (JAX jit)"
    for dtype in report.config["dtypes"]:
        sizes = sorted({r.log2n for r in report.results if r.dtype == dtype})
        if not sizes:
            continue
        big = (dtype, sizes[-1], "")
        for op in ("mean", "sum"):
            rows.append((f"NumPy {op} / read floor, N=2^{sizes[-1]}", dtype,
                         _ratio(idx, big, ours_np, op, floor), 3.0))
            rows.append((f"NumPy {op} / torch F {op}", dtype,
                         _ratio(idx, big, ours_np, op, torch_f), 0.6))
        rows.append(("NumPy value_and_grad / torch F fwd+bwd", dtype,
                     _ratio(idx, big, ours_np, "value_and_grad", torch_f), 0.75))
        rows.append(("torch tensors: smoothl1 fwd / F fwd (mean)", dtype,
                     _ratio(idx, big, ours_t, "mean", torch_f), 0.8))
        rows.append(("torch tensors: smoothl1 fwd+bwd / F fwd+bwd", dtype,
                     _ratio(idx, big, ours_t, "value_and_grad", torch_f), 0.8))
        rows.append(("JAX jit: smoothl1 fwd / optax fwd (mean)", dtype,
                     _ratio(idx, big, ours_j, "mean", optax), 1.0))
        rows.append(("JAX jit: value_and_grad / optax value_and_grad", dtype,
                     _ratio(idx, big, ours_j, "value_and_grad", optax), 0.7))
        small = (dtype, sizes[0], "")
        rows.append((f"small calls, N=2^{sizes[0]}: NumPy mean / torch F mean", dtype,
                     _ratio(idx, small, ours_np, "mean", torch_f), 2.0))
    return rows


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def _fmt_bytes(b: int | None) -> str:
    if b is None:
        return "n/a"
    return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 2**10:.0f} KiB"


def markdown(report: Report) -> str:
    """The tables of a report, in Markdown."""
    idx = _index(report)
    lines = ["# smoothl1 benchmark", ""]
    m = report.machine
    lines.append(f"Machine: {m.get('cpu')}, {m.get('cores_available')} cores available, "
                 f"Python {m.get('python')}; numpy {m.get('numpy')}, torch {m.get('torch')} "
                 f"({m.get('torch_threads')} threads), jax {m.get('jax')}, "
                 f"optax {m.get('optax')}.")
    lines.append(f"Medians of {report.config['repeats']} round-robin samples; beta = {BETA}; "
                 "inputs with 5 % outliers. Peak extra memory: growth of the resident set "
                 "during one warm call, result included.")
    lines.append("")
    rows = targets(report)
    if rows:
        lines += ["## Targets of the performance issue (time ratios, lower is better)", "",
                  "| ratio | dtype | measured | target | met |", "|---|---|---|---|---|"]
        for what, dtype, got, target in rows:
            shown = "n/a" if got is None else f"{got:.2f}"
            met = "n/a" if got is None else ("yes" if got <= target else "**no**")
            lines.append(f"| {what} | {dtype} | {shown} | ≤ {target} | {met} |")
        lines.append("")
    if report.accuracy:
        a = report.accuracy
        lines += [f"float32 mean at N = 2^{a['log2n']}: relative error {a['rel_error']:.2g} "
                  f"against float64 math (torch: {a.get('torch_rel_error', float('nan')):.2g}).",
                  ""]
    for dtype in report.config["dtypes"]:
        for log2n in sorted({r.log2n for r in report.results if r.dtype == dtype}):
            lines += [f"## {dtype}, N = 2^{log2n}", "",
                      "| contender | " + " | ".join(report.config["ops"]) + " | peak extra memory "
                      "(mean / value_and_grad) |",
                      "|---" * (len(report.config["ops"]) + 2) + "|"]
            for name in CONTENDERS:
                cells = []
                found = False
                for op in report.config["ops"]:
                    r = idx.get((dtype, log2n, op, name))
                    found = found or r is not None
                    cells.append("" if r is None else _fmt_time(r.seconds))
                if not found:
                    continue
                mem = [idx.get((dtype, log2n, op, name)) for op in ("mean", "value_and_grad")]
                mems = " / ".join(_fmt_bytes(r.peak_extra_bytes) if r else "" for r in mem)
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {mems} |")
            lines.append("")
    if report.skipped:
        lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in report.skipped.items()), ""]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    """Input throughput (GB/s read from x and y) against N, one panel per dtype and op."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes, ops = report.config["dtypes"], [o for o in report.config["ops"]]
    fig, axes = plt.subplots(len(dtypes), len(ops), figsize=(3.2 * len(ops), 3 * len(dtypes)),
                             squeeze=False, sharex=True)
    for i, dtype in enumerate(dtypes):
        itemsize = np.dtype(dtype).itemsize
        for j, op in enumerate(ops):
            ax = axes[i][j]
            for name in CONTENDERS:
                pts = sorted((r.log2n, r.seconds) for r in report.results
                             if r.dtype == dtype and r.op == op and r.contender == name)
                if pts:
                    ns = [2**k for k, _ in pts]
                    gbs = [2 * n * itemsize / s / 1e9 for n, s in zip(ns, [s for _, s in pts],
                                                                      strict=True)]
                    style = "--" if name.startswith("floor") else "-"
                    ax.plot(ns, gbs, style, marker=".", label=name)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{op}, {dtype}", fontsize=9)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel("GB/s of input read")
            if i == len(dtypes) - 1:
                ax.set_xlabel("N")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: Report, out: Path, figure: bool = True) -> list[Path]:
    """``results.json``, ``results.md`` and (with matplotlib) ``throughput.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md"]
    data = asdict(report)
    data["targets"] = [dict(zip(("what", "dtype", "ratio", "target"), t, strict=True))
                       for t in targets(report)]
    paths[0].write_text(json.dumps(data, indent=1) + "\n")
    paths[1].write_text(markdown(report) + "\n")
    if figure and _installed("matplotlib"):
        paths.append(out / "throughput.png")
        plot(report, paths[-1])
    return paths


def sizes(spec: str) -> tuple[int, ...]:
    """``"10:24:2"`` -> (10, 12, ..., 24); ``"20,24"`` -> (20, 24)."""
    if ":" in spec:
        parts = [int(p) for p in spec.split(":")]
        lo, hi = parts[0], parts[1]
        step = parts[2] if len(parts) > 2 else 1
        return tuple(range(lo, hi + 1, step))
    return tuple(int(p) for p in spec.split(","))


def iter_lines(report: Report) -> Iterator[str]:
    """The targets table, for the terminal."""
    for what, dtype, got, target in targets(report):
        shown = "n/a" if got is None else f"{got:.2f}"
        yield f"  {what:<52} {dtype:<8} {shown:>6}  (target ≤ {target})"
