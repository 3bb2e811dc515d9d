"""The generated robustness suites as pytest tests, for ``pytest --pyargs``.

``pytest --pyargs facecat.robustness.suites -k jpeg`` runs them from any folder (the plugin,
:mod:`facecat.robustness.plugin`, generates their checks from its options); the
repository's ``robustness/`` folder collects the same tests.

* transformations: every detector x transformation x severity (``facecat-jpeg-sev3``).
* unseen: leave one of the 28 attack types out of training, test on it
  (``cdcn-unseen-Mask_Silicone``; built-in detectors only).
* adaptive: an attacker that knows the detector, with EOT, per L-inf budget
  (``facecat-adaptive-eps8``; detectors with ``differentiable_scores``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from facecat.robustness.checks import Check
    from facecat.robustness.harness import Harness


@pytest.mark.robustness_suite("transform")
def test_transformation(check: Check, harness: Harness) -> None:
    harness.run(check)


@pytest.mark.robustness_suite("unseen")
def test_unseen_attack(check: Check, harness: Harness) -> None:
    harness.run(check)


@pytest.mark.robustness_suite("adaptive")
def test_adaptive_attack(check: Check, harness: Harness) -> None:
    harness.run(check)
