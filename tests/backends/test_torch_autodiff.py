"""torch: loss.backward(), autograd.grad, gradcheck, forward AD, torch.func and torch.compile
all use smoothl1's analytic derivatives and agree with torch's own autograd."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import smoothl1
from smoothl1 import _core

torch = pytest.importorskip("torch")
F = torch.nn.functional

LOSSES = [
    (smoothl1.smooth_l1, F.smooth_l1_loss, "beta"),
    (smoothl1.huber, F.huber_loss, "delta"),
]
REDUCTIONS = ["mean", "sum", "none"]


def _inputs(shape_x=(6, 5), shape_y=(6, 5), param=0.5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=g, dtype=dtype) * 2
    y = torch.randn(shape_y, generator=g, dtype=dtype)
    if shape_x == shape_y:  # exact ties at d == 0 and |d| == param
        x.view(-1)[:3] = y.view(-1)[:3] + torch.tensor([0.0, param, -param], dtype=dtype)
    return x, y


def _grads(fn, x, y, reduction, *, create_graph=False, **kw):
    xs = x.clone().requires_grad_()
    ys = y.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broadcasting warning, tested elsewhere
        out = fn(xs, ys, reduction=reduction, **kw)
    gx, gy = torch.autograd.grad(out, (xs, ys), torch.ones_like(out), create_graph=create_graph)
    return out, gx, gy


def _assert_ulps(actual, expected, maxulp=1):
    np.testing.assert_array_max_ulp(actual.detach().numpy(), expected.detach().numpy(),
                                    maxulp=maxulp)


@pytest.mark.parametrize(("ours", "theirs", "name"), LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape_x", "shape_y"), [((6, 5), (6, 5)), ((6, 5), (5,)),
                                                  ((6, 1), (6, 5)), ((), (4,))])
def test_backward_matches_torch_autograd(ours, theirs, name, reduction, dtype, shape_x, shape_y):
    x, y = _inputs(shape_x, shape_y, dtype=dtype)
    out, gx, gy = _grads(ours, x, y, reduction, **{name: 0.5})
    ref, rgx, rgy = _grads(theirs, x, y, reduction, **{name: 0.5})
    assert out.grad_fn is not None
    assert "Loss" in type(out.grad_fn).__name__
    _assert_ulps(out, ref, maxulp=0 if reduction == "none" else 2)
    assert gx.shape == x.shape
    assert gy.shape == y.shape
    assert gx.dtype == dtype
    assert gy.dtype == dtype
    _assert_ulps(gx, rgx, maxulp=1 if shape_x == shape_y else 4)
    _assert_ulps(gy, rgy, maxulp=1 if shape_x == shape_y else 4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_backward_float64_is_bit_identical_to_torch(reduction):
    x, y = _inputs((64, 64), (64, 64))  # vector-path length: torch is self-consistent
    _out, gx, gy = _grads(smoothl1.smooth_l1, x, y, reduction, beta=0.5)
    _, rgx, rgy = _grads(F.smooth_l1_loss, x, y, reduction, beta=0.5)
    assert torch.equal(gx, rgx)
    assert torch.equal(gy, rgy)


def test_beta_zero_and_kink_gradients():
    x = torch.tensor([0.0, 1.0, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y = torch.zeros(4, dtype=torch.float64)
    smoothl1.smooth_l1(x, y, beta=0.0, reduction="sum").backward()
    assert x.grad.tolist() == [0.0, 1.0, -1.0, 1.0]  # 0 at d == 0, as torch
    x.grad = None
    smoothl1.smooth_l1(x, y, beta=1.0, reduction="sum").backward()
    assert x.grad.tolist() == [0.0, 1.0, -1.0, 1.0]  # exactly ±1 at |d| == beta


def test_target_only_requires_grad():
    x, y = _inputs()
    yr = y.clone().requires_grad_()
    (gy,) = torch.autograd.grad(smoothl1.smooth_l1(x, yr), (yr,))
    yr2 = y.clone().requires_grad_()
    (rgy,) = torch.autograd.grad(F.smooth_l1_loss(x, yr2), (yr2,))
    _assert_ulps(gy, rgy)


def test_needs_input_grad_is_honoured(monkeypatch):
    """The general backward is asked for the input's gradient only."""
    seen = []
    real = _core.backward

    def spy(*args, **kwargs):
        seen.append(kwargs["need"])
        return real(*args, **kwargs)

    from smoothl1._backends import torch as backend

    monkeypatch.setattr(_core, "backward", spy)
    monkeypatch.setattr(backend, "_blocks", lambda *args, **kwargs: None)
    x, y = _inputs()
    smoothl1.smooth_l1(x.requires_grad_(), y).backward()
    assert seen == [(True, False, False)]


@pytest.mark.parametrize("which", ["input", "target", "both"])
def test_streamed_backward_gives_the_gradients_asked_for(monkeypatch, which):
    """CPU tensors take the NumPy blocks in both directions, with torch's gradients."""
    from smoothl1._backends import numpy as blocks

    calls = []
    real = blocks.run

    def spy(call, *args, **kwargs):
        calls.append((kwargs["value"], tuple(g.sign for g in kwargs["grads"])))
        return real(call, *args, **kwargs)

    monkeypatch.setattr(blocks, "run", spy)
    x, y = _inputs((64, 33), (64, 33))
    xs, ys = x.clone().requires_grad_(which != "target"), y.clone().requires_grad_(which != "input")
    smoothl1.smooth_l1(xs, ys, beta=0.5).backward()
    signs = {"input": (1,), "target": (-1,), "both": (1, -1)}[which]
    assert calls == [(True, signs)]  # small: the gradients are computed with the loss
    calls.clear()
    xn, yn = x.clone().requires_grad_(which != "target"), y.clone().requires_grad_(which != "input")
    smoothl1.smooth_l1(xn, yn, beta=0.5, reduction="none").backward(torch.ones_like(xn))
    assert calls == [(True, ()), (False, signs)]  # forward, then backward
    xr, yr = x.clone().requires_grad_(which != "target"), y.clone().requires_grad_(which != "input")
    F.smooth_l1_loss(xr, yr, beta=0.5).backward()
    for ours, ref in ((xs, xr), (ys, yr)):
        if ref.grad is None:
            assert ours.grad is None
        else:
            torch.testing.assert_close(ours.grad, ref.grad, rtol=0, atol=0)


@pytest.mark.parametrize(("ours", "name", "param"), [
    (smoothl1.smooth_l1, "beta", 0.5), (smoothl1.smooth_l1, "beta", 0.0),
    (smoothl1.huber, "delta", 0.5),
])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_gradgradcheck_forward_ad(ours, name, param, reduction):
    x, y = _inputs((4, 3), (4, 3), param=param)
    # keep finite differences away from the kinks, where the derivative jumps
    x = x + 0.05 * torch.where(x >= y, 1.0, -1.0).double()
    xs, ys = x.requires_grad_(), y.requires_grad_()

    def f(a, b):
        return ours(a, b, reduction=reduction, **{name: param})

    assert torch.autograd.gradcheck(f, (xs, ys), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(f, (xs, ys))


def test_double_backward_is_torchs():
    x, y = _inputs((5, 4), (5, 4))
    for beta in (0.5, 0.0):
        xs = x.clone().requires_grad_()
        hx = torch.autograd.functional.hessian(
            functools.partial(smoothl1.smooth_l1, target=y, beta=beta), xs).reshape(20, 20)
        rhx = torch.autograd.functional.hessian(
            functools.partial(F.smooth_l1_loss, target=y, beta=beta), xs).reshape(20, 20)
        torch.testing.assert_close(hx, rhx, rtol=0, atol=1e-15)
        d = (x - y).reshape(-1)
        expected = ((d.abs() < beta).double() / beta / 20) if beta else torch.zeros(20,
                                                                                   dtype=d.dtype)
        torch.testing.assert_close(hx.diagonal(), expected, rtol=0, atol=1e-15)


def test_forward_mode_dual_numbers():
    import torch.autograd.forward_ad as fwAD

    x, y = _inputs()
    tx, ty = torch.randn_like(x), torch.randn_like(y)
    with fwAD.dual_level():
        out = smoothl1.smooth_l1(fwAD.make_dual(x, tx), fwAD.make_dual(y, ty), beta=0.5)
        tangent = fwAD.unpack_dual(out).tangent
        ref = F.smooth_l1_loss(fwAD.make_dual(x, tx), fwAD.make_dual(y, ty), beta=0.5)
        ref_tangent = fwAD.unpack_dual(ref).tangent
    torch.testing.assert_close(tangent, ref_tangent, rtol=1e-14, atol=0)


def test_torch_func_transforms():
    from torch import func

    x, y = _inputs()

    def ours(a, b):
        return smoothl1.smooth_l1(a, b, beta=0.5)

    def theirs(a, b):
        return F.smooth_l1_loss(a, b, beta=0.5)

    for transform in (func.grad, func.jacrev, func.jacfwd):
        torch.testing.assert_close(transform(ours, argnums=(0, 1))(x, y),
                                   transform(theirs, argnums=(0, 1))(x, y), rtol=1e-14, atol=0)
    torch.testing.assert_close(func.hessian(ours)(x[0], y[0]), func.hessian(theirs)(x[0], y[0]),
                               rtol=0, atol=1e-15)
    per_row = func.vmap(ours)(x, y)
    torch.testing.assert_close(per_row, func.vmap(theirs)(x, y), rtol=1e-15, atol=0)
    per_row_grad = func.vmap(func.grad(ours))(x, y)
    torch.testing.assert_close(per_row_grad, func.vmap(func.grad(theirs))(x, y), rtol=1e-15,
                               atol=0)
    _, jvp_out = func.jvp(ours, (x, y), (torch.ones_like(x), torch.zeros_like(y)))
    _, jvp_ref = func.jvp(theirs, (x, y), (torch.ones_like(x), torch.zeros_like(y)))
    torch.testing.assert_close(jvp_out, jvp_ref, rtol=1e-14, atol=0)


def test_loss_objects_are_differentiable():
    x, y = _inputs()
    xs = x.clone().requires_grad_()
    smoothl1.HuberLoss(delta=0.7)(xs, y).backward()
    xr = x.clone().requires_grad_()
    torch.nn.HuberLoss(delta=0.7)(xr, y).backward()
    _assert_ulps(xs.grad, xr.grad)


@pytest.mark.parametrize("fn", [smoothl1.smooth_l1_grad, smoothl1.smooth_l1_value_and_grad,
                                smoothl1.huber_grad, smoothl1.huber_value_and_grad])
def test_torch_compile_fullgraph_of_the_gradient_functions_is_quiet(fn, our_warnings):
    """Before: 11 Dynamo warnings about tracing lru_cache-wrapped calls, for each function."""
    torch._dynamo.reset()
    x, y = _inputs(dtype=torch.float32)
    compiled = torch.compile(fn, fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = compiled(x, y, 0.5, "mean")
    assert [str(w.message) for w in caught if "lru_cache" in str(w.message)] == []
    assert our_warnings(caught) == []
    want = fn(x, y, 0.5, "mean")
    for g, w in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,), strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_fullgraph_forward_and_backward(reduction, our_warnings):
    torch._dynamo.reset()
    x, y = _inputs(dtype=torch.float32)

    def f(a, b):
        out = smoothl1.smooth_l1(a, b, beta=0.5, reduction=reduction)
        return out.sum() if reduction == "none" else out

    explanation = torch._dynamo.explain(f)(x.clone().requires_grad_(), y)
    assert explanation.graph_count == 1
    assert explanation.graph_break_count == 0
    compiled = torch.compile(f, fullgraph=True)
    xs = x.clone().requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(xs, y)
        out.backward()
    assert our_warnings(caught) == []
    xr = x.clone().requires_grad_()
    ref = f.__wrapped__(xr, y) if hasattr(f, "__wrapped__") else None
    ref = F.smooth_l1_loss(xr, y, beta=0.5, reduction=reduction)
    (ref.sum() if reduction == "none" else ref).backward()
    torch.testing.assert_close(out, ref.sum() if reduction == "none" else ref)
    torch.testing.assert_close(xs.grad, xr.grad, rtol=0, atol=0)
