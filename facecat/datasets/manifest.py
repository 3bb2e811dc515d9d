"""Image manifests: the CSV tables that list a protocol's faces.

A manifest is a CSV file listing face images with their labels::

    path,label,attack_type,split,subject[,landmarks][,extra columns...]

* ``path``: image path relative to the manifest's folder.
* ``label``: 1 = live / bona fide, 0 = attack (presentation attack or adversarial face).
* ``attack_type``: ``"Live"`` (:data:`BONA_FIDE`) for bona fide rows, any other non-empty
  name for attack rows.
* ``split``: one of ``"train"``, ``"dev"``, ``"test"``.
* ``subject``: identity id; a subject may appear in one split only.
* ``landmarks`` (optional): 10 numbers ``"x1 y1 ... x5 y5"`` in pixel coordinates (left eye,
  right eye, nose, left mouth corner, right mouth corner).

The images themselves are read by :mod:`facecat.core.images`.

Error messages name the file, the 1-based data row (and its CSV line, the header being line 1)
and the column.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facecat.core.images import ImageLoadError

__all__ = [
    "BONA_FIDE",
    "LANDMARK_NAMES",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "Manifest",
    "ManifestError",
    "check_landmarks",
    "read_manifest",
    "write_manifest",
]

logger = logging.getLogger(__name__)

BONA_FIDE = "Live"
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label", "attack_type", "split", "subject")
OPTIONAL_COLUMNS: tuple[str, ...] = ("landmarks",)
SPLITS: tuple[str, ...] = ("train", "dev", "test")
LANDMARK_NAMES: tuple[str, ...] = (
    "left eye",
    "right eye",
    "nose",
    "left mouth corner",
    "right mouth corner",
)

_DATAFRAME_SOURCE = "<DataFrame>"


class ManifestError(ValueError):
    """A manifest is malformed or inconsistent; the message names file, row and column."""


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True, eq=False)
class Manifest:
    """A validated manifest: a DataFrame plus the folder its paths are relative to.

    The frame's index holds the 1-based data row of each row in the source, so messages
    still name the right row after :meth:`split` or :meth:`filter`.

    Attributes:
        frame: One row per image; ``label`` is int64, the other required columns are str.
        root: Absolute folder that relative paths are resolved against.
        source: The manifest file (or ``"<DataFrame>"``), used in messages.
    """

    frame: pd.DataFrame
    root: Path
    source: str = _DATAFRAME_SOURCE

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        root: str | os.PathLike[str],
        *,
        check_files: bool = True,
        allow_outside_root: bool = False,
        source: str = _DATAFRAME_SOURCE,
    ) -> Manifest:
        """Validate a DataFrame with the manifest columns.

        Args:
            frame: Table with at least the columns in :data:`REQUIRED_COLUMNS`.
            root: Folder that relative paths are resolved against.
            check_files: Check that every image file exists.
            allow_outside_root: Accept absolute paths and paths leaving ``root``.
            source: Name used in error messages.

        Returns:
            The validated manifest (a cleaned copy of ``frame``).

        Raises:
            ManifestError: On the first problem found, naming row and column.
        """
        root_path = Path(os.path.abspath(root))
        clean = _validate(
            frame,
            root_path,
            source,
            is_file=source != _DATAFRAME_SOURCE,
            check_files=check_files,
            allow_outside_root=allow_outside_root,
        )
        return cls(clean, root_path, source)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        counts = self.frame["split"].value_counts().to_dict() if len(self) else {}
        return f"Manifest({self.source!r}, rows={len(self)}, splits={counts})"

    @property
    def paths(self) -> list[Path]:
        """Absolute, normalised image paths."""
        return [_absolute(self.root, p) for p in self.frame["path"]]

    @property
    def labels(self) -> np.ndarray:
        """Labels as an int64 array [N] (1 = live, 0 = attack)."""
        return self.frame["label"].to_numpy(dtype=np.int64)

    @property
    def attack_types(self) -> np.ndarray:
        """Attack types as an object array [N] of str (``"Live"`` for bona fide)."""
        return self.frame["attack_type"].to_numpy(dtype=object)

    @property
    def subjects(self) -> np.ndarray:
        """Subject ids as an object array [N] of str."""
        return self.frame["subject"].to_numpy(dtype=object)

    @property
    def landmarks(self) -> np.ndarray | None:
        """Landmarks as float32 [N, 5, 2] (x, y), or None without a ``landmarks`` column."""
        if "landmarks" not in self.frame.columns:
            return None
        values = [np.asarray(s.split(), dtype=np.float32) for s in self.frame["landmarks"]]
        if not values:
            return np.zeros((0, 5, 2), dtype=np.float32)
        return np.stack(values).reshape(-1, 5, 2)

    def digest(self) -> str:
        """SHA-256 of every row (all columns, in order), the absolute paths and every image
        file's bytes.

        Resumable runs are keyed by it, so a relabelled row or an image replaced in place
        under the same name makes a checkpoint of the old data unusable rather than reused.
        """
        digest = hashlib.sha256(self.frame.to_csv(index=False).encode())
        for path in self.paths:
            content = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                    content.update(chunk)
            digest.update(f"{path}\0{content.hexdigest()}\0".encode())
        return digest.hexdigest()

    def split(self, name: str) -> Manifest:
        """Rows of one split.

        Args:
            name: ``"train"``, ``"dev"`` or ``"test"``.

        Returns:
            A manifest with the rows of that split.

        Raises:
            ManifestError: If the name is unknown or the split has no rows.
        """
        if name not in SPLITS:
            raise ManifestError(f"{self.source}: unknown split {name!r}; expected one of {SPLITS}")
        part = self.filter(self.frame["split"].to_numpy() == name)
        if len(part) == 0:
            raise ManifestError(f"{self.source}: split {name!r} has no rows")
        return part

    def filter(self, mask: np.ndarray | pd.Series | Sequence[bool]) -> Manifest:
        """Rows where ``mask`` is true (may be empty).

        Args:
            mask: Boolean mask of length ``len(self)``.

        Returns:
            A manifest with the selected rows.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise ValueError(f"mask has shape {mask.shape}; expected ({len(self)},)")
        return Manifest(self.frame.loc[mask].copy(), self.root, self.source)

    def leave_out(self, attack_type: str) -> Manifest:
        """All rows except those of one attack type (for unseen-attack protocols).

        Args:
            attack_type: The attack type to remove.

        Returns:
            A manifest without that attack type.

        Raises:
            ManifestError: If no row has that attack type.
        """
        types = self.frame["attack_type"].to_numpy()
        if not (types == attack_type).any():
            known = sorted(set(types.tolist()))
            raise ManifestError(
                f"{self.source}: no rows with attack_type {attack_type!r}; found {known}"
            )
        return self.filter(types != attack_type)


def read_manifest(
    path: str | os.PathLike[str],
    *,
    check_files: bool = True,
    allow_outside_root: bool = False,
) -> Manifest:
    """Read and validate a manifest CSV.

    Args:
        path: The CSV file; image paths are relative to its folder.
        check_files: Check that every image file exists.
        allow_outside_root: Accept absolute image paths and paths that leave the manifest's
            folder (via ``..`` or symlinks).

    Returns:
        The validated manifest.

    Raises:
        FileNotFoundError: If the manifest file does not exist.
        ManifestError: If the CSV cannot be parsed or fails validation.
    """
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"manifest file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                index_col=False,
                encoding="utf-8-sig",
                skipinitialspace=True,
            )
    except pd.errors.ParserWarning as exc:
        raise ManifestError(f"{path}: a row has more fields than the header: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise ManifestError(f"{path}: manifest file is empty (no header line)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot parse CSV: {exc}") from exc
    manifest = Manifest.from_frame(
        frame,
        path.parent,
        check_files=check_files,
        allow_outside_root=allow_outside_root,
        source=str(path),
    )
    logger.debug("read %r", manifest)
    return manifest


def write_manifest(manifest_or_df: Manifest | pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a manifest CSV atomically (temp file in the same folder, then ``os.replace``).

    A :class:`Manifest` has its paths rewritten relative to the new file's folder. A DataFrame
    is validated (without file checks) and written as is.

    Args:
        manifest_or_df: The manifest, or a DataFrame with the manifest columns.
        path: Destination CSV file; its folder must exist.

    Raises:
        ManifestError: If a DataFrame fails validation.
    """
    path = Path(os.path.abspath(path))
    folder = path.parent
    if isinstance(manifest_or_df, Manifest):
        frame = manifest_or_df.frame.copy()
        if manifest_or_df.root != folder:
            frame["path"] = [_relative_or_absolute(p, folder) for p in manifest_or_df.paths]
    else:
        frame = _validate(
            manifest_or_df,
            folder,
            _DATAFRAME_SOURCE,
            is_file=False,
            check_files=False,
            allow_outside_root=True,
        )
    outside = sum(_is_outside(p) for p in frame["path"])
    if outside:
        logger.warning(
            "%s: %d image path(s) lie outside the manifest's folder; read it back with "
            "allow_outside_root=True",
            path,
            outside,
        )
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.debug("wrote %d rows to %s", len(frame), path)


def check_landmarks(manifest: Manifest) -> None:
    """Check that every landmark lies inside its image (reads image headers only).

    Args:
        manifest: A manifest; nothing is checked without a ``landmarks`` column.

    Raises:
        ManifestError: If a landmark lies outside its image.
        ImageLoadError: If an image header cannot be read.
    """
    points = manifest.landmarks
    if points is None:
        return
    for row, file, pts in zip(manifest.frame.index, manifest.paths, points, strict=True):
        try:
            with Image.open(file) as im:
                width, height = im.size
        except Exception as exc:  # PIL raises many types on bad files
            raise ImageLoadError(f"{file}: cannot read image size: {exc}") from exc
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= width) & (pts[:, 1] >= 0) & (pts[:, 1] <= height)
        if not inside.all():
            k = int(np.flatnonzero(~inside)[0])
            where = _where(manifest.source, manifest.source != _DATAFRAME_SOURCE, row, "landmarks")
            raise ManifestError(
                f"{where}: {LANDMARK_NAMES[k]} at ({pts[k, 0]:g}, {pts[k, 1]:g}) lies outside "
                f"the {width}x{height} image {file}"
            )


# --------------------------------------------------------------------------- validation


def _where(source: str, is_file: bool, row: int, column: str | None) -> str:
    text = f"{source}: row {row}" + (f" (line {row + 1})" if is_file else "")
    return text + (f", column '{column}'" if column else "")


def _cell(value: object) -> str:
    if isinstance(value, list | tuple | np.ndarray):
        return " ".join(repr(float(v)) for v in np.asarray(value, dtype=float).ravel())
    if value is None or pd.isna(value):
        return ""
    return str(value).strip()


def _absolute(root: Path, path: str) -> Path:
    return Path(os.path.normpath(os.path.join(root, path)))


def _relative_or_absolute(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # different drive on Windows
        return str(path)


def _is_outside(path: str) -> bool:
    return os.path.isabs(path) or Path(os.path.normpath(path)).parts[:1] == ("..",)


def _validate(
    frame: pd.DataFrame,
    root: Path,
    source: str,
    *,
    is_file: bool,
    check_files: bool,
    allow_outside_root: bool,
) -> pd.DataFrame:
    """Return a cleaned copy of ``frame`` or raise ManifestError on the first problem."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing required column(s) {missing}; found columns "
            f"{list(frame.columns)}; required: {list(REQUIRED_COLUMNS)}"
        )
    if len(frame) == 0:
        raise ManifestError(f"{source}: manifest has no data rows")
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    text_columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    for column in text_columns:
        frame[column] = frame[column].map(_cell).astype(object)

    def fail(bad: pd.Series | np.ndarray, column: str | None, message: str) -> None:
        rows = frame.index[np.asarray(bad, dtype=bool)]
        if len(rows):
            more = f" ({len(rows) - 1} more row(s) like this)" if len(rows) > 1 else ""
            row = int(rows[0])
            value = frame.at[row, column] if column else None
            message = message.replace("{value!r}", repr(value))
            raise ManifestError(f"{_where(source, is_file, row, column)}: {message}{more}")

    # label
    numeric = pd.to_numeric(frame["label"], errors="coerce")
    fail(~numeric.isin([0, 1]), "label", "label {value!r} is not 0 or 1 (1 = live, 0 = attack)")
    frame["label"] = numeric.astype(np.int64)
    # attack_type and its consistency with label
    attack = frame["attack_type"]
    fail(attack == "", "attack_type", f"empty attack_type (use {BONA_FIDE!r} for bona fide)")
    live = frame["label"] == 1
    fail(
        live & (attack != BONA_FIDE),
        "attack_type",
        f"label 1 (bona fide) requires attack_type {BONA_FIDE!r}, got {{value!r}}",
    )
    fail(
        ~live & (attack.str.lower() == BONA_FIDE.lower()),
        "attack_type",
        "label 0 (attack) with attack_type {value!r}; attack rows need the attack's name",
    )
    # split, subject
    fail(~frame["split"].isin(SPLITS), "split", f"unknown split {{value!r}}; expected {SPLITS}")
    fail(frame["subject"] == "", "subject", "empty subject id")
    # paths
    paths = frame["path"]
    fail(paths == "", "path", "empty path")
    if not allow_outside_root:
        fail(
            paths.map(os.path.isabs),
            "path",
            "absolute path {value!r} refused; use a path relative to the manifest's folder "
            "or allow_outside_root=True",
        )
        real_root = root.resolve()
        escapes = [not _absolute(root, p).resolve().is_relative_to(real_root) for p in paths]
        fail(
            escapes,
            "path",
            f"path {{value!r}} leaves the manifest's folder {real_root} (via '..' or a "
            "symlink); pass allow_outside_root=True to accept it",
        )
    absolute = [str(_absolute(root, p)) for p in paths]
    duplicated = pd.Series(absolute, index=frame.index).duplicated(keep=False)
    if duplicated.any():
        first = absolute[int(np.flatnonzero(duplicated.to_numpy())[0])]
        rows = [r for r, a in zip(frame.index, absolute, strict=True) if a == first]
        fail(
            frame.index == rows[-1],
            "path",
            f"duplicate path {{value!r}}: rows {', '.join(map(str, rows))} refer to {first}",
        )
    # subject leakage across splits
    per_subject = frame.groupby("subject", sort=False)["split"].nunique()
    leaking = per_subject[per_subject > 1]
    if len(leaking):
        subject = leaking.index[0]
        rows = frame[frame["subject"] == subject]
        where = ", ".join(
            f"{split} ({'rows' if len(group) > 1 else 'row'} "
            f"{', '.join(map(str, group.index[:5]))}{', ...' if len(group) > 5 else ''})"
            for split, group in rows.groupby("split", sort=False)
        )
        raise ManifestError(
            f"{source}: subject leakage, column 'subject': subject {subject!r} appears in "
            f"{rows['split'].nunique()} splits: {where}; each subject must be in one split "
            f"({len(leaking)} leaking subject(s) in total)"
        )
    # landmarks
    if "landmarks" in frame.columns:
        for row, text in frame["landmarks"].items():
            problem = _landmark_problem(text)
            if problem:
                raise ManifestError(f"{_where(source, is_file, row, 'landmarks')}: {problem}")
    # files last: the slow part
    if check_files:
        missing_files = [not Path(a).is_file() for a in absolute]
        if any(missing_files):
            k = missing_files.index(True)
            fail(
                missing_files,
                "path",
                f"image file not found: {absolute[k]} (path {{value!r}})",
            )
    return frame


def _landmark_problem(text: str) -> str | None:
    parts = text.split()
    expected = "expected 10 numbers 'x1 y1 ... x5 y5' separated by spaces"
    if len(parts) != 10:
        return f"{expected}, got {len(parts)} value(s) in {text!r}"
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return f"{expected}; {text!r} holds a value that is not a number"
    if not all(math.isfinite(v) for v in values):
        return f"{expected}; {text!r} holds a non-finite value"
    return None
