"""SmoothL1Loss and HuberLoss mirror torch's modules, legacy arguments included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import smoothl1

from ._backends import asarray, to_numpy
from ._oracle import torch

LEGACY = [  # (size_average, reduce) -> reduction, as torch.nn._reduction.legacy_get_string
    (True, True), (True, None), (None, True), (False, True), (False, None),
    (None, False), (True, False), (False, False),
]


@pytest.mark.parametrize(("size_average", "reduce"), LEGACY)
def test_legacy_arguments_map_as_torch(size_average, reduce):
    with warnings.catch_warnings(record=True) as torch_rec:
        warnings.simplefilter("always")
        module = torch.nn.SmoothL1Loss(size_average=size_average, reduce=reduce, reduction="sum")
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated, "
                      "please use reduction='(mean|sum|none)' instead.") as rec:
        ours = smoothl1.SmoothL1Loss(size_average=size_average, reduce=reduce, reduction="sum")
    assert ours.reduction == module.reduction
    assert str(rec[0].message) == str(torch_rec[0].message)
    assert rec[0].filename == __file__


def test_no_legacy_arguments_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert smoothl1.SmoothL1Loss(reduction="sum").reduction == "sum"


def test_repr_eq_hash():
    a = smoothl1.SmoothL1Loss(beta=0.5)
    assert repr(a) == "SmoothL1Loss(reduction='mean', beta=0.5)"
    assert a == smoothl1.SmoothL1Loss(reduction="mean", beta=0.5)
    assert a != smoothl1.SmoothL1Loss(beta=0.25)
    assert len({a, smoothl1.SmoothL1Loss(beta=0.5)}) == 1
    h = smoothl1.HuberLoss(reduction="none", delta=2)
    assert repr(h) == "HuberLoss(reduction='none', delta=2.0)"
    assert h == smoothl1.HuberLoss("none", 2.0)
    assert h != a


def test_constructors_validate():
    with pytest.raises(ValueError, match="SmoothL1Loss: beta must be a non-negative number"):
        smoothl1.SmoothL1Loss(beta=-1)
    with pytest.raises(ValueError, match="SmoothL1Loss: reduction must be one of"):
        smoothl1.SmoothL1Loss(reduction="bogus")
    with pytest.raises(ValueError, match="HuberLoss: delta must be a positive number"):
        smoothl1.HuberLoss(delta=0.0)
    with pytest.raises(TypeError,
                       match=r"HuberLoss: delta must be a real number or an array of the "
                       r"inputs. library, got builtins\.str"):
        smoothl1.HuberLoss(delta="1")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_objects_match_torch_modules(xp, rng, reduction):
    x = rng.standard_normal((4, 5)) * 2
    y = rng.standard_normal((4, 5))
    for ours, theirs in [
        (smoothl1.SmoothL1Loss(reduction=reduction, beta=0.7),
         torch.nn.SmoothL1Loss(reduction=reduction, beta=0.7)),
        (smoothl1.HuberLoss(reduction=reduction, delta=0.7),
         torch.nn.HuberLoss(reduction=reduction, delta=0.7)),
    ]:
        tx = torch.tensor(x, requires_grad=True)
        expected = theirs(tx, torch.tensor(y))
        expected.backward(torch.ones_like(expected))
        got = ours(asarray(xp, x), asarray(xp, y))
        np.testing.assert_allclose(to_numpy(got), expected.detach().numpy(), rtol=1e-15)
        grad = ours.grad(asarray(xp, x), asarray(xp, y))
        np.testing.assert_allclose(to_numpy(grad), tx.grad.numpy(), rtol=1e-15)
        value, grad2 = ours.value_and_grad(asarray(xp, x), asarray(xp, y))
        np.testing.assert_array_equal(to_numpy(value), to_numpy(got))
        np.testing.assert_array_equal(to_numpy(grad2), to_numpy(grad))
