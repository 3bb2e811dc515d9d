"""Adversarial faces for the embedded protocol and attack success rates (paper Table 8).

:func:`craft` runs one of the 14 adversarial types on a batch of faces against an FR target.
:class:`AdversarialFaces` is the protocol's generator of the 14 adversarial types: every bona
fide face gets one adversarial version (the types in turn within each split), crafted against
the FR target; impersonation targets another subject of the same split whom the target does
not already take for the face's subject, and a version the attack left unchanged (a
black-box search that found nothing) is dropped, for it is the bona fide face again.
:func:`success_table`
measures each type's attack success rate (ASR) on a set of faces, judged by the target's own
verification threshold, with the mean perturbation size and, for the black-box attack, the
mean number of queries.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from facecat.attacks import attack_success, create_attack, parse_adversarial_type
from facecat.core.images import load_images
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import read_manifest
from facecat.datasets.protocol import ADVERSARIAL_TYPES
from facecat.evaluation.contact_sheet import save_contact_sheet
from facecat.recognition.face_recognition import FaceRecognizer

log = logging.getLogger(__name__)

BATCH_SIZE = 32
#: Raise when the crafted images change for the same faces, settings and target: a change to
#: any attack of :mod:`facecat.attacks` or to the crafting here. It is part of the protocol's
#: build key (``tests/test_generator_versions.py`` holds the golden digest).
VERSION = 2
#: An adversarial image closer than this to its source in every pixel is its source again
#: once saved in 8 bits (a black-box attack that found nothing returns the face untouched).
UNCHANGED_LINF = 0.5 / 255


def protocol_attack_options() -> dict[str, dict[str, Any]]:
    """Attack settings of the embedded protocol build, cheaper than the attacks' defaults.

    The build crafts one adversarial face per bona fide face (737) on the CPU within the main
    job's 20-minute budget, so the two expensive methods get a smaller budget: the black-box
    attack 150 queries instead of 1000 (a third of the build's time at 300; its result is
    still adversarial, only farther from the original) and the patch attacks 40 optimisation
    steps instead of 100. ``benchmarks/bench_attacks.py`` prints the success rate and speed
    of both settings side by side.
    """
    patch = {"steps": 40}
    return {
        "Evolutionary": {"max_queries": 150},
        "Eyeglass": patch,
        "Sticker": patch,
        "Facemask": patch,
    }


@dataclass(frozen=True)
class CraftResult:
    """Adversarial images with their per-image outcome."""

    images: Tensor
    success: Tensor
    linf: Tensor
    l2: Tensor
    queries: Tensor | None


def craft(
    attack_type: str,
    recognizer: FaceRecognizer,
    images: Tensor,
    landmarks: Tensor,
    *,
    targets: Tensor | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> CraftResult:
    """Craft one adversarial type on a batch and judge it by the FR target.

    Args:
        attack_type: e.g. "PGD_Impersonation" (see ``facecat.datasets.protocol.ADVERSARIAL_TYPES``).
        recognizer: the FR target.
        images: clean faces (B, 3, H, W) in [0, 1].
        landmarks: (B, 5, 2) pixel landmarks (patch attacks place their regions with them).
        targets: impersonation target faces (B, 3, H, W).
        seed: attack seed.
        options: the attack's own arguments (eps, steps, max_queries, ...).

    Returns:
        Images, success per image, L-inf and L2 perturbation per image, queries (black box).
    """
    name, mode = parse_adversarial_type(attack_type)
    attack = create_attack(name, recognizer, mode, seed=seed, **(options or {}))
    adversarial = attack(
        images, targets=targets if mode == "impersonation" else None, landmarks=landmarks
    )
    with torch.no_grad():
        success = attack_success(
            recognizer,
            adversarial,
            recognizer(images),
            None if targets is None else recognizer(targets),
            mode,
        )
    delta = (adversarial - images).flatten(1)
    queries = getattr(attack, "queries", None)
    return CraftResult(
        adversarial,
        success.cpu(),
        delta.abs().amax(1).cpu(),
        delta.norm(dim=1).cpu(),
        None if queries is None else queries.cpu(),
    )


def save_image(image: Tensor, path: Path) -> None:
    """Write a (3, H, W) image in [0, 1] as an 8-bit PNG (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)


def landmarks_tensor(texts: pd.Series) -> Tensor:
    """Manifest landmark strings -> (N, 5, 2) float tensor."""
    return torch.tensor(
        np.stack([np.array(t.split(), dtype=np.float32).reshape(5, 2) for t in texts])
    )


def pick_targets(
    subjects: np.ndarray, rng: np.random.Generator, verified: np.ndarray | None = None
) -> np.ndarray:
    """For each face, the index of a face of another subject (impersonation target).

    Args:
        subjects: subject of each face.
        rng: random source.
        verified: optional (N, N) bool, True where the FR target already verifies faces i
            and j as one person; such faces are not picked as i's target (an impersonation
            that holds before any attack is no attack), unless every other subject's are.

    Returns:
        Target indices (N,).
    """
    picks = np.empty(len(subjects), dtype=np.int64)
    for i, subject in enumerate(subjects):
        others = np.flatnonzero(subjects != subject)
        if not len(others):
            raise ValueError("impersonation needs faces of at least two subjects")
        if verified is not None and not verified[i, others].all():
            others = others[~verified[i, others]]
        picks[i] = others[rng.integers(len(others))]
    return picks


def verified_pairs(recognizer: FaceRecognizer, images: Tensor, batch_size: int = 64) -> np.ndarray:
    """Which pairs of faces the FR target verifies as the same person.

    Shape:
        images (N, 3, H, W) -> (N, N) bool
    """
    with torch.no_grad():
        descriptors = torch.cat(
            [recognizer(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )
        rows = [
            recognizer.same_identity(row.expand_as(descriptors), descriptors)
            for row in descriptors[:, None]
        ]
    return torch.stack(rows).cpu().numpy()


@dataclass
class AdversarialFaces:
    """The protocol's generator of the 14 adversarial types against one FR target.

    Args:
        recognizer: the FR target (the dlib port by default in the CLI).
        types: the adversarial types to generate, in turn.
        options: per-attack arguments, by attack name ("PGD": {"steps": 10}, ...).
        device: where the attacks run.
    """

    recognizer: FaceRecognizer
    types: tuple[str, ...]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "cpu"

    @property
    def key(self) -> str:
        """Digest of what the generated images depend on: version, settings, target."""
        settings = repr((VERSION, self.types, sorted(self.options.items())))
        digest = hashlib.sha256(settings.encode())
        for tensor in self.recognizer.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def __call__(self, bona_fide: pd.DataFrame, root: Path, seed: int) -> pd.DataFrame:
        """Craft one adversarial face per bona fide face; returns their manifest rows."""
        rng = np.random.default_rng(seed + 1)
        self.recognizer.to(self.device).eval()
        rows = []
        for split, group in bona_fide.groupby("split", sort=True):
            group = group.sort_values("path").reset_index(drop=True)
            offset = int(rng.integers(len(self.types)))
            group["attack_type"] = [
                self.types[(i + offset) % len(self.types)] for i in range(len(group))
            ]
            images = load_images([root / p for p in group["path"]], size=None).to(self.device)
            verified = verified_pairs(self.recognizer, images)
            group["target"] = pick_targets(group["subject"].to_numpy(), rng, verified)
            for attack_type, members in group.groupby("attack_type", sort=True):
                rows += self._craft_rows(attack_type, members, group, root, seed, split)
        return pd.DataFrame(rows)

    def _craft_rows(
        self,
        attack_type: str,
        members: pd.DataFrame,
        group: pd.DataFrame,
        root: Path,
        seed: int,
        split: str,
    ) -> list[dict]:
        rows = []
        name, _ = parse_adversarial_type(attack_type)
        batches = craft_batches(
            attack_type,
            self.recognizer,
            members,
            group.loc[members["target"].to_numpy()],
            root,
            seed=seed,
            device=self.device,
            options=self.options.get(name),
            label=f"{attack_type} ({split})",
        )
        for batch, targets, result in batches:
            for i, (_, row) in enumerate(batch.iterrows()):
                if float(result.linf[i]) < UNCHANGED_LINF:
                    log.info("%s left %s unchanged: not an attack, dropped", attack_type, row.path)
                    continue
                path = f"attacks/{attack_type}/{Path(row['path']).stem}.png"
                save_image(result.images[i], root / path)
                impersonation = attack_type.endswith("Impersonation")
                rows.append(
                    {
                        **{k: row[k] for k in ("split", "subject", "landmarks", "source")},
                        "path": path,
                        "label": 0,
                        "attack_type": attack_type,
                        "target_subject": targets["subject"].iloc[i] if impersonation else "",
                        "source_path": row["path"],
                        "target_path": targets["path"].iloc[i] if impersonation else "",
                        "fr_success": bool(result.success[i]),
                    }
                )
        return rows


def craft_batches(
    attack_type: str,
    recognizer: FaceRecognizer,
    faces: pd.DataFrame,
    targets: pd.DataFrame,
    root: Path,
    *,
    seed: int,
    batch_size: int = BATCH_SIZE,
    size: int | None = None,
    device: str | torch.device = "cpu",
    options: dict[str, Any] | None = None,
    label: str | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, CraftResult]]:
    """Craft ``attack_type`` on manifest rows, batch by batch, loading the images as it goes.

    Args:
        attack_type: one of the 14 adversarial types.
        recognizer: the FR target.
        faces: rows with ``path`` (under ``root``) and ``landmarks``.
        targets: one row per face: the identity an impersonation aims at.
        root: folder the paths are relative to.
        seed: seed of the first batch; batch ``k`` uses ``seed + k * batch_size``.
        batch_size: faces per batch.
        size: resize the images to this side length (None keeps them).
        device: where the attack runs.
        options: arguments of the attack (see :func:`craft`).
        label: progress bar label (None shows no bar).

    Yields:
        Each batch's face rows, target rows and :class:`CraftResult`.
    """
    starts = range(0, len(faces), batch_size)
    for start in tqdm(starts, desc=label, unit="batch", disable=label is None):
        batch = faces.iloc[start : start + batch_size]
        batch_targets = targets.iloc[start : start + batch_size]
        images = load_images([root / p for p in batch["path"]], size=size).to(device)
        target_images = load_images([root / p for p in batch_targets["path"]], size=size)
        result = craft(
            attack_type,
            recognizer,
            images,
            landmarks_tensor(batch["landmarks"]).to(device),
            targets=target_images.to(device),
            seed=seed + start,
            options=options,
        )
        yield batch, batch_targets, result


def success_table(
    recognizer: FaceRecognizer,
    images: Tensor,
    landmarks: Tensor,
    subjects: np.ndarray,
    *,
    types: tuple[str, ...],
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Attack success rate of every type on the same faces (paper Table 8's shape).

    Args:
        recognizer: the FR target.
        images: clean faces (N, 3, H, W) in [0, 1].
        landmarks: (N, 5, 2).
        subjects: subject id per face (impersonation targets another subject).
        types: adversarial types to measure.
        seed: attack and target-choice seed.
        options: per-attack arguments by attack name.

    Returns:
        One row per type: attack, mode, asr, n, mean L-inf and L2 perturbation, mean queries
        (black box), seconds and images/s.
    """
    targets = images[pick_targets(np.asarray(subjects), np.random.default_rng(seed))]
    rows = []
    for attack_type in types:
        name, mode = parse_adversarial_type(attack_type)
        started = time.perf_counter()
        parts = [
            craft(
                attack_type,
                recognizer,
                images[i : i + BATCH_SIZE],
                landmarks[i : i + BATCH_SIZE],
                targets=targets[i : i + BATCH_SIZE],
                seed=seed + i,
                options=(options or {}).get(name),
            )
            for i in range(0, len(images), BATCH_SIZE)
        ]
        seconds = time.perf_counter() - started
        success = torch.cat([p.success for p in parts]).float()
        queries = [p.queries for p in parts if p.queries is not None]
        rows.append(
            {
                "attack": name,
                "mode": mode,
                "type": attack_type,
                "fr_model": recognizer.name,
                "n": len(success),
                "asr": success.mean().item(),
                "mean_linf": torch.cat([p.linf for p in parts]).mean().item(),
                "mean_l2": torch.cat([p.l2 for p in parts]).mean().item(),
                "mean_queries": torch.cat(queries).float().mean().item() if queries else np.nan,
                "seconds": seconds,
                "images_per_s": len(success) / seconds,
            }
        )
        log.info("%s: ASR %.3f (%.1f s)", attack_type, rows[-1]["asr"], seconds)
    return pd.DataFrame(rows)


def create_recognizer(spec: str, device: str = "cpu") -> FaceRecognizer:
    """An FR target by name: "dlib" (the bundled port) or a path to an ONNX model."""
    from facecat.recognition.dlib_resnet import DlibRecognizer
    from facecat.recognition.face_recognition import FaceRecognitionError, OnnxRecognizer

    if spec == "dlib":
        return DlibRecognizer().to(device).eval()
    if spec.endswith(".onnx"):
        return OnnxRecognizer(spec).to(device).eval()
    raise FaceRecognitionError(f"unknown FR target {spec!r}: use 'dlib' or a path to an .onnx")


def protocol_generators(fr: str = "dlib", device: str = "cpu") -> dict[str, AdversarialFaces]:
    """The embedded protocol's adversarial generators, for ``build_embedded(adversarial=...)``.

    Args:
        fr: FR target, as :func:`create_recognizer` takes it.
        device: where the attacks run.

    Returns:
        ``{"adversarial": AdversarialFaces}`` crafting the 14 types against ``fr`` with
        :func:`protocol_attack_options`.
    """
    generator = AdversarialFaces(
        create_recognizer(fr, device), ADVERSARIAL_TYPES, protocol_attack_options(), device
    )
    return {"adversarial": generator}


def bundled_test_faces(count: int) -> tuple[Tensor, Tensor, np.ndarray, list[str]]:
    """The first ``count`` bundled bona fide test faces: images, landmarks, subjects, paths."""
    manifest = read_manifest(bundled_manifest()).split("test")
    frame = manifest.frame.reset_index(drop=True).head(count)
    images = load_images([manifest.root / p for p in frame["path"]], size=None)
    return (
        images,
        landmarks_tensor(frame["landmarks"]),
        frame["subject"].to_numpy(),
        list(frame["path"]),
    )


def adversarial_contact_sheet(
    recognizer: FaceRecognizer,
    path: str | Path,
    *,
    types: tuple[str, ...],
    faces: int = 3,
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """All adversarial types crafted on the same bundled test faces, with FR outcomes.

    Args:
        recognizer: the FR target.
        path: output PNG.
        types: adversarial types (columns).
        faces: number of faces (rows), from different subjects.
        seed: attack seed.
        options: per-attack arguments by attack name.

    Returns:
        The written path.
    """
    images, landmarks, subjects, _ = bundled_test_faces(200)
    keep = np.unique(subjects, return_index=True)[1][: faces + 1]
    images, landmarks, subjects = images[keep], landmarks[keep], subjects[keep]
    targets = images.roll(-1, dims=0)
    columns = [images[:faces]]
    labels = ["Live"]
    for attack_type in types:
        name, _ = parse_adversarial_type(attack_type)
        result = craft(
            attack_type,
            recognizer,
            images[:faces],
            landmarks[:faces],
            targets=targets[:faces],
            seed=seed,
            options=(options or {}).get(name),
        )
        columns.append(result.images)
        labels.append(f"{attack_type} ({int(result.success.sum())}/{faces})")
    grid = [[column[row] for column in columns] for row in range(faces)]
    return save_contact_sheet(
        grid,
        path,
        column_labels=labels,
        row_labels=list(subjects[:faces]),
        title=f"Embedded protocol: the adversarial types against {recognizer.name} "
        "(impersonating the next row's subject; successes per column)",
    )
