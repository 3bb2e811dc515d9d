"""Reader for the SiW-Mv2 face anti-spoofing data set (Guo et al., ECCV 2022).

SiW-Mv2 ships raw videos; its protocol lists name one **video stem** per line, e.g.
``Live_1`` or ``Makeup_Co_5`` (``<Type>_<index>``), blank lines ignored. The official lists
(``trainlist_all.txt`` / ``testlist_all.txt`` for spoof videos, ``trainlist_live.txt`` /
``testlist_live.txt`` for live ones, and mixed lists such as ``train_C_race.txt``) repeat
some stems to balance classes; repeats are read once here.

Each listed video is a folder of face-cropped frames (``*.png`` / ``*.jpg``; landmark
``*.npy`` files beside them are ignored), found in one of two layouts below ``root``::

    Live/<Live_N>/<frame>.png                      both layouts
    Spoof/<Type>/<Type_N>/<frame>.png              FaceCat authors' crops (type = stem prefix)
    Spoof/<Type_N>/<frame>.png                     official preprocessing.py output

SiW-Mv2 publishes **no subject ids**: the list entries identify videos, not people (the same
person appears in several videos, live and spoof). The manifest's ``subject`` column is
therefore the video id, and the train / dev / test separation is by video only; it cannot
guarantee that no person is shared between splits.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facecat.datasets.manifest import BONA_FIDE, Manifest, ManifestError, write_manifest
from facecat.datasets.presentation_attacks import PA_TYPES

__all__ = [
    "FRAME_SUFFIXES",
    "SIW_MV2_SHORT_NAMES",
    "SIW_MV2_TYPES",
    "parse_video_id",
    "read_siw_mv2",
    "write_siw_mv2_manifest",
]

logger = logging.getLogger(__name__)

#: The 14 SiW-Mv2 presentation-attack types, as spelled in video stems.
SIW_MV2_TYPES: tuple[str, ...] = PA_TYPES

#: Short names the authors' code uses for the unseen type of protocol II (``--unknown Co``).
SIW_MV2_SHORT_NAMES: dict[str, str] = {
    "Co": "Makeup_Co",
    "Im": "Makeup_Im",
    "Ob": "Makeup_Ob",
    "Half": "Mask_Half",
    "Mann": "Mask_Mann",
    "Paper": "Mask_Paper",
    "Sil": "Mask_Silicone",
    "Trans": "Mask_Trans",
    "Print": "Paper",
    "Eye": "Partial_Eye",
    "Funnyeye": "Partial_Funnyeye",
    "Mouth": "Partial_Mouth",
    "Paperglass": "Partial_Paperglass",
    "Replay": "Replay",
}

#: File suffixes read as frames (case-insensitive).
FRAME_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")

_KNOWN = frozenset((BONA_FIDE, *SIW_MV2_TYPES))
_ID_PATTERN = re.compile(r"^(?P<type>[A-Za-z_]+)_(?P<index>\d+)$")

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class _Entry:
    """One listed video and where it was listed."""

    video: str
    attack_type: str
    source: str  # "<list file> line <n>"


def parse_video_id(name: str) -> tuple[str, int]:
    """Split a SiW-Mv2 video id ``<Type>_<index>`` into its type and index.

    Args:
        name: A video stem such as ``"Makeup_Co_5"`` or ``"Live_1"``.

    Returns:
        ``(attack_type, index)``, the type being ``"Live"`` or one of :data:`SIW_MV2_TYPES`.

    Raises:
        ManifestError: If the name is not ``<Type>_<index>`` or the type is unknown.
    """
    match = _ID_PATTERN.match(name.strip())
    if match is None or match["type"] not in _KNOWN:
        raise ManifestError(
            f"{name!r} is not a SiW-Mv2 video id '<Type>_<index>' with Type one of "
            f"{[BONA_FIDE, *SIW_MV2_TYPES]}"
        )
    return match["type"], int(match["index"])


def read_siw_mv2(
    root: PathLike,
    train_list: PathLike | Sequence[PathLike],
    test_list: PathLike | Sequence[PathLike],
    *,
    dev_fraction: float = 0.2,
    frames_per_video: int | None = None,
    seed: int = 0,
    skip_missing: bool = False,
) -> pd.DataFrame:
    """Read SiW-Mv2 protocol lists and frame folders into a manifest table.

    The dev split is carved out of the train lists by video, separately per attack type
    (``round(dev_fraction * n)`` of each type's ``n`` videos, at least one video of each type
    staying in train), with a seeded shuffle. ``subject`` is the video id: SiW-Mv2 has no
    subject ids, so splits are video-disjoint but not guaranteed person-disjoint.

    Args:
        root: Data set folder holding ``Live/`` and ``Spoof/`` (layouts in the module doc).
        train_list: Protocol list file(s) of the training videos (e.g. ``trainlist_all.txt``
            and ``trainlist_live.txt``).
        test_list: Protocol list file(s) of the test videos.
        dev_fraction: Share of each type's training videos moved to the dev split, in [0, 1).
        frames_per_video: Keep this many evenly spaced frames per video (first and last
            included); None keeps all.
        seed: Seed of the dev split.
        skip_missing: Skip listed videos whose folder does not exist (with one warning)
            instead of raising; the public release lacks a few videos the lists name.

    Returns:
        DataFrame with columns ``path`` (relative to ``root``, POSIX), ``label`` (1 = live),
        ``attack_type``, ``split``, ``subject``, one row per frame, train then test rows in
        list order.

    Raises:
        FileNotFoundError: If ``root`` or a list file does not exist.
        ManifestError: Naming list file and line: an unknown video id, a video listed for
            both train and test, a missing folder (unless ``skip_missing``), a folder
            without frames.
        ValueError: If ``dev_fraction`` or ``frames_per_video`` is out of range.
    """
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must lie in [0, 1), got {dev_fraction!r}")
    if frames_per_video is not None and frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1 or None, got {frames_per_video!r}")
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise FileNotFoundError(f"SiW-Mv2 root folder not found: {root}")
    train = _read_lists(train_list)
    test = _read_lists(test_list)
    in_train = {e.video: e for e in train}
    for entry in test:
        if entry.video in in_train:
            raise ManifestError(
                f"{entry.source}: video {entry.video!r} is also a training video "
                f"({in_train[entry.video].source}); train and test lists must not share videos"
            )
    splits = _carve_dev(train, dev_fraction, seed)
    splits.update({e.video: "test" for e in test})

    rows: list[tuple[str, int, str, str, str]] = []
    missing: list[str] = []
    for entry in (*train, *test):
        folder = _find_folder(root, entry, missing if skip_missing else None)
        if folder is None:
            continue
        frames = _frames(folder, entry)
        if frames_per_video is not None and len(frames) > frames_per_video:
            keep = np.linspace(0, len(frames) - 1, frames_per_video).round().astype(int)
            frames = [frames[i] for i in keep]
        label = int(entry.attack_type == BONA_FIDE)
        split = splits[entry.video]
        rows.extend(
            (f.relative_to(root).as_posix(), label, entry.attack_type, split, entry.video)
            for f in frames
        )
    if missing:
        listed = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        logger.warning("skipped %d listed video(s) without a folder: %s", len(missing), listed)
    frame = pd.DataFrame(rows, columns=["path", "label", "attack_type", "split", "subject"])
    logger.info(
        "SiW-Mv2 at %s: %d frames from %d videos; frames per split %s",
        root,
        len(frame),
        frame["subject"].nunique(),
        frame["split"].value_counts().to_dict(),
    )
    return frame


def write_siw_mv2_manifest(
    root: PathLike,
    train_list: PathLike | Sequence[PathLike],
    test_list: PathLike | Sequence[PathLike],
    out_csv: PathLike,
    *,
    dev_fraction: float = 0.2,
    frames_per_video: int | None = None,
    seed: int = 0,
    skip_missing: bool = False,
) -> Path:
    """Write a facecat manifest CSV for SiW-Mv2 (image paths relative to the CSV's folder).

    Args:
        root: Data set folder, as in :func:`read_siw_mv2`.
        train_list: Protocol list file(s) of the training videos.
        test_list: Protocol list file(s) of the test videos.
        out_csv: Destination CSV; its folder is created if needed.
        dev_fraction: As in :func:`read_siw_mv2`.
        frames_per_video: As in :func:`read_siw_mv2`.
        seed: As in :func:`read_siw_mv2`.
        skip_missing: As in :func:`read_siw_mv2`.

    Returns:
        The absolute path of the written CSV.

    Raises:
        FileNotFoundError: As :func:`read_siw_mv2`.
        ManifestError: As :func:`read_siw_mv2`, or if the listed videos yield no frames.
    """
    frame = read_siw_mv2(
        root,
        train_list,
        test_list,
        dev_fraction=dev_fraction,
        frames_per_video=frames_per_video,
        seed=seed,
        skip_missing=skip_missing,
    )
    manifest = Manifest.from_frame(frame, root, check_files=False, allow_outside_root=True)
    out_csv = Path(os.path.abspath(out_csv))
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, out_csv)
    logger.info("wrote %d SiW-Mv2 rows to %s", len(manifest), out_csv)
    return out_csv


# --------------------------------------------------------------------------- helpers


def _read_lists(lists: PathLike | Sequence[PathLike]) -> list[_Entry]:
    """Parse list files into unique entries (first listing kept, repeats dropped)."""
    files = [lists] if isinstance(lists, str | os.PathLike) else list(lists)
    if not files:
        raise ValueError("no protocol list file given")
    entries: dict[str, _Entry] = {}
    repeats = 0
    for file in files:
        path = Path(os.path.abspath(file))
        if not path.is_file():
            raise FileNotFoundError(f"SiW-Mv2 protocol list not found: {path}")
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        for number, line in enumerate(lines, start=1):
            name = line.strip()
            if not name:
                continue
            source = f"{path} line {number}"
            try:
                attack_type, _ = parse_video_id(name)
            except ManifestError as error:
                raise ManifestError(f"{source}: {error}") from None
            if name in entries:
                repeats += 1
            else:
                entries[name] = _Entry(name, attack_type, source)
    if repeats:
        logger.info("%d repeated list entries read once (lists repeat videos to balance)", repeats)
    return list(entries.values())


def _carve_dev(train: list[_Entry], dev_fraction: float, seed: int) -> dict[str, str]:
    """Map each training video to ``"train"`` or ``"dev"``, stratified by attack type."""
    rng = np.random.default_rng(seed)
    splits = {e.video: "train" for e in train}
    by_type: dict[str, list[str]] = {}
    for entry in train:
        by_type.setdefault(entry.attack_type, []).append(entry.video)
    for attack_type in sorted(by_type):
        videos = by_type[attack_type]
        n_dev = min(round(dev_fraction * len(videos)), len(videos) - 1)
        for k in rng.permutation(len(videos))[:n_dev]:
            splits[videos[k]] = "dev"
    if dev_fraction > 0 and "dev" not in splits.values():
        logger.warning("dev_fraction=%g left no video for the dev split (too few)", dev_fraction)
    return splits


def _find_folder(root: Path, entry: _Entry, missing: list[str] | None) -> Path | None:
    """The frame folder of one video; None (noted in ``missing``) or raise if absent."""
    if entry.attack_type == BONA_FIDE:
        candidates = [root / "Live" / entry.video]
    else:
        candidates = [
            root / "Spoof" / entry.attack_type / entry.video,
            root / "Spoof" / entry.video,
        ]
    for folder in candidates:
        if folder.is_dir():
            return folder
    if missing is not None:
        missing.append(entry.video)
        return None
    tried = " or ".join(str(c) for c in candidates)
    raise ManifestError(
        f"{entry.source}: no folder for video {entry.video!r}: looked for {tried} "
        "(skip_missing=True skips such videos)"
    )


def _frames(folder: Path, entry: _Entry) -> list[Path]:
    """Frame files of one video folder in natural order (``2.png`` before ``10.png``)."""
    frames = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if not frames:
        raise ManifestError(
            f"{entry.source}: video folder {folder} holds no frames ({', '.join(FRAME_SUFFIXES)})"
        )
    return sorted(frames, key=_natural_key)


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
