"""Unseen-attack suite: leave one of the 28 attack types out of training, test on it.

``pytest robustness/ -k unseen`` trains one detector per held-out type (the FaceCat runs
reuse the cached backbone features); ``-k "unseen and Mask_Silicone"`` runs one type.
"""

import pytest

from robustness.checks import Check
from robustness.harness import Harness


@pytest.mark.robustness_suite("unseen")
def test_unseen_attack(check: Check, harness: Harness) -> None:
    harness.run(check)
