"""The reference cases: loading ``cases.json`` into :class:`Case` objects."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ._ulp import ulp_error

__all__ = ["Case", "load_cases", "provenance"]

QUANTITIES = ("loss", "grad_input", "grad_target")


@dataclass(frozen=True)
class Case:
    """One conformance case: inputs, parameters and expected results.

    Values are float64 NumPy arrays holding numbers exactly representable in
    ``dtype``.  ``expected`` is the exact result rounded once to ``dtype``;
    ``torch`` is what torch 2.13 returns for the same inputs.
    """

    id: str
    kind: str  # "smooth_l1" or "huber"
    param: float | np.ndarray  # beta or delta: a number, or a threshold array (beyond torch)
    reduction: str
    dtype: str
    input: np.ndarray
    target: np.ndarray
    expected: dict[str, np.ndarray]
    torch: dict[str, np.ndarray]
    summed_terms: dict[str, int]
    tolerance_ulps: dict[str, int] = field(default_factory=dict)
    note: str = ""
    weight: np.ndarray | None = None  # sample weights (beyond torch)
    axis: tuple[int, ...] | None = None  # per-axis reduction (beyond torch)
    keepdims: bool = False

    @property
    def extended(self) -> bool:
        """Whether the case uses ``weight``/``axis`` or an array threshold (torch has neither)."""
        return (self.weight is not None or self.axis is not None
                or isinstance(self.param, np.ndarray))

    def keywords(self) -> dict[str, Any]:
        """The ``weight``/``axis``/``keepdims`` keywords of an extended case."""
        if not self.extended:
            return {}
        return {"weight": self.weight, "axis": self.axis, "keepdims": self.keepdims}

    @property
    def torch_differs(self) -> bool:
        """Whether torch's values differ from the exact ones (a torch defect case)."""
        return any(
            ulp_error(self.torch[q], self.expected[q], self.dtype, self.summed_terms[q] > 1)
            > self.tolerance(q)
            for q in QUANTITIES
        )

    def tolerance(self, quantity: str) -> int:
        """Allowed error in units in the last place of ``dtype`` (see the Conformance docs)."""
        if quantity in self.tolerance_ulps:
            return self.tolerance_ulps[quantity]
        terms = self.summed_terms[quantity]
        return 3 if terms <= 1 else 3 + terms


def _floats(hexes: list[str], shape: list[int]) -> np.ndarray:
    return np.array([float.fromhex(h) for h in hexes], dtype=np.float64).reshape(shape)


def _case(raw: dict[str, Any]) -> Case:
    exp = raw["expected"]
    shapes = {"loss": exp["loss_shape"], "grad_input": raw["input_shape"],
              "grad_target": raw["target_shape"]}
    param = raw["param"]
    return Case(
        id=raw["id"],
        kind=raw["kind"],
        # a number ("inf" is stored as a string), or a threshold array's hex values
        param=_floats(param, raw["param_shape"]) if "param_shape" in raw else float(param),
        reduction=raw["reduction"],
        dtype=raw["dtype"],
        input=_floats(raw["input"], raw["input_shape"]),
        target=_floats(raw["target"], raw["target_shape"]),
        expected={q: _floats(exp[q], shapes[q]) for q in QUANTITIES},
        torch={q: _floats(raw["torch"][q], shapes[q]) for q in QUANTITIES},
        summed_terms=raw["summed_terms"],
        tolerance_ulps=raw.get("tolerance_ulps", {}),
        note=raw.get("note", ""),
        weight=_floats(raw["weight"], raw["weight_shape"]) if "weight" in raw else None,
        axis=tuple(raw["axis"]) if raw.get("axis") is not None else None,
        keepdims=bool(raw.get("keepdims", False)),
    )


@cache
def _payload() -> dict[str, Any]:
    text = resources.files("smoothl1.testing").joinpath("cases.json").read_text()
    data: dict[str, Any] = json.loads(text)
    if data.get("format") != "smoothl1-conformance" or data.get("version") != 1:
        raise ValueError("smoothl1.testing: cases.json has an unknown format or version")
    return data


def provenance() -> dict[str, str]:
    """Where the cases come from: generator, torch version, date."""
    return dict(_payload()["provenance"])


def load_cases(*, dtypes: tuple[str, ...] | None = None,
               kinds: tuple[str, ...] | None = None) -> list[Case]:
    """The reference cases, optionally only some dtypes or loss kinds."""
    cases = [_case(raw) for raw in _payload()["cases"]]
    return [c for c in cases
            if (dtypes is None or c.dtype in dtypes) and (kinds is None or c.kind in kinds)
            and not (isinstance(c.param, float) and math.isnan(c.param))]
