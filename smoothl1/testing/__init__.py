"""Conformance kit: prove that an array library, or a loss implementation, agrees with torch.

The reference cases (``cases.json``, generated from torch 2.13 and from exact
rational arithmetic by ``tools/generate_conformance_cases.py``) cover ordinary
values and every edge case of torch's Smooth L1 and Huber losses.  Use them from
a test suite::

    from smoothl1.testing import assert_conformant

    def test_my_loss_matches_torch():
        assert_conformant(smooth_l1=my_smooth_l1, smooth_l1_grad=my_grad)

or run ``python -m smoothl1 check`` for every installed array library.
"""

from ._cases import Case, load_cases, provenance
from ._runner import Failure, Report, assert_conformant, run_cases, ulp_error

__all__ = [
    "Case",
    "Failure",
    "Report",
    "assert_conformant",
    "load_cases",
    "provenance",
    "run_cases",
    "ulp_error",
]
