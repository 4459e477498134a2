"""Bad input gets a clear TypeError/ValueError from smoothl1, naming the parameter."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

import smoothl1

from ._backends import asarray, backend_name, to_numpy

X = np.linspace(-2, 2, 12).reshape(3, 4)


def _pair(xp):
    return asarray(xp, X), asarray(xp, X * 0.5)


@pytest.mark.parametrize("fn", [smoothl1.smooth_l1, smoothl1.smooth_l1_grad,
                                smoothl1.smooth_l1_value_and_grad])
@pytest.mark.parametrize("beta", [-1.0, -1e-300, float("nan"), float("-inf")])
def test_bad_beta_value(xp, fn, beta):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: beta must be a non-negative number, "
                       rf"got {re.escape(repr(beta))}"):
        fn(*_pair(xp), beta=beta)


@pytest.mark.parametrize("fn", [smoothl1.huber, smoothl1.huber_grad,
                                smoothl1.huber_value_and_grad])
@pytest.mark.parametrize("delta", [0.0, -0.0, -2.0, float("nan")])
def test_bad_delta_value(xp, fn, delta):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: delta must be a positive number"):
        fn(*_pair(xp), delta=delta)


@pytest.mark.parametrize("beta", ["1", None, True, [1.0], 1 + 0j])
def test_beta_of_wrong_type(xp, beta):
    with pytest.raises(TypeError, match=r"smooth_l1: beta must be a real number or an array "
                       r"of the inputs. library, got"):
        smoothl1.smooth_l1(*_pair(xp), beta=beta)
    with pytest.raises(TypeError, match=r"huber: delta must be a real number or an array "
                       r"of the inputs. library, got"):
        smoothl1.huber(*_pair(xp), delta=beta)


def test_array_thresholds_are_checked_with_the_inputs(xp):
    """An array beta/delta: a threshold per element, of the inputs' library and shape."""
    x, y = _pair(xp)
    np.testing.assert_allclose(to_numpy(smoothl1.smooth_l1(x, y, beta=asarray(xp, np.asarray(
        0.5)))), to_numpy(smoothl1.smooth_l1(x, y, beta=0.5)), rtol=1e-15)
    n = x.shape[-1]
    with pytest.raises(ValueError, match=r"smooth_l1: beta of shape \(2, 3, 4\) does not "
                       r"broadcast to the loss shape \(3, 4\)"):
        smoothl1.smooth_l1(x, y, beta=asarray(xp, np.ones((2, 3, 4))))
    with pytest.raises(TypeError, match=r"huber: delta must have a .*dtype"):
        smoothl1.huber(x, y, delta=asarray(xp, np.ones(n, dtype=bool)))
    if backend_name(xp) != "numpy":
        with pytest.raises(TypeError, match=r"smooth_l1_grad: arrays from different array "
                           r"libraries cannot be mixed"):
            smoothl1.smooth_l1_grad(x, y, beta=np.ones(n))


def test_numpy_scalar_beta_is_accepted(xp):
    x, y = _pair(xp)
    a = smoothl1.smooth_l1(x, y, beta=np.float32(0.5))
    b = smoothl1.smooth_l1(x, y, beta=0.5)
    assert type(a) is type(b)


@pytest.mark.parametrize("reduction", ["bogus", "MEAN", None, "", 1])
def test_unknown_reduction(xp, reduction):
    for fn in (smoothl1.smooth_l1, smoothl1.huber_grad):
        with pytest.raises(ValueError, match=r"reduction must be one of 'none', 'mean', "
                           rf"'sum' or 'weighted_mean', got {re.escape(repr(reduction))}"):
            fn(*_pair(xp), reduction=reduction)


def test_elementwise_mean_is_deprecated_mean(xp):
    x, y = _pair(xp)
    with pytest.warns(UserWarning, match="reduction='elementwise_mean' is deprecated") as rec:
        out = smoothl1.smooth_l1(x, y, reduction="elementwise_mean")
    assert rec[0].filename == __file__
    assert out.shape == ()


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool", "complex64"])
@pytest.mark.parametrize("beta", [1.0, 0.0])
def test_non_real_floating_dtypes_are_rejected(xp, dtype, beta):
    if dtype == "complex64" and backend_name(xp) == "ndonnx":
        pytest.skip("ndonnx has no complex dtypes")
    bad = asarray(xp, np.ones(3, dtype=dtype))
    good = asarray(xp, np.ones(3))
    with pytest.raises(TypeError, match=r"smooth_l1: input must have a real floating-point "
                       r"dtype \(float16, bfloat16, float32 or float64\), got"):
        smoothl1.smooth_l1(bad, good, beta=beta)
    with pytest.raises(TypeError, match=r"smooth_l1_grad: target must have a real "
                       r"floating-point dtype"):
        smoothl1.smooth_l1_grad(good, bad, beta=beta)


@pytest.mark.parametrize("other", [[1.0, 2.0, 3.0], 1.0, "abc", None])
def test_non_arrays_are_rejected(xp, other):
    x = asarray(xp, np.ones(3))
    with pytest.raises(TypeError, match=r"smooth_l1: target must be an array .* got "):
        smoothl1.smooth_l1(x, other)
    with pytest.raises(TypeError, match=r"huber: input must be an array .* got "):
        smoothl1.huber(other, x)


def test_mixing_array_libraries_names_both():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"smooth_l1: arrays from different array libraries "
                       r"cannot be mixed \(input is a numpy\.ndarray, target is a "
                       r"torch\.Tensor\)"):
        smoothl1.smooth_l1(np.ones(3), torch.ones(3))


@pytest.mark.parametrize(("a", "b"), [((3, 4), (5,)), ((2, 3), (3, 2)), ((4,), (3,))])
def test_shapes_that_do_not_broadcast(xp, a, b):
    x, y = asarray(xp, np.ones(a)), asarray(xp, np.ones(b))
    with pytest.raises(ValueError, match=rf"smooth_l1: input of shape {re.escape(str(a))} and "
                       rf"target of shape {re.escape(str(b))} cannot be broadcast together"):
        smoothl1.smooth_l1(x, y)


def test_bad_grad_output(xp):
    x, y = _pair(xp)
    with pytest.raises(ValueError, match=r"grad_output of shape \(3, 4\) does not broadcast "
                       r"to the result shape \(\)"):
        smoothl1.smooth_l1_grad(x, y, grad_output=asarray(xp, np.ones((3, 4))))
    with pytest.raises(ValueError, match=r"grad_output of shape \(3, 4\) and result of shape "
                       r"\(4, 4\) cannot be broadcast"):
        smoothl1.smooth_l1_grad(asarray(xp, np.ones((4, 4))), asarray(xp, np.ones((4, 4))),
                                reduction="none", grad_output=asarray(xp, np.ones((3, 4))))
    with pytest.raises(ValueError, match=r"grad_output of shape \(2, 3, 4\) does not broadcast "
                       r"to the result shape \(3, 4\)"):
        smoothl1.smooth_l1_grad(x, y, reduction="none",
                                grad_output=asarray(xp, np.ones((2, 3, 4))))
    with pytest.raises(TypeError, match=r"grad_output must be an array or a real number"):
        smoothl1.smooth_l1_grad(x, y, grad_output="1")
    with pytest.raises(TypeError, match=r"grad_output must have a real floating-point dtype"):
        smoothl1.smooth_l1_grad(x, y, grad_output=asarray(xp, np.asarray(1, dtype="int64")))


def test_grad_output_broadcasts_for_none(xp):
    x, y = _pair(xp)
    full = smoothl1.smooth_l1_grad(x, y, reduction="none", grad_output=2.0)
    row = smoothl1.smooth_l1_grad(x, y, reduction="none",
                                  grad_output=asarray(xp, np.full(4, 2.0)))
    ref = smoothl1.smooth_l1_grad(x, y, reduction="none")
    np.testing.assert_array_equal(np.asarray(full.shape), (3, 4))
    from ._backends import to_numpy
    np.testing.assert_array_equal(to_numpy(full), 2 * to_numpy(ref))
    np.testing.assert_array_equal(to_numpy(row), 2 * to_numpy(ref))


FUNCTIONS = [smoothl1.smooth_l1, smoothl1.smooth_l1_grad, smoothl1.smooth_l1_value_and_grad]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_foreign_weights_are_refused_alike_by_every_function(xp, fn):
    """A weight of another library: one TypeError from smoothl1, for the loss, its gradient
    and both (before: array-api-compat's AttributeError, JAX's TypeError, or accepted by the
    loss and refused by the gradient)."""
    x, y = _pair(xp)
    others = {"list": [1.0, 2.0, 3.0, 4.0], "numpy": np.ones(4)}
    if backend_name(xp) != "torch" and importlib.util.find_spec("torch") is not None:
        import torch

        others["torch"] = torch.ones(4)
    for kind, w in others.items():
        if kind == "numpy" and backend_name(xp) == "numpy":
            continue
        if kind == "list":
            match = r"weight must be an array or a real number .* got builtins\.list"
        else:
            match = r"arrays from different array libraries cannot be mixed \(.*weight is a "
        with pytest.raises(TypeError, match=rf"{fn.__name__}: {match}"):
            fn(x, y, weight=w)


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("name", ["beta", "weight", "grad_output"])
def test_integers_too_large_for_a_float(fn, name):
    """Before: a bare OverflowError from float()."""
    if name == "grad_output" and fn is not smoothl1.smooth_l1_grad:
        return
    with pytest.raises(ValueError, match=rf"{fn.__name__}: {name} is an integer too large for "
                       rf"a float \(about 2\*\*1329.*use math.inf"):
        fn(np.ones(3), np.zeros(3), **{name: 10**400})
    with pytest.raises(ValueError, match=r"huber: delta is an integer too large"):
        smoothl1.huber(np.ones(3), np.zeros(3), delta=-(10**400))
    with pytest.raises(ValueError, match=r"beta is an integer too large"):
        smoothl1.SmoothL1Loss(beta=10**400)


def test_a_huge_integer_after_a_remembered_call_is_still_refused():
    """The validation memo knows a number's type, not its value."""
    assert smoothl1.smooth_l1(np.ones(3), np.zeros(3), weight=2) == 1.0
    with pytest.raises(ValueError, match="weight is an integer too large"):
        smoothl1.smooth_l1(np.ones(3), np.zeros(3), weight=10**400)


def test_torch_tensors_on_two_devices():
    torch = pytest.importorskip("torch")
    cpu, meta = torch.ones(3), torch.ones(3, device="meta")
    for fn in FUNCTIONS:
        with pytest.raises(ValueError, match=rf"{fn.__name__}: input is on device meta but "
                           r"target is on device cpu; move them to one device first"):
            fn(meta, cpu)
        with pytest.raises(ValueError, match=r"input is on device cpu but weight is on device "
                           r"meta"):
            fn(cpu, cpu, weight=meta)
    with pytest.raises(ValueError, match=r"input is on device meta but grad_output is on "
                       r"device cpu"):
        smoothl1.smooth_l1_grad(meta, meta, reduction="none", grad_output=cpu)
    # torch's rule: a 0-d CPU tensor joins tensors on any device
    assert smoothl1.smooth_l1(meta, meta, weight=torch.tensor(2.0)).device.type == "meta"


def test_array_api_strict_arrays_on_two_devices():
    xs = pytest.importorskip("array_api_strict")
    a = xs.asarray([1.0, 2.0], device=xs.Device("device1"))
    b = xs.asarray([0.0, 0.0])
    for fn in FUNCTIONS:
        with pytest.raises(ValueError, match=rf"{fn.__name__}: input is on device "
                           r".*device1.* but target is on device .*CPU_DEVICE"):
            fn(a, b)
    same = xs.asarray([0.0, 0.0], device=xs.Device("device1"))
    assert smoothl1.smooth_l1(a, same).device == xs.Device("device1")


def test_jax_arrays_committed_to_two_devices():
    """In a subprocess: JAX's CPU device count is fixed when JAX starts."""
    pytest.importorskip("jax")
    import os
    import subprocess
    import sys
    code = """
import jax, jax.numpy as jnp, smoothl1
d = jax.devices()
x, y = jax.device_put(jnp.ones(3), d[0]), jax.device_put(jnp.zeros(3), d[1])
for fn in (smoothl1.smooth_l1, smoothl1.smooth_l1_grad, smoothl1.smooth_l1_value_and_grad):
    try:
        fn(x, y)
    except ValueError as e:
        print(e)
print(smoothl1.smooth_l1(jax.device_put(jnp.ones(3), d[1]), jnp.zeros(3)))  # uncommitted moves
"""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().split("\n")
    for line, name in zip(lines, ["smooth_l1", "smooth_l1_grad", "smooth_l1_value_and_grad"],
                          strict=False):
        assert line.startswith(f"{name}: input is on device cpu:0 but target is on "
                               "device cpu:1")
    assert lines[3] == "0.5"
