"""Generate smoothl1/testing/cases.json: the conformance cases and their expected values.

Run: ``python tools/generate_conformance_cases.py`` (needs torch; writes the file in place).

Each case holds its inputs exactly (floats as ``float.hex`` strings), the exact
expected loss and gradients (rational arithmetic, rounded once to the case's
dtype) and torch's values for the same inputs.  Where they differ, torch is wrong
and the case says why.
"""

from __future__ import annotations

import datetime
import json
import math
import pathlib
from fractions import Fraction
from typing import Any

import numpy as np
import torch

import smoothl1

OUT = pathlib.Path(__file__).resolve().parents[1] / "smoothl1" / "testing" / "cases.json"
VERSION = 1
INF, NAN = math.inf, math.nan


# ---------------------------------------------------------------- exact arithmetic
def _frac(v: float) -> Fraction | float:
    return Fraction(v) if math.isfinite(v) else v


def _exact_elem(kind: str, d: Fraction | float, p: float) -> Fraction | float:
    """Exact elementwise loss of one exact difference (a Fraction, or an IEEE special)."""
    if isinstance(d, float) and math.isnan(d):
        return NAN
    z = abs(d)
    if isinstance(z, float) or math.isinf(p):  # IEEE semantics, as torch
        with np.errstate(all="ignore"):
            z64, p64 = np.float64(float(z)), np.float64(p)
            if kind == "smooth_l1":
                return float(0.5 * z64 * z64 / p64) if z64 < p64 else float(z64 - 0.5 * p64)
            return float(0.5 * z64 * z64) if z64 < p64 else float(p64 * (z64 - 0.5 * p64))
    zf, pf = Fraction(z), Fraction(p)
    if kind == "smooth_l1":
        if pf == 0:
            return zf
        return zf * zf / 2 / pf if zf < pf else zf - pf / 2
    return zf * zf / 2 if zf < pf else pf * (zf - pf / 2)


def _exact_slope(kind: str, d: Fraction | float, p: float) -> Fraction | float:
    if isinstance(d, float) and math.isnan(d):
        return NAN
    z = abs(d)
    sign = (d > 0) - (d < 0)
    if kind == "smooth_l1" and p == 0:
        return Fraction(sign)
    if z < p:
        if math.isinf(p):
            return Fraction(0) if kind == "smooth_l1" else d
        return d / Fraction(p) if kind == "smooth_l1" else d
    return Fraction(sign) if kind == "smooth_l1" else sign * _frac(p)


def _round(values: list[Any], dtype: str) -> list[float]:
    """Round exact values once to ``dtype``."""
    return [_round_one(v, dtype) for v in values]


def _round_one(v: Any, dtype: str) -> float:
    if isinstance(v, Fraction):
        return _round_fraction(v, dtype)
    return float(_cast(np.float64(v), dtype))


def _cast(x: np.float64, dtype: str) -> float:
    if dtype == "bfloat16":
        return float(torch.tensor(float(x), dtype=torch.float64).to(torch.bfloat16).float())
    with np.errstate(all="ignore"):
        return float(np.asarray(x).astype(dtype))


def _round_fraction(v: Fraction, dtype: str) -> float:
    """Correctly rounded: float64 rounding is exact for float64; for narrower
    dtypes, avoid double rounding by checking the neighbours.
    """
    f64 = float(v)  # correctly rounded to float64
    if dtype == "float64":
        return f64
    c = _cast(np.float64(f64), dtype)
    # double rounding can only matter at a tie of the narrow dtype: compare neighbours
    cands = {c}
    if math.isfinite(c):
        t = torch.tensor([c], dtype=torch.float64).to(_torch_dtype(dtype))
        for direction in (math.inf, -math.inf):
            cands.add(float(torch.nextafter(t, torch.tensor([direction],
                                                             dtype=t.dtype)).double()))
    finite = [x for x in cands if math.isfinite(x)]
    if not finite:
        return c
    return min(finite, key=lambda x: (abs(Fraction(x) - v), x))


def _torch_dtype(dtype: str) -> torch.dtype:
    return getattr(torch, dtype)


# ---------------------------------------------------------------- one case
def _broadcast_sum(values: list[Any], full_shape: tuple[int, ...],
                   shape: tuple[int, ...]) -> list[Any]:
    """Sum exact per-element values of the broadcast shape back to ``shape``."""
    arr = np.empty(full_shape, dtype=object)
    flat = arr.reshape(-1)
    for i, v in enumerate(values):
        flat[i] = v
    lead = len(full_shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and full_shape[lead + i] != 1)
    if axes:
        arr = arr.sum(axis=axes, keepdims=True) if arr.size else np.zeros(
            [1 if i in axes else n for i, n in enumerate(full_shape)], dtype=object)
        arr = arr.reshape(shape)
    return list(arr.reshape(-1))


def _results(loss: list[Any], loss_shape: list[int], gx: list[Any], gy: list[Any],
             dtype: str, torch_out: tuple[Any, Any, Any]) -> dict[str, Any]:
    """The "expected" (exact, rounded once) and "torch" entries of a case."""
    out, tgx, tgy = torch_out
    return {
        "expected": {
            "loss_shape": loss_shape,
            "loss": _hex(_round(loss, dtype)),
            "grad_input": _hex(_round(gx, dtype)),
            "grad_target": _hex(_round(gy, dtype)),
        },
        "torch": {
            "loss": _hex(out.detach().double().reshape(-1).tolist()),
            "grad_input": _hex(tgx.double().reshape(-1).tolist()),
            "grad_target": _hex(tgy.double().reshape(-1).tolist()),
        },
    }


def _hex(values: list[float]) -> list[str]:
    return [float(v).hex() for v in values]


def _inputs(tx: torch.Tensor, ty: torch.Tensor) -> dict[str, Any]:
    """A case's input and target: shapes and exact values (hex)."""
    return {"input_shape": list(tx.shape), "target_shape": list(ty.shape),
            "input": _hex([float(v) for v in tx.double().reshape(-1)]),
            "target": _hex([float(v) for v in ty.double().reshape(-1)])}


def make_case(case_id: str, kind: str, param: float, reduction: str, dtype: str,
              x: np.ndarray, y: np.ndarray, note: str = "") -> dict[str, Any]:
    tdt = _torch_dtype(dtype)
    tx = torch.tensor(np.asarray(x, dtype=np.float64)).to(tdt)
    ty = torch.tensor(np.asarray(y, dtype=np.float64)).to(tdt)
    xs = [float(v) for v in tx.double().reshape(-1)]  # the values actually representable
    ys = [float(v) for v in ty.double().reshape(-1)]
    full = tuple(torch.broadcast_shapes(tx.shape, ty.shape))
    bx = torch.tensor(xs, dtype=torch.float64).reshape(tx.shape).expand(full).reshape(-1)
    by = torch.tensor(ys, dtype=torch.float64).reshape(ty.shape).expand(full).reshape(-1)
    ds = [_exact_diff(a, b) for a, b in zip(bx.tolist(), by.tolist(), strict=True)]
    n = len(ds)
    elem = [_exact_elem(kind, d, param) for d in ds]
    slopes = [_exact_slope(kind, d, param) for d in ds]
    if reduction == "none":
        loss, loss_shape = elem, full
    else:
        total = _exact_total(elem)
        if reduction == "mean":
            total = total / n if n else NAN
        loss, loss_shape = [total], ()
    if reduction == "mean" and n:
        slopes = [s / n for s in slopes]
    gx = _broadcast_sum(slopes, full, tuple(tx.shape))
    gy = _broadcast_sum([-s for s in slopes], full, tuple(ty.shape))

    # torch's values for the same inputs
    lx, ly = tx.clone().requires_grad_(), ty.clone().requires_grad_()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "huber":
            out = torch.nn.functional.huber_loss(lx, ly, delta=param, reduction=reduction)
        else:
            out = torch.nn.functional.smooth_l1_loss(lx, ly, beta=param, reduction=reduction)
    tgx, tgy = torch.autograd.grad(out, (lx, ly), torch.ones_like(out))

    case = {
        "id": case_id,
        "kind": kind,
        "param": param if math.isfinite(param) else str(param),
        "reduction": reduction,
        "dtype": dtype,
        "input_shape": list(tx.shape),
        "target_shape": list(ty.shape),
        "input": _hex(xs),
        "target": _hex(ys),
        **_results(loss, list(loss_shape), gx, gy, dtype, (out, tgx, tgy)),
        "summed_terms": {"loss": 1 if reduction == "none" else n,
                         "grad_input": n // max(math.prod(tx.shape), 1) if n else 1,
                         "grad_target": n // max(math.prod(ty.shape), 1) if n else 1},
    }
    if note:
        case["note"] = note
    return case


def make_weighted_case(case_id: str, kind: str, param: float, reduction: str, dtype: str,
                       x: np.ndarray, y: np.ndarray, weight: np.ndarray | None,
                       axis: tuple[int, ...] | None, keepdims: bool,
                       note: str = "") -> dict[str, Any]:
    """A case with sample weights and/or a per-axis reduction (finite data only)."""
    tdt = _torch_dtype(dtype)
    tx = torch.tensor(np.asarray(x, dtype=np.float64)).to(tdt)
    ty = torch.tensor(np.asarray(y, dtype=np.float64)).to(tdt)
    full = tuple(torch.broadcast_shapes(tx.shape, ty.shape))
    xs = tx.double().expand(full).numpy()
    ys = ty.double().expand(full).numpy()
    frac = np.vectorize(Fraction, otypes=[object])
    d = frac(xs) - frac(ys)
    elem = np.vectorize(lambda v: _exact_elem(kind, v, param), otypes=[object])(d)
    slope = np.vectorize(lambda v: _exact_slope(kind, v, param), otypes=[object])(d)
    w = np.ones(full, dtype=object) * (frac(np.broadcast_to(weight, full))
                                       if weight is not None else Fraction(1))
    dims = tuple(range(len(full))) if axis is None else axis
    kept = tuple(1 if i in dims else n for i, n in enumerate(full))
    count = math.prod(full[i] for i in dims)
    if reduction == "none":
        loss, norm = elem * w, np.ones(full, dtype=object)
    else:
        total = (elem * w).sum(axis=dims, keepdims=True)
        if reduction == "sum":
            norm = np.full(kept, Fraction(1), dtype=object)
        elif reduction == "mean":
            norm = np.full(kept, Fraction(1, count), dtype=object)
        else:
            wsum = w.sum(axis=dims, keepdims=True)
            norm = np.vectorize(lambda v: Fraction(1) / v if v != 0 else NAN,
                                otypes=[object])(wsum)
        loss = total * norm
        if not keepdims:
            loss = loss.reshape([n for i, n in enumerate(full) if i not in dims])
    gfull = slope * w * np.broadcast_to(norm, full)
    gx = _broadcast_sum(list(gfull.reshape(-1)), full, tuple(tx.shape))
    gy = _broadcast_sum(list((-gfull).reshape(-1)), full, tuple(ty.shape))

    # torch: its own elementwise loss, weighted and reduced with torch ops
    lx, ly = tx.clone().requires_grad_(), ty.clone().requires_grad_()
    fn = torch.nn.functional.huber_loss if kind == "huber" else torch.nn.functional.smooth_l1_loss
    kw = {"delta": param} if kind == "huber" else {"beta": param}
    bx, by = torch.broadcast_tensors(lx, ly)
    e = fn(bx, by, reduction="none", **kw).double()
    tw = torch.ones_like(e) if weight is None else torch.tensor(np.asarray(weight)) * 1.0
    ew = e * tw
    if reduction == "none":
        out = ew
    elif reduction == "sum":
        out = ew.sum(dim=dims, keepdim=keepdims)
    elif reduction == "mean":
        out = ew.sum(dim=dims, keepdim=keepdims) / count
    else:
        out = ew.sum(dim=dims, keepdim=keepdims) / (torch.ones_like(e) * tw).sum(
            dim=dims, keepdim=keepdims)
    tgx, tgy = torch.autograd.grad(out, (lx, ly), torch.ones_like(out))
    case = {
        "id": case_id,
        "kind": kind,
        "param": param,
        "reduction": reduction,
        "dtype": dtype,
        **_inputs(tx, ty),
        "axis": None if axis is None else list(axis),
        "keepdims": keepdims,
        **_results(list(np.asarray(loss).reshape(-1)), list(np.shape(loss)), gx, gy, dtype,
                   (out, tgx, tgy)),
        "summed_terms": {"loss": 1 if reduction == "none" else count,
                         "grad_input": max(math.prod(full) // max(math.prod(tx.shape), 1), 1),
                         "grad_target": max(math.prod(full) // max(math.prod(ty.shape), 1), 1)},
        "note": note or "sample weights / per-axis reduction (beyond torch)",
    }
    if weight is not None:
        case["weight_shape"] = list(np.shape(weight))
        case["weight"] = _hex([float(v) for v in np.asarray(weight, dtype=np.float64).reshape(-1)])
    return case


def make_threshold_case(case_id: str, kind: str, param: np.ndarray, reduction: str, dtype: str,
                        x: np.ndarray, y: np.ndarray, note: str) -> dict[str, Any]:
    """A case with ``beta``/``delta`` an array (a threshold per element; finite data).

    Expected: each element's exact loss with its own threshold.  torch (which
    takes a number only): its scalar loss for each distinct threshold, selected
    element by element (its bits per element), then reduced with torch ops.
    """
    tdt = _torch_dtype(dtype)
    tx = torch.tensor(np.asarray(x, dtype=np.float64)).to(tdt)
    ty = torch.tensor(np.asarray(y, dtype=np.float64)).to(tdt)
    tp = torch.tensor(np.asarray(param, dtype=np.float64)).to(tdt)
    full = tuple(torch.broadcast_shapes(tx.shape, ty.shape, tp.shape))
    xs, ys = tx.double().expand(full).numpy(), ty.double().expand(full).numpy()
    ps = tp.double().expand(full).numpy()
    frac = np.vectorize(Fraction, otypes=[object])
    d = frac(xs) - frac(ys)
    elem = np.vectorize(lambda v, q: _exact_elem(kind, v, float(q)), otypes=[object])(d, ps)
    slope = np.vectorize(lambda v, q: _exact_slope(kind, v, float(q)), otypes=[object])(d, ps)
    count = math.prod(full)
    if reduction == "none":
        loss, norm = elem, Fraction(1)
    else:
        norm = Fraction(1, count) if reduction == "mean" else Fraction(1)
        loss = np.array(elem.sum() * norm, dtype=object)
    gfull = slope * norm
    gx = _broadcast_sum(list(gfull.reshape(-1)), full, tuple(tx.shape))
    gy = _broadcast_sum(list((-gfull).reshape(-1)), full, tuple(ty.shape))

    lx, ly = tx.clone().requires_grad_(), ty.clone().requires_grad_()
    fn = torch.nn.functional.huber_loss if kind == "huber" else torch.nn.functional.smooth_l1_loss
    bx, by = torch.broadcast_tensors(lx, ly)
    bp = tp.expand(full)
    e = torch.zeros(full, dtype=tdt)
    for value in torch.unique(tp).tolist():
        kw = {"delta": value} if kind == "huber" else {"beta": value}
        e = torch.where(bp == value, fn(bx, by, reduction="none", **kw), e)
    out = e if reduction == "none" else (e.sum() if reduction == "sum" else e.mean())
    tgx, tgy = torch.autograd.grad(out, (lx, ly), torch.ones_like(out))
    return {
        "id": case_id,
        "kind": kind,
        "param": _hex([float(v) for v in tp.double().reshape(-1)]),
        "param_shape": list(tp.shape),
        "reduction": reduction,
        "dtype": dtype,
        **_inputs(tx, ty),
        **_results(list(np.asarray(loss).reshape(-1)), list(np.shape(loss)), gx, gy, dtype,
                   (out, tgx, tgy)),
        "summed_terms": {"loss": 1 if reduction == "none" else count,
                         "grad_input": max(count // max(math.prod(tx.shape), 1), 1),
                         "grad_target": max(count // max(math.prod(ty.shape), 1), 1)},
        "note": note,
    }


def _exact_diff(a: float, b: float) -> Fraction | float:
    if math.isfinite(a) and math.isfinite(b):
        return Fraction(a) - Fraction(b)
    with np.errstate(all="ignore"):
        return float(np.float64(a) - np.float64(b))


def _exact_total(elem: list[Any]) -> Any:
    specials = [v for v in elem if not isinstance(v, Fraction)]
    if any(math.isnan(v) for v in specials):
        return NAN
    if specials:
        return sum(specials)  # infinities of one sign (inf - inf would be NaN above)
    return sum(elem, Fraction(0))


# ---------------------------------------------------------------- the case list
def cases() -> list[dict[str, Any]]:
    rng = np.random.default_rng(20261125)
    out: list[dict[str, Any]] = []
    add = out.append
    ex = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    for dtype in ("float32", "float64"):
        for red in ("mean", "sum", "none"):
            add(make_case(f"torch-example-{dtype}-{red}", "smooth_l1", 1.0, red, dtype,
                          ex, np.zeros(7), "torch's documentation example"))
            add(make_case(f"huber-example-{dtype}-{red}", "huber", 2.0, red, dtype, ex,
                          np.zeros(7)))
        for beta in (0.1, 0.2, 0.4, 0.8, 1.6, 0.05):
            b = float(np.asarray(beta, dtype=dtype))
            case = make_case(f"boundary-beta{beta}-{dtype}", "smooth_l1", beta, "none", dtype,
                             np.array([b, -b]), np.zeros(2),
                             "|d| == beta takes the linear branch (strict <): exactly beta/2")
            case["tolerance_ulps"] = {"loss": 0}
            add(case)
        add(make_case(f"beta0-l1-{dtype}", "smooth_l1", 0.0, "sum", dtype,
                      np.array([-2.0, -0.0, 0.0, 1e-30, 3.0]), np.zeros(5),
                      "beta = 0 is L1; gradient 0 at d == 0"))
        add(make_case(f"beta0-nan-{dtype}", "smooth_l1", 0.0, "none", dtype,
                      np.array([NAN, 1.0, 0.0]), np.zeros(3),
                      "torch gives gradient 0 at NaN with beta 0 (sgn(NaN) = 0); exact: NaN"))
        add(make_case(f"nonfinite-{dtype}", "smooth_l1", 1.0, "none", dtype,
                      np.array([NAN, INF, -INF, 1.0, 0.5]), np.zeros(5)))
        add(make_case(f"beta-inf-{dtype}", "smooth_l1", INF, "none", dtype,
                      np.array([INF, 1.0, 0.0, -3.0]), np.zeros(4),
                      "beta = inf: 0 for finite d, inf - inf = NaN for infinite d"))
        add(make_case(f"huber-delta-inf-{dtype}", "huber", INF, "none", dtype,
                      np.array([3.0, -0.5, INF]), np.zeros(3)))
        for red in ("mean", "sum", "none"):
            add(make_case(f"empty-{dtype}-{red}", "smooth_l1", 1.0, red, dtype, np.zeros(0),
                          np.zeros(0), "empty input: mean NaN, sum 0"))
            add(make_case(f"zero-d-{dtype}-{red}", "smooth_l1", 1.0, red, dtype,
                          np.asarray(2.5), np.asarray(0.5)))
            add(make_case(f"broadcast-{dtype}-{red}", "smooth_l1", 0.7, red, dtype,
                          rng.uniform(-3, 3, (3, 4)), rng.uniform(-1, 1, (3, 1)),
                          "mean divides by the broadcast size; gradients summed back"))
            add(make_case(f"broadcast-both-{dtype}-{red}", "smooth_l1", 0.7, red, dtype,
                          rng.uniform(-3, 3, (2, 1, 4)), rng.uniform(-1, 1, (3, 1)),
                          "both arguments broadcast: N is the size of the (2, 3, 4) result"))
            add(make_case(f"broadcast-huber-{dtype}-{red}", "huber", 0.7, red, dtype,
                          rng.uniform(-3, 3, (1, 4)), rng.uniform(-1, 1, (3, 1))))
            add(make_case(f"ordinary-{dtype}-{red}", "smooth_l1", 1.0, red, dtype,
                          rng.uniform(-9, 9, (5, 5)), rng.uniform(-9, 9, (5, 5)),
                          "torch's OpInfo sample: U[-9, 9], shape (5, 5)"))
            add(make_case(f"ordinary-huber-{dtype}-{red}", "huber", 1.3, red, dtype,
                          rng.uniform(-9, 9, (5, 5)), rng.uniform(-9, 9, (5, 5))))
    # sample weights and per-axis reductions (beyond torch)
    for dtype in ("float32", "float64"):
        x3, y3 = rng.uniform(-3, 3, (3, 2, 4)), rng.uniform(-1, 1, (2, 4))
        w3 = rng.integers(0, 4, (3, 1, 4)).astype(np.float64)
        for red in ("mean", "sum", "weighted_mean"):
            for axis, keep in ((None, False), ((2,), False), ((0, 2), True)):
                name = "all" if axis is None else "-".join(map(str, axis))
                add(make_weighted_case(f"weighted-{red}-axis{name}-{dtype}", "smooth_l1", 0.8,
                                       red, dtype, x3, y3, w3, axis, keep))
            add(make_weighted_case(f"axis-{red}-{dtype}", "huber", 1.1, red, dtype, x3, y3,
                                   None, (1,), False))
        add(make_weighted_case(f"weighted-none-{dtype}", "smooth_l1", 0.8, "none", dtype, x3, y3,
                               w3, None, False))
        add(make_weighted_case(f"weighted-mean-zero-total-{dtype}", "smooth_l1", 0.8,
                               "weighted_mean", dtype, x3[:, 0], y3[0],
                               np.array([[1.0], [0.0], [2.0]]), (1,), False,
                               "a row whose weights sum to 0 gives NaN"))
    # beta/delta as arrays: a threshold per feature, per element (beyond torch); their own
    # generator, so that the cases before and after keep their data
    trng = np.random.default_rng(20261202)
    for dtype in ("float32", "float64"):
        xf, yf = trng.uniform(-3, 3, (6, 4)), trng.uniform(-1, 1, (6, 4))
        for red in ("none", "mean", "sum"):
            add(make_threshold_case(f"threshold-per-feature-{red}-{dtype}", "smooth_l1",
                                    np.array([0.0, 0.25, 1.0, np.inf]), red, dtype, xf, yf,
                                    "beta per feature: 0 (L1), 1/4, 1, inf (0)"))
            add(make_threshold_case(f"threshold-huber-per-feature-{red}-{dtype}", "huber",
                                    np.array([0.5, 1.0, 2.0, np.inf]), red, dtype, xf, yf[0],
                                    "delta per feature, target broadcast"))
        add(make_threshold_case(f"threshold-per-element-{dtype}", "smooth_l1",
                                trng.choice([0.5, 1.0, 1.5, 3.0], (6, 4)), "none", dtype, xf, yf,
                                "beta per element"))
    add(make_threshold_case("threshold-f32-overflow-before-division", "smooth_l1",
                            np.array([1e30, 1.0]), "none", "float32", np.array([1e20, 3.0]),
                            np.zeros(2), "an array beta keeps the exact value where torch "
                            "overflows"))
    # torch's defects (torch-parity section 3)
    add(make_case("f32-overflow-before-division", "smooth_l1", 1e30, "none", "float32",
                  np.array([1e20, -1e20]), np.zeros(2), "torch: 0.5*z*z overflows to inf"))
    add(make_case("f64-overflow-before-division", "smooth_l1", 1e300, "none", "float64",
                  np.array([1e160]), np.zeros(1), "torch: 0.5*z*z overflows to inf"))
    add(make_case("f32-tiny-beta-underflow", "smooth_l1", 1e-30, "none", "float32",
                  np.array([5e-31, 2.5e-31]), np.zeros(2), "torch: 0.5*z*z underflows to 0"))
    add(make_case("f64-tiny-beta-underflow", "smooth_l1", 1e-200, "none", "float64",
                  np.array([5e-201]), np.zeros(1), "torch: 0.5*z*z underflows to 0"))
    add(make_case("f32-subnormal-intermediate", "smooth_l1", 1e-19, "none", "float32",
                  np.array([1e-20]), np.zeros(1), "torch: 0.5*z*z is subnormal, ~6 bits left"))
    add(make_case("f32-beta-rounds-to-zero", "smooth_l1", 1e-50, "none", "float32",
                  np.array([0.0, 1.0, -2.0]), np.zeros(3),
                  "beta is 0 in float32: L1; torch's gradient at 0 depends on length"))
    add(make_case("f16-overflow", "smooth_l1", 1000.0, "none", "float16",
                  np.array([400.0, 300.0, 30.0]), np.zeros(3), "torch: fp16 0.5*z*z = inf"))
    add(make_case("f16-underflow", "smooth_l1", 1e-3, "none", "float16",
                  np.array([1e-4]), np.zeros(1), "torch: fp16 0.5*z*z underflows to 0"))
    add(make_case("f16-beta-not-representable", "smooth_l1", 1e5, "none", "float16",
                  np.array([100.0, 400.0]), np.zeros(2), "torch: beta is inf in fp16"))
    for dtype in ("float16", "bfloat16"):
        for red in ("mean", "sum", "none"):
            add(make_case(f"half-{dtype}-{red}", "smooth_l1", 0.5, red, dtype,
                          rng.standard_normal(64) * 3, rng.standard_normal(64),
                          "computed in float32 and rounded once"))
            add(make_case(f"half-huber-{dtype}-{red}", "huber", 0.5, red, dtype,
                          rng.standard_normal(64) * 3, rng.standard_normal(64)))
    return out


def main() -> None:
    payload = {
        "format": "smoothl1-conformance",
        "version": VERSION,
        "provenance": {
            "generator": "tools/generate_conformance_cases.py",
            "torch_version": torch.__version__,
            "smoothl1_version": smoothl1.__version__,
            "date": datetime.date.today().isoformat(),
            "expected": "exact rational arithmetic, rounded once to the case's dtype",
            "torch": "torch.nn.functional.smooth_l1_loss / huber_loss and autograd, CPU",
        },
        "cases": cases(),
    }
    OUT.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {len(payload['cases'])} cases to {OUT}")


if __name__ == "__main__":
    main()
