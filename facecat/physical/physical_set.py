"""The held-out physical set: simulated photographs of 3D-printed adversarial faces.

Built from a protocol's **test-split bona fide faces** only, so no detector trained on the
protocol has seen its wearers, and it is never used in training. Each *print* is one
wearer, one region (eye, eye-nose, respirator) and one mode (dodging, impersonation of
another test subject), cycled in turn; its texture is optimised against the FR target with
expectation over the physical chain
(:class:`facecat.physical.texture_attack.TextureAttack`) and then photographed ``captures``
times under fresh conditions (:class:`facecat.physical.render.Capture`)
until the set holds ``size`` images. Every photograph records whether it fools the FR target
(``fr_success``) and, as a control, whether a print of the wearer's own face under the same
conditions does (``fr_success_control``).

The set lives in ``$FACECAT_CACHE/physical-<key>/`` (images, ``manifest.csv`` in the
project's manifest format, the FR success table and a contact sheet), keyed by ``VERSION``,
the settings, the FR weights and the source faces; it is reused while the key matches and
rebuilt otherwise, in a temporary folder renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from torch import Tensor
from tqdm.auto import tqdm

from facecat.attacks.base import attack_success
from facecat.core.images import load_images
from facecat.datasets.adversarial_faces import landmarks_tensor, pick_targets, save_image
from facecat.datasets.manifest import BONA_FIDE, Manifest, read_manifest, write_manifest
from facecat.datasets.protocol import default_cache_dir, sample_seed
from facecat.evaluation.contact_sheet import save_contact_sheet
from facecat.physical import render, texture_attack
from facecat.physical.regions import REGIONS, region_mask
from facecat.recognition.face_recognition import FaceRecognizer

__all__ = [
    "MODES",
    "PHYSICAL_TYPE",
    "PhysicalSet",
    "PhysicalSettings",
    "build_physical_set",
    "fr_success_table",
    "plan_prints",
]

log = logging.getLogger(__name__)

#: The attack type of every physical row (one presentation-attack instrument species).
#: Raise when the set's images change for the same faces, settings and FR target: a change
#: to the face surface, regions, render or texture attack of :mod:`facecat.physical`, or to
#: the build here (``tests/test_generator_versions.py`` holds the golden digest).
VERSION = 2
PHYSICAL_TYPE = "Physical_3D"
MODES = ("dodging", "impersonation")
MAX_SIZE = 5000
MANIFEST_NAME = "manifest.csv"
KEY_NAME = "build-key.json"
FR_SUCCESS_NAME = "fr_success.csv"
CONTACT_SHEET_NAME = "contact_sheet.png"


@dataclass(frozen=True)
class PhysicalSettings:
    """What a physical set is made of.

    Args:
        size: photographs in the set (1 to 5,000, the paper's size).
        captures: photographs per print.
        steps: texture optimisation steps (EOT samples per wearer).
        batch_size: prints optimised together.
        texture_size: texture side.
        seed: seed of the plan, the optimisation and the captures.
    """

    size: int = 500
    captures: int = 4
    steps: int = 30
    batch_size: int = 64
    texture_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must lie in 1..{MAX_SIZE}, got {self.size}")
        for name in ("captures", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class PhysicalSet:
    """A built physical set: its folder, manifest (attack rows only) and FR success table."""

    root: Path
    manifest: Manifest
    fr_success: pd.DataFrame

    @property
    def contact_sheet(self) -> Path:
        return self.root / CONTACT_SHEET_NAME


def plan_prints(wearers: pd.DataFrame, settings: PhysicalSettings) -> pd.DataFrame:
    """One row per print: wearer row, region, mode, impersonation target row, captures.

    Wearers are taken in a seeded order and cycled; (region, mode) pairs cycle in turn.
    """
    if wearers["subject"].nunique() < 2:
        raise ValueError("a physical set needs bona fide faces of at least two subjects")
    rng = np.random.default_rng(settings.seed)
    prints = math.ceil(settings.size / settings.captures)
    order = rng.permutation(len(wearers))
    combos = [(region, mode) for region in REGIONS for mode in MODES]
    wearer = order[np.arange(prints) % len(wearers)]
    targets = pick_targets(wearers["subject"].to_numpy(), rng)[wearer]
    captures = np.full(prints, settings.captures)
    captures[-1] = settings.size - settings.captures * (prints - 1)
    return pd.DataFrame(
        {
            "print": np.arange(prints),
            "wearer": wearer,
            "region": [combos[i % len(combos)][0] for i in range(prints)],
            "mode": [combos[i % len(combos)][1] for i in range(prints)],
            "target": targets,
            "captures": captures,
        }
    )


def _key(wearers: pd.DataFrame, root: Path, settings: PhysicalSettings, fr: FaceRecognizer) -> str:
    declared = {"physical_set": VERSION, "settings": asdict(settings)}
    digest = hashlib.sha256(json.dumps(declared, sort_keys=True).encode())
    for tensor in fr.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    digest.update(wearers[["path", "subject", "landmarks"]].to_csv(index=False).encode())
    for path in wearers["path"]:
        digest.update((root / path).read_bytes())
    return digest.hexdigest()


def build_physical_set(
    protocol: Manifest,
    recognizer: FaceRecognizer,
    settings: PhysicalSettings | None = None,
    *,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> PhysicalSet:
    """Build (or reuse) the physical set of a protocol's test-split bona fide faces.

    Args:
        protocol: a manifest with a test split whose bona fide rows carry landmarks.
        recognizer: the FR target.
        settings: size, captures, steps, seed (default :class:`PhysicalSettings`).
        cache_dir: where sets live (default ``$FACECAT_CACHE``).
        force: rebuild even when a valid set exists.

    Returns:
        The set.
    """
    settings = settings or PhysicalSettings()
    test = protocol.split("test")
    wearers = test.frame[test.frame["attack_type"] == BONA_FIDE].sort_values("path")
    if "landmarks" not in wearers or wearers["landmarks"].eq("").any():
        raise ValueError("the test split's bona fide rows need landmarks to place the prints")
    wearers = wearers.reset_index(drop=True)
    key = _key(wearers, test.root, settings, recognizer)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    root = cache_dir / f"physical-{key[:16]}"
    with FileLock(str(root) + ".lock"):
        key_file = root / KEY_NAME
        valid = key_file.is_file() and json.loads(key_file.read_text()).get("key") == key
        if not valid or force:
            staging = Path(tempfile.mkdtemp(prefix=".building-physical-", dir=cache_dir))
            try:
                _build_into(staging, wearers, test.root, recognizer, settings)
                key_file_text = json.dumps({"key": key, "settings": asdict(settings)})
                (staging / KEY_NAME).write_text(key_file_text)
                if root.exists():
                    shutil.rmtree(root)
                os.replace(staging, root)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            log.info("physical set: reusing %s", root)
    return PhysicalSet(
        root, read_manifest(root / MANIFEST_NAME), pd.read_csv(root / FR_SUCCESS_NAME)
    )


def _build_into(
    out: Path,
    wearers: pd.DataFrame,
    source_root: Path,
    recognizer: FaceRecognizer,
    settings: PhysicalSettings,
) -> None:
    device = next(recognizer.parameters()).device
    faces = load_images([source_root / p for p in wearers["path"]], size=None).to(device)
    landmarks = landmarks_tensor(wearers["landmarks"]).to(device)
    with torch.no_grad():
        descriptors = recognizer.eval()(faces)
    plan = plan_prints(wearers, settings)
    attack = texture_attack.TextureAttack(steps=settings.steps, texture_size=settings.texture_size)
    rows, sheet = [], {}
    groups = list(plan.groupby(["region", "mode"], sort=True))
    progress = tqdm(total=len(plan), desc="physical prints", unit="print")
    for (region, mode), group in groups:
        for start in range(0, len(group), settings.batch_size):
            chunk = group.iloc[start : start + settings.batch_size]
            wearer = torch.as_tensor(chunk["wearer"].to_numpy().copy())
            target = torch.as_tensor(chunk["target"].to_numpy().copy())
            reference = descriptors[target if mode == "impersonation" else wearer]
            generator = torch.Generator(device).manual_seed(
                sample_seed(settings.seed, region, mode, start)
            )
            textures = attack(
                recognizer,
                faces[wearer],
                landmarks[wearer],
                reference,
                region=region,
                mode=mode,
                generator=generator,
            )
            batch_rows, cells = _photograph_prints(
                out, chunk, wearers, faces, landmarks, descriptors, textures, recognizer, settings
            )
            rows += batch_rows
            sheet.setdefault((region, mode), cells)
            progress.update(len(chunk))
    progress.close()
    frame = pd.DataFrame(rows).sort_values(["print", "capture"]).reset_index(drop=True)
    write_manifest(frame, out / MANIFEST_NAME)
    fr_success_table(frame).to_csv(out / FR_SUCCESS_NAME, index=False)
    _contact_sheet(sheet, out / CONTACT_SHEET_NAME, settings)


def _photograph_prints(
    out: Path,
    chunk: pd.DataFrame,
    wearers: pd.DataFrame,
    faces: Tensor,
    landmarks: Tensor,
    descriptors: Tensor,
    textures: Tensor,
    recognizer: FaceRecognizer,
    settings: PhysicalSettings,
) -> tuple[list[dict], list[list[Tensor]]]:
    """Photograph each print of a chunk; its manifest rows and one contact-sheet row."""
    rows, cells = [], []
    mask = region_mask(chunk["region"].iloc[0], settings.texture_size, faces)
    for i, (_, item) in enumerate(chunk.iterrows()):
        n, wearer, target = int(item["captures"]), int(item["wearer"]), int(item["target"])
        generator = torch.Generator(faces.device).manual_seed(
            sample_seed(settings.seed, "captures", int(item["print"]))
        )
        capture = render.Capture.sample(n, generator, device=faces.device)
        face, points = faces[wearer].expand(n, -1, -1, -1), landmarks[wearer].expand(n, -1, -1)
        own = render.unwrap(face[:1], points[:1], settings.texture_size).expand(n, -1, -1, -1)
        with torch.no_grad():
            photos, moved = render.render(
                face,
                points,
                textures[i : i + 1].expand(n, -1, -1, -1),
                mask,
                capture,
                generator=generator,
            )
            control, _ = render.render(face, points, own, mask, capture, generator=generator)
            success = [
                attack_success(
                    recognizer,
                    images,
                    descriptors[wearer : wearer + 1],
                    descriptors[target : target + 1],
                    item["mode"],
                ).cpu()
                for images in (photos, control)
            ]
        source = wearers.iloc[wearer]
        conditions = {k: v.cpu().numpy() for k, v in capture.as_dict().items()}
        for c in range(n):
            path = f"images/{item['region']}_{item['mode']}/print{int(item['print']):04d}_{c}.png"
            save_image(photos[c], out / path)
            impersonation = item["mode"] == "impersonation"
            rows.append(
                {
                    "path": path,
                    "label": 0,
                    "attack_type": PHYSICAL_TYPE,
                    "split": "test",
                    "subject": source["subject"],
                    "landmarks": " ".join(f"{v:.2f}" for v in moved[c].flatten().tolist()),
                    "print": int(item["print"]),
                    "capture": c,
                    "region": item["region"],
                    "mode": item["mode"],
                    "source_path": source["path"],
                    "target_subject": wearers["subject"].iloc[target] if impersonation else "",
                    "fr_success": bool(success[0][c]),
                    "fr_success_control": bool(success[1][c]),
                    **{k: round(float(v[c]), 3) for k, v in conditions.items()},
                }
            )
        if not cells:
            printed = render.print_texture(textures[i : i + 1])[0] * mask[0] + 0.5 * (1 - mask[0])
            outcome = "".join("+" if s else "-" for s in success[0].tolist())
            shown = faces[target] if item["mode"] == "impersonation" else 0.5 + 0 * faces[target]
            cells = [faces[wearer], shown, printed.clamp(0, 1), *photos[:4]]
            cells += [torch.ones_like(faces[wearer])] * (4 - min(4, n))
            cells.append(outcome)
    return rows, [cells]


def _contact_sheet(
    sheet: dict[tuple[str, str], list[list]], path: Path, settings: PhysicalSettings
) -> Path:
    grid, labels = [], []
    for (region, mode), (cells,) in sorted(sheet.items()):
        *images, outcome = cells
        grid.append(images)
        labels.append(f"{region}\n{mode}\nFR fooled: {outcome}")
    return save_contact_sheet(
        grid,
        path,
        column_labels=[
            "wearer",
            "impersonated",
            "printed texture",
            *(f"photo {i + 1}" for i in range(4)),
        ],
        row_labels=labels,
        title=f"Simulated 3D-printed adversarial faces ({settings.steps} EOT steps; "
        "+ = the photo fools the FR target)",
    )


def fr_success_table(frame: pd.DataFrame) -> pd.DataFrame:
    """FR attack success rate per region and mode, per mode and overall, with the control.

    Returns:
        Columns region, mode, n, fr_success, fr_success_control.
    """
    parts = []
    for keys in (["region", "mode"], ["mode"], []):
        table = frame.groupby(keys, sort=True) if keys else frame.assign(all=1).groupby("all")
        summary = table.agg(
            n=("fr_success", "size"),
            fr_success=("fr_success", "mean"),
            fr_success_control=("fr_success_control", "mean"),
        ).reset_index()
        for column in ("region", "mode"):
            if column not in summary:
                summary[column] = "all"
        parts.append(summary[["region", "mode", "n", "fr_success", "fr_success_control"]])
    return pd.concat(parts, ignore_index=True)
