"""Adversarial-face attacks (facecat.attacks) against a small seeded CNN face recognizer.

The target is a fixed random-init CNN whose descriptors are centred on the mean descriptor
of bundled faces, wrapped by TorchRecognizer with the cosine metric: different bundled
faces come out "different", an image and itself "same". Enough to check the mechanics of
every attack on real face crops: modes, ranges, seeds, budgets, errors, objectives.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecat.attacks import (
    ATTACKS,
    REGIONS,
    AttackBase,
    CosineLogits,
    Evolutionary,
    adversarial_type,
    attack_success,
    create_attack,
    eyeglass_mask,
    facemask_mask,
    parse_adversarial_type,
    sticker_mask,
)
from facecat.core.images import load_images
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import read_manifest
from facecat.datasets.protocol import ADVERSARIAL_METHODS, ADVERSARIAL_TYPES
from facecat.recognition.face_recognition import FaceRecognizer, TorchRecognizer

THRESHOLD = 0.3
GRADIENT = ("FGSM", "PGD", "DIM")
PATCHES = ("Eyeglass", "Sticker", "Facemask")
#: Small budgets keeping each call well under a second on a CPU.
FAST = {
    "FGSM": {},
    "PGD": {"steps": 5},
    "DIM": {"steps": 5},
    "Evolutionary": {"max_queries": 150},
    "Eyeglass": {"steps": 30},
    "Sticker": {"steps": 30},
    "Facemask": {"steps": 30},
}
CASES = [(name, mode) for name in ATTACKS for mode in ("dodging", "impersonation")]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: this toy model's many tiny ops crawl when threads contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Centre(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("centre", torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x - self.centre


def make_recognizer(calibration: Tensor) -> TorchRecognizer:
    """A seeded random CNN (with batch norm and dropout), centred on ``calibration`` faces."""
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, 2, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(256, 64),
        _Centre(64),
    )
    recognizer = TorchRecognizer(
        network, input_size=64, metric="cosine", threshold=THRESHOLD, name="toy"
    )
    with torch.no_grad():
        network[-1].centre.copy_(recognizer(calibration).mean(0))
    return recognizer


@pytest.fixture(scope="module")
def bundle() -> dict[str, Tensor]:
    """Calibration faces, and 4 (image, landmarks, target) triples of different subjects."""
    manifest = read_manifest(bundled_manifest())
    first = manifest.frame.drop_duplicates("subject").index[:40].to_list()
    images = load_images([manifest.paths[i] for i in first], size=64)
    landmarks = torch.as_tensor(manifest.landmarks[first])
    return {"images": images, "landmarks": landmarks}


@pytest.fixture(scope="module")
def recognizer(bundle: dict[str, Tensor]) -> TorchRecognizer:
    return make_recognizer(bundle["images"])


@pytest.fixture(scope="module")
def faces(bundle: dict[str, Tensor], recognizer: TorchRecognizer) -> dict[str, Tensor]:
    """Sources and targets of different subjects that the recognizer tells apart."""
    with torch.no_grad():
        descriptors = recognizer(bundle["images"])
    distance = 1 - F.cosine_similarity(descriptors[:, None], descriptors[None], dim=-1)
    sources: list[int] = []
    targets: list[int] = []
    for i in range(len(descriptors)):
        for j in range(len(descriptors)):
            used = {*sources, *targets}
            apart = 2 * THRESHOLD < distance[i, j] < 3 * THRESHOLD  # different, not opposite
            if i not in used and j not in used and i != j and apart:
                sources.append(i)
                targets.append(j)
                break
        if len(sources) == 4:
            break
    assert len(sources) == 4, "the toy recognizer does not separate the bundled faces"
    return {
        "images": bundle["images"][sources],
        "landmarks": bundle["landmarks"][sources],
        "targets": bundle["images"][targets],
    }


def run(
    recognizer: FaceRecognizer, faces: dict[str, Tensor], name: str, mode: str, **kwargs
) -> Tensor:
    attack = create_attack(name, recognizer, mode, **(FAST[name] | kwargs))
    return attack(faces["images"], targets=faces["targets"], landmarks=faces["landmarks"])


def distances(recognizer: FaceRecognizer, images: Tensor, reference: Tensor) -> Tensor:
    with torch.no_grad():
        return recognizer.distance(recognizer(images), recognizer(reference))


# ------------------------------------------------------------------------------ registry


def test_registry_matches_protocol() -> None:
    assert tuple(ATTACKS) == ADVERSARIAL_METHODS
    for attack_type in ADVERSARIAL_TYPES:
        assert adversarial_type(*parse_adversarial_type(attack_type)) == attack_type
    assert parse_adversarial_type("PGD_Impersonation") == ("PGD", "impersonation")


@pytest.mark.parametrize("bad", ["PGD", "PGD_dodge", "Foo_Dodging", "", "PGD_Dodging_x"])
def test_parse_adversarial_type_exception(bad: str) -> None:
    with pytest.raises(ValueError, match="adversarial type"):
        parse_adversarial_type(bad)


def test_create_attack_exception(recognizer: TorchRecognizer) -> None:
    with pytest.raises(ValueError, match="unknown attack"):
        create_attack("CW", recognizer)
    with pytest.raises(ValueError, match="mode"):
        create_attack("PGD", recognizer, "obfuscation")
    with pytest.raises(TypeError, match="FaceRecognizer"):
        create_attack("PGD", nn.Linear(2, 2))
    assert create_attack("PGD", recognizer, "Impersonation").mode == "impersonation"


# ------------------------------------------------------------------- every attack, both modes


@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_smoke_objective_and_state(name: str, mode: str, bundle: dict, faces: dict) -> None:
    """Range, shape, train/eval modes and requires_grad restored, objective moved."""
    recognizer = make_recognizer(bundle["images"])  # a fresh copy: its state is changed here
    recognizer.train()
    recognizer.model[9].eval()  # a submodule in its own mode must stay so
    recognizer.model[0].weight.requires_grad_(False)
    clean_images = faces["images"].clone()

    adversarial = run(recognizer, faces, name, mode)

    assert adversarial.shape == clean_images.shape and adversarial.dtype == clean_images.dtype
    assert not adversarial.requires_grad
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert torch.equal(faces["images"], clean_images)  # input untouched
    assert recognizer.training and recognizer.model[1].training
    assert not recognizer.model[9].training
    assert not recognizer.model[0].weight.requires_grad
    assert all(p.requires_grad for p in list(recognizer.parameters())[1:])
    assert all(p.grad is None for p in recognizer.parameters())
    recognizer.eval()
    reference = clean_images if mode == "dodging" else faces["targets"]
    before = distances(recognizer, clean_images, reference)
    after = distances(recognizer, adversarial, reference)
    if mode == "dodging":
        assert (after > before + 1e-3).all(), (before, after)
    else:
        assert (after < before - 1e-3).all(), (before, after)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_seed_determinism(name: str, recognizer: TorchRecognizer, faces: dict) -> None:
    state = torch.get_rng_state()
    first = run(recognizer, faces, name, "dodging", seed=3)
    again = run(recognizer, faces, name, "dodging", seed=3)
    other = run(recognizer, faces, name, "dodging", seed=4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched


@pytest.mark.parametrize(
    ("name", "mode"), [("PGD", "dodging"), ("PGD", "impersonation"), ("Facemask", "dodging")]
)
def test_strong_attacks_succeed(name: str, mode: str, recognizer, faces) -> None:
    steps = {"PGD": 10, "Facemask": 100}[name]  # the defaults
    adversarial = run(recognizer, faces, name, mode, steps=steps)
    success = attack_success(recognizer, adversarial, faces["images"], faces["targets"], mode)
    # Against this toy model a patch can fall just short on one face depending on float
    # rounding (thread count); real success rates are measured against dlib by attack-table.
    assert success.float().mean() >= (1.0 if name == "PGD" else 0.75)


def test_batch_independent_of_other_images(recognizer: TorchRecognizer, faces: dict) -> None:
    """Gradient attacks are batched: an image's result does not depend on its neighbours."""
    attack = create_attack("PGD", recognizer, "impersonation", steps=3, random_start=False)
    whole = attack(faces["images"], targets=faces["targets"])
    alone = attack(faces["images"][:1], targets=faces["targets"][:1])
    # equal up to sign flips of gradients within rounding of zero
    assert ((whole[:1] - alone).abs() < 1e-6).float().mean() > 0.999


# ------------------------------------------------------------------------- input errors


@pytest.mark.parametrize("name", list(ATTACKS))
def test_exception_impersonation_needs_targets(name: str, recognizer, faces) -> None:
    attack = create_attack(name, recognizer, "impersonation", **FAST[name])
    with pytest.raises(ValueError, match="targets"):
        attack(faces["images"], landmarks=faces["landmarks"])


@pytest.mark.parametrize("name", PATCHES)
def test_exception_patches_need_landmarks(name: str, recognizer, faces) -> None:
    attack = create_attack(name, recognizer, **FAST[name])
    with pytest.raises(ValueError, match="landmarks"):
        attack(faces["images"])
    with pytest.raises(ValueError, match="landmarks"):
        attack(faces["images"], landmarks=faces["landmarks"][:, :4])


@pytest.mark.parametrize(
    ("name", "argument", "value"),
    [
        ("FGSM", "eps", 0),
        ("PGD", "eps", -8 / 255),
        ("PGD", "steps", 0),
        ("PGD", "alpha", 0.0),
        ("PGD", "steps", 2.5),
        ("DIM", "steps", -1),
        ("DIM", "eps", float("nan")),
        ("DIM", "diversity_prob", 1.5),
        ("Evolutionary", "max_queries", 0),
        ("Evolutionary", "max_queries", -10),
        ("Evolutionary", "sigma", 0),
        ("Eyeglass", "steps", 0),
        ("Sticker", "alpha", -1.0),
        ("Facemask", "max_shift", -1),
    ],
)
def test_exception_budget(name: str, argument: str, value: float, recognizer) -> None:
    with pytest.raises(ValueError, match=argument):
        create_attack(name, recognizer, **{argument: value})


@pytest.mark.parametrize(
    "images",
    [
        torch.rand(2, 3, 64, 64) * 2,  # out of range
        torch.rand(2, 1, 64, 64),  # not RGB
        torch.rand(3, 64, 64),  # not a batch
        (torch.rand(2, 3, 64, 64) * 255).to(torch.uint8),  # not float
    ],
    ids=["range", "channels", "ndim", "dtype"],
)
def test_exception_images(images: Tensor, recognizer: TorchRecognizer) -> None:
    with pytest.raises(ValueError):
        create_attack("FGSM", recognizer)(images)


def test_exception_references(recognizer: TorchRecognizer, faces: dict) -> None:
    attack = create_attack("FGSM", recognizer, "impersonation")
    with pytest.raises(ValueError, match="targets holds 2 rows for 4 images"):
        attack(faces["images"], targets=faces["targets"][:2])
    with pytest.raises(ValueError, match="targets must be images"):
        attack(faces["images"], targets=torch.zeros(4))
    evolutionary = create_attack("Evolutionary", recognizer, "impersonation")
    with torch.no_grad():
        descriptors = recognizer(faces["targets"])
    with pytest.raises(ValueError, match="target image"):
        evolutionary(faces["images"], targets=descriptors)


def test_empty_batch(recognizer: TorchRecognizer) -> None:
    empty = torch.zeros(0, 3, 64, 64)
    assert create_attack("PGD", recognizer)(empty).shape == empty.shape


# ----------------------------------------------------------------------- gradient attacks


def test_cosine_logits_adapter(recognizer: TorchRecognizer, faces: dict) -> None:
    """CE(logits, 0) = softplus(-2 cos), so CE's image gradient is -cos's, rescaled."""
    with torch.no_grad():
        reference = recognizer(faces["targets"])
    images = faces["images"].clone().requires_grad_(True)
    logits = CosineLogits(recognizer, reference)(images)
    similarity = F.cosine_similarity(recognizer(images), reference)
    ce = F.cross_entropy(logits, torch.zeros(len(images), dtype=torch.long), reduction="none")
    assert torch.allclose(ce, F.softplus(-2 * similarity), atol=1e-6)
    (grad_ce,) = torch.autograd.grad(ce.sum(), images, retain_graph=True)
    (grad_cos,) = torch.autograd.grad(similarity.sum(), images)
    factor = (grad_ce.flatten(1) * -grad_cos.flatten(1)).sum(1) / grad_cos.flatten(1).norm(dim=1)
    assert torch.allclose(
        grad_ce.flatten(1),
        -grad_cos.flatten(1) * (factor / grad_cos.flatten(1).norm(dim=1))[:, None],
        atol=1e-6,
    )
    assert (factor > 0).all()


@pytest.mark.parametrize("name", GRADIENT)
@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_linf_budget(name: str, eps: float, recognizer: TorchRecognizer, faces: dict) -> None:
    adversarial = run(recognizer, faces, name, "impersonation", eps=eps)
    assert (adversarial - faces["images"]).abs().max() <= eps + 1e-6


def test_targets_as_descriptors_or_single(recognizer: TorchRecognizer, faces: dict) -> None:
    attack = create_attack("PGD", recognizer, "impersonation", steps=3)
    with torch.no_grad():
        descriptors = recognizer(faces["targets"])
    from_images = attack(faces["images"], targets=faces["targets"])
    assert torch.allclose(attack(faces["images"], targets=descriptors), from_images, atol=1e-6)
    single = attack(faces["images"], targets=faces["targets"][:1])
    repeated = attack(faces["images"], targets=faces["targets"][:1].expand(4, -1, -1, -1))
    assert torch.equal(single, repeated)


# ------------------------------------------------------------------- evolutionary attack


@pytest.mark.parametrize("mode", ["dodging", "impersonation"])
def test_evolutionary_budget_and_distortion(mode: str, recognizer, faces) -> None:
    images = faces["images"]
    results = {}
    for queries in (40, 300):
        attack = Evolutionary(recognizer, mode, max_queries=queries, seed=1)
        adversarial = attack(images, targets=faces["targets"])
        assert attack.queries is not None and attack.distortion is not None
        assert (attack.queries <= queries).all() and attack.found.all()
        assert torch.allclose(attack.distortion, (adversarial - images).flatten(1).norm(dim=1))
        success = attack_success(recognizer, adversarial, images, faces["targets"], mode)
        assert success.all()
        results[queries] = attack.distortion
    assert (results[300] <= results[40] + 1e-6).all()
    assert (results[300] < results[40]).any()


def test_evolutionary_only_uses_decisions(recognizer: TorchRecognizer, faces: dict) -> None:
    """One model call per query batch; the count matches the budget and the attribute."""
    calls = []
    handle = recognizer.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        attack = Evolutionary(recognizer, "dodging", max_queries=25)
        attack(faces["images"])
    finally:
        handle.remove()
    assert sum(calls) - len(faces["images"]) == attack.queries.sum()  # minus the reference
    assert (attack.queries == 25).all()


# ------------------------------------------------------------------------ patch attacks


@pytest.mark.parametrize("name", PATCHES)
def test_patch_changes_only_the_region(name: str, recognizer, faces) -> None:
    attack = create_attack(name, recognizer, "impersonation", **FAST[name])
    adversarial = attack(faces["images"], targets=faces["targets"], landmarks=faces["landmarks"])
    mask = attack.mask(faces["landmarks"], (64, 64)).bool().expand_as(adversarial)
    changed = adversarial != faces["images"]
    assert not changed[~mask].any()
    assert changed[mask].float().mean() > 0.9


@pytest.mark.parametrize("region", list(REGIONS))
def test_region_cardinality_and_translation(region: str, faces: dict) -> None:
    landmarks = faces["landmarks"]
    mask = REGIONS[region](landmarks, (64, 64))
    assert mask.shape == (4, 1, 64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert ((mask.mean(dim=(1, 2, 3)) > 0.01) & (mask.mean(dim=(1, 2, 3)) < 0.35)).all()
    shifted = REGIONS[region](landmarks + torch.tensor([3.0, 2.0]), (80, 80))
    assert (shifted[..., 2:66, 3:67] == mask).float().mean() > 0.999  # up to rounding


def test_region_geometry(faces: dict) -> None:
    landmarks = faces["landmarks"]
    rows = torch.arange(4)

    def at(mask: Tensor, point: int) -> Tensor:
        x, y = landmarks[:, point].round().long().unbind(-1)
        return mask[rows, 0, y, x]

    glasses, sticker, facemask = (f(landmarks, (64, 64)) for f in REGIONS.values())
    assert not at(glasses, 0).any() and not at(glasses, 1).any()  # eyes seen through lenses
    assert facemask.any() and at(facemask, 2).all() and at(facemask, 3).all()
    assert not at(facemask, 0).any()
    eye_y = landmarks[:, :2, 1].mean(1)
    rows_with_sticker = sticker[:, 0].any(dim=2)
    lowest = torch.stack([r.nonzero().max() for r in rows_with_sticker]).float()
    assert (lowest < eye_y).all()  # the default sticker sits on the forehead
    cheek = sticker_mask(landmarks, (64, 64), place="left_cheek")
    columns = cheek[:, 0].any(dim=1).float().argmax(dim=1)
    assert (columns < landmarks[:, 2, 0]).all()  # image-left of the nose
    with pytest.raises(ValueError, match="place"):
        sticker_mask(landmarks, (64, 64), place="chin")
    with pytest.raises(ValueError, match="landmarks"):
        eyeglass_mask(landmarks[:, :3], (64, 64))
    assert facemask_mask(landmarks, (64, 64)).sum() > glasses.sum()


# --------------------------------------------------------------------------- success


def test_attack_success_semantics(recognizer: TorchRecognizer, faces: dict) -> None:
    images, targets = faces["images"], faces["targets"]
    assert not attack_success(recognizer, images, images, None, "dodging").any()
    assert attack_success(recognizer, images, targets, None, "dodging").all()
    assert not attack_success(recognizer, images, None, targets, "impersonation").any()
    assert attack_success(recognizer, images, None, images, "Impersonation").all()
    with pytest.raises(ValueError, match="targets"):
        attack_success(recognizer, images, images, None, "impersonation")


def test_attack_base_is_abstract(recognizer: TorchRecognizer, faces: dict) -> None:
    with pytest.raises(NotImplementedError):
        AttackBase(recognizer)(faces["images"])
    assert math.isclose(create_attack("FGSM", recognizer).eps, 16 / 255)
    assert math.isclose(create_attack("FGSM", recognizer, "impersonation").eps, 8 / 255)
