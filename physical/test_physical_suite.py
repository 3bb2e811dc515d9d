"""The held-out physical suite: detectors trained without physical data, tested on it.

``tox -e physical`` (or ``pytest physical/``) builds the simulated 3D-printed adversarial
set, trains or loads FaceCat and CDCN, and runs ``facecat-physical``, ``cdcn-physical``
and the transformed checks (``cdcn-physical-jpeg-sev3``, ...); the results land in
``results/physical/`` at the end of the session.
"""

import pytest

from facecat.physical.harness import PhysicalHarness
from facecat.physical.physical_set import PhysicalSet
from facecat.robustness.checks import Check


def test_simulated_attacks_fool_the_fr_target(physical_set: PhysicalSet | None) -> None:
    """The printed adversarial textures fool the FR target more than prints of the wearer."""
    if physical_set is None:
        pytest.skip("a captured set carries no simulated FR outcome")
    overall = physical_set.fr_success.query("region == 'all' and mode == 'all'").iloc[0]
    print(
        f"\nFR success of the simulated physical attacks: {overall['fr_success']:.3f} "
        f"(control prints of the wearer's own face: {overall['fr_success_control']:.3f})"
    )
    assert overall["fr_success"] > overall["fr_success_control"] + 0.2


@pytest.mark.physical_suite
def test_physical(check: Check, harness: PhysicalHarness) -> None:
    harness.run(check)
