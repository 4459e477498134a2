"""The call-form table of ``python benchmarks/run.py``: every way users call the loss.

Each form (a weighted mean, per-sample losses over an axis, a broadcast target,
half precision, a strided view, small torch calls, ...) is run, in one process
and round-robin (one sample of each contender in turn, in a new order each
round, so that a noisy neighbour slows all alike), by:

- smoothl1 on NumPy arrays and on CPU torch tensors (forward; forward and
  backward through autograd for the gradient forms);
- torch's own equivalent on the same tensors (``F.smooth_l1_loss``/
  ``F.huber_loss``, with ``reduction='none'`` then ``.mean(axis)`` where torch
  has no per-axis reduction), with autograd for the gradient forms;
- the plain array-API formula a user would write (``where``, then the
  reduction), on NumPy;
- for a threshold per feature, smoothl1 again with that array as a weight and
  the number ``BETA`` as the threshold ("... weight instead"), in the same
  round robin, for the table of paired ratios (:func:`threshold_table`).

Every contender's result is first checked against float64 math; then the
medians of the samples and the peak extra memory of one warm call (growth of
the resident set, result included) are reported.  Nothing here asserts a time.
"""

from __future__ import annotations

import random
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .suite import _fmt_bytes, _fmt_time, _peak_extra

__all__ = ["FORMS", "FormResult", "markdown", "run", "threshold_table"]

#: What the contenders that take the threshold's array as a weight instead are called.
WEIGHT_INSTEAD = " weight instead"

BETA = 1.0


@dataclass
class FormResult:
    """One contender on one form."""

    form: str
    dtype: str
    contender: str
    seconds: float  # median of the samples, per call
    samples: list[float] = field(default_factory=list)
    peak_extra_bytes: int | None = None
    max_rel_error: float = 0.0


@dataclass
class _Case:
    """The data of one form and how each contender computes it (a dict of thunks)."""

    calls: dict[str, Callable[[], Any]]
    check: Callable[[str, Any], float]  # contender, its result -> relative error


def _f64_loss(kind: str, d: np.ndarray, param: float = BETA) -> Any:
    z = np.abs(d)
    if kind == "huber":
        return np.where(z < param, 0.5 * z * z, param * (z - 0.5 * param))
    return np.where(z < param, 0.5 * z * (z / param), z - 0.5 * param)


def _f64_slope(kind: str, d: np.ndarray, param: float = BETA) -> Any:
    c = np.clip(d, -param, param)
    return c if kind == "huber" else c / param


def _rel_error(got: Any, want: np.ndarray) -> float:
    got = np.asarray(_numpy(got), dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape}, expected {want.shape}")
    scale = np.maximum(np.abs(want), np.max(np.abs(want)) * 1e-3) if want.size else want
    return float(np.max(np.abs(got - want) / scale)) if want.size else 0.0


def _numpy(a: Any) -> Any:
    if hasattr(a, "detach"):
        a = a.detach()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
        return a.numpy()
    return a


@dataclass(frozen=True)
class Form:
    """A way users call the loss: the data it takes and what it computes."""

    name: str
    kind: str  # "smooth_l1" or "huber"
    shape: Callable[[int], tuple[int, ...]]  # of input, from N
    target_shape: Callable[[tuple[int, ...]], tuple[int, ...]] = lambda s: s
    weighted: bool = False
    reduction: Any = "mean"  # a smoothl1 reduction
    axis: int | tuple[int, ...] | None = None
    grad: bool = False  # value_and_grad (torch: forward and backward)
    strided: bool = False  # input and target are x[:, ::2] of a twice wider array
    small: bool = False  # a fixed small N (the per-call cost)
    dtypes: tuple[str, ...] = ("float32", "float64")
    threshold_per_feature: bool = False  # beta/delta an array over the last axis
    weight_per_feature: bool = False  # weight an array over the last axis (its comparison)


FORMS: list[Form] = [
    Form("mean", "smooth_l1", lambda n: (n,)),
    Form("value_and_grad, mean", "smooth_l1", lambda n: (n,), grad=True),
    Form("reduction='none'", "smooth_l1", lambda n: (n,), reduction="none"),
    Form("weight=, Huber mean", "huber", lambda n: (n,), weighted=True),
    Form("weight=, Huber weighted_mean", "huber", lambda n: (n,), weighted=True,
         reduction="weighted_mean"),
    Form("weight=, Huber value_and_grad", "huber", lambda n: (n,), weighted=True, grad=True),
    Form("axis=-1 over (N/64, 64)", "smooth_l1", lambda n: (n // 64, 64), axis=-1),
    Form("axis=-1 over (N/1024, 1024)", "smooth_l1", lambda n: (n // 1024, 1024), axis=-1),
    Form("axis=0 over (64, N/64)", "smooth_l1", lambda n: (64, n // 64), axis=0),
    Form("axis=(1, 2) over (N/4096, 64, 64)", "smooth_l1", lambda n: (n // 4096, 64, 64),
         axis=(1, 2)),
    Form("target (64,) against (N/64, 64)", "smooth_l1", lambda n: (n // 64, 64),
         target_shape=lambda s: s[-1:]),
    Form("float16 mean", "smooth_l1", lambda n: (n,), dtypes=("float16",)),
    Form("strided x[:, ::2] mean (N/2)", "smooth_l1", lambda n: (n // 2048, 1024),
         strided=True),
    Form("same data contiguous (N/2)", "smooth_l1", lambda n: (n // 2048, 1024)),
    Form("beta per feature (64,) over (N/64, 64), mean", "smooth_l1", lambda n: (n // 64, 64),
         threshold_per_feature=True),
    Form("weight per feature (64,) over (N/64, 64), mean", "smooth_l1",
         lambda n: (n // 64, 64), weight_per_feature=True),
    Form("beta per feature (64,), value_and_grad", "smooth_l1", lambda n: (n // 64, 64),
         threshold_per_feature=True, grad=True),
    Form("weight per feature (64,), value_and_grad", "smooth_l1", lambda n: (n // 64, 64),
         weight_per_feature=True, grad=True),
    Form("beta per feature (64,), reduction='none'", "smooth_l1", lambda n: (n // 64, 64),
         reduction="none", threshold_per_feature=True),
    Form("small, N = 2^10, forward", "smooth_l1", lambda n: (1 << 10,), small=True),
    Form("small, N = 2^10, value_and_grad", "smooth_l1", lambda n: (1 << 10,), small=True,
         grad=True),
    Form("small, N = 2^14, value_and_grad", "smooth_l1", lambda n: (1 << 14,), small=True,
         grad=True),
]


def _reduce(form: Form, loss: np.ndarray, w: Any) -> Any:
    """float64 math of the form's reduction."""
    weighted = loss if w is None else loss * w
    if form.reduction == "none":
        return weighted
    axis = form.axis
    if form.reduction == "sum":
        return weighted.sum(axis=axis)
    if form.reduction == "weighted_mean":
        return weighted.sum(axis=axis) / np.broadcast_to(w, loss.shape).sum(axis=axis)
    return weighted.mean(axis=axis)


def _case(form: Form, n: int, dtype: str, rng: np.random.Generator) -> _Case:
    """Data, float64 expectations and the contenders' thunks for one form."""
    import smoothl1

    shape = form.shape(n)
    tshape = form.target_shape(shape)
    wide = (shape[0], shape[1] * 2) if form.strided else shape
    x = rng.standard_normal(wide) * 1.5
    x[rng.random(wide) < 0.05] *= 20.0  # outliers: both branches of the loss
    y = rng.standard_normal((wide[0], wide[1]) if form.strided else tshape) * 0.5
    x, y = x.astype(dtype), y.astype(dtype)
    if form.strided:
        x, y = x[:, ::2], y[:, ::2]
    w = rng.random(shape).astype(dtype) if form.weighted else None
    if form.weight_per_feature:
        w = rng.uniform(0.5, 2.0, shape[-1:]).astype(dtype)
    param: Any = BETA
    if form.threshold_per_feature:  # in the range of the per-feature weight
        param = rng.uniform(0.5, 2.0, shape[-1:]).astype(dtype)
    d = x.astype(np.float64) - y.astype(np.float64)
    w64 = None if w is None else w.astype(np.float64)
    p64 = np.asarray(param, dtype=np.float64)
    want_value = _reduce(form, _f64_loss(form.kind, d, p64), w64)
    want_grad = None
    if form.grad:  # d(mean of w*loss)/dx
        g = _f64_slope(form.kind, d, p64) * (1.0 if w64 is None else w64)
        want_grad = g / g.size
    fn = smoothl1.huber if form.kind == "huber" else smoothl1.smooth_l1
    both = (smoothl1.huber_value_and_grad if form.kind == "huber"
            else smoothl1.smooth_l1_value_and_grad)
    kw: dict[str, Any] = {"reduction": form.reduction, "axis": form.axis}
    if form.threshold_per_feature:
        kw["delta" if form.kind == "huber" else "beta"] = param

    def ours(a: Any, b: Any, weight: Any, threshold: Any = None) -> Callable[[], Any]:
        k = dict(kw)
        if threshold is not None:  # the threshold in the arrays' library (torch)
            k["delta" if form.kind == "huber" else "beta"] = threshold
        if form.grad:
            return lambda: both(a, b, **k, weight=weight)
        return lambda: fn(a, b, **k, weight=weight)

    calls: dict[str, Callable[[], Any]] = {"smoothl1 (NumPy)": ours(x, y, w)}
    calls["plain array-API (NumPy)"] = _plain(form, x, y, w, param)
    torch_calls = _torch_calls(form, x, y, w, ours, param)
    calls.update(torch_calls)
    want_instead = None
    if form.threshold_per_feature:  # the same array as a weight, the number as the threshold
        plain_kw = {k: v for k, v in kw.items() if k not in ("beta", "delta")}
        def instead(a: Any, b: Any, wt: Any) -> Callable[[], Any]:
            call = both if form.grad else fn
            return lambda: call(a, b, **plain_kw, weight=wt)

        calls["smoothl1 (NumPy)" + WEIGHT_INSTEAD] = instead(x, y, param)
        if torch_calls:
            import torch

            tx, ty, tw = (torch.from_numpy(a) for a in (x, y, param))
            calls["smoothl1 (torch CPU)" + WEIGHT_INSTEAD] = _torch_instead(
                form, instead(tx, ty, tw), fn, tx, ty, tw, plain_kw)
        w_inst = np.asarray(param, dtype=np.float64)
        want_instead = (_reduce(form, _f64_loss(form.kind, d), w_inst),
                        _f64_slope(form.kind, d) * w_inst / d.size if form.grad else None)

    def check(name: str, result: Any) -> float:
        value_want, grad_want = ((want_value, want_grad) if not name.endswith(WEIGHT_INSTEAD)
                                 else want_instead)  # type: ignore[misc]
        if grad_want is not None:
            value, grad = result
            return max(_rel_error(value, value_want), _rel_error(grad, grad_want))
        return _rel_error(result, value_want)

    return _Case(calls, check)


def _plain(form: Form, x: np.ndarray, y: np.ndarray, w: np.ndarray | None,
           p: Any = BETA) -> Callable[[], Any]:
    """The formula as a user writes it against the standard, without smoothl1."""
    from array_api_compat import array_namespace

    def loss() -> Any:
        xp = array_namespace(x, y)
        d = x - y
        ad = xp.abs(d)
        if form.kind == "huber":
            e = xp.where(ad < p, 0.5 * d * d, p * (ad - 0.5 * p))
        else:
            e = xp.where(ad < p, 0.5 * d * d / p, ad - 0.5 * p)
        if w is not None:
            e = e * w
        if form.reduction == "none":
            return e
        if form.reduction == "weighted_mean":
            return xp.sum(e, axis=form.axis) / xp.sum(xp.broadcast_to(w, e.shape), axis=form.axis)
        return xp.mean(e, axis=form.axis)

    def value_and_grad() -> Any:
        xp = array_namespace(x, y)
        d = x - y
        g = xp.minimum(xp.maximum(d, -p), p)  # clip: see backend-pitfalls
        if form.kind != "huber":
            g = g / p
        if w is not None:
            g = g * w
        return loss(), g / g.size

    return value_and_grad if form.grad else loss


def _torch_calls(form: Form, x: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                 ours: Callable[..., Callable[[], Any]],
                 param: Any = BETA) -> dict[str, Any]:
    """The torch contenders: torch's own equivalent, and smoothl1 on the same CPU tensors.

    torch's loss takes a number only: with a threshold per feature its
    equivalent is the composition of torch operations a user would write.
    """
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return {}
    import torch
    import torch.nn.functional as F

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    tw = None if w is None else torch.from_numpy(w)

    tp = None if isinstance(param, float) else torch.from_numpy(param)

    def torch_loss(a: Any, b: Any) -> Any:
        if tp is not None:  # no array beta in torch: its operations
            z = (a - b).abs()
            if form.kind == "huber":
                e = torch.where(z < tp, 0.5 * z * z, tp * (z - 0.5 * tp))
            else:
                e = torch.where(z < tp, 0.5 * z * z / tp, z - 0.5 * tp)
            return e if form.reduction == "none" else e.mean()
        if b.shape != a.shape:
            b = b.expand(a.shape)  # torch's warning aside, the same broadcast
        kwargs: dict[str, Any] = {"delta": BETA} if form.kind == "huber" else {"beta": BETA}
        f = F.huber_loss if form.kind == "huber" else F.smooth_l1_loss
        # (F.smooth_l1_loss has no weight: a weighted Smooth L1 is composed, below)
        if form.axis is None and form.reduction in ("mean", "none") and (
                tw is None or form.kind == "huber"):
            if tw is not None:
                kwargs["weight"] = tw
            return f(a, b, reduction=form.reduction, **kwargs)
        e = f(a, b, reduction="none", **kwargs)
        if tw is not None:
            e = e * tw
        dims = form.axis if form.axis is not None else tuple(range(e.ndim))
        if form.reduction == "weighted_mean":
            return e.sum(dims) / tw.expand(e.shape).sum(dims)  # type: ignore[union-attr]
        return e.mean(dims)

    def ours_torch() -> Callable[[], Any]:
        if not form.grad:
            inner = ours(tx, ty, tw, tp)

            def no_grad() -> Any:
                with torch.no_grad():
                    return inner()

            return no_grad
        import smoothl1

        fn = smoothl1.huber if form.kind == "huber" else smoothl1.smooth_l1
        extra: dict[str, Any] = {}
        if tp is not None:
            extra["delta" if form.kind == "huber" else "beta"] = tp

        def fwd_bwd() -> Any:
            leaf = tx.detach().requires_grad_()
            value = fn(leaf, ty, reduction=form.reduction, axis=form.axis, weight=tw, **extra)
            (g,) = torch.autograd.grad(value, leaf)
            return value.detach(), g

        return fwd_bwd

    def theirs() -> Callable[[], Any]:
        if not form.grad:
            def no_grad() -> Any:
                with torch.no_grad():
                    return torch_loss(tx, ty)

            return no_grad

        def fwd_bwd() -> Any:
            leaf = tx.detach().requires_grad_()
            value = torch_loss(leaf, ty)
            (g,) = torch.autograd.grad(value, leaf)
            return value.detach(), g

        return fwd_bwd

    return {"smoothl1 (torch CPU)": ours_torch(), "torch": theirs()}


def _torch_instead(form: Form, forward: Callable[[], Any], fn: Any, tx: Any, ty: Any, tw: Any,
                   kw: dict[str, Any]) -> Callable[[], Any]:
    """smoothl1 on CPU tensors with the threshold's array as a weight: as ``ours_torch``."""
    import torch

    if not form.grad:
        def no_grad() -> Any:
            with torch.no_grad():
                return forward()

        return no_grad

    def fwd_bwd() -> Any:
        leaf = tx.detach().requires_grad_()
        value = fn(leaf, ty, **kw, weight=tw)
        (g,) = torch.autograd.grad(value, leaf)
        return value.detach(), g

    return fwd_bwd


def _per_call(call: Callable[[], Any], target: float) -> int:
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    return max(1, min(20_000, int(target / max(once, 1e-7))))


def run(n: int, repeats: int = 7, forms: list[Form] | None = None, *,
        min_sample_seconds: float = 2e-3,
        log: Callable[[str], None] = print) -> list[FormResult]:
    """Check, then time every contender on every form at ``N = n`` (small forms: their own N)."""
    results: list[FormResult] = []
    for form in forms or FORMS:
        for dtype in form.dtypes:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch's broadcast warning
                case = _case(form, n, dtype, np.random.default_rng(len(results)))
                errors = {}
                for name, call in case.calls.items():
                    errors[name] = case.check(name, call())
                    tolerance = {"float16": 2e-3, "float32": 1e-4}.get(dtype, 1e-10)
                    if not errors[name] <= tolerance:
                        raise AssertionError(f"{form.name}, {dtype}, {name}: relative error "
                                             f"{errors[name]:.3g} > {tolerance}")
                inner = {name: _per_call(c, min_sample_seconds) for name, c in case.calls.items()}
                samples: dict[str, list[float]] = {name: [] for name in case.calls}
                names = list(case.calls)
                order = random.Random(len(results))
                for _ in range(repeats):
                    # a new order each round: whoever runs right after another's large frees
                    # may meet fresh pages (glibc); a fixed or rotated order keeps the same
                    # neighbours, which moved paired ratios by 5-10% here
                    order.shuffle(names)
                    for name in names:
                        call = case.calls[name]
                        k = inner[name]
                        start = time.perf_counter()
                        for _ in range(k):
                            call()
                        samples[name].append((time.perf_counter() - start) / k)
                for name, call in case.calls.items():
                    results.append(FormResult(form.name, dtype, name,
                                              statistics.median(samples[name]), samples[name],
                                              _peak_extra(call), errors[name]))
            log(f"{form.name}, {dtype}: " + ", ".join(
                f"{r.contender} {_fmt_time(r.seconds)}" for r in results
                if r.form == form.name and r.dtype == dtype))
    return results


def threshold_table(results: list[FormResult]) -> str:
    """An array threshold against the same array as a weight, measured in one round robin.

    Ratios are medians of the per-round ratios (``samples[i]`` of both come from
    one round), which a noisy machine moves far less than a ratio of medians.
    """
    lines = ["## An array threshold against a weight of its shape", "",
             "| call form | dtype | library | array beta | weight instead | beta / weight |",
             "|---|---|---|---:|---:|---:|"]
    index = {(r.form, r.dtype, r.contender): r for r in results}
    for r in results:
        if not r.contender.endswith(WEIGHT_INSTEAD):
            continue
        mine = index[(r.form, r.dtype, r.contender[: -len(WEIGHT_INSTEAD)])]
        paired = statistics.median(a / b for a, b in zip(mine.samples, r.samples, strict=True))
        library = "NumPy" if "NumPy" in r.contender else "torch CPU"
        lines.append(f"| {r.form} | {r.dtype} | {library} | {_fmt_time(mine.seconds)} | "
                     f"{_fmt_time(r.seconds)} | {paired:.2f}x |")
    lines.append("")
    return "\n".join(lines)


def markdown(results: list[FormResult], n: int) -> str:
    """The call-form table: times, ratios to torch and to the plain formula, peak memory."""
    lines = [f"## Call forms (N = 2^{n.bit_length() - 1} unless the form says otherwise)", "",
             "| call form | dtype | smoothl1 NumPy | smoothl1 torch CPU | torch | plain array-API "
             "| NumPy / torch | torch CPU / torch | NumPy / plain | peak extra memory "
             "(NumPy, torch CPU) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    index = {(r.form, r.dtype, r.contender): r for r in results}
    seen: list[tuple[str, str]] = []
    for r in results:
        if (r.form, r.dtype) not in seen:
            seen.append((r.form, r.dtype))
    def t(get: dict[str, FormResult | None], c: str) -> str:
        r = get[c]
        return "" if r is None else _fmt_time(r.seconds)

    def ratio(get: dict[str, FormResult | None], a: str, b: str) -> str:
        ra, rb = get[a], get[b]
        return "" if ra is None or rb is None else f"{ra.seconds / rb.seconds:.2f}x"

    for form, dtype in seen:
        get = {c: index.get((form, dtype, c)) for c in ("smoothl1 (NumPy)", "smoothl1 (torch CPU)",
                                                        "torch", "plain array-API (NumPy)")}

        mem = " / ".join(_fmt_bytes(get[c].peak_extra_bytes)  # type: ignore[union-attr]
                         for c in ("smoothl1 (NumPy)", "smoothl1 (torch CPU)") if get[c])
        lines.append(f"| {form} | {dtype} | {t(get, 'smoothl1 (NumPy)')} | "
                     f"{t(get, 'smoothl1 (torch CPU)')} | {t(get, 'torch')} | "
                     f"{t(get, 'plain array-API (NumPy)')} | "
                     f"{ratio(get, 'smoothl1 (NumPy)', 'torch')} | "
                     f"{ratio(get, 'smoothl1 (torch CPU)', 'torch')} | "
                     f"{ratio(get, 'smoothl1 (NumPy)', 'plain array-API (NumPy)')} | {mem} |")
    lines.append("")
    return "\n".join(lines)
