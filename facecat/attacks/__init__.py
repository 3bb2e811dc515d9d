"""Adversarial-face attacks against face-recognition targets.

Seven methods, each as dodging and impersonation (the protocol's 14 adversarial types,
``f"{name}_{Mode}"``): white-box gradient attacks FGSM, PGD and DIM (:mod:`.gradient`, run by
torchattacks through a cosine-similarity adapter), the decision-based black-box evolutionary
attack of Dong et al. 2019 (:mod:`.evolutionary`) and white-box patch attacks Eyeglass,
Sticker and Facemask (:mod:`.patches`, regions from landmarks in :mod:`.regions`). All share
:class:`AttackBase` (:mod:`.base`).

Example:
    >>> attack = create_attack("PGD", recognizer, "impersonation", eps=8 / 255)
    >>> adversarial = attack(images, targets=target_images)
    >>> attack_success(recognizer, adversarial, None, target_images, "impersonation")
"""

# Registration order = the protocol's order of methods (FGSM, PGD, DIM, Evolutionary, patches).
from facecat.attacks import gradient, evolutionary, patches  # noqa: F401, I001
from facecat.attacks.base import MODES, AttackBase, AttackInputs, attack_gain, attack_success
from facecat.attacks.evolutionary import Evolutionary
from facecat.attacks.gradient import DIM, FGSM, PGD, CosineLogits
from facecat.attacks.patches import Eyeglass, Facemask, PatchAttack, Sticker
from facecat.attacks.regions import REGIONS, eyeglass_mask, facemask_mask, sticker_mask
from facecat.attacks.registry import (
    ATTACKS,
    adversarial_type,
    create_attack,
    parse_adversarial_type,
    register_attack,
)

__all__ = [
    "ATTACKS",
    "DIM",
    "FGSM",
    "MODES",
    "PGD",
    "REGIONS",
    "AttackBase",
    "AttackInputs",
    "CosineLogits",
    "Evolutionary",
    "Eyeglass",
    "Facemask",
    "PatchAttack",
    "Sticker",
    "adversarial_type",
    "attack_gain",
    "attack_success",
    "create_attack",
    "eyeglass_mask",
    "facemask_mask",
    "parse_adversarial_type",
    "register_attack",
    "sticker_mask",
]
