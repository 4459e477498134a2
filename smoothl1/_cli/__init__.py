"""The command line's tools: the demo, the conformance ``check`` and the figures.

Tooling, not library: nothing in smoothl1's library imports from here.  The
benchmark suite is outside the package, in ``benchmarks/`` (run from a clone).
"""
