"""SiW-Mv2 reader on a tiny fake data set laid out like the real one."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecat.datasets.manifest import BONA_FIDE, ManifestError, read_manifest
from facecat.datasets.siw_mv2 import (
    SIW_MV2_SHORT_NAMES,
    SIW_MV2_TYPES,
    parse_video_id,
    read_siw_mv2,
    write_siw_mv2_manifest,
)

FRAMES = 3
TRAIN_LIVE = [f"Live_{i}" for i in range(1, 11)]
TRAIN_SPOOF = [f"Makeup_Co_{i}" for i in range(1, 6)] + [f"Paper_{i}" for i in range(1, 6)]
TEST_LIVE = ["Live_20", "Live_21"]
TEST_SPOOF = ["Makeup_Co_9", "Paper_9", "Partial_Paperglass_100"]


def _video(folder: Path, frames: int = FRAMES) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(str(folder)))
    for k in range(1, frames + 1):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{k}.png")
        np.save(folder / f"{k}.npy", np.zeros((5, 2)))  # landmark files are ignored


def _write(path: Path, names: list[str]) -> Path:
    path.write_text("\n".join(names) + "\n\n")
    return path


@pytest.fixture
def siw(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    """Fake SiW-Mv2 crops in the FaceCat layout plus the four protocol-I list files."""
    root = tmp_path / "siw"
    for name in TRAIN_LIVE + TEST_LIVE:
        _video(root / "Live" / name)
    for name in TRAIN_SPOOF + TEST_SPOOF:
        _video(root / "Spoof" / parse_video_id(name)[0] / name)
    lists = tmp_path / "PROTOCOL"
    lists.mkdir()
    train = [
        _write(lists / "trainlist_all.txt", TRAIN_SPOOF + TRAIN_SPOOF[:3]),  # repeats balance
        _write(lists / "trainlist_live.txt", TRAIN_LIVE),
    ]
    test = [
        _write(lists / "testlist_all.txt", TEST_SPOOF),
        _write(lists / "testlist_live.txt", TEST_LIVE),
    ]
    return root, train, test


# --------------------------------------------------------------------------- parse_video_id


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Makeup_Co_5", ("Makeup_Co", 5)),
        ("Live_1", ("Live", 1)),
        ("Live_0", ("Live", 0)),
        ("Partial_Paperglass_100", ("Partial_Paperglass", 100)),
        ("Paper_82\n", ("Paper", 82)),
    ],
)
def test_parse_video_id(name: str, expected: tuple[str, int]) -> None:
    assert parse_video_id(name) == expected


@pytest.mark.parametrize("name", ["Makeup_Cosmetic_3", "Live", "Paper_x", "", "Live_1 Live_2"])
def test_parse_video_id_exception(name: str) -> None:
    with pytest.raises(ManifestError, match=r"not a SiW-Mv2 video id.*Mask_Silicone"):
        parse_video_id(name)


def test_every_type_parses() -> None:
    assert len(SIW_MV2_TYPES) == 14
    assert set(SIW_MV2_SHORT_NAMES.values()) == set(SIW_MV2_TYPES)
    for attack_type in SIW_MV2_TYPES:
        assert parse_video_id(f"{attack_type}_7") == (attack_type, 7)


# --------------------------------------------------------------------------- read_siw_mv2


def test_read_cardinality(siw: tuple[Path, list[Path], list[Path]]) -> None:
    root, train, test = siw
    frame = read_siw_mv2(root, train, test, dev_fraction=0.2, seed=0)
    assert list(frame.columns) == ["path", "label", "attack_type", "split", "subject"]
    videos = frame.groupby("subject")
    assert videos.ngroups == len(TRAIN_LIVE + TRAIN_SPOOF + TEST_LIVE + TEST_SPOOF)
    assert (videos.size() == FRAMES).all()  # repeated list entries read once
    assert videos["split"].nunique().max() == 1  # every video in one split
    split_of = videos["split"].first()
    assert set(split_of[TEST_LIVE + TEST_SPOOF]) == {"test"}
    assert set(split_of[TRAIN_LIVE + TRAIN_SPOOF]) == {"train", "dev"}
    type_of = videos["attack_type"].first()
    dev = split_of[split_of == "dev"].index
    # 20% of each type's training videos: 2 of 10 live, 1 of 5 Makeup_Co, 1 of 5 Paper
    assert sorted(type_of[dev]) == ["Live", "Live", "Makeup_Co", "Paper"]
    assert ((frame["label"] == 1) == (frame["attack_type"] == BONA_FIDE)).all()
    assert (root / frame["path"].iloc[0]).is_file()
    assert frame["path"].iloc[0] == "Spoof/Makeup_Co/Makeup_Co_1/1.png"


def test_read_seeded_dev_split(siw: tuple[Path, list[Path], list[Path]]) -> None:
    root, train, test = siw

    def dev_videos(seed: int) -> set[str]:
        frame = read_siw_mv2(root, train, test, seed=seed)
        return set(frame.loc[frame["split"] == "dev", "subject"])

    assert dev_videos(0) == dev_videos(0)
    assert len({frozenset(dev_videos(s)) for s in range(5)}) > 1
    frame = read_siw_mv2(root, train, test, dev_fraction=0.0)
    assert set(frame["split"]) == {"train", "test"}


def test_read_frames_per_video(siw: tuple[Path, list[Path], list[Path]]) -> None:
    root, train, test = siw
    frame = read_siw_mv2(root, train, test, frames_per_video=2)
    assert (frame.groupby("subject").size() == 2).all()
    live_1 = frame.loc[frame["subject"] == "Live_1", "path"].tolist()
    assert live_1 == ["Live/Live_1/1.png", f"Live/Live_1/{FRAMES}.png"]


def test_read_natural_frame_order(tmp_path: Path) -> None:
    _video(tmp_path / "Live" / "Live_1", frames=12)
    _video(tmp_path / "Live" / "Live_2", frames=1)
    frame = read_siw_mv2(
        tmp_path, _write(tmp_path / "a.txt", ["Live_1"]), _write(tmp_path / "b.txt", ["Live_2"])
    )
    names = [Path(p).name for p in frame.loc[frame["subject"] == "Live_1", "path"]]
    assert names == [f"{k}.png" for k in range(1, 13)]


def test_read_official_flat_layout_and_mixed_list(tmp_path: Path) -> None:
    for name in ["Live_1", "Live_2"]:
        _video(tmp_path / "Live" / name)
    for name in ["Replay_63", "Replay_64"]:
        _video(tmp_path / "Spoof" / name)  # official preprocessing: Spoof/<id>/
    train = _write(tmp_path / "train_C_race.txt", ["Live_1", "Replay_63", "Replay_63"])
    test = _write(tmp_path / "test_C_race.txt", ["Live_2", "Replay_64"])
    frame = read_siw_mv2(tmp_path, train, test, dev_fraction=0.5)
    assert frame.groupby("subject")["split"].first().to_dict() == {
        "Live_1": "train",  # one video per type always stays in train
        "Live_2": "test",
        "Replay_63": "train",
        "Replay_64": "test",
    }
    assert set(frame.loc[frame["label"] == 0, "attack_type"]) == {"Replay"}


# --------------------------------------------------------------------------- errors


def test_missing_list_file(siw: tuple[Path, list[Path], list[Path]], tmp_path: Path) -> None:
    root, train, _ = siw
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        read_siw_mv2(root, train, tmp_path / "nope.txt")


def test_unknown_type_names_file_and_line(
    siw: tuple[Path, list[Path], list[Path]], tmp_path: Path
) -> None:
    root, train, _ = siw
    bad = _write(tmp_path / "bad.txt", ["Live_20", "", "Mask_Latex_3"])
    with pytest.raises(ManifestError, match=r"bad\.txt line 3: 'Mask_Latex_3' is not"):
        read_siw_mv2(root, train, bad)


def test_empty_video_folder(siw: tuple[Path, list[Path], list[Path]], tmp_path: Path) -> None:
    root, train, _ = siw
    (root / "Live" / "Live_30").mkdir()
    (root / "Live" / "Live_30" / "1.npy").write_bytes(b"")
    test = _write(tmp_path / "t.txt", ["Live_20", "Live_30"])
    with pytest.raises(ManifestError, match=r"t\.txt line 2: video folder .*Live_30 holds no"):
        read_siw_mv2(root, train, test)


def test_missing_video_folder(
    siw: tuple[Path, list[Path], list[Path]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, train, _ = siw
    test = _write(tmp_path / "t.txt", ["Live_20", "Mask_Silicone_18"])
    with pytest.raises(ManifestError, match=r"t\.txt line 2: no folder for video 'Mask_Silicone"):
        read_siw_mv2(root, train, test)
    with caplog.at_level(logging.WARNING, logger="facecat.datasets.siw_mv2"):
        frame = read_siw_mv2(root, train, test, skip_missing=True)
    assert "Mask_Silicone_18" in caplog.text
    assert set(frame.loc[frame["split"] == "test", "subject"]) == {"Live_20"}


def test_video_in_train_and_test(siw: tuple[Path, list[Path], list[Path]], tmp_path: Path) -> None:
    root, train, _ = siw
    test = _write(tmp_path / "t.txt", ["Paper_3"])
    with pytest.raises(ManifestError, match=r"t\.txt line 1: video 'Paper_3' is also a training"):
        read_siw_mv2(root, train, test)


def test_bad_arguments(siw: tuple[Path, list[Path], list[Path]]) -> None:
    root, train, test = siw
    with pytest.raises(ValueError, match="dev_fraction"):
        read_siw_mv2(root, train, test, dev_fraction=1.0)
    with pytest.raises(ValueError, match="frames_per_video"):
        read_siw_mv2(root, train, test, frames_per_video=0)
    with pytest.raises(FileNotFoundError, match="root folder"):
        read_siw_mv2(root / "absent", train, test)


# --------------------------------------------------------------------------- write


def test_write_manifest_round_trip(
    siw: tuple[Path, list[Path], list[Path]], tmp_path: Path
) -> None:
    root, train, test = siw
    out = write_siw_mv2_manifest(root, train, test, tmp_path / "out" / "siw.csv", seed=1)
    manifest = read_manifest(out, allow_outside_root=True)
    assert manifest.frame["path"].iloc[0] == "../siw/Spoof/Makeup_Co/Makeup_Co_1/1.png"
    out = write_siw_mv2_manifest(root, train, test, tmp_path / "siw.csv", seed=1)
    manifest = read_manifest(out)  # checks every file and subject disjointness
    assert len(manifest) == FRAMES * len(TRAIN_LIVE + TRAIN_SPOOF + TEST_LIVE + TEST_SPOOF)
    assert manifest.frame["path"].iloc[0] == "siw/Spoof/Makeup_Co/Makeup_Co_1/1.png"
    assert len(manifest.split("dev")) > 0
    types = ["Live", "Makeup_Co", "Paper", "Partial_Paperglass"]
    assert sorted(set(manifest.attack_types)) == types
