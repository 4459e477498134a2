"""Test fixtures: the ``xp`` fixture runs a test on every installed array library."""

from __future__ import annotations

import importlib.util
import os
import warnings
from types import ModuleType

import numpy as np
import pytest
from hypothesis import settings

from ._backends import BACKENDS, backend_namespace

if importlib.util.find_spec("jax") is not None:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 tests need it


# CI replays the same examples every run; locally hypothesis explores new ones
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(params=BACKENDS, scope="session")
def xp(request: pytest.FixtureRequest) -> ModuleType:
    """The array namespace of one backend (skipped when it is not installed or cannot run)."""
    return backend_namespace(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture
def our_warnings():
    """Filter recorded warnings down to those issued from smoothl1's or array-api-compat's files.

    By the files' folders, not their names: a clone named ``smoothl1`` holds torch's own
    files under ``smoothl1/.venv``, and their deprecation notices are torch's business.
    """
    import array_api_compat

    import smoothl1

    folders = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
                    for m in (smoothl1, array_api_compat))

    def ours(caught: list[warnings.WarningMessage]) -> list[str]:
        return [str(w.message) for w in caught
                if os.path.abspath(w.filename).startswith(folders)]

    return ours
