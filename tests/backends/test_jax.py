"""The JAX glue (smoothl1._backends.jax): compiled kernels per request, bounded."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import smoothl1
from smoothl1._request import request

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from smoothl1._backends import jax as backend  # noqa: E402


def test_the_compiled_kernels_are_bounded():
    """Each beta compiles a kernel; before, every one was kept (150 betas: +240 MiB)."""
    x, y = jnp.linspace(-3, 3, 50), jnp.zeros(50)
    first = smoothl1.smooth_l1(x, y, beta=0.125)
    kernel = weakref.ref(backend._kernels(request("smooth_l1", "smooth_l1", 0.125, "mean",
                                                  None, False))[0])
    for i in range(backend.KERNELS + 5):
        beta = 0.25 + i / 64
        smoothl1.smooth_l1(x, y, beta=beta)
        smoothl1.smooth_l1_grad(x, y, beta=beta)
    assert backend._kernels.cache_info().currsize <= backend.KERNELS
    gc.collect()
    assert kernel() is None  # dropped, and its executables with it
    # a dropped request compiles again and gives the same number
    assert smoothl1.smooth_l1(x, y, beta=0.125) == first


def test_kernels_are_reused_for_a_request():
    x, y = jnp.ones(8), jnp.zeros(8)
    smoothl1.smooth_l1(x, y, beta=0.375)
    hits = backend._kernels.cache_info().hits
    for _ in range(3):
        smoothl1.smooth_l1(x, y, beta=0.375)
    assert backend._kernels.cache_info().hits == hits + 3


def test_kernels_inline_under_an_outer_jit():
    x, y = jnp.linspace(-2, 2, 9), jnp.zeros(9)
    f = jax.jit(jax.grad(lambda a: smoothl1.smooth_l1(a, y, beta=0.5)))
    np.testing.assert_allclose(f(x), smoothl1.smooth_l1_grad(x, y, beta=0.5), rtol=1e-6)
