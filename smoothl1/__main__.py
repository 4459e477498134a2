"""Command line: ``python -m smoothl1`` (or ``smoothl1``) runs the demo."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m smoothl1`` and the ``smoothl1`` console script."""
    parser = argparse.ArgumentParser(
        prog="smoothl1",
        description="Run the same Smooth L1 loss and gradient through every installed "
        "array library and compare each with a float64 reference.",
    )
    parser.add_argument("-n", type=int, default=1_000_000, help="number of elements")
    parser.add_argument("--beta", type=float, default=1.0, help="Smooth L1 beta")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per backend")
    parser.add_argument("--figure", default="smoothl1-loss-and-gradient.png",
                        help="where the demo writes the loss/gradient figure (needs matplotlib; "
                        "'' for none)")
    sub = parser.add_subparsers(dest="command", metavar="{check,bench}")
    check = sub.add_parser(
        "check", help="run the conformance cases on every installed array library",
        description="Run smoothl1's reference cases (torch 2.13 and exact arithmetic) on "
        "every installed array library; exit status 1 if any case fails.",
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    bench = sub.add_parser(
        "bench", help="time smoothl1 against torch, optax, a plain array-API formula and "
        "the memory floors",
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
    args = parser.parse_args(argv)
    if args.command == "check":
        from ._check import main as check_main

        return check_main(args.json)
    if args.command == "bench":
        return _bench(args)
    if args.n < 1 or args.repeats < 1:
        parser.error("-n and --repeats must be positive")

    from ._demo import format_table, run_demo

    print(f"smoothl1 demo: smooth_l1_value_and_grad on N = {args.n:,} float32 elements "
          f"(5% outliers), beta = {args.beta}")
    print("errors are against the float64 textbook formula; times include waiting for the "
          "result\n")
    print(format_table(run_demo(args.n, args.beta, args.repeats)))
    if args.figure:
        _figure(args.figure, args.beta)
    return 0


def _figure(path: str, beta: float) -> None:
    """Write the loss/gradient figure and say where (or why not)."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("matplotlib") is None:
        print("\n(no figure: matplotlib is not installed; pip install matplotlib)")
        return
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    from ._figures import save_loss_and_gradient_figure

    betas = sorted({0.5, 1.0, 2.0, beta} - {0.0})
    written = save_loss_and_gradient_figure(path, betas=betas)
    print(f"\nwrote the loss and gradient figure (Smooth L1 for beta = "
          f"{', '.join(f'{b:g}' for b in betas)}; L1, MSE/2, Huber with delta = 2): "
          f"{Path(written).resolve()}")


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import _benchmark as b

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
    print("\ntargets of the performance issue (time ratios at the largest N):")
    for line in b.iter_lines(report):
        print(line)
    for path in b.write_outputs(report, Path(args.out)):
        print(f"wrote {path}")
    if forms_log2:
        import json
        from dataclasses import asdict

        from . import _benchmark_forms as forms

        n = 1 << forms_log2
        print(f"\ncall forms at N = 2^{forms_log2}:")
        results = forms.run(n, repeats=3 if args.quick else args.repeats)
        table = forms.markdown(results, n)
        print("\n" + table)
        out = Path(args.out)
        (out / "forms.md").write_text(table + "\n")
        (out / "forms.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
        print(f"wrote {out / 'forms.md'}\nwrote {out / 'forms.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
