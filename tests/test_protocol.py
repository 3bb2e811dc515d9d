"""The embedded protocol: taxonomy, deterministic cached build, hold-out protocols, CLI."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facecat.cli import main
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import BONA_FIDE, read_manifest, write_manifest
from facecat.datasets.presentation_attacks import PA_TYPES
from facecat.datasets.protocol import (
    ADVERSARIAL_TYPES,
    ATTACK_TYPES,
    attack_family,
    build_embedded,
    counts,
    leave_one_type_out,
    protocol_p2,
    protocol_p3,
)


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    return build_embedded(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def small_bona_fide(tmp_path):
    """A 60-face copy of the bundled set (20 per split) in its own folder."""
    source = read_manifest(bundled_manifest())
    frame = pd.concat(
        [source.frame[source.frame["split"] == s].head(20) for s in ("train", "dev", "test")]
    )
    folder = tmp_path / "bona_fide"
    for path in frame["path"]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.root / path, folder / path)
    write_manifest(frame.reset_index(drop=True), folder / "manifest.csv")
    return folder / "manifest.csv"


def test_taxonomy_has_28_types():
    assert len(ATTACK_TYPES) == 28 == len(set(ATTACK_TYPES))
    assert len(PA_TYPES) == 14 and len(ADVERSARIAL_TYPES) == 14
    assert attack_family("Mask_Silicone") == "presentation"
    assert attack_family("PGD_Impersonation") == "adversarial"
    assert attack_family(BONA_FIDE) == "bona fide"
    with pytest.raises(ValueError, match="unknown attack type"):
        attack_family("Deepfake")


def test_every_split_has_every_presentation_attack_type(protocol):
    table = counts(protocol.manifest)
    for attack_type in PA_TYPES:
        assert (table.loc[attack_type, ["train", "dev", "test"]] > 0).all(), attack_type
    assert table.loc[BONA_FIDE, "total"] == len(read_manifest(bundled_manifest()))
    assert table.loc[list(PA_TYPES), "total"].sum() == table.loc[BONA_FIDE, "total"]


def test_attacks_keep_subject_and_split(protocol):
    frame = protocol.manifest.frame
    assert frame.groupby("subject")["split"].nunique().max() == 1
    assert set(frame.loc[frame["label"] == 0, "subject"]) <= set(
        frame.loc[frame["label"] == 1, "subject"]
    )


def test_build_is_deterministic_and_reused(small_bona_fide, tmp_path, caplog):
    first = build_embedded(tmp_path / "a", bona_fide=small_bona_fide, seed=3)
    second = build_embedded(tmp_path / "b", bona_fide=small_bona_fide, seed=3)
    assert first.root.name == second.root.name
    pd.testing.assert_frame_equal(first.manifest.frame, second.manifest.frame)
    for a, b in zip(first.manifest.paths, second.manifest.paths, strict=True):
        assert a.read_bytes() == b.read_bytes()
    with caplog.at_level(logging.INFO, logger="facecat.datasets.protocol"):
        again = build_embedded(tmp_path / "a", bona_fide=small_bona_fide, seed=3)
    assert "reusing" in caplog.text
    assert again.root == first.root


def test_changed_input_or_seed_rebuilds(small_bona_fide, tmp_path):
    base = build_embedded(tmp_path, bona_fide=small_bona_fide, seed=0)
    other_seed = build_embedded(tmp_path, bona_fide=small_bona_fide, seed=1)
    assert other_seed.root != base.root
    image = small_bona_fide.parent / read_manifest(small_bona_fide).frame["path"].iloc[0]
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(image)
    changed = build_embedded(tmp_path, bona_fide=small_bona_fide, seed=0)
    assert changed.root != base.root


def test_failed_build_leaves_previous_build_intact(small_bona_fide, tmp_path):
    good = build_embedded(tmp_path, bona_fide=small_bona_fide)
    before = (good.root / "manifest.csv").read_bytes()

    def broken(rows, root, seed):
        raise RuntimeError("adversarial generator failed")

    with pytest.raises(RuntimeError, match="adversarial generator failed"):
        build_embedded(tmp_path, bona_fide=small_bona_fide, adversarial={"broken": broken})
    assert (good.root / "manifest.csv").read_bytes() == before
    assert not list(tmp_path.glob(".building-*"))
    assert build_embedded(tmp_path, bona_fide=small_bona_fide).root == good.root


def test_leave_one_type_out(protocol):
    held = protocol.p2("Mask_Silicone")
    frame = held.frame
    assert "Mask_Silicone" not in set(frame.loc[frame["split"] != "test", "attack_type"])
    assert set(frame.loc[frame["split"] == "test", "attack_type"]) == {BONA_FIDE, "Mask_Silicone"}
    assert len(frame[frame["split"] == "train"]) < len(protocol.manifest.split("train"))


def test_exception_protocol_arguments(protocol):
    with pytest.raises(ValueError, match="presentation-attack type"):
        protocol_p2(protocol.manifest, "PGD_Dodging")
    with pytest.raises(ValueError, match="adversarial type"):
        protocol_p3(protocol.manifest, "Replay")
    with pytest.raises(ValueError, match="has no samples"):
        leave_one_type_out(protocol.manifest, "PGD_Dodging")


def test_cli_data_stats_and_show(protocol, tmp_path, capsys):
    args = ["data", "stats", "--no-adversarial", "--cache-dir", str(protocol.root.parent)]
    assert main(args) == 0
    out = capsys.readouterr().out
    for attack_type in PA_TYPES:
        assert attack_type in out
    sheet = tmp_path / "sheet.png"
    assert main(["data", "show", "--out", str(sheet), "--faces", "2"]) == 0
    assert Image.open(sheet).size[0] > Image.open(sheet).size[1] > 100
