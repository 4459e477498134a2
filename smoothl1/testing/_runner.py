"""Running the reference cases through an implementation and judging the results."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np

from . import _backends
from ._cases import QUANTITIES, Case, load_cases
from ._ulp import ulp_error

__all__ = ["Failure", "Report", "assert_conformant", "run_cases", "ulp_error"]

LossFn = Callable[[Any, Any, float, str], Any]
GradMode = Literal["function", "autodiff", "none"]


@dataclass
class Failure:
    """One quantity of one case that is out of tolerance."""

    case: Case
    quantity: str
    ulps: float
    tolerance: int
    expected: np.ndarray
    actual: np.ndarray | None
    error: str = ""

    def __str__(self) -> str:
        head = f"{self.case.id} [{self.quantity}]"
        if self.error:
            return f"{head}: {self.error}"
        return (f"{head}: {self.ulps:.3g} ulps > {self.tolerance} allowed; expected "
                f"{_short(self.expected)}, got {_short(self.actual)}"
                + (f" ({self.case.note})" if self.case.note else ""))


def _short(a: np.ndarray | None) -> str:
    if a is None:
        return "nothing"
    return np.array2string(np.asarray(a), precision=17, threshold=6, max_line_width=120)


@dataclass
class Report:
    """What :func:`run_cases` found."""

    passed: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # case id -> reason
    worst_ulps: dict[str, float] = field(default_factory=lambda: dict.fromkeys(QUANTITIES, 0.0))
    dtypes: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        """No failures."""
        return not self.failures

    def summary(self) -> str:
        """A readable account of every failure."""
        lines = [f"{self.passed} cases passed, {len(self.failures)} results failed, "
                 f"{len(self.skipped)} cases skipped"]
        lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)


def _default_functions(kind: str) -> tuple[LossFn, LossFn]:
    import smoothl1

    if kind == "huber":
        return smoothl1.huber, smoothl1.huber_grad  # type: ignore[return-value]
    return smoothl1.smooth_l1, smoothl1.smooth_l1_grad  # type: ignore[return-value]


def _to_numpy(x: Any) -> np.ndarray:
    """Values of any supported array as float64 NumPy (host copy; testing only)."""
    return np.asarray(_backends.to_numpy(x), dtype=np.float64)


def _make(xp: ModuleType, values: np.ndarray, dtype: str, device: Any) -> Any:
    kw = {} if device is None else {"device": device}
    if dtype == "bfloat16":
        return xp.astype(xp.asarray(values.astype(np.float32), **kw), xp.bfloat16)
    return xp.asarray(values.astype(dtype), **kw)


def _supports(xp: ModuleType, dtype: str, device: Any) -> str:
    """'' if ``xp`` can hold ``dtype`` exactly, else the reason it cannot."""
    if dtype == "bfloat16" and getattr(xp, dtype, None) is None:
        return f"{xp.__name__} has no {dtype}"
    try:
        probe = _make(xp, np.zeros(1), dtype, device)
    except Exception as exc:  # a device or namespace that refuses the dtype
        return f"{dtype} not available: {exc}"
    if str(probe.dtype).rpartition(".")[2] != dtype:
        return f"{dtype} arrays come out as {probe.dtype} (for JAX: enable jax_enable_x64)"
    return ""


def _autodiff(xp: ModuleType, fn: LossFn, x: Any, y: Any, case: Case,
              param: Any) -> tuple[Any, Any, Any]:
    """The loss and its gradients through the framework's own autodiff."""
    autodiff = _backends.library_of(xp).autodiff
    if autodiff is None:
        raise TypeError(f"gradients='autodiff' needs torch or JAX arrays, not {xp.__name__}")
    return autodiff(lambda a, b: fn(a, b, param, case.reduction), x, y)


def run_cases(
    xp: ModuleType | None = None,
    *,
    device: Any = None,
    smooth_l1: LossFn | None = None,
    huber: LossFn | None = None,
    smooth_l1_grad: LossFn | None = None,
    huber_grad: LossFn | None = None,
    gradients: GradMode = "function",
    reference: Literal["exact", "torch"] = "exact",
    dtypes: tuple[str, ...] | None = None,
    extended: bool | None = None,
) -> Report:
    """Run the reference cases through an implementation and compare.

    Parameters
    ----------
    xp : module, optional
        The array namespace to build inputs with (default NumPy).  Inputs are made
        with ``xp.asarray(..., device=device)``.
    device : optional
        Device for the inputs.
    smooth_l1, huber : callable, optional
        ``f(input, target, param, reduction)`` implementations to check; default
        smoothl1's own.  A loss left out while the other is given is not checked.
    smooth_l1_grad, huber_grad : callable, optional
        ``g(input, target, param, reduction)`` returning the gradient with respect
        to ``input``; the target gradient is checked as ``g(target, input, ...)``.
    gradients : {'function', 'autodiff', 'none'}
        Check gradients through the grad functions, through the framework's
        autodiff of the loss (torch or JAX arrays), or not at all.
    reference : {'exact', 'torch'}
        Compare with the exact values, or with torch 2.13's (then the cases where
        torch is wrong are skipped).
    dtypes : tuple of str, optional
        Only these dtypes.
    extended : bool, optional
        Also run the cases with sample weights and per-axis reductions (which
        torch's losses do not have), calling the functions with ``weight=``,
        ``axis=`` and ``keepdims=`` keywords.  Default: for smoothl1's own
        functions only.
    """
    if xp is None:
        import array_api_compat.numpy as xp_default

        xp = xp_default
    user_given = smooth_l1 is not None or huber is not None
    if extended is None:
        extended = not user_given
    fns: dict[str, tuple[LossFn | None, LossFn | None]] = {}
    for kind, loss, grad in (("smooth_l1", smooth_l1, smooth_l1_grad),
                             ("huber", huber, huber_grad)):
        if user_given:
            fns[kind] = (loss, grad)
        else:
            fns[kind] = _default_functions(kind)
    report = Report()
    support: dict[str, str] = {}
    for case in load_cases(dtypes=dtypes):
        loss_fn, grad_fn = fns[case.kind]
        if loss_fn is None:
            report.skipped[case.id] = f"no {case.kind} implementation given"
            continue
        if case.dtype not in support:
            support[case.dtype] = _supports(xp, case.dtype, device)
        if support[case.dtype]:
            report.skipped[case.id] = support[case.dtype]
            continue
        if case.extended and not extended:
            report.skipped[case.id] = "uses weight/axis (pass extended=True to check them)"
            continue
        if reference == "torch" and case.torch_differs:
            report.skipped[case.id] = "torch is wrong here; not a reference"
            continue
        report.dtypes.add(case.dtype)
        failures = _run_one(xp, device, case, loss_fn, grad_fn, gradients, reference, report)
        report.failures += failures
        if not failures:
            report.passed += 1
    return report


def _run_one(xp: ModuleType, device: Any, case: Case, loss_fn: LossFn, grad_fn: LossFn | None,
             gradients: GradMode, reference: str, report: Report) -> list[Failure]:
    want = case.expected if reference == "exact" else case.torch
    x = _make(xp, case.input, case.dtype, device)
    y = _make(xp, case.target, case.dtype, device)
    kw = case.keywords()
    if kw.get("weight") is not None:
        kw["weight"] = _make(xp, case.weight, case.dtype, device)  # type: ignore[arg-type]
    param: Any = case.param
    if isinstance(param, np.ndarray):  # a threshold array, in the library under test
        param = _make(xp, param, case.dtype, device)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcasting warning, NumPy's NaN notes
        try:
            if gradients == "autodiff":
                results["loss"], results["grad_input"], results["grad_target"] = _autodiff(
                    xp, functools.partial(loss_fn, **kw), x, y, case, param)
            else:
                results["loss"] = loss_fn(x, y, param, case.reduction, **kw)
                if gradients == "function" and grad_fn is not None:
                    results["grad_input"] = grad_fn(x, y, param, case.reduction, **kw)
                    results["grad_target"] = grad_fn(y, x, param, case.reduction, **kw)
        except Exception as exc:  # the implementation under test raised: a failure
            errors["loss"] = f"raised {type(exc).__name__}: {exc}"
        # lazy libraries compute here; inside the filter for their NaN notes too
        values = {q: _to_numpy(r) if r is not None else np.zeros_like(want[q])
                  for q, r in results.items()} if not errors else {}
    out = []
    for q in QUANTITIES:
        if q in errors:
            out.append(Failure(case, q, math.inf, case.tolerance(q), want[q], None, errors[q]))
            continue
        if q not in values:
            continue
        actual = values[q]
        ulps = ulp_error(actual, want[q], case.dtype, case.summed_terms[q] > 1)
        report.worst_ulps[q] = max(report.worst_ulps[q], ulps)
        if not ulps <= case.tolerance(q):
            out.append(Failure(case, q, ulps, case.tolerance(q), want[q], actual))
    return out


def assert_conformant(xp: ModuleType | None = None, **kwargs: Any) -> Report:
    """Run :func:`run_cases` and raise ``AssertionError`` listing every failure.

    Takes the same arguments as :func:`run_cases`; returns the report when all
    cases pass.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothl1.testing import assert_conformant
    >>> def my_smooth_l1(x, y, beta, reduction):
    ...     z = np.abs(x - y)
    ...     loss = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta) if beta else z
    ...     return {"mean": np.mean, "sum": np.sum}.get(reduction, lambda a: a)(loss)
    >>> report = assert_conformant(smooth_l1=my_smooth_l1, gradients="none",
    ...                            dtypes=("float64",), reference="torch")
    >>> report.ok
    True
    """
    report = run_cases(xp, **kwargs)
    if not report.ok:
        raise AssertionError("not conformant with the smoothl1 reference cases:\n"
                             + report.summary())
    return report
