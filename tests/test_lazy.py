"""Lazy and traced execution: torch meta device, dask without computing, jax.jit, devices."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import smoothl1

from ._backends import to_numpy
from ._lazy import leaves, no_compute

FUNCS = [smoothl1.smooth_l1, smoothl1.smooth_l1_grad, smoothl1.smooth_l1_value_and_grad,
         smoothl1.huber, smoothl1.huber_grad, smoothl1.huber_value_and_grad]


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_meta_device(fn, reduction, dtype):
    torch = pytest.importorskip("torch")
    dt = getattr(torch, dtype)
    x = torch.empty((3, 4), device="meta", dtype=dt)
    y = torch.empty((4,), device="meta", dtype=dt)
    with pytest.warns(UserWarning, match="different to the input size"):
        out = leaves(fn(x, y, 0.5, reduction))
    for o in out:
        assert o.device.type == "meta"
        assert o.dtype == dt
    assert out[-1].shape == ((3, 4) if fn.__name__.endswith("grad") or reduction == "none"
                             else ())


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_dask_builds_graph_without_computing(fn, reduction, rng):
    da = pytest.importorskip("dask.array")
    import dask

    x_np, y_np = rng.standard_normal((40, 30)), rng.standard_normal((40, 30))
    x = da.from_array(x_np, chunks=(7, 11))
    y = da.from_array(y_np, chunks=(13, 30))  # different chunking from x
    with dask.config.set(scheduler=no_compute):
        out = leaves(fn(x, y, 0.5, reduction))
    for o in out:
        assert isinstance(o, da.Array)
    expected = leaves(fn(x_np, y_np, 0.5, reduction))
    for o, e in zip(out, expected, strict=True):
        np.testing.assert_allclose(o.compute(), e, rtol=1e-14)


@pytest.mark.parametrize("fn", [smoothl1.smooth_l1, smoothl1.smooth_l1_grad])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_dask_unknown_chunk_sizes(fn, reduction, rng):
    da = pytest.importorskip("dask.array")
    import dask

    x_np = rng.standard_normal(1000)
    keep = x_np > 0
    x = da.from_array(x_np, chunks=100)
    x = x[x > 0]  # shape (nan,)
    y = x * 0.25
    with dask.config.set(scheduler=no_compute):
        out = fn(x, y, 1.0, reduction)
    expected = fn(x_np[keep], x_np[keep] * 0.25, 1.0, reduction)
    np.testing.assert_allclose(out.compute(), expected, rtol=1e-14)


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_jax_jit_with_static_parameters(fn, reduction, rng):
    jax = pytest.importorskip("jax")
    x_np, y_np = rng.standard_normal((5, 6)), rng.standard_normal((6,))
    jitted = jax.jit(fn, static_argnums=(2, 3))
    with pytest.warns(UserWarning, match="different to the input size"):
        out = leaves(jitted(jax.numpy.asarray(x_np), jax.numpy.asarray(y_np), 0.5, reduction))
    with pytest.warns(UserWarning, match="different to the input size"):
        expected = leaves(fn(x_np, y_np, 0.5, reduction))
    for o, e in zip(out, expected, strict=True):
        np.testing.assert_allclose(to_numpy(o), e, rtol=1e-15)


def test_jax_vmap_gives_per_row_means(rng):
    jax = pytest.importorskip("jax")
    x_np, y_np = rng.standard_normal((4, 9)), rng.standard_normal((4, 9))
    per_row = jax.vmap(functools.partial(smoothl1.smooth_l1, beta=0.5))(
        jax.numpy.asarray(x_np), jax.numpy.asarray(y_np))
    expected = [smoothl1.smooth_l1(a, b, 0.5) for a, b in zip(x_np, y_np, strict=True)]
    np.testing.assert_allclose(np.asarray(per_row), expected, rtol=1e-15)


def test_a_traced_beta_is_a_threshold_array():
    """jit without static_argnames: beta is traced (a 0-d array), one kernel for every value."""
    jax = pytest.importorskip("jax")
    x, y = jax.numpy.linspace(-3.0, 3.0, 7), jax.numpy.zeros(7)
    jitted = jax.jit(lambda x, y, beta: smoothl1.smooth_l1(x, y, beta))  # its own jit cache
    for beta in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(float(jitted(x, y, beta)),
                                   smoothl1.smooth_l1(np.asarray(x), np.asarray(y), beta),
                                   rtol=1e-15)
    assert jitted._cache_size() == 1


@pytest.mark.parametrize("device_name", ["device1", "no_float64"])
def test_array_api_strict_device_is_kept(device_name):
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device(device_name)
    x = xps.asarray(np.linspace(-3, 3, 7), dtype=xps.float32, device=device)
    y = xps.zeros(7, dtype=xps.float32, device=device)
    for fn in FUNCS:
        for reduction in ("mean", "sum", "none"):
            for o in leaves(fn(x, y, 1.0, reduction)):
                assert o.device == device
                assert o.dtype == xps.float32
