"""Run smoothl1's benchmark suite: ``python benchmarks/run.py [options]``.

The same as ``python -m smoothl1 bench [options]`` (``--help`` lists them); the
suite itself is :mod:`smoothl1._benchmark`, so that an installed smoothl1 can run
it too.  Results go to ``benchmark-results/`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import sys

from smoothl1.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
