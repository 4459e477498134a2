"""The formulas with a threshold per element: each element is the scalar formula's value.

(The first step of array ``beta``/``delta``: the math in ``smoothl1._formulas``,
checked on every backend of the ``xp`` fixture before any executor uses it.)
"""

from __future__ import annotations

import numpy as np
import pytest

from smoothl1 import _formulas

from ._backends import asarray, backend_name, is_exact_backend, to_numpy

# NumPy-backed lazy libraries (dask, cubed) compute later, in other threads, outside the
# executors' errstate: the unused 0/0 and inf of the branches not taken would warn there
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

KINDS = ["smooth_l1", "huber"]
_PARAMS = {
    "float32": [0.0, 1.0, 0.5, 1 / 9, 3.0, 1e-30, 2.0**-140, 1e30, 3e38, np.inf],
    "float64": [0.0, 1.0, 0.5, 1 / 9, 3.0, 1e-300, 2.0**-1070, 1e200, 1e308, np.inf],
}
_D = {
    "float32": [0.0, -0.0, 1e-30, -0.3, 0.5, 1.0, -1.0, 2.5, 1e-20, 1e20, -3e38, np.inf, -np.inf,
                np.nan],
    "float64": [0.0, -0.0, 1e-300, -0.3, 0.5, 1.0, -1.0, 2.5, 1e-200, 1e160, -1e308, np.inf,
                -np.inf, np.nan],
}


def _grid(dtype, kind, xp):
    params = [p for p in _PARAMS[dtype] if not (kind == "huber" and p == 0.0)]
    if backend_name(xp) == "jax":  # XLA on CPU flushes subnormals to zero (a documented limit)
        params = [p for p in params if not 0 < p < np.finfo(dtype).tiny]
    d, p = np.meshgrid(np.array(_D[dtype], dtype), np.array(params, dtype), indexing="ij")
    return d, p, params


def _scalar(xp, kind, d, param, bits, what):
    """The scalar formula (``param`` a Python float), as the executors compute it today."""
    f = _formulas.formula_for(kind, param, bits)
    z = xp.abs(d)
    linear = _formulas.linear_mask(xp, f, z)
    if what == "loss":
        return _formulas.loss(xp, f, z, linear)
    return _formulas.derivative(xp, f, d, z, linear)


def _per_element(xp, kind, d, p, bits, what):
    """The per-element formula; NumPy's warnings off, as the executors run it (unused 0/0)."""
    f = _formulas.Formula(kind=kind, param=p, bits=bits)
    assert f.per_element
    with np.errstate(all="ignore"):
        z = xp.abs(d)
        linear = _formulas.linear_mask(xp, f, z)
        if what == "loss":
            return _formulas.loss(xp, f, z, linear)
        if what == "derivative":
            return _formulas.derivative(xp, f, d, z, linear)
        return _formulas.param_derivative(xp, f, z, linear)


@pytest.mark.parametrize("what", ["loss", "derivative"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_element_is_the_scalar_formulas_bits(xp, kind, dtype, what):
    """beta = 0 (L1, derivative 0 at d = 0), inf (0), 1, tiny, huge: the scalar code's bits."""
    d, p, params = _grid(dtype, kind, xp)
    bits = 32 if dtype == "float32" else 64
    with np.errstate(all="ignore"):
        got = to_numpy(_per_element(xp, kind, asarray(xp, d), asarray(xp, p), bits, what))
        for j, param in enumerate(params):
            message = f"{kind} {what} param={param} on {backend_name(xp)}"
            if is_exact_backend(xp):
                want = to_numpy(_scalar(xp, kind, asarray(xp, d[:, j]), float(param), bits,
                                        what))
                np.testing.assert_array_equal(got[:, j], want, err_msg=message)
            else:
                # XLA turns x / 3.0 into x * (1/3.0), and a subnormal 1/1e308 into 0: its
                # scalar path is within an ulp (or flushed); x / array stays a division,
                # so the per-element values are compared with NumPy's scalar bits, within
                # an ulp, subnormal results flushed to zero
                want = _scalar(np, kind, d[:, j], float(param), bits, what)
                np.testing.assert_allclose(got[:, j], want, rtol=2 * np.finfo(dtype).eps,
                                           atol=np.finfo(dtype).tiny, err_msg=message)


@pytest.mark.parametrize("what", ["loss", "derivative", "param_derivative"])
@pytest.mark.parametrize("kind", KINDS)
def test_invalid_thresholds_give_nan_there_only(xp, kind, what):
    bad = [-1.0, np.nan, -np.inf, *([0.0] if kind == "huber" else [])]
    p = np.array([*bad, 0.5, 2.0])
    d = np.full_like(p, 0.7)
    with np.errstate(all="ignore"):
        got = to_numpy(_per_element(xp, kind, asarray(xp, d), asarray(xp, p), 64, what))
    assert np.isnan(got[:len(bad)]).all()
    assert np.isfinite(got[len(bad):]).all()


def _plain(kind, d, p):
    """The textbook loss in float64 (mpmath-free: every point is away from trouble)."""
    z = np.abs(d)
    if kind == "huber":
        return np.where(z < p, 0.5 * z * z, p * (z - 0.5 * p))
    return np.where(z < p, 0.5 * z * z / p, z - 0.5 * p)


@pytest.mark.parametrize("kind", KINDS)
def test_param_derivative_equals_central_differences_away_from_the_kinks(xp, kind, rng):
    d = rng.uniform(-4, 4, 400)
    p = rng.uniform(0.05, 3, 400)
    keep = np.abs(np.abs(d) - p) > 1e-3  # off the kink (where it is continuous anyway)
    d, p = d[keep], p[keep]
    h = 1e-6
    numeric = (_plain(kind, d, p + h) - _plain(kind, d, p - h)) / (2 * h)
    got = to_numpy(_per_element(xp, kind, asarray(xp, d), asarray(xp, p), 64,
                                "param_derivative"))
    np.testing.assert_allclose(got, numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_param_derivative_is_continuous_at_the_kink_and_zero_at_beta_zero(xp, kind):
    """At z == p both sides agree; at z = beta = 0 it is the right-sided 0."""
    p = np.array([0.5, 1.0, 2.0, 3.0])
    got = to_numpy(_per_element(xp, kind, asarray(xp, p), asarray(xp, p), 64,
                                "param_derivative"))
    below = to_numpy(_per_element(xp, kind, asarray(xp, np.nextafter(p, 0)), asarray(xp, p), 64,
                                  "param_derivative"))
    np.testing.assert_allclose(got, below, atol=1e-12)
    np.testing.assert_array_equal(got, -0.5 if kind == "smooth_l1" else 0.0)
    if kind == "smooth_l1":
        at_zero = to_numpy(_per_element(xp, kind, asarray(xp, np.zeros(2)),
                                        asarray(xp, np.zeros(2)), 64, "param_derivative"))
        np.testing.assert_array_equal(at_zero, 0.0)


def test_param_derivative_equals_autodiff_of_the_plain_formula(rng):
    """JAX's autodiff of the textbook formula, differentiated with respect to beta/delta."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    jax.config.update("jax_enable_x64", True)
    d = rng.uniform(-4, 4, 300)
    p = rng.uniform(0.05, 3, 300)

    def plain(kind):
        def f(d, p):
            z = jnp.abs(d)
            if kind == "huber":
                return jnp.where(z < p, 0.5 * z * z, p * (z - 0.5 * p))
            return jnp.where(z < p, 0.5 * z * z / p, z - 0.5 * p)
        return f

    for kind in KINDS:
        want = jax.vmap(jax.grad(plain(kind), argnums=1))(jnp.asarray(d), jnp.asarray(p))
        got = _per_element(jnp, kind, jnp.asarray(d), jnp.asarray(p), 64, "param_derivative")
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-14, atol=1e-15)
