"""Real captured physical sets: photographs of printed adversarial faces, with a manifest.

A captured set is a folder holding the photographs and a ``manifest.csv`` in the project's
manifest format (:mod:`facecat.datasets.manifest`)::

    path,label,attack_type,split,subject[,landmarks][,region,mode,...]
    photos/p001_eye.jpg,0,Physical_3D,test,alice,,eye,dodging
    photos/alice_plain.jpg,1,Live,test,alice,,,

Attack rows (label 0) are the photographs of people wearing the prints; bona fide rows
(label 1) are optional plain photographs of the same people under the same capture set-up
(without them, the suite pairs the attacks with the protocol's test-split bona fide faces).
Every row must be in the ``test`` split: a physical set is for evaluation only. Photographs
should be face crops like the protocol's (``facecat crop`` makes them from raw photos).
"""

from __future__ import annotations

from pathlib import Path

from facecat.datasets.manifest import Manifest, ManifestError, read_manifest

__all__ = ["MANIFEST_NAME", "load_captured_set"]

MANIFEST_NAME = "manifest.csv"


def load_captured_set(folder: str | Path) -> Manifest:
    """Read and check a captured physical set.

    Args:
        folder: the set's folder (with ``manifest.csv``), or the manifest file itself.

    Returns:
        The validated manifest (attack rows, and bona fide rows if any).

    Raises:
        FileNotFoundError: If the folder or its manifest is missing.
        ManifestError: If rows are not all in the test split or no attack row is present.
    """
    path = Path(folder)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"captured physical set: no manifest at {path} (expected a folder holding "
            f"{MANIFEST_NAME}; see physical/captured.py for the format)"
        )
    manifest = read_manifest(path)
    splits = set(manifest.frame["split"])
    if splits != {"test"}:
        raise ManifestError(
            f"{path}: a physical set is for evaluation only; every row must be in split "
            f"'test', found {sorted(splits)}"
        )
    if not (manifest.labels == 0).any():
        raise ManifestError(f"{path}: no attack rows (label 0); nothing to evaluate")
    return manifest
