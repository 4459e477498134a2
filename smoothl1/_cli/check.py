"""``python -m smoothl1 check``: the conformance cases on every installed array library."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

from ..testing import provenance, run_cases
from ..testing._backends import LIBRARIES

__all__ = ["CheckRow", "check_all", "format_rows"]


@dataclass
class CheckRow:
    """The result of the cases on one backend, through one gradient path."""

    backend: str
    device: str
    gradients: str  # "function" or "autodiff"
    status: str  # "ok", "FAILED", or why it did not run
    dtypes: list[str] = field(default_factory=list)
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    worst_loss_ulps: float = 0.0
    worst_grad_ulps: float = 0.0
    failures: list[str] = field(default_factory=list)


def _targets() -> Iterator[tuple[str, ModuleType | None, Any, tuple[str, ...], str]]:
    """(backend, namespace, device, gradient paths, reason it cannot run)."""
    for lib in LIBRARIES:
        modes = ("function", "autodiff") if lib.autodiff is not None else ("function",)
        for device, reason in lib.targets():
            if reason:
                yield lib.name, None, device, (), reason
            else:
                yield lib.name, lib.namespace(), device, modes, ""


def check_all() -> list[CheckRow]:
    """Run the cases on every backend this machine has."""
    rows = []
    for name, xp, device, modes, reason in _targets():
        if xp is None:
            rows.append(CheckRow(name, str(device or "-"), "-", reason))
            continue
        for mode in modes:
            report = run_cases(xp, device=device, gradients=mode)  # type: ignore[arg-type]
            grad = max(report.worst_ulps["grad_input"], report.worst_ulps["grad_target"])
            rows.append(CheckRow(
                backend=name, device=str(device or "default"), gradients=mode,
                status="ok" if report.ok else "FAILED",
                dtypes=sorted(report.dtypes), passed=report.passed,
                failed=len({f.case.id for f in report.failures}),
                skipped=len(report.skipped), worst_loss_ulps=report.worst_ulps["loss"],
                worst_grad_ulps=grad, failures=[str(f) for f in report.failures],
            ))
    return rows


def format_rows(rows: list[CheckRow]) -> str:
    """The rows as a Markdown table, with failures listed below it."""
    lines = ["| backend | device | gradients | status | dtypes | passed | failed | skipped "
             "| worst loss error (ulp) | worst gradient error (ulp) |",
             "|" + "---|" * 10]
    for r in rows:
        if r.gradients == "-":
            lines.append(f"| {r.backend} | {r.device} | - | {r.status} | | | | | | |")
            continue
        lines.append(
            f"| {r.backend} | {r.device} | {r.gradients} | {r.status} | {', '.join(r.dtypes)} "
            f"| {r.passed} | {r.failed} | {r.skipped} | {r.worst_loss_ulps:.3g} "
            f"| {r.worst_grad_ulps:.3g} |")
    for r in rows:
        for f in r.failures:
            lines.append(f"- {r.backend}/{r.device}/{r.gradients}: {f}")
    return "\n".join(lines)


def main(as_json: bool) -> int:
    """Print the check table (or JSON); the exit status is 1 if any case failed."""
    rows = check_all()
    failed = any(r.status == "FAILED" for r in rows)
    if as_json:
        print(json.dumps({"provenance": provenance(), "ok": not failed,
                          "rows": [asdict(r) for r in rows]}, indent=1))
    else:
        p = provenance()
        print(f"smoothl1 conformance cases (generated {p['date']} from torch "
              f"{p['torch_version']} and exact arithmetic)\n")
        print(format_rows(rows))
        print("\nall backends conform" if not failed else "\nSOME CASES FAILED")
    return 1 if failed else 0
