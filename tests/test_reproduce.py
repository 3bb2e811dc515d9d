"""The main job end to end on a small bona fide set: tables, plots, warm-cache rerun."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import read_manifest, write_manifest
from facecat.datasets.protocol import ADVERSARIAL_TYPES, PA_TYPES
from facecat.experiments.reproduce import (
    BY_SOURCE_NAME,
    COMPARISON_NAME,
    PER_TYPE_NAME,
    SCORES_NAME,
    run_main_job,
)
from facecat.experiments.variants import Variant, train_variant
from facecat.training.loop import CHECKPOINT_NAME

VARIANTS = (
    Variant("FaceCat", "facecat-tiny"),
    Variant("FaceCat w/o TG", "facecat-tiny", overrides={"text_guided": False}),
    Variant("CDCN", "cdcn", overrides={"image_size": 32, "width": 0.25}),
)


@pytest.fixture(scope="module")
def small_bona_fide(tmp_path_factory):
    """14 DCGAN faces per split (every adversarial type once per split)."""
    source = read_manifest(bundled_manifest())
    dcgan = source.frame[source.frame["source"] == "dcgan"]
    frame = pd.concat([dcgan[dcgan["split"] == s].head(14) for s in ("train", "dev", "test")])
    folder = tmp_path_factory.mktemp("bona_fide")
    for path in frame["path"]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.root / path, folder / path)
    write_manifest(frame.reset_index(drop=True), folder / "manifest.csv")
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def main_job(small_bona_fide, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("results")
    table = run_main_job(
        out,
        cache_dir=cache,
        bona_fide=small_bona_fide,
        variants=VARIANTS,
        epochs=2,
        n_boot=20,
        progress=False,
    )
    return table, out, cache


def test_comparison_table(main_job):
    table, out, _ = main_job
    assert list(table["detector"]) == [v.label for v in VARIANTS]
    on_disk = pd.read_csv(out / COMPARISON_NAME)
    assert list(on_disk["detector"]) == list(table["detector"])
    for column in ("apcer_max", "bpcer", "acer", "eer", "auc", "tdr_at_fdr", "dev_eer"):
        assert on_disk[column].between(0, 1).all(), column
    for column in ("apcer_max", "bpcer", "acer", "eer", "auc", "tdr_at_fdr"):
        assert (on_disk[f"{column}_ci_low"] <= on_disk[f"{column}_ci_high"]).all(), column
    assert (on_disk["threshold_source"] == "dev-eer").all()


def test_per_type_and_scores_cover_all_28_types(main_job):
    _, out, _ = main_job
    per_type = pd.read_csv(out / PER_TYPE_NAME)
    assert set(per_type["attack_type"]) == set(PA_TYPES + ADVERSARIAL_TYPES)
    scores = pd.read_csv(out / SCORES_NAME)
    assert set(scores["split"]) == {"dev", "test"}
    assert scores["score"].between(0, 1).all()
    assert not scores["path"].str.startswith("/").any()
    pngs = ("table4", "roc", "det", "per_type_apcer")
    for name in (f"embedded_{png}.png" for png in pngs):
        assert (out / name).stat().st_size > 10_000


def test_bpcer_by_source_counts_the_rejected_bona_fide_faces(main_job):
    table, out, _ = main_job
    by_source = pd.read_csv(out / BY_SOURCE_NAME)
    scores = pd.read_csv(out / SCORES_NAME)
    assert set(by_source["detector"]) == set(table["detector"])
    assert set(by_source["source"]) == {"dcgan"}
    assert set(by_source["split"]) == {"dev", "test"}
    for row in by_source.itertuples():
        threshold = table.set_index("detector").loc[row.detector, "threshold"]
        live = scores[
            (scores["detector"] == row.detector)
            & (scores["split"] == row.split)
            & (scores["label"] == 1)
        ]
        assert row.n_bona_fide == len(live) == 14
        assert row.rejected == int((live["score"] < threshold).sum())
        assert row.bpcer == pytest.approx(row.rejected / row.n_bona_fide)


def test_rerun_with_warm_caches_gives_the_same_table(main_job, small_bona_fide):
    table, _, cache = main_job
    out = cache / "again"
    again = run_main_job(
        out,
        cache_dir=cache,
        bona_fide=small_bona_fide,
        variants=VARIANTS,
        epochs=2,
        n_boot=20,
        progress=False,
    )
    pd.testing.assert_frame_equal(again, table)


def test_stale_cached_run_is_trained_again(lfw_manifest, tmp_path):
    manifest = read_manifest(lfw_manifest)
    variant = Variant("FaceCat", "facecat-tiny")
    run_dir = tmp_path / "run"
    first = train_variant(variant, manifest, run_dir, epochs=1, progress=False)
    stamp = (run_dir / CHECKPOINT_NAME).stat().st_mtime_ns
    # the same run folder, other inputs (another seed): the old checkpoint must not be reused
    again = train_variant(variant, manifest, run_dir, epochs=1, seed=1, progress=False)
    assert again == first
    assert (run_dir / CHECKPOINT_NAME).stat().st_mtime_ns != stamp
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [1]
