"""Sphinx configuration of the smoothl1 documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (CI does, with warnings as
errors).  Pages are MyST Markdown; those with ``{code-cell}`` blocks are executed by
myst-nb on every build, so every Python example on the site has just run.  The
Backends page's capability table is generated here from the test suite's own
declaration (``tests/capabilities.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import smoothl1  # noqa: E402

project = "smoothl1"
author = "the smoothl1 developers"
copyright = "2026, the smoothl1 developers"
release = version = smoothl1.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_copybutton",
]
exclude_patterns = ["_build", "jupyter_execute", "benchmark/*.md", "_generated/*.md",
                    "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}

# MyST and execution: every code cell runs on every build; an error fails the build
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 600
nb_merge_streams = True
nb_execution_show_tb = True

# API reference
autodoc_typehints = "none"  # the numpydoc sections say it, once
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"smoothl1 {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 7,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars: dict[str, list[str]] = {"**": []}  # one level of pages: the top bar is the menu


def _capability_table() -> str:
    """The Backends page's table, from ``tests/capabilities.py`` (not written by hand)."""
    path = ROOT / "tests" / "capabilities.py"
    spec = importlib.util.spec_from_file_location("capabilities", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    columns = module.COLUMNS
    lines = ["| backend | " + " | ".join(columns.values()) + " |",
             "|---|" + "---|" * len(columns)]
    for backend, row in module.CAPABILITIES.items():
        cells = []
        for key in columns:
            value = row[key]
            text = "—" if value is None else ("✓" if value == "yes" else f"✓ {value}")
            if value is not None and (backend, key) in module.NEEDS_GPU:
                text += " †"
            cells.append(text)
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_generated(app: object) -> None:
    out = DOCS / "_generated"
    out.mkdir(exist_ok=True)
    table = _capability_table()
    target = out / "capabilities.md"
    if not target.exists() or target.read_text() != table:  # unchanged: no rebuild
        target.write_text(table)


def setup(app):
    """Write the generated pages' pieces before the sources are read."""
    app.connect("builder-inited", _write_generated)
    return {"parallel_read_safe": True}
