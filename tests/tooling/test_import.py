"""``import smoothl1`` must not import any array framework besides NumPy."""

from __future__ import annotations

import subprocess
import sys

import smoothl1


def test_import_loads_no_framework():
    code = (
        "import sys, smoothl1; "
        "print(sorted(m for m in ('torch', 'jax', 'jaxlib', 'cupy', 'dask', 'array_api_strict', "
        "'cubed', 'ndonnx', 'onnx', 'sparse', 'marray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api():
    assert set(smoothl1.__all__) >= {
        "smooth_l1", "smooth_l1_grad", "smooth_l1_value_and_grad", "huber", "huber_grad",
        "huber_value_and_grad", "SmoothL1Loss", "HuberLoss",
    }
    for name in smoothl1.__all__:
        assert getattr(smoothl1, name) is not None
