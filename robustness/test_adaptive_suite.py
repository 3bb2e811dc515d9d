"""Adaptive-attack suite: adversarial faces perturbed to be scored real (EOT), per budget.

``pytest robustness/ -k adaptive``; the record holds the detection rate at the dev threshold
and the share of faces still fooling the FR model.
"""

from facecat.robustness.suites import test_adaptive_attack

__all__ = ["test_adaptive_attack"]
