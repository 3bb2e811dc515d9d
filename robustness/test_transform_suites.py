"""Transformation suites: every detector x transformation x severity (0 = clean).

``pytest robustness/ -k jpeg`` runs the JPEG checks (``facecat-jpeg-sev3``, ...); the AUC
curves land in ``results/robustness/`` at the end of the session. The tests live in the
package (:mod:`facecat.robustness.suites`) so ``pytest --pyargs`` runs them anywhere.
"""

from facecat.robustness.suites import test_transformation

__all__ = ["test_transformation"]
