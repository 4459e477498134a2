"""Errors in units in the last place: how the conformance kit judges a result."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ulp_error"]


def _spacing(values: np.ndarray, dtype: str) -> np.ndarray:
    """Unit in the last place of ``dtype`` at each value (float64 array)."""
    a = np.abs(values)
    if dtype == "bfloat16":  # 8 significant bits, exponent range of float32
        with np.errstate(divide="ignore"):
            exp = np.floor(np.log2(np.maximum(a, 2.0**-126)))
        return np.asarray(2.0 ** (exp - 7), dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.asarray(np.spacing(a.astype(dtype)), dtype=np.float64)


def ulp_error(actual: np.ndarray, expected: np.ndarray, dtype: str, summed: bool) -> float:
    """Largest error of ``actual`` in units in the last place of ``dtype``.

    NaN must meet NaN and infinities must be equal (else the error is ``inf``).
    For ``summed`` results (reductions, broadcast gradients) the unit is taken at
    the largest expected magnitude, so that cancellation to ~0 is not penalised.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    if expected.size == 0:
        return 0.0
    nan_e, nan_a = np.isnan(expected), np.isnan(actual)
    if (nan_e != nan_a).any():
        return math.inf
    inf_e = np.isinf(expected) | np.isinf(actual)
    if (actual[inf_e & ~nan_e] != expected[inf_e & ~nan_e]).any():
        return math.inf
    ok = ~(nan_e | inf_e)
    if not ok.any():
        return 0.0
    e, a = expected[ok], actual[ok]
    # for summed results, the unit at the largest magnitude
    unit = _spacing(np.array([np.max(np.abs(e))]), dtype) if summed else _spacing(e, dtype)
    return float(np.max(np.abs(a - e) / unit))
