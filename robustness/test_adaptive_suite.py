"""Adaptive-attack suite: adversarial faces perturbed to be scored real (EOT), per budget.

``pytest robustness/ -k adaptive``; the record holds the detection rate at the dev threshold
and the share of faces still fooling the FR model.
"""

import pytest

from robustness.checks import Check
from robustness.harness import Harness


@pytest.mark.robustness_suite("adaptive")
def test_adaptive_attack(check: Check, harness: Harness) -> None:
    harness.run(check)
