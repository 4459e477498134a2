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
    sub = parser.add_subparsers(dest="command", metavar="{check}")
    check = sub.add_parser(
        "check", help="run the conformance cases on every installed array library",
        description="Run smoothl1's reference cases (torch 2.13 and exact arithmetic) on "
        "every installed array library; exit status 1 if any case fails.",
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.command == "check":
        from ._cli.check import main as check_main

        return check_main(args.json)
    if args.n < 1 or args.repeats < 1:
        parser.error("-n and --repeats must be positive")

    from ._cli.demo import format_table, run_demo

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
    from ._cli.figures import save_loss_and_gradient_figure

    betas = sorted({0.5, 1.0, 2.0, beta} - {0.0})
    written = save_loss_and_gradient_figure(path, betas=betas)
    print(f"\nwrote the loss and gradient figure (Smooth L1 for beta = "
          f"{', '.join(f'{b:g}' for b in betas)}; L1, MSE/2, Huber with delta = 2): "
          f"{Path(written).resolve()}")


if __name__ == "__main__":
    sys.exit(main())
