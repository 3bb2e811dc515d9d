"""The 28-type attack taxonomy and the embedded protocol (P1, P2, P3, leave-one-type-out).

The embedded protocol starts from the bundled bona fide set (:mod:`facecat.datasets.bona_fide`).
Building it writes, for every bona fide face, one presentation-attack sample (the 14 types in
turn within each split, so every split holds every type) and, when adversarial generators
are supplied, one adversarial sample, into a cache folder with its manifest. Attacks keep the
wearer's subject and split, and a donor face (needed by some types) comes from another
subject of the same split, so the splits stay subject-disjoint. Every bona fide face and
every presentation attack is then shown to the protocol's simulated camera
(:mod:`facecat.datasets.capture`) as its last stage, so the capture is no class cue; adversarial
faces are crafted on the captured bona fide faces.

A build is keyed by the bona fide images, the seed, the capture settings and the declared
versions of the generators (``VERSION`` here, in :mod:`facecat.datasets.presentation_attacks`
and in :mod:`facecat.datasets.capture`, and each adversarial generator's own ``key``), never by
source text, so moving code rebuilds nothing; a version is raised when its generator's output
changes (``tests/test_generator_versions.py`` fails otherwise). A build is reused while the key
matches and rebuilt otherwise, in a temporary folder renamed into place, so a failed build
leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from PIL import Image
from tqdm.auto import tqdm

from facecat.core.images import load_image
from facecat.datasets import capture, presentation_attacks
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.capture import CaptureSettings
from facecat.datasets.manifest import BONA_FIDE, SPLITS, Manifest, read_manifest, write_manifest
from facecat.datasets.presentation_attacks import PA_TYPES, needs_donor, simulate_pa
from facecat.evaluation.contact_sheet import save_contact_sheet

log = logging.getLogger(__name__)

ADVERSARIAL_METHODS = ("FGSM", "PGD", "DIM", "Evolutionary", "Eyeglass", "Sticker", "Facemask")
ADVERSARIAL_MODES = ("Dodging", "Impersonation")
ADVERSARIAL_TYPES = tuple(f"{m}_{mode}" for m in ADVERSARIAL_METHODS for mode in ADVERSARIAL_MODES)
ATTACK_TYPES = PA_TYPES + ADVERSARIAL_TYPES
MANIFEST_NAME = "manifest.csv"
KEY_NAME = "build-key.json"
#: Version of the build itself (which sample gets which type, donor, seed, capture): raise it
#: when :func:`presentation_attack_rows` or :func:`capture_bona_fide` change their output.
VERSION = 2
CAMERA = CaptureSettings()

AdversarialGenerator = Callable[[pd.DataFrame, Path, int], pd.DataFrame]


def attack_family(attack_type: str) -> str:
    """ "bona fide", "presentation" or "adversarial" for a type name."""
    if attack_type == BONA_FIDE:
        return "bona fide"
    if attack_type in PA_TYPES:
        return "presentation"
    if attack_type in ADVERSARIAL_TYPES:
        return "adversarial"
    raise ValueError(f"unknown attack type {attack_type!r}; known: {list(ATTACK_TYPES)}")


def leave_one_type_out(manifest: Manifest, attack_type: str) -> Manifest:
    """Unseen-attack split: train/dev without ``attack_type``; test = bona fide + it.

    Args:
        manifest: a manifest with train, dev and test rows.
        attack_type: the held-out type.

    Returns:
        The hold-out manifest.
    """
    types = manifest.attack_types
    if attack_type not in set(types):
        raise ValueError(
            f"attack type {attack_type!r} has no samples; present: {sorted(set(types))}"
        )
    split = manifest.frame["split"].to_numpy()
    keep_train = (split != "test") & (types != attack_type)
    keep_test = (split == "test") & ((types == attack_type) | (types == BONA_FIDE))
    return manifest.filter(keep_train | keep_test)


def protocol_p1(manifest: Manifest) -> Manifest:
    """P1: every type known in training."""
    return manifest


def protocol_p2(manifest: Manifest, held_out: str) -> Manifest:
    """P2: leave one presentation-attack type out."""
    if held_out not in PA_TYPES:
        raise ValueError(f"P2 holds out a presentation-attack type; {held_out!r} is not one")
    return leave_one_type_out(manifest, held_out)


def protocol_p3(manifest: Manifest, held_out: str) -> Manifest:
    """P3: leave one adversarial type out."""
    if held_out not in ADVERSARIAL_TYPES:
        raise ValueError(f"P3 holds out an adversarial type; {held_out!r} is not one")
    return leave_one_type_out(manifest, held_out)


def counts(manifest: Manifest) -> pd.DataFrame:
    """Samples per attack type (rows, taxonomy order) and split (columns), zeros included."""
    frame = manifest.frame
    table = pd.crosstab(frame["attack_type"], frame["split"])
    order = [BONA_FIDE, *ATTACK_TYPES]
    extra = sorted(set(table.index) - set(order))
    table = table.reindex(index=order + extra, columns=list(SPLITS), fill_value=0)
    table["total"] = table.sum(axis=1)
    return table


def sample_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from the protocol seed and the sample's identity."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _landmarks(text: str) -> torch.Tensor:
    return torch.tensor([float(v) for v in text.split()]).reshape(5, 2)


def _save(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)


def capture_bona_fide(bona_fide: pd.DataFrame, source: Path, root: Path, seed: int) -> None:
    """Photograph every bona fide face of ``source`` with the protocol's camera into ``root``.

    Args:
        bona_fide: bona fide manifest rows (``path`` relative to ``source``).
        source: the folder of the bona fide manifest.
        root: the build folder (images keep their relative path under ``root/bona_fide``).
        seed: protocol seed.
    """
    for path in tqdm(list(bona_fide["path"]), desc="bona fide captures", unit="face"):
        face = load_image(source / path, size=None)
        _save(
            capture.capture(face, seed=sample_seed(seed, path, "capture"), settings=CAMERA),
            root / "bona_fide" / path,
        )


def presentation_attack_rows(
    bona_fide: pd.DataFrame, source: Path, root: Path, seed: int
) -> pd.DataFrame:
    """Simulate one presentation attack per bona fide face and photograph it into ``root``.

    The attack is simulated on the face as it was before the camera (``source``), then
    captured like a bona fide face.

    Args:
        bona_fide: bona fide manifest rows (``path`` relative to ``source``, with landmarks).
        source: the folder of the bona fide manifest.
        root: the build folder (attacks go to ``root/attacks/TYPE``).
        seed: protocol seed.

    Returns:
        Manifest rows of the attack samples.
    """
    rows = []
    rng = np.random.default_rng(seed)
    for split, group in bona_fide.groupby("split", sort=True):
        group = group.sort_values("path")
        offset = int(rng.integers(len(PA_TYPES)))
        subjects = group["subject"].to_numpy()
        for position, (_, row) in enumerate(
            tqdm(list(group.iterrows()), desc=f"presentation attacks ({split})", unit="face")
        ):
            attack_type = PA_TYPES[(position + offset) % len(PA_TYPES)]
            face = load_image(source / row["path"], size=None)
            landmarks = _landmarks(row["landmarks"])
            donor = donor_landmarks = None
            if needs_donor(attack_type):
                others = np.flatnonzero(subjects != row["subject"])
                donor_row = group.iloc[int(others[rng.integers(len(others))])]
                donor = load_image(source / donor_row["path"], size=None)
                donor_landmarks = _landmarks(donor_row["landmarks"])
            image = simulate_pa(
                attack_type,
                face,
                landmarks,
                seed=sample_seed(seed, row["path"], attack_type),
                donor=donor,
                donor_landmarks=donor_landmarks,
            )
            name = f"attacks/{attack_type}/{Path(row['path']).stem}.png"
            shot = sample_seed(seed, name, "capture")
            _save(capture.capture(image, seed=shot, settings=CAMERA), root / name)
            rows.append(row.to_dict() | {"path": name, "label": 0, "attack_type": attack_type})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class EmbeddedProtocol:
    """A built embedded protocol: its folder and full manifest."""

    root: Path
    manifest: Manifest

    def p1(self) -> Manifest:
        return protocol_p1(self.manifest)

    def p2(self, held_out: str) -> Manifest:
        return protocol_p2(self.manifest, held_out)

    def p3(self, held_out: str) -> Manifest:
        return protocol_p3(self.manifest, held_out)

    def leave_one_type_out(self, attack_type: str) -> Manifest:
        return leave_one_type_out(self.manifest, attack_type)


def default_cache_dir() -> Path:
    """``$FACECAT_CACHE`` or ``~/.cache/facecat``."""
    return Path(os.environ.get("FACECAT_CACHE", Path.home() / ".cache" / "facecat"))


def build_key(bona_fide_manifest: Path, seed: int, adversarial: Mapping[str, object]) -> str:
    """Key of everything a build depends on: bona fide files, seed, camera settings, the
    versions of this build, the simulators and the camera, and each adversarial generator's
    own ``key`` (its version, settings and FR weights) when it has one."""
    declared = {
        "seed": seed,
        "protocol": VERSION,
        "presentation_attacks": presentation_attacks.VERSION,
        "capture": capture.VERSION,
        "camera": CAMERA.as_dict(),
    }
    digest = hashlib.sha256(json.dumps(declared, sort_keys=True).encode())
    for name in sorted(adversarial):
        digest.update(f"{name}:{getattr(adversarial[name], 'key', '')}".encode())
    manifest = read_manifest(bona_fide_manifest)  # validated first: no path leaves its folder
    digest.update(bona_fide_manifest.read_bytes())
    for path in manifest.paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_embedded(
    cache_dir: str | Path | None = None,
    *,
    seed: int = 0,
    bona_fide: str | Path | None = None,
    adversarial: Mapping[str, AdversarialGenerator] | None = None,
    force: bool = False,
) -> EmbeddedProtocol:
    """Build (or reuse) the embedded protocol.

    Args:
        cache_dir: where builds live (default :func:`default_cache_dir`).
        seed: protocol seed.
        bona_fide: bona fide manifest (default: the bundled set).
        adversarial: named generators ``(bona fide rows, build root, seed) -> attack rows``
            adding adversarial samples (supplied by the adversarial-faces module).
        force: rebuild even when a valid build exists.

    Returns:
        The protocol.
    """
    source = Path(bona_fide) if bona_fide is not None else bundled_manifest()
    adversarial = adversarial or {}
    key = build_key(source, seed, adversarial)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache_dir / f"embedded-{key[:16]}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        key_file = root / KEY_NAME
        valid = key_file.is_file() and json.loads(key_file.read_text()).get("key") == key
        if valid and not force:
            log.info("embedded protocol: reusing %s", root)
            return EmbeddedProtocol(root, read_manifest(root / MANIFEST_NAME))
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
        try:
            _build_into(staging, source, seed, adversarial)
            (staging / KEY_NAME).write_text(json.dumps({"key": key, "seed": seed}))
            if root.exists():
                shutil.rmtree(root)
            os.replace(staging, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("embedded protocol built in %s", root)
    return EmbeddedProtocol(root, read_manifest(root / MANIFEST_NAME))


def _build_into(
    root: Path, source: Path, seed: int, adversarial: Mapping[str, AdversarialGenerator]
) -> None:
    bona_fide = read_manifest(source).frame.copy()
    attacks = presentation_attack_rows(bona_fide, source.parent, root, seed)
    capture_bona_fide(bona_fide, source.parent, root, seed)
    bona_fide["path"] = "bona_fide/" + bona_fide["path"]
    parts = [bona_fide, attacks]
    for name, generate in adversarial.items():
        log.info("generating adversarial samples: %s", name)
        parts.append(generate(bona_fide, root, seed))
    frame = pd.concat(parts, ignore_index=True)
    write_manifest(frame, root / MANIFEST_NAME)


def pa_contact_sheet(path: str | Path, *, faces: int = 4, seed: int = 0) -> Path:
    """All 14 presentation-attack types applied to the same bundled test faces, each shown
    to the protocol's camera with the same capture draw as its bona fide face.

    Args:
        path: output PNG.
        faces: number of faces (rows), taken from different test subjects.
        seed: simulation seed.

    Returns:
        The written path.
    """
    manifest = read_manifest(bundled_manifest())
    test = manifest.frame[manifest.frame["split"] == "test"].drop_duplicates("subject")
    test = test[test["source"] == "dcgan"].head(faces + 1) if "source" in test else test
    rows = test.to_dict("records")
    grid = []
    for index, row in enumerate(rows[:faces]):
        face = load_image(manifest.root / row["path"], size=None)
        landmarks = _landmarks(row["landmarks"])
        donor_row = rows[(index + 1) % len(rows)]
        donor = load_image(manifest.root / donor_row["path"], size=None)
        shot = sample_seed(seed, row["path"], "capture")
        cells = [capture.capture(face, seed=shot, settings=CAMERA)]
        for attack_type in PA_TYPES:
            image = simulate_pa(
                attack_type,
                face,
                landmarks,
                seed=sample_seed(seed, row["path"], attack_type),
                donor=donor,
                donor_landmarks=_landmarks(donor_row["landmarks"]),
            )
            cells.append(capture.capture(image, seed=shot, settings=CAMERA))
        grid.append(cells)
    return save_contact_sheet(
        grid,
        path,
        column_labels=[BONA_FIDE, *PA_TYPES],
        row_labels=[r["subject"] for r in rows[:faces]],
        title="Embedded protocol: the 14 presentation-attack simulations on the same faces",
    )
