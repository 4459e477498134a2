"""Doctest collection (``--doctest-modules``) skips the glue of frameworks that are not installed.

Each module in ``smoothl1/_backends/`` imports its framework at the top (it is only
imported itself when that framework's arrays arrive), and so does ``smoothl1/nn.py``,
so collecting it without the framework would fail before a single test runs.
"""

from __future__ import annotations

import importlib.util

collect_ignore = [f"smoothl1/_backends/{name}.py" for name, module in
                  (("torch", "torch"), ("jax", "jax"), ("dask", "dask"), ("cubed", "cubed"))
                  if importlib.util.find_spec(module) is None]
if importlib.util.find_spec("torch") is None:
    collect_ignore.append("smoothl1/nn.py")  # the torch modules
