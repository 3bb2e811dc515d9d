"""Transformation suites: every detector x transformation x severity (0 = clean).

``pytest robustness/ -k jpeg`` runs the JPEG checks (``facecat-jpeg-sev3``, ...); the AUC
curves land in ``results/robustness/`` at the end of the session.
"""

import pytest

from robustness.checks import Check
from robustness.harness import Harness


@pytest.mark.robustness_suite("transform")
def test_transformation(check: Check, harness: Harness) -> None:
    harness.run(check)
