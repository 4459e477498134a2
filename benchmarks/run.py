"""Run smoothl1's benchmark suite from a clone: ``python benchmarks/run.py [options]``.

Every contender is checked against float64 math, then timed round-robin in this
process; ``--help`` lists the options.  Results go to ``benchmark-results/``
unless ``--out`` says otherwise.  The suite is project tooling and is not part of
the installed package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks` from a clone


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the suite and the call-form table, write the results."""
    bench = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmark suite: every contender is checked against float64 math, then "
        "timed round-robin in this process; writes results.md, results.json and "
        "throughput.png. Trust the ratios, not the absolute times.",
    )
    bench.add_argument("--sizes", default="10:24:2",
                       help="log2 of N: 'lo:hi[:step]' or a comma list (default 10:24:2)")
    bench.add_argument("--dtypes", default="float32,float64")
    bench.add_argument("--ops", default=",".join(("mean", "sum", "none", "grad",
                                                   "value_and_grad")))
    bench.add_argument("--repeats", type=int, default=7, help="round-robin samples")
    bench.add_argument("--accuracy", type=int, default=26, metavar="LOG2N",
                       help="check the float32 mean at N = 2**LOG2N (0: skip; default 26)")
    bench.add_argument("--forms", type=int, default=24, metavar="LOG2N",
                       help="the call-form table (weights, axes, broadcasting, 'none', float16, "
                       "strides, small torch calls) at N = 2**LOG2N (0: skip; default 24)")
    bench.add_argument("--out", default="benchmark-results", help="results folder")
    bench.add_argument("--quick", action="store_true",
                       help="tiny sizes, one dtype, three samples: a smoke test (CI)")
    return _bench(bench.parse_args(argv))


def _bench(args: argparse.Namespace) -> int:
    from benchmarks import suite as b

    cfg = b.Config(log2_sizes=b.sizes(args.sizes), dtypes=tuple(args.dtypes.split(",")),
                   ops=tuple(args.ops.split(",")), repeats=args.repeats,
                   accuracy_log2=args.accuracy or None)
    forms_log2 = args.forms
    if args.quick:
        cfg.log2_sizes, cfg.dtypes, cfg.repeats, cfg.accuracy_log2 = (8, 12), ("float32",), 3, 16
        forms_log2 = min(forms_log2, 12) if forms_log2 else 0
    unknown = set(cfg.ops) - set(b.OPS)
    if unknown:
        print(f"unknown --ops {sorted(unknown)}; choose from {', '.join(b.OPS)}")
        return 2
    report = b.run(cfg)
    print("\nthe project's performance targets (time ratios at the largest N):")
    for line in b.iter_lines(report):
        print(line)
    for path in b.write_outputs(report, Path(args.out)):
        print(f"wrote {path}")
    if forms_log2:
        import json
        from dataclasses import asdict

        from benchmarks import forms

        n = 1 << forms_log2
        print(f"\ncall forms at N = 2^{forms_log2}:")
        results = forms.run(n, repeats=3 if args.quick else args.repeats)
        table = forms.markdown(results, n) + "\n" + forms.threshold_table(results)
        print("\n" + table)
        out = Path(args.out)
        (out / "forms.md").write_text(table + "\n")
        (out / "forms.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
        print(f"wrote {out / 'forms.md'}\nwrote {out / 'forms.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
