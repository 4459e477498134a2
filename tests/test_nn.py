"""smoothl1.nn: real torch modules, drop-ins for torch.nn.SmoothL1Loss and torch.nn.HuberLoss."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import smoothl1.nn  # noqa: E402

F = torch.nn.functional
PAIRS = [(smoothl1.nn.SmoothL1Loss, torch.nn.SmoothL1Loss, "beta"),
         (smoothl1.nn.HuberLoss, torch.nn.HuberLoss, "delta")]


@pytest.fixture(params=PAIRS, ids=["SmoothL1Loss", "HuberLoss"])
def pair(request):
    return request.param


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 5, generator=g) * 2, torch.randn(6, 5, generator=g)


def test_they_are_modules_like_torchs(pair):
    ours, theirs, name = pair
    criterion = ours(**{name: 0.5})
    assert isinstance(criterion, torch.nn.Module)
    assert isinstance(criterion, torch.nn.modules.loss._Loss)
    assert repr(criterion) == repr(theirs(**{name: 0.5}))
    assert criterion.reduction == "mean"
    assert getattr(criterion, name) == 0.5
    assert criterion.state_dict() == theirs().state_dict() == {}
    criterion.load_state_dict(theirs().state_dict())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_values_and_gradients_are_torchs(pair, reduction):
    ours, theirs, name = pair
    x, y = _data()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = ours(reduction=reduction, **{name: 0.7})(xa, y)
    want = theirs(reduction=reduction, **{name: 0.7})(xb, y)
    assert torch.equal(got, want) if reduction == "none" else torch.allclose(got, want)
    got.sum().backward()
    want.sum().backward()
    # torch's backward kernel differs by an ulp between its scalar and vector paths
    np.testing.assert_array_max_ulp(xa.grad.numpy(), xb.grad.numpy(), maxulp=1)


def test_device_and_dtype_moves_work(pair):
    ours, _, _ = pair
    criterion = ours()
    assert criterion.to("meta") is criterion
    assert criterion.to(torch.float64) is criterion
    # no parameters or buffers: .cuda() touches no device, as for torch's losses
    assert criterion.cuda() is criterion
    assert criterion.half() is criterion
    out = criterion(torch.ones(3, device="meta"), torch.zeros(3, device="meta"))
    assert out.device.type == "meta"


def test_a_submodule_of_a_model_trains_as_torchs_does():
    """Registered as a submodule, moved with the model, the same training curve as torch's."""

    def train(criterion):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        model.criterion = criterion
        model.to(torch.float64)
        assert "criterion" in dict(model.named_modules())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(64, 4, dtype=torch.float64)
        y = x.sum(1, keepdim=True).sin()
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = model.criterion(model[:3](x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    np.testing.assert_allclose(train(smoothl1.nn.SmoothL1Loss(beta=0.5)),
                               train(torch.nn.SmoothL1Loss(beta=0.5)), rtol=1e-12)


def test_hooks_run():
    criterion = smoothl1.nn.SmoothL1Loss()
    seen = []
    criterion.register_forward_pre_hook(lambda m, args: seen.append(("pre", len(args))))
    criterion.register_forward_hook(lambda m, args, out: seen.append(("post", out.shape)))
    criterion(*_data())
    assert seen == [("pre", 2), ("post", torch.Size([]))]


def test_pickle_and_deepcopy(pair):
    ours, _, name = pair
    criterion = ours(reduction="sum", **{name: 0.25}, axis=-1)
    for clone in (pickle.loads(pickle.dumps(criterion)), copy.deepcopy(criterion)):
        assert type(clone) is ours
        assert (clone.reduction, getattr(clone, name), clone.axis) == ("sum", 0.25, -1)
        assert torch.equal(clone(*_data()), criterion(*_data()))


def test_smoothl1_extras_at_call_time():
    x, y = _data()
    w = torch.rand(5)
    criterion = smoothl1.nn.SmoothL1Loss(reduction="weighted_mean", axis=-1)
    got = criterion(x, y, weight=w)
    want = smoothl1.smooth_l1(x, y, reduction="weighted_mean", weight=w, axis=-1)
    assert got.shape == (6,)
    assert torch.equal(got, want)


def test_legacy_arguments_and_validation_as_torch():
    with warnings.catch_warnings(record=True) as ours_w:
        warnings.simplefilter("always")
        ours = smoothl1.nn.SmoothL1Loss(size_average=False)
    with warnings.catch_warnings(record=True) as theirs_w:
        warnings.simplefilter("always")
        theirs = torch.nn.SmoothL1Loss(size_average=False)
    assert ours.reduction == theirs.reduction == "sum"
    assert [str(w.message) for w in ours_w] == [str(w.message) for w in theirs_w]
    with pytest.raises(ValueError, match="SmoothL1Loss: reduction must be one of"):
        smoothl1.nn.SmoothL1Loss(reduction="average")
    with pytest.raises(ValueError, match="SmoothL1Loss: beta must be a non-negative number"):
        smoothl1.nn.SmoothL1Loss(beta=-1.0)
    with pytest.raises(ValueError, match="HuberLoss: delta must be a positive number"):
        smoothl1.nn.HuberLoss(delta=0.0)


def test_compiled_model_with_the_criterion(our_warnings):
    torch._dynamo.reset()
    criterion = smoothl1.nn.SmoothL1Loss(beta=0.5)
    x, y = _data()
    compiled = torch.compile(criterion, fullgraph=True)
    xr = x.clone().requires_grad_()
    compiled(xr, y).backward()
    xt = x.clone().requires_grad_()
    torch.nn.SmoothL1Loss(beta=0.5)(xt, y).backward()
    np.testing.assert_array_max_ulp(xr.grad.numpy(), xt.grad.numpy(), maxulp=1)


def test_without_torch_the_import_error_says_what_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import smoothl1\n"
            "try:\n    import smoothl1.nn\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "smoothl1.nn holds torch modules and needs torch: pip install 'smoothl1[torch]'" in (
        done.stdout)


def test_a_tensor_threshold_is_a_buffer_or_a_learned_parameter():
    torch = pytest.importorskip("torch")
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.zeros(8, 3, dtype=torch.float64)
    per_feature = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    fixed = smoothl1.nn.SmoothL1Loss(beta=per_feature)
    assert "beta" in dict(fixed.named_buffers())
    assert set(fixed.state_dict()) == {"beta"}
    want = np.mean([smoothl1.smooth_l1(x[:, j].numpy(), y[:, j].numpy(), float(per_feature[j]),
                                       "none") for j in range(3)])
    np.testing.assert_allclose(fixed(x, y).item(), want, rtol=1e-14)
    learned = smoothl1.nn.HuberLoss(delta=torch.nn.Parameter(torch.ones(3, dtype=torch.float64)))
    assert [name for name, _ in learned.named_parameters()] == ["delta"]
    learned(x, y).backward()
    z = (x - y).abs().numpy()
    np.testing.assert_allclose(learned.delta.grad.numpy(),
                               np.where(z >= 1.0, z - 1.0, 0.0).mean(0) / 3, rtol=1e-14)
