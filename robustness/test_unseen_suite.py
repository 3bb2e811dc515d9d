"""Unseen-attack suite: leave one of the 28 attack types out of training, test on it.

``pytest robustness/ -k unseen`` trains one detector per held-out type (the FaceCat runs
reuse the cached backbone features); ``-k "unseen and Mask_Silicone"`` runs one type.
"""

from facecat.robustness.suites import test_unseen_attack

__all__ = ["test_unseen_attack"]
