"""CPU torch tensors through the NumPy blocks: every call form, the same numbers as torch ops.

smoothl1 reads CPU tensors through zero-copy NumPy views and computes them in
blocks (smoothl1._backends.torch); the general path computes the same formulas
with torch operations.  Both must agree (elementwise bit for bit), in both
directions of autograd, and views are used only where they are the tensor's
exact values.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import smoothl1
from smoothl1._backends import numpy as blocks

torch = pytest.importorskip("torch")
from smoothl1._backends import torch as backend  # noqa: E402

F = torch.nn.functional


@pytest.fixture
def general(monkeypatch):
    """Run a callable with the blocks declined: the general path on torch operations."""

    def run(fn):
        with monkeypatch.context() as m:
            m.setattr(backend, "_blocks", lambda *a, **k: None)
            return fn()

    return run


def _data(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) * 2


FORMS = {
    "plain": ((64, 33), (64, 33), None, None),
    "weight": ((64, 33), (64, 33), (64, 33), None),
    "weight row, axis -1": ((64, 33), (64, 33), (33,), -1),
    "axis 0": ((64, 33), (64, 33), None, 0),
    "broadcast target": ((64, 33), (33,), None, None),
    "broadcast input": ((33,), (64, 33), None, None),
}


#: Two ulps of each dtype: reductions (and gradients summed over broadcast axes) are
#: added up in float64 by the blocks, in the working or the argument's dtype by torch ops.
_TOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 3e-6, torch.float64: 1e-14}


def _close(a, b, exact):
    tol = _TOL[b.dtype]
    a, b = a.detach().double().numpy(), b.detach().double().numpy()
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.max(np.abs(b), initial=0))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "weighted_mean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.filterwarnings("ignore:Using a target size")
def test_forward_and_backward_match_the_general_path(general, form, reduction, dtype):
    xs, ys, ws, axis = FORMS[form]
    if reduction == "none" and axis is not None:
        return
    x, y = _data(xs, dtype), _data(ys, dtype, seed=1)
    w = None if ws is None else _data(ws, torch.float32, seed=2).abs()

    def both():
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        out = smoothl1.smooth_l1(xr, yr, 0.7, reduction, weight=w, axis=axis)
        gx, gy = torch.autograd.grad(out, (xr, yr), torch.ones_like(out))
        return out, gx, gy

    def general_path(*args, **kwargs):
        raise AssertionError("the general path was taken")

    with pytest.MonkeyPatch.context() as m:  # forward and backward through the blocks only
        m.setattr(backend._core, "evaluate", general_path)
        m.setattr(backend._core, "backward", general_path)
        ours = both()
    want = general(both)
    for a, b in zip(ours, want, strict=True):
        assert a.dtype == b.dtype
        assert a.shape == b.shape
    # elementwise results are torch's bits in float32/float64 (half precisions: computed in
    # float32 and rounded once on both paths); reductions within a few ulps
    exact = reduction == "none" and dtype in (torch.float32, torch.float64)
    _close(ours[0], want[0], exact=exact or (dtype in (torch.float16, torch.bfloat16)
           and reduction == "none"))
    summed = xs != ys or reduction == "weighted_mean"
    _close(ours[1], want[1], exact=not summed and dtype in (torch.float32, torch.float64))
    _close(ours[2], want[2], exact=not summed and dtype in (torch.float32, torch.float64))


@pytest.mark.parametrize("n", [1000, backend.PRECOMPUTE + 1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_small_losses_compute_the_gradient_with_the_loss(n, reduction):
    """Up to PRECOMPUTE elements the forward pass computes the gradient too (the backward
    multiplies it by the cotangent); above, the backward reads the inputs again.  Both give
    torch's gradient, also for a second backward through a retained graph."""
    x, y = _data((n,), torch.float32), _data((n,), torch.float32, seed=1)
    calls = []
    real = blocks.run

    def spy(*args, **kwargs):
        calls.append(len(kwargs["grads"]))
        return real(*args, **kwargs)

    xr = x.clone().requires_grad_()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(blocks, "run", spy)
        out = smoothl1.smooth_l1(xr, y, 0.5, reduction)
        out.backward(retain_graph=True)
        first = xr.grad.clone()
        out.backward()  # accumulates: exactly twice the first
    assert calls == ([1] if n <= backend.PRECOMPUTE else [0, 1, 1])
    xt = x.clone().requires_grad_()
    (gt,) = torch.autograd.grad(F.smooth_l1_loss(xt, y, beta=0.5, reduction=reduction), xt)
    np.testing.assert_array_max_ulp(first.numpy(), gt.numpy(), maxulp=1)
    np.testing.assert_array_equal(xr.grad.numpy(), (2 * first).numpy())


@pytest.mark.parametrize("n", [1000, backend.PRECOMPUTE + 1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["smooth_l1", "huber"])
def test_small_losses_with_a_threshold_tensor_compute_the_gradient_with_the_loss(
        n, weighted, kind, general):
    """The same for an array threshold (its own eager Function): input's and target's
    gradients with the loss up to PRECOMPUTE elements, the threshold's in the backward;
    the same as the general path's (bit for bit for a mean's input and target), also for
    a cotangent other than 1 and a second backward through a retained graph."""
    fn = getattr(smoothl1, kind)
    rows = -(-n // 8)  # (above PRECOMPUTE: rows * 8 > PRECOMPUTE too)
    x, y = _data((rows, 8), torch.float32), _data((rows, 8), torch.float32, seed=1)
    p = torch.linspace(0.25, 3.0, 8)
    w = torch.linspace(0.5, 2.0, 8) if weighted else None
    calls = []
    real = blocks.run

    def spy(*args, **kwargs):
        calls.append(len(kwargs["grads"]))
        return real(*args, **kwargs)

    def grads(spying):
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        pr = p.clone().requires_grad_()
        with pytest.MonkeyPatch.context() as m:
            if spying:
                m.setattr(blocks, "run", spy)
            out = fn(xr, yr, pr, "weighted_mean" if weighted else "mean", weight=w)
            (out * 3).backward(retain_graph=True)
            first = [t.grad.clone() for t in (xr, yr, pr)]
            (out * 3).backward()
        for f, t in zip(first, (xr, yr, pr), strict=True):  # accumulated: exactly twice
            assert torch.equal(t.grad, 2 * f)
        return out.detach(), first

    value, got = grads(spying=True)
    assert calls == ([2] if n <= backend.PRECOMPUTE else [0, 2, 2])
    want_value, want = general(lambda: grads(spying=False))
    torch.testing.assert_close(value, want_value, rtol=1e-6, atol=0)
    for g, h in zip(got[:2], want[:2], strict=True):
        if weighted:  # (1 / the weights' total: float64 in blocks, the dtype's on torch ops)
            torch.testing.assert_close(g, h, rtol=1e-6, atol=0)
        else:
            assert torch.equal(g, h)
    torch.testing.assert_close(got[2], want[2], rtol=1e-6, atol=0)  # (sums of the same)


def test_bfloat16_is_computed_in_float32_and_rounded_once():
    x = torch.tensor([400.0, 1e-4, 3.0, -2.5]).to(torch.bfloat16)
    y = torch.zeros(4, dtype=torch.bfloat16)
    got = smoothl1.smooth_l1(x, y, 1000.0, "none")
    assert got.dtype == torch.bfloat16
    want = F.smooth_l1_loss(x.float(), y.float(), reduction="none", beta=1000.0).to(torch.bfloat16)
    assert torch.equal(got, want)


@pytest.mark.parametrize("kind", ["neg view", "conj().imag", "zero tensor"])
def test_views_are_only_used_where_they_are_the_values(kind):
    """Tensors whose storage is not their value (a pending negation, a lazily zero tensor)
    are not read through a view: the general path gives the right numbers."""
    base = torch.tensor([3.0, -1.0, 0.25])
    if kind == "neg view":
        v = torch._neg_view(base)
        want = -base
    elif kind == "conj().imag":
        v = torch.tensor([3 + 4j, -1 + 1j, 2 - 0.5j]).conj().imag
        want = torch.tensor([-4.0, -1.0, 0.5])
    else:
        v = torch._efficientzerotensor(3)
        want = torch.zeros(3)
    target = torch.full((3,), 1.5)
    for reduction in ("none", "mean"):
        got = smoothl1.smooth_l1(v, target, 1.0, reduction)
        np.testing.assert_array_equal(
            got.numpy(), F.smooth_l1_loss(want, target, reduction=reduction).numpy())
    g = smoothl1.smooth_l1_grad(target, target * 0, 1.0, "none", grad_output=v)
    assert torch.equal(g.clone(), torch.clamp(target, -1, 1) * want)


def test_a_negative_view_cotangent_keeps_its_sign():
    x = _data((5,), torch.float32)
    go = torch._neg_view(torch.ones(5))
    assert go.is_neg()
    xr = x.clone().requires_grad_()
    F.smooth_l1_loss(xr, torch.zeros(5), reduction="none").backward(-torch.ones(5))
    assert torch.equal(smoothl1.smooth_l1_grad(x, torch.zeros(5), reduction="none",
                                               grad_output=go), xr.grad)


@pytest.mark.parametrize("where", ["input", "target", "weight", "grad_output"])
def test_masked_tensors_are_refused_as_torch_refuses_them(where):
    """torch's loss raises on MaskedTensor; ours recursed without end (RecursionError)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "prototype stage"
        mt = torch.masked.masked_tensor(torch.tensor([1.0, 2.0, 3.0]),
                                        torch.tensor([True, False, True]))
    args = {"input": torch.ones(3), "target": torch.zeros(3), "weight": None, "grad_output": None}
    args[where] = mt
    with pytest.raises(TypeError, match=f"{where} is a torch.masked.MaskedTensor.*weight="):
        smoothl1.smooth_l1_grad(args["input"], args["target"], reduction="none",
                                grad_output=args["grad_output"], weight=args["weight"])
    if where != "grad_output":
        with pytest.raises(TypeError, match=f"{where} is a torch.masked.MaskedTensor"):
            smoothl1.smooth_l1(args["input"], args["target"], weight=args["weight"])


def test_fake_tensors_give_fake_results():
    """Under FakeTensorMode no real tensor may escape (no view of fake storage is read)."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    with FakeTensorMode():
        x, y = torch.randn(4, 3), torch.randn(4, 3)
        xr = torch.randn(4, 3, requires_grad=True)
        outs = [smoothl1.smooth_l1(x, y), smoothl1.smooth_l1(x, y, reduction="none"),
                smoothl1.smooth_l1_grad(x, y), *smoothl1.smooth_l1_value_and_grad(x, y),
                smoothl1.smooth_l1(x, y, weight=torch.ones(3), axis=0)]
        smoothl1.smooth_l1(xr, y).backward()
        outs.append(xr.grad)
    assert all(type(o) is FakeTensor for o in outs)
    assert [tuple(o.shape) for o in outs] == [(), (4, 3), (4, 3), (), (4, 3), (3,), (4, 3)]


def test_functionalized_calls_give_torch_values():
    """functionalize wraps tensors whose storage is not their value: a view read garbage."""
    from torch.fx.experimental.proxy_tensor import make_fx

    x, y = _data((7,), torch.float32), _data((7,), torch.float32, seed=1)

    def f(a, b):
        return (smoothl1.smooth_l1(a, b, reduction="none"), smoothl1.smooth_l1(a, b),
                smoothl1.smooth_l1_grad(a, b))

    want = (F.smooth_l1_loss(x, y, reduction="none"), F.smooth_l1_loss(x, y),
            smoothl1.smooth_l1_grad(x, y))
    traced = make_fx(torch.func.functionalize(f))(x, y)
    for got in (torch.func.functionalize(f)(x, y), traced(x, y)):
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_no_autograd_node_when_nothing_needs_a_gradient():
    x, y = _data((10,), torch.float32), _data((10,), torch.float32, seed=1)
    out = smoothl1.smooth_l1(x, y)
    assert out.grad_fn is None
    xr = x.clone().requires_grad_()
    assert smoothl1.smooth_l1(xr, y).grad_fn is not None
    with torch.no_grad():
        assert smoothl1.smooth_l1(xr, y).grad_fn is None


def test_results_share_memory_with_numpy_and_are_fresh():
    x, y = _data((1000,), torch.float32), _data((1000,), torch.float32, seed=1)
    a = smoothl1.smooth_l1(x, y, reduction="none")
    b = smoothl1.smooth_l1(x, y, reduction="none")
    assert a.data_ptr() != b.data_ptr()  # no result is reused
    assert torch.equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable NumPy array" warning
        a += 1
