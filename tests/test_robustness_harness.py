"""The robustness harness's parts: check ids, criteria, records, comparison, curves, attacker."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch

from facecat.datasets.adversarial_faces import bundled_test_faces, create_recognizer
from facecat.datasets.manifest import read_manifest
from facecat.datasets.protocol import ATTACK_TYPES
from facecat.evaluation.evaluate import score_files
from facecat.models.registry import create_detector
from facecat.robustness.adaptive import AttackSettings, adaptive_attack, differentiable_scores
from facecat.robustness.checks import (
    Check,
    Criteria,
    adaptive_checks,
    check_params,
    transform_checks,
    unseen_checks,
)
from facecat.robustness.detectors import HOLD_OUT_EPOCHS, DetectorPool
from facecat.robustness.harness import Harness
from facecat.robustness.report import (
    CHECKS_NAME,
    COMPARISON_NAME,
    SUMMARY_NAME,
    UNSEEN_NAME,
    auc_axis_label,
    auc_comparison,
    merge_records,
    transfer_table,
    write_results,
)


def test_check_ids_read_as_documented():
    assert Check("facecat", "transform", "jpeg", 3).id == "facecat-jpeg-sev3"
    assert Check("cdcn", "transform", "gaussian_blur", 5).id == "cdcn-gaussian_blur-sev5"
    assert Check("facecat", "unseen", "Mask_Silicone").id == "facecat-unseen-Mask_Silicone"
    assert Check("cdcn", "adaptive", "adaptive", 8).id == "cdcn-adaptive-eps8"
    with pytest.raises(ValueError, match="unknown suite"):
        Check("facecat", "weather", "rain")


def test_check_generators_cover_the_grid():
    checks = transform_checks(["facecat", "cdcn"], ["jpeg", "bit_depth"])
    assert len(checks) == 2 * 2 * 6
    assert len({c.id for c in checks}) == len(checks)
    assert len(unseen_checks(["facecat"])) == len(ATTACK_TYPES) == 28
    assert [c.severity for c in adaptive_checks(["cdcn"])] == [0, 1, 2, 4, 8, 16]


def test_criteria_rules_and_expected_failures(tmp_path):
    path = tmp_path / "criteria.json"
    path.write_text(
        json.dumps(
            {
                "rules": [
                    {"match": "*-sev0", "min_auc": 0.9},
                    {"match": "facecat-*", "min_auc": 0.7},
                ],
                "expected_failures": [{"match": "cdcn-jpeg-sev5", "reason": "codec wipes depth"}],
            }
        )
    )
    criteria = Criteria.load(path)
    assert criteria.min_auc(Check("facecat", "transform", "jpeg", 0)) == 0.9
    assert criteria.min_auc(Check("facecat", "transform", "jpeg", 2)) == 0.7
    assert criteria.min_auc(Check("cdcn", "transform", "jpeg", 2)) is None
    assert criteria.verdict(Check("facecat", "transform", "jpeg", 0), 0.85) == (
        False,
        "AUC >= 0.9",
    )
    assert criteria.verdict(Check("cdcn", "transform", "jpeg", 2), 0.1)[0]
    params = check_params(transform_checks(["cdcn"], ["jpeg"]), criteria)
    marked = {p.id: p.marks for p in params}
    assert [m.kwargs["reason"] for m in marked["cdcn-jpeg-sev5"]] == ["codec wipes depth"]
    assert not marked["cdcn-jpeg-sev4"]


def test_bad_criteria_file_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"rules": [{"min_auc": 0.5}]}')
    with pytest.raises(ValueError, match=r"bad\.json"):
        Criteria.load(path)


def _record(
    detector: str, case: str, severity: int, auc: float, protocol: str = "embedded-1"
) -> dict:
    return {
        "protocol": protocol,
        "id": Check(detector, "transform", case, severity).id,
        "detector": detector,
        "suite": "transform",
        "case": case,
        "severity": severity,
        "auc": auc,
        "auc_ci_low": auc - 0.05,
        "auc_ci_high": min(auc + 0.05, 1.0),
    }


def test_results_merge_across_sessions_and_compare(tmp_path):
    first = [
        _record(detector, "jpeg", severity, clean - 0.2 * severity)
        for detector, clean in (("facecat", 0.95), ("cdcn", 0.9))
        for severity in (0, 1)
    ]
    write_results(first, tmp_path, compare=("facecat", "cdcn"))
    second = [_record("cdcn", "jpeg", 1, 0.5), _record("cdcn", "bit_depth", 0, 0.8)]
    written = write_results(second, tmp_path, compare=("facecat", "cdcn"))
    checks = pd.read_csv(tmp_path / CHECKS_NAME)
    assert len(checks) == 5  # the re-run cdcn-jpeg-sev1 replaced, bit_depth added
    assert checks.set_index("id").loc["cdcn-jpeg-sev1", "auc"] == 0.5
    comparison = pd.read_csv(tmp_path / COMPARISON_NAME)
    row = comparison[(comparison["case"] == "jpeg") & (comparison["severity"] == 1)].iloc[0]
    assert row["auc_facecat"] == pytest.approx(0.75)
    assert row["relative_improvement"] == pytest.approx((0.75 - 0.5) / 0.5)
    assert {p.name for p in written} >= {"curve_jpeg.png", "curve_bit_depth.png"}
    assert (tmp_path / "curve_jpeg.png").stat().st_size > 5_000
    summary = pd.read_csv(tmp_path / SUMMARY_NAME).set_index(["detector", "case"])
    assert summary.loc[("cdcn", "jpeg"), "mean_auc_sev1_5"] == pytest.approx(0.5)
    assert summary.loc[("facecat", "jpeg"), "auc_clean"] == pytest.approx(0.95)


def test_curve_axis_names_the_split_it_was_scored_on():
    assert auc_axis_label(pd.DataFrame({"split": ["dev", "dev"]})) == "AUC (dev split)"
    assert auc_axis_label(pd.DataFrame({"split": ["test"]})) == "AUC (test split)"
    assert auc_axis_label(pd.DataFrame({"auc": [0.9]})) == "AUC"


def test_records_of_another_protocol_sit_beside_the_first(tmp_path):
    write_results([_record("cdcn", "jpeg", 1, 0.7)], tmp_path, compare=("facecat", "cdcn"))
    mine = [_record("cdcn", "jpeg", 1, 0.6, protocol="manifest-abc")]
    write_results(mine, tmp_path, compare=("facecat", "cdcn"))
    checks = pd.read_csv(tmp_path / CHECKS_NAME)
    assert sorted(zip(checks["protocol"], checks["auc"], strict=True)) == [
        ("embedded-1", 0.7),
        ("manifest-abc", 0.6),
    ]
    summary = pd.read_csv(tmp_path / SUMMARY_NAME)
    assert summary["mean_auc_sev1_5"].tolist() == [pytest.approx(0.6)]


def test_records_without_a_protocol_column_are_kept_as_unknown():
    old = pd.DataFrame(
        [{k: v for k, v in _record("cdcn", "jpeg", 1, 0.7).items() if k != "protocol"}]
    )
    merged = merge_records(old, [_record("cdcn", "jpeg", 1, 0.6)])
    assert sorted(merged["protocol"]) == ["embedded-1", "unknown"]


def test_unseen_summary_groups_held_out_types_by_family(tmp_path):
    def unseen(detector, case, auc):
        return {
            "protocol": "embedded-1",
            "id": f"{detector}-unseen-{case}",
            "detector": detector,
            "suite": "unseen",
            "case": case,
            "severity": 0,
            "auc": auc,
            "auc_ci_low": auc - 0.1,
            "auc_ci_high": auc + 0.05,
        }

    records = [
        unseen("facecat", "Replay", 0.9),
        unseen("facecat", "Mask_Silicone", 0.7),
        unseen("facecat", "PGD_Dodging", 0.8),
    ]
    written = write_results(records, tmp_path, compare=("facecat", "cdcn"))
    summary = pd.read_csv(tmp_path / UNSEEN_NAME).set_index("family")
    assert summary.loc["presentation", "n_types"] == 2
    assert summary.loc["presentation", "mean_auc"] == pytest.approx(0.8)
    assert summary.loc["presentation", "worst_type"] == "Mask_Silicone"
    assert summary.loc["adversarial", "min_auc"] == pytest.approx(0.8)
    assert (tmp_path / "unseen.png") in written


def test_auc_comparison_needs_both_detectors():
    records = pd.DataFrame([_record("facecat", "jpeg", 0, 0.9)])
    assert auc_comparison(records, "facecat", "cdcn").empty
    with pytest.raises(ValueError, match="two different detectors"):
        auc_comparison(records, "facecat", "facecat")


def test_a_session_of_one_detector_writes_its_results_without_a_comparison(tmp_path):
    records = [_record("mine", "jpeg", severity, 0.9 - 0.1 * severity) for severity in (0, 1)]
    written = write_results(records, tmp_path, compare=None)
    assert {p.name for p in written} == {CHECKS_NAME, SUMMARY_NAME, "curve_jpeg.png"}
    assert not (tmp_path / COMPARISON_NAME).exists()


@pytest.fixture(scope="module")
def attack_setup():
    torch.manual_seed(0)
    recognizer = create_recognizer("dlib")
    images, _, _, _ = bundled_test_faces(2)
    detector = create_detector("facecat-tiny", unet_weights="random", text_guided=False)
    with torch.no_grad():
        references = recognizer(images.flip(0))  # impersonate each other
    return recognizer, images, detector, references


def test_adaptive_attacker_raises_p_real_within_budget(attack_setup):
    recognizer, images, detector, references = attack_setup
    score = differentiable_scores(detector)
    modes = ["impersonation", "dodging"]

    def p_real(x):
        return score(torch.nn.functional.interpolate(x, size=32, mode="bilinear"))

    assert torch.equal(
        adaptive_attack(p_real, recognizer, images, references, modes, eps=0), images
    )
    eps = 8 / 255
    quick = AttackSettings(steps=4, eot_samples=1, restarts=1)
    attacked = adaptive_attack(
        p_real, recognizer, images, references, modes, eps=eps, settings=quick
    )
    assert (attacked - images).abs().max() <= eps + 1e-6
    assert attacked.min() >= 0 and attacked.max() <= 1
    with torch.no_grad():
        assert p_real(attacked).mean() > p_real(images).mean()
    with pytest.raises(ValueError, match="eps"):
        adaptive_attack(p_real, recognizer, images, references, modes, eps=-1)


def _brightness_detector(x: torch.Tensor) -> torch.Tensor:
    """A tiny differentiable detector: P(real) rises steeply with the mean brightness."""
    return torch.sigmoid(200 * (x.mean(dim=(1, 2, 3)) - 0.7))


def test_adaptive_attacker_gains_nothing_against_a_detector_that_ignores_its_input(
    attack_setup,
):
    recognizer, images, _, references = attack_setup

    def constant(x):
        return 0.3 + 0 * x.sum(dim=(1, 2, 3))

    settings = AttackSettings(steps=20, eot_samples=2, restarts=2)
    attacked = adaptive_attack(
        constant,
        recognizer,
        images,
        references,
        ["dodging"] * 2,
        eps=16 / 255,
        threshold=0.5,
        settings=settings,
    )
    assert (constant(attacked) < 0.5).all()  # every face is still detected


def test_adaptive_attacker_drives_a_tiny_detector_to_zero_detection(attack_setup):
    recognizer, images, _, _ = attack_setup
    with torch.no_grad():
        references = recognizer(images)  # dodging: stay unrecognised as oneself
        assert (_brightness_detector(images) < 0.5).all()
    settings = AttackSettings(steps=30, eot_samples=2, restarts=1)
    attacked = adaptive_attack(
        _brightness_detector,
        recognizer,
        images,
        references,
        ["dodging"] * 2,
        eps=1.0,
        threshold=0.5,
        settings=settings,
    )
    with torch.no_grad():
        assert (_brightness_detector(attacked) >= 0.5).all()  # detection rate 0
        assert not recognizer.same_identity(recognizer(attacked), references).any()


def test_attack_settings_refuse_a_weaker_than_possible_attacker():
    with pytest.raises(ValueError, match="steps, eot_samples and restarts must be >= 1"):
        AttackSettings(steps=0)
    with pytest.raises(ValueError, match="first_step"):
        AttackSettings(first_step=1.5)
    assert AttackSettings().describe() == "100 steps x 8 EOT, 2 restarts"


def test_transfer_table_lists_own_and_transferred_detection():
    base = {"suite": "adaptive", "case": "adaptive", "fr_success_kept": 1.0}
    checks = pd.DataFrame(
        [
            {
                **base,
                "detector": "cdcn",
                "severity": 4,
                "detection_rate": 0.3,
                "transfer_detection_facecat": 0.9,
            },
            {
                **base,
                "detector": "facecat",
                "severity": 4,
                "detection_rate": 0.0,
                "transfer_detection_cdcn": 0.8,
            },
        ]
    )
    table = transfer_table(checks).set_index(["crafted_against", "scored_by"])
    assert table.loc[("cdcn", "facecat"), "detection_rate"] == 0.9
    assert table.loc[("facecat", "facecat"), "detection_rate"] == 0.0
    assert len(table) == 4


def test_detector_without_gradients_is_refused():
    with pytest.raises(TypeError, match="differentiable_scores"):
        differentiable_scores(torch.nn.Identity())


def test_harness_scores_only_the_dev_or_the_test_split() -> None:
    with pytest.raises(ValueError, match="split must be 'test' or 'dev', got 'train'"):
        Harness(None, Criteria([]), split="train")


def test_hold_outs_reuse_cached_features_and_score_as_the_images(lfw_manifest, tmp_path, caplog):
    manifest = read_manifest(lfw_manifest)
    pool = DetectorPool(
        manifest, tmp_path / "runs", tmp_path / "features", device=torch.device("cpu"), epochs=5
    )
    pool.detector("facecat")  # trained on every type: extracts the train and dev features
    with caplog.at_level(logging.INFO, logger="facecat.training.cache"):
        held_out = pool.detector("facecat", held_out="Replay")
    # The dev split is assembled from the all-types run's rows, and so are the training
    # images; only their degraded copies whose level is drawn anew for the shorter training
    # list are extracted.
    split = pool.held_out_manifest("Replay").split
    reused = re.search(r"\((\d+) from cached rows", caplog.text)
    assert reused is not None and int(reused[1]) >= len(split("train")), caplog.text
    assert f"{len(split('dev'))} images assembled from cached rows" in caplog.text
    test = pool.held_out_manifest("Replay").split("test")
    assert set(test.attack_types) == {"Live", "Replay"}
    cached = pool.file_scores(held_out, test)
    direct = score_files(held_out, test.paths, size=held_out.image_size)
    np.testing.assert_allclose(cached, direct, rtol=1e-4, atol=1e-5)


def test_hold_out_schedule_applies_to_cdcn_hold_outs_only(lfw_manifest, tmp_path):
    manifest = read_manifest(lfw_manifest)
    pool = DetectorPool(manifest, tmp_path, tmp_path, device=torch.device("cpu"))
    assert pool.training_epochs("cdcn", "Paper") == HOLD_OUT_EPOCHS["cdcn"] < 8
    assert pool.training_epochs("cdcn", None) is None  # the config's 8 epochs
    assert pool.training_epochs("facecat", "Paper") is None
    override = DetectorPool(manifest, tmp_path, tmp_path, device=torch.device("cpu"), epochs=3)
    assert override.training_epochs("cdcn", "Paper") == 3
