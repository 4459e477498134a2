"""The NumPy blocks (smoothl1._backends.numpy) against the general path and float64 math.

Every call form goes through the blocks: weights, broadcasting, axes, every
reduction, cotangents, half precision, mixed dtypes and odd memory layouts.
Small budgets, units and groups are patched in, so that moderate arrays run
through many blocks, units, groups, tails and both threads; results must not
depend on any of that.
"""

from __future__ import annotations

import itertools
import tracemalloc
import warnings

import numpy as np
import pytest

import smoothl1
from smoothl1 import _core
from smoothl1._backends import numpy as blocks
from smoothl1._request import request, validate

PARAM = {"smooth_l1": "beta", "huber": "delta"}


@pytest.fixture(params=["one thread", "two threads"])
def small_blocks(request, monkeypatch):
    """Blocks of a few hundred elements, units of 64, groups of 4: many of each per call."""
    monkeypatch.setattr(blocks, "MEMORY_BUDGET", 1 << 14)
    monkeypatch.setattr(blocks, "ROW", 64)
    monkeypatch.setattr(blocks, "GROUP", 4)
    monkeypatch.setattr(blocks, "PARALLEL_MIN", 3000)
    smoothl1.set_num_threads(1 if request.param == "one thread" else 2)
    yield request.param
    smoothl1.set_num_threads(1)


def _call(kind, x, y, param=0.7, reduction="mean", *, weight=None, grad_output=None, axis=None,
          keepdims=False, value=True, grad=False):
    req = request(kind, kind, param, reduction, axis, keepdims, value=value, grad=grad)
    return validate(req, x, y, weight, grad_output, warn=False)


def both_paths(kind, x, y, param=0.7, reduction="mean", *, weight=None, grad_output=None,
               axis=None, keepdims=False):
    """(blocks, general) results of value_and_grad (or grad with a cotangent)."""
    grad_only = grad_output is not None
    call = _call(kind, x, y, param, reduction, weight=weight, grad_output=grad_output, axis=axis,
                 keepdims=keepdims, value=not grad_only, grad=True)
    got = blocks.evaluate(call, x, y, weight, grad_output)
    assert got is not None, "the blocks declined"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = _core.evaluate(call, x, y, weight, grad_output)
    return got, want


def _data(shape, dtype=np.float64, seed=0, specials=False):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    if specials and x.size > 12:
        flat_x, flat_y = x.reshape(-1), y.reshape(-1)
        flat_x[:10] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.7, 1e-30, 1e30]
        flat_y[:10] = [0.0, 1.0, 2.0, -0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    return x, y


def _ulps(dtype):
    # both paths are within an ulp or two of the exact sum; the general path sums in the
    # working precision (float32 for float32), the blocks in float64
    return 16 * np.finfo(dtype).eps


def assert_same(got, want, reduced, dtype=None):
    """Elementwise results bit for bit; reductions within a few ulps of the working dtype."""
    assert type(got) is np.ndarray
    want = want.astype(want.dtype.newbyteorder("="))  # results are in native byte order
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    if reduced:  # relative to the result, or to the largest result where terms cancel
        tol = _ulps(np.float32 if got.dtype != np.float64 else np.float64)
        want64 = want.astype(np.float64)
        finite = want64[np.isfinite(want64)]
        scale = np.max(np.abs(finite)) if finite.size else 0.0
        np.testing.assert_allclose(got.astype(np.float64), want64, rtol=tol, atol=tol * scale)
    else:
        np.testing.assert_array_equal(got, want, strict=True)


# ---------------------------------------------------------------------- call forms

FORMS = {
    # name: (input shape, target shape, weight shape or None, axis)
    "plain": ((40, 30), (40, 30), None, None),
    "1-d long": ((3001,), (3001,), None, None),
    "0-d": ((), (), None, None),
    "broadcast target": ((64, 50), (50,), None, None),
    "broadcast target column": ((64, 50), (64, 1), None, None),
    "broadcast both": ((7, 1, 30), (1, 9, 30), None, None),
    "axis -1": ((90, 40), (90, 40), None, -1),
    "axis 0": ((40, 90), (40, 90), None, 0),
    "axis 0 long": ((700, 5), (700, 5), None, 0),
    "axis (0, 2)": ((12, 5, 70), (12, 5, 70), None, (0, 2)),
    "axis middle": ((6, 300, 4), (6, 300, 4), None, 1),
    "weight full": ((40, 30), (40, 30), (40, 30), None),
    "weight row": ((40, 30), (40, 30), (30,), None),
    "weight column, axis -1": ((40, 30), (40, 30), (40, 1), -1),
    "weight, broadcast, axis 0": ((64, 50), (50,), (64, 1), 0),
    "0-d weight": ((40, 30), (40, 30), (), None),
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "weighted_mean"])
@pytest.mark.parametrize(("kind", "param"), [("smooth_l1", 0.7), ("smooth_l1", 1.0),
                                             ("smooth_l1", 0.0), ("huber", 1.3)])
@pytest.mark.filterwarnings("ignore:Using a target size")
def test_every_call_form_matches_the_general_path(small_blocks, form, reduction, kind, param):
    xs, ys, ws, axis = FORMS[form]
    if reduction == "none" and axis is not None:
        return
    x, y = _data(xs, specials=True)[0], _data(ys, seed=1)[0]
    weight = None if ws is None else np.random.default_rng(2).uniform(0, 2, ws)
    (value, grad), (want_value, want_grad) = both_paths(kind, x, y, param, reduction,
                                                        weight=weight, axis=axis)
    assert_same(value, want_value, reduced=reduction != "none")
    # gradients are elementwise (torch's bits) unless summed over a broadcast input or
    # divided by a total weight
    assert_same(grad, want_grad, reduced=xs != np.broadcast_shapes(xs, ys)
                or reduction == "weighted_mean")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "weighted_mean"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("go_shape", ["full", "broadcast", "0-d", "number"])
def test_grad_output_of_any_valid_shape(small_blocks, reduction, keepdims, go_shape):
    x, y = _data((30, 7, 40))
    axis = None if reduction == "none" else (0, 2)
    call = _call("smooth_l1", x, y, 0.7, reduction, axis=axis, keepdims=keepdims)
    out_shape = call.out_shape
    rng = np.random.default_rng(3)
    go = {"full": lambda: rng.standard_normal(out_shape),
          "broadcast": lambda: rng.standard_normal(out_shape[-1:] or ()),
          "0-d": lambda: np.asarray(0.75), "number": lambda: -1.5}[go_shape]()
    w = rng.uniform(0, 1, (1, 7, 40))
    got, want = both_paths("smooth_l1", x, y, 0.7, reduction, weight=w, grad_output=go,
                           axis=axis, keepdims=keepdims)
    assert got[0] is None
    assert_same(got[1], want[1], reduced=reduction == "weighted_mean")


LAYOUTS = ["C", "Fortran", "transposed", "negative strides", "sliced", "byte-swapped",
           "broadcast view"]


def _layout(name, a):
    if name == "Fortran":
        return np.asfortranarray(a)
    if name == "transposed":
        return np.ascontiguousarray(a.T).T
    if name == "negative strides":
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if name == "sliced":
        big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
        big[::2, 1::3] = a
        return big[::2, 1::3]
    if name == "byte-swapped":
        return a.astype(a.dtype.newbyteorder())
    if name == "broadcast view":
        return np.broadcast_to(a[:1], a.shape)
    return a


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("reduction", "axis"), [("mean", None), ("none", None), ("sum", 0),
                                                 ("weighted_mean", -1)])
def test_odd_layouts_give_the_values_of_a_contiguous_copy(small_blocks, layout, dtype,
                                                          reduction, axis):
    x, y = _data((50, 70), dtype, specials=True)
    w = np.random.default_rng(4).uniform(0, 1, (50, 70))
    xo, yo, wo = (_layout(layout, a) for a in (x, y, w))
    if layout == "broadcast view":
        x, y, w = (np.ascontiguousarray(a) for a in (xo, yo, wo))
    assert np.array_equal(xo, x, equal_nan=True)
    (v, g), (wv, wg) = both_paths("smooth_l1", xo, yo, 0.5, reduction, weight=wo, axis=axis)
    (cv, cg), _ = both_paths("smooth_l1", x, y, 0.5, reduction, weight=w, axis=axis)
    assert_same(v, wv, reduced=reduction != "none")
    assert_same(v, cv, reduced=reduction != "none")
    assert_same(g, cg, reduced=reduction == "weighted_mean")
    assert_same(g, wg, reduced=reduction == "weighted_mean")


@pytest.mark.parametrize("dtypes", [("float16", "float16"), ("float32", "float64"),
                                    ("float16", "float32"), ("float64", "float16")])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_half_and_mixed_dtypes(small_blocks, dtypes, reduction):
    x, y = _data((3000,), specials=True)
    with np.errstate(over="ignore"):
        x, y = x.astype(dtypes[0]), y.astype(dtypes[1])
    (v, g), (wv, wg) = both_paths("smooth_l1", x, y, 0.5, reduction,
                                  weight=np.linspace(0, 1, 3000, dtype=np.float32))
    assert v.dtype == np.result_type(x, y)
    assert g.dtype == x.dtype
    assert_same(v, wv, reduced=reduction != "none")
    assert_same(g, wg, reduced=False)


@pytest.mark.parametrize("wdtype", ["bool", "int8", "int64", "float16", "float64"])
def test_weights_of_any_dtype(small_blocks, wdtype):
    x, y = _data((60, 50), np.float32)
    w = (np.random.default_rng(5).uniform(0, 3, (60, 50))).astype(wdtype)
    for reduction in ("mean", "none", "weighted_mean"):
        (v, g), (wv, wg) = both_paths("huber", x, y, 0.8, reduction, weight=w)
        assert_same(v, wv, reduced=reduction != "none")
        assert_same(g, wg, reduced=reduction == "weighted_mean")


@pytest.mark.parametrize("n", [1, 7, 4096, 4097, 16384])
@pytest.mark.parametrize("fn", ["smooth_l1", "huber", "smooth_l1_grad", "smooth_l1_value_and_grad",
                                "huber_value_and_grad"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "weighted_mean"])
def test_the_small_call_lane_gives_the_bits_of_the_blocks(monkeypatch, n, fn, reduction):
    """Small calls skip the layout and the block loop; the numbers are the same, bit for bit."""
    x, y = _data((n,), np.float32, seed=n, specials=n > 12)
    call = getattr(smoothl1, fn)
    kwargs = {"grad_output": 0.5} if fn.endswith("_grad") and "value" not in fn else {}
    lane = call(x, y, 0.3, reduction, **kwargs)
    monkeypatch.setattr(blocks, "_fits_one_block", lambda *args: False)
    blocked = call(x, y, 0.3, reduction, **kwargs)
    for a, b in zip(np.atleast_1d(lane) if not isinstance(lane, tuple) else lane,
                    np.atleast_1d(blocked) if not isinstance(blocked, tuple) else blocked,
                    strict=True):
        np.testing.assert_array_equal(a, b, strict=True)


@pytest.mark.parametrize("shape", [(7,), (64, 64), (4, 1024), (16, 1024)])
@pytest.mark.parametrize("operand", ["weight per feature", "weight per element", "beta per feature",
                                     "beta per element", "beta 0-d", "both per feature",
                                     "beta with 0, inf and invalid"])
@pytest.mark.parametrize("fn", ["smooth_l1", "huber", "smooth_l1_value_and_grad", "huber_grad"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "weighted_mean"])
def test_the_small_call_lane_takes_array_weights_and_thresholds_with_the_bits_of_the_blocks(
        monkeypatch, shape, operand, fn, reduction):
    """Array weights and thresholds of the input's dtype take the lane too: the same bits."""
    rng = np.random.default_rng(len(shape) + shape[-1])
    x, y = _data(shape, np.float32, seed=shape[-1], specials=shape[-1] > 12)
    per = shape[-1:] if "feature" in operand else shape if "element" in operand else ()
    a = rng.uniform(0.2, 3.0, per).astype(np.float32)
    if "invalid" in operand:
        a = rng.uniform(0.2, 3.0, shape[-1:]).astype(np.float32)
        a[:4] = [0.0, np.inf, -1.0, np.nan][: a.size]
    kwargs: dict[str, object] = {"reduction": reduction}
    if "weight" in operand or "both" in operand:
        kwargs["weight"] = a
    if "beta" in operand or "both" in operand:
        kwargs["delta" if fn.startswith("huber") else "beta"] = a
    if fn.endswith("_grad") and "value" not in fn:
        kwargs["grad_output"] = 0.5
    if reduction == "weighted_mean" and "weight" not in kwargs:
        kwargs["weight"] = 2.0
    call = getattr(smoothl1, fn)
    took = []
    real = blocks._small
    monkeypatch.setattr(blocks, "_small", lambda *args: took.append(1) or real(*args))
    lane = call(x, y, **kwargs)
    # a sum with a smaller operand keeps to one unit (ROW elements) in the lane
    assert bool(took) == (x.size <= blocks.ROW or reduction == "none" or a.shape == shape)
    monkeypatch.setattr(blocks, "_fits_one_block", lambda *args: False)
    blocked = call(x, y, **kwargs)
    for u, v in zip(lane if isinstance(lane, tuple) else (lane,),
                    blocked if isinstance(blocked, tuple) else (blocked,), strict=True):
        np.testing.assert_array_equal(u, v, strict=True)


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("shape", [(64, 64), (512, 64)])  # the small-call lane, the blocks
@pytest.mark.parametrize("fn", ["smooth_l1", "huber", "smooth_l1_value_and_grad"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_a_small_thresholds_preparation_is_remembered_by_its_values(
        monkeypatch, library, shape, fn, reduction):
    """A threshold checked once per call is remembered by its bytes: the next call with the
    same values prepares nothing, a threshold changed in place gives its new losses (the
    same bits as a fresh preparation), and nothing remembered is the caller's memory."""
    x, y = _data(shape, np.float32, seed=3)
    b = np.random.default_rng(4).uniform(0.2, 3.0, shape[-1:]).astype(np.float32)
    name = "delta" if fn.startswith("huber") else "beta"
    call = getattr(smoothl1, fn)
    if library == "torch":
        torch = pytest.importorskip("torch")
        x, y, b = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(b)

    def run(p):
        out = call(x, y, reduction=reduction, **{name: p})
        return [np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))]

    prepared = []
    real = blocks._prepared
    monkeypatch.setattr(blocks, "_prepared", lambda *a: prepared.append(1) or real(*a))
    blocks._PREPARED._data.clear()
    first = run(b)
    assert prepared == [1]
    for u, v in zip(run(b), first, strict=True):  # remembered: prepared once
        np.testing.assert_array_equal(u, v, strict=True)
    assert prepared == [1]
    for prep in blocks._PREPARED._data.values():
        for a in (prep.values, prep.aux, prep.inv, prep.twice):
            assert a is None or not np.shares_memory(a, np.asarray(b))
        # Smooth L1's losses ('none') from 2*beta; what the small-call lane reads is
        # repeated to its shape once, when it is remembered (the blocks repeat their own)
        assert (prep.twice is not None) == (name == "beta" and reduction == "none")
        read = [a for a in (prep.values if prep.read else None, prep.aux, prep.inv, prep.twice)
                if a is not None]
        assert {a.shape if shape == (64, 64) else a.size
                for a in read} == {shape if shape == (64, 64) else 64}
    changes = np.array([0.0, np.inf, -1.0, np.nan, 1e-30, 5.0, 0.5, 2.0], np.float32)
    b[:8] = torch.from_numpy(changes) if library == "torch" else changes  # in place
    changed = run(b)
    assert prepared == [1, 1]
    assert not all(np.array_equal(u, v, equal_nan=True)
                   for u, v in zip(changed, first, strict=True))
    blocks._PREPARED._data.clear()
    for u, v in zip(changed, run(b.clone() if library == "torch" else b.copy()), strict=True):
        np.testing.assert_array_equal(u, v, strict=True)
    assert prepared == [1, 1, 1]
    blocks._PREPARED._data.clear()  # one value (a schedule's): not remembered
    run(b[:1].reshape(()))
    assert prepared == [1, 1, 1, 1]
    assert not blocks._PREPARED._data


@pytest.mark.parametrize("shape", [(), (7,), (300, 70)])
@pytest.mark.parametrize("param", ["1", "1.5", "per feature", "per element"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_none_losses_are_computed_into_the_result(monkeypatch, small_blocks, shape, param,
                                                   weighted, kind, dtype):
    """``'none'`` computes each block's losses into the result where it is in the working
    dtype (no copy of them: nothing goes through _write), with the general path's bits;
    float16 results are written as before."""
    x, y = _data(shape, dtype, seed=5, specials=dtype != np.float16)  # (1e30: not a float16)
    rng = np.random.default_rng(6)
    p: object = {"1": 1.0, "1.5": 1.5}.get(param)
    if p is None:
        p = rng.uniform(0.2, 3.0, shape[-1:] if param == "per feature" else shape).astype(dtype)
    w = rng.uniform(0.0, 2.0, shape[-1:]).astype(dtype) if weighted else None
    fn = getattr(smoothl1, kind)
    writes = []
    real = blocks._write
    monkeypatch.setattr(blocks, "_write", lambda *a: writes.append(1) or real(*a))
    got = fn(x, y, p, "none", weight=w)
    if shape:  # (a 0-d call takes the general path)
        assert (writes == []) == (dtype != np.float16)
    monkeypatch.setattr(blocks, "evaluate", lambda *a, **k: None)  # the general path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = fn(x, y, p, "none", weight=w)
    np.testing.assert_array_equal(got, want, strict=True)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_remembered_thresholds_of_the_same_bytes_in_another_byte_order_are_other_thresholds(
        reduction):
    """The memo's key holds the dtype's byte order: a big-endian threshold and the
    little-endian one of the same bytes give their own losses."""
    x, y = _data((512, 64), np.float64, seed=8)  # (the blocks, for both byte orders)
    big = np.random.default_rng(9).uniform(0.2, 3.0, 64).astype(">f8")
    little = np.frombuffer(big.tobytes(), "<f8")  # the same bytes, other values
    blocks._PREPARED._data.clear()
    want = [smoothl1.smooth_l1(x, y, beta=p, reduction=reduction)
            for p in (big.astype("<f8"), little.copy())]
    blocks._PREPARED._data.clear()
    for p, w in zip((big, little), want, strict=True):
        np.testing.assert_array_equal(smoothl1.smooth_l1(x, y, beta=p, reduction=reduction), w,
                                      strict=True)


def _edge_differences(beta, dtype, rows, rng):
    """Differences d for thresholds ``beta`` (one per column), at every edge of the loss."""
    f = np.finfo(dtype)
    root = np.sqrt(dtype(4) * f.smallest_normal)  # where d*d reaches 4 * smallest normal
    fixed = [0.0, -0.0, f.smallest_subnormal, f.smallest_normal, root, np.nextafter(root, 0),
             np.nextafter(root, 1), -root, 1e-30, 1e-200, f.max, -f.max, np.inf, -np.inf, np.nan]
    b = beta.astype(dtype)
    near = [b, np.nextafter(b, 0), np.nextafter(b, np.inf), -b, b / 2, np.nextafter(b / 2, 0),
            np.nextafter(b / 2, np.inf), b * 3, b / 3]
    d = (rng.standard_normal((rows, beta.size)) * 2 * b).astype(dtype)
    d[rng.random(d.shape) < 0.1] *= 1e10
    for i, v in enumerate(fixed + near):
        d[i] = np.broadcast_to(np.asarray(v, dtype), b.shape)
    # d*d from the smallest normal number to 4 times it: 0.5*z*z is subnormal or not
    k = len(fixed) + len(near)
    d[k:k + 200] = (np.sqrt(f.smallest_normal) * rng.uniform(1.0, 2.0, (200, b.size))
                    ).astype(dtype)
    return d


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("param", ["number", "0-d", "per feature"])
@pytest.mark.parametrize("thresholds", ["ordinary", "at the bounds", "outside the bounds"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_none_losses_from_the_square_have_the_formulas_bits(monkeypatch, small_blocks, dtype,
                                                            thresholds, param, weighted):
    """Smooth L1's ``'none'`` from ``d*d / (2*beta)`` with the Sterbenz mask
    (blocks._smooth_l1_losses) gives the general path's bits, torch's where torch is
    right, for every edge: d at and around beta and beta/2, zeros of both signs,
    d*d below 4 * smallest normal (those elements recomputed the old way, only
    they), overflowing squares, infinities, NaN; thresholds from twice the smallest
    normal number to the bound (2^63, 2^511), and outside them (the old passes)."""
    bits = 8 * np.dtype(dtype).itemsize
    least, most = blocks._SQUARES_LEAST[bits], blocks._SQUARES_EXACT[bits]
    rng = np.random.default_rng(11)
    beta = {"ordinary": np.array([0.3, 1.0, 1.5, 1e-20, 7e3, 1e10]),
            "at the bounds": np.array([least, most, 2.5, 1e-30 if bits == 64 else 1e-37]),
            "outside the bounds": np.array([least / 2, 2 * most, 1.5])}[thresholds]
    if param != "per feature":
        beta = beta[:1] if param == "0-d" else beta[2:3]
    d = _edge_differences(beta, dtype, 300, rng)
    y = rng.standard_normal(d.shape).astype(dtype)
    y[:240] = 0.0  # (x - y is then d itself in the rows of edges)
    with np.errstate(all="ignore"):
        x = (y + d).astype(dtype)
    p = {"number": float(beta[0]), "0-d": beta[0].astype(dtype)}.get(param, beta.astype(dtype))
    w = rng.uniform(0.0, 2.0, d.shape[-1:]).astype(dtype) if weighted else None
    fast, old = [], []
    real_fast, real_old = blocks._smooth_l1_losses, blocks._losses_per_element
    monkeypatch.setattr(blocks, "_smooth_l1_losses",
                        lambda *a, **k: fast.append(a[1].size) or real_fast(*a, **k))
    monkeypatch.setattr(blocks, "_losses_per_element",
                        lambda *a, **k: old.append(a[2].size) or real_old(*a, **k))
    got = smoothl1.smooth_l1(x, y, p, "none", weight=w)
    with np.errstate(all="ignore"):
        dd = x - y
        low = int(np.count_nonzero(dd * dd < blocks._SQUARES_BLOCK[np.dtype(dtype)][0]))
    if thresholds == "outside the bounds" and param != "number":  # (1.5 alone is within)
        assert fast == []
        assert sum(old) == d.size
    else:
        assert sum(fast) == d.size
        assert 0 < sum(old) == low  # the low elements alone
    monkeypatch.setattr(blocks, "evaluate", lambda *a, **k: None)  # the general path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = smoothl1.smooth_l1(x, y, p, "none", weight=w)
    uint = np.uint32 if bits == 32 else np.uint64
    np.testing.assert_array_equal(got.view(uint), want.view(uint), strict=True)


def test_memory_mapped_arrays_take_the_blocks(tmp_path):
    x = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=(50_000,))
    x[:] = _data((50_000,), np.float32)[0]
    y = np.zeros(50_000, np.float32)
    assert blocks.accepts(x)
    np.testing.assert_array_equal(smoothl1.smooth_l1(x, y), smoothl1.smooth_l1(np.array(x), y))
    g = smoothl1.smooth_l1_grad(x, y)
    assert type(g) is np.ndarray
    np.testing.assert_array_equal(g, smoothl1.smooth_l1_grad(np.array(x), y))


# -------------------------------------------------------------- fixed summation order


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize(("shape", "axis"), [((50_000,), None), ((300, 200), -1),
                                             ((200, 300), 0), ((40, 30, 50), (0, 2)),
                                             ((5, 20_000), -1)])
def test_reductions_do_not_depend_on_blocks_or_threads(monkeypatch, shape, axis):
    """The same bits from budgets of 2 KiB to 1 MiB and from 1, 2 or 3 threads."""
    x, y = _data(shape, np.float32, seed=7)
    w = np.random.default_rng(8).uniform(0, 1, shape[-1:]).astype(np.float32)
    monkeypatch.setattr(blocks, "ROW", 256)
    monkeypatch.setattr(blocks, "GROUP", 8)
    monkeypatch.setattr(blocks, "PARALLEL_MIN", 1000)
    results = []
    try:
        for budget, threads in itertools.product((1 << 11, 1 << 15, 1 << 20), (1, 2, 3)):
            monkeypatch.setattr(blocks, "MEMORY_BUDGET", budget)
            smoothl1.set_num_threads(threads)
            results.append([
                smoothl1.smooth_l1(x, y, 0.5, axis=axis),
                smoothl1.huber(x, y, 2.0, "weighted_mean", weight=w, axis=axis),
                smoothl1.smooth_l1_value_and_grad(x[:1], y, 0.5, "sum", axis=axis)[1]
                if len(shape) > 1 else smoothl1.smooth_l1(x, y, reduction="sum"),
            ])
    finally:
        smoothl1.set_num_threads(1)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b, strict=True)


def _exact_mean(x, y, beta):
    d = x.astype(np.float64) - y.astype(np.float64)
    z = np.abs(d)
    with np.errstate(all="ignore"):
        return np.where(z < beta, 0.5 * z * (z / beta), z - 0.5 * beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 3001, 40_000])
def test_reductions_are_the_float64_sum_rounded_once(small_blocks, dtype, n):
    x, y = _data((n,), dtype, seed=n)
    exact = _exact_mean(x, y, 0.3)
    got = smoothl1.smooth_l1(x, y, 0.3)
    assert got.dtype == dtype
    assert got.shape == ()
    # float32: the float64 sum of float32 losses, rounded once (each loss rounded in float32)
    np.testing.assert_allclose(got, exact.mean(), rtol=1.2e-7 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(smoothl1.smooth_l1(x, y, 0.3, "sum"), exact.sum(),
                               rtol=1.2e-7 if dtype == np.float32 else 1e-15)


def test_float64_sums_keep_constant_data_exact_and_do_not_overflow():
    n = 1 << 16
    got = smoothl1.smooth_l1(np.full(n, 2.276207, np.float32), np.zeros(n, np.float32))
    assert got == np.float32(2.276207) - np.float32(0.5)  # the correctly rounded mean
    big = smoothl1.smooth_l1(np.full(5000, 1e36, np.float32), np.zeros(5000, np.float32))
    assert big == np.float32(1e36)  # the float32 sum would overflow; the mean does not


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_specials_give_torchs_nan_and_inf(small_blocks, dtype):
    x, y = _data((5000,), dtype, specials=True)
    for reduction in ("mean", "sum"):
        assert np.isnan(smoothl1.smooth_l1(x, y, reduction=reduction))  # one NaN element
        x2 = x.copy()
        x2[0] = 0.0
        assert np.isposinf(smoothl1.smooth_l1(x2, y, reduction=reduction))
        assert np.isposinf(smoothl1.huber(x2, y, reduction=reduction))
        assert np.isnan(smoothl1.smooth_l1(x2, y, beta=np.inf, reduction=reduction))


def test_exact_where_torchs_half_square_underflows_or_overflows(small_blocks):
    n = 4000
    tiny = np.full(n, 1e-20, np.float32)  # 0.5*z*z underflows; z*z/(2 beta) is 5e-21
    got = smoothl1.smooth_l1(tiny, np.zeros(n, np.float32), beta=1e-20, reduction="sum")
    np.testing.assert_allclose(got, n * 0.5e-20, rtol=1e-6)
    big = np.full(n, 1e30, np.float32)  # 0.5*z*z overflows; the loss is 2.5e29
    got = smoothl1.smooth_l1(big, np.zeros(n, np.float32), beta=2e30, reduction="mean")
    np.testing.assert_allclose(got, 0.25e30, rtol=1e-6)
    got = smoothl1.smooth_l1(big, np.zeros(n, np.float32), beta=2e30, reduction="none")
    np.testing.assert_allclose(got, 0.25e30, rtol=1e-6)


def test_results_are_numpy_arrays_and_inputs_are_left_alone(small_blocks):
    x, y = _data((6, 7, 100), np.float32)
    w = np.ones((7, 1), np.float32)
    before = [a.copy() for a in (x, y, w)]
    assert smoothl1.smooth_l1(x, y, keepdims=True).shape == (1, 1, 1)
    assert smoothl1.smooth_l1(x, y, axis=(0, 1, 2)).shape == ()
    assert smoothl1.smooth_l1(x, y, reduction="none", weight=w).shape == (6, 7, 100)
    out = smoothl1.smooth_l1(x, y, axis=1, keepdims=True, weight=w)
    assert type(out) is np.ndarray
    assert out.shape == (6, 1, 100)
    assert out.dtype == np.float32
    g = smoothl1.smooth_l1_grad(x, y, weight=w)
    assert type(g) is np.ndarray
    assert g.shape == (6, 7, 100)
    assert g.dtype == np.float32
    for a, b in zip((x, y, w), before, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)


# --------------------------------------------------------------------------- dtypes


def test_float16_conversion_is_numpys_for_every_bit_pattern():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    want = h.astype(np.float32)
    got = blocks._f16_to_f32(h)
    np.testing.assert_array_equal(got.view(np.uint32) & ~np.isnan(want) * 0xFFFFFFFF,
                                  want.view(np.uint32) & ~np.isnan(want) * 0xFFFFFFFF)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_bfloat16_rounding_is_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    f = np.concatenate([rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(
        -40, 38, 10_000), np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38, 1e-45],
                                   np.float32)]).astype(np.float32)
    f = np.concatenate([f, (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)])
    want = torch.from_numpy(f).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    got = blocks._f32_to_bf16(f)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- memory


def _peak(fn):
    fn()  # warm up (thread pool, imports, memos)
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("form", ["mean", "weighted mean", "axis -1", "axis 0", "broadcast",
                                  "float16", "strided", "beta per feature",
                                  "weight per feature"])
def test_reduced_forms_allocate_under_1_mib(threads, form):
    """Traced peak of reduced losses over 2**21 elements (8 MiB per float32 input)."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1 << 15, 64)).astype(np.float32)
    y = rng.standard_normal((1 << 15, 64)).astype(np.float32)
    w = rng.random((1 << 15, 64)).astype(np.float32)
    calls = {
        "mean": lambda: smoothl1.smooth_l1(x, y, 0.5),
        "weighted mean": lambda: smoothl1.huber(x, y, weight=w, reduction="weighted_mean"),
        "axis -1": lambda: smoothl1.smooth_l1(x, y, axis=-1),
        "axis 0": lambda: smoothl1.smooth_l1(x, y, axis=0, weight=w),
        "broadcast": lambda: smoothl1.smooth_l1(x, y[0], weight=w[:, :1]),
        "float16": lambda: smoothl1.smooth_l1(x16, y16),
        "strided": lambda: smoothl1.smooth_l1(x[:, ::2], y[:, ::2]),
        "beta per feature": lambda: smoothl1.smooth_l1_value_and_grad(x, y, beta=w[0] + 0.5),
        "weight per feature": lambda: smoothl1.smooth_l1(x, y, weight=w[0]),
    }
    x16, y16 = x.astype(np.float16), y.astype(np.float16)
    smoothl1.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            peak = _peak(calls[form])
    finally:
        smoothl1.set_num_threads(1)
    extra = {"axis -1": x.size * 4 // 64,  # the result itself
             "beta per feature": x.nbytes}.get(form, 0)  # (value_and_grad: the gradient)
    assert peak < (1 << 20) + extra, peak


@pytest.mark.parametrize("form", ["none", "grad", "grad with weights and axis"])
def test_elementwise_results_allocate_the_result_and_under_1_mib_more(form):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1 << 15, 64)).astype(np.float32)
    y = rng.standard_normal((1 << 15, 64)).astype(np.float32)
    calls = {"none": lambda: smoothl1.smooth_l1(x, y, reduction="none"),
             "grad": lambda: smoothl1.smooth_l1_grad(x, y),
             "grad with weights and axis": lambda: smoothl1.smooth_l1_value_and_grad(
                 x, y, weight=y[0] > 0, axis=-1)}
    peak = _peak(calls[form])
    result = x.nbytes + (x.nbytes // 64 if form.endswith("axis") else 0)
    assert peak < result + (1 << 20), peak - result


_MALLINFO = """
import ctypes
import numpy as np

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def mapped(nbytes):  # whether malloc maps an allocation of nbytes afresh
    before = libc.mallinfo2().hblks
    a = np.empty(nbytes, np.uint8)
    return libc.mallinfo2().hblks - before
"""


def test_blocks_leave_glibc_serving_mid_sized_temporaries_from_its_heap():
    """After the first blocked call, glibc's mmap and trim thresholds are high enough that
    block temporaries are neither mapped afresh nor trimmed away at every block."""
    import ctypes.util
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or "libc.so.6" not in str(
            ctypes.util.find_library("c")):
        pytest.skip("glibc's malloc only")
    code = _MALLINFO + """
import smoothl1
x = np.ones(1 << 20, np.float32)  # kept: nothing mid-sized is freed before the call
y = np.full(1 << 20, 2.0, np.float32)
assert mapped(4 << 20) == 1, "the default thresholds map 4 MiB"
smoothl1.smooth_l1(x, y)  # a blocked call
print(mapped(6 << 20))
"""
    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 (glibc >= 2.33)
    except AttributeError:
        pytest.skip("no mallinfo2 (glibc < 2.33)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"], out.stdout
