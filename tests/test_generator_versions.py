"""Golden digests of the generators whose declared ``VERSION`` keys the cached builds.

Cache keys are built from declared versions, not from source text, so a change to a
generator's output must come with a raised ``VERSION`` (or every cached protocol, adversarial
and physical set would silently be reused with the old images). Each test builds a tiny
output of one generator and compares its signature with the one recorded for the current
version in ``fixtures/generator_digests.json``: a digest of its discrete columns (paths,
types, splits) and the mean 8-bit value of every image, the means compared to within
``TOLERANCE`` grey levels so that the rounding of another CPU's float arithmetic does not
count as a change:

- same version, other signature: the output changed and the version was not raised;
- version not recorded: record it (``python tests/test_generator_versions.py --update``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from facecat.core.images import load_image
from facecat.datasets import adversarial_faces, capture, presentation_attacks, protocol
from facecat.datasets.adversarial_faces import AdversarialFaces
from facecat.datasets.bona_fide import bundled_manifest
from facecat.datasets.manifest import BONA_FIDE, read_manifest, write_manifest
from facecat.physical import physical_set
from facecat.physical.physical_set import PhysicalSettings, build_physical_set
from facecat.recognition.face_recognition import TorchRecognizer

GOLDEN = Path(__file__).parent / "fixtures" / "generator_digests.json"
#: Largest change of an image's mean 8-bit value that is still the same output (float
#: rounding elsewhere flips a few pixels by one level; a real change moves far more).
TOLERANCE = 0.05
Signature = dict[str, Any]
FAST = {
    "PGD": {"steps": 2},
    "DIM": {"steps": 2},
    "Evolutionary": {"max_queries": 10},
    "Eyeglass": {"steps": 2},
    "Sticker": {"steps": 2},
    "Facemask": {"steps": 2},
}


def _mean_level(image: torch.Tensor | Path) -> float:
    """Mean 8-bit value of a decoded image file or of a ``(3, H, W)`` tensor in ``[0, 1]``."""
    if isinstance(image, Path):
        array = np.asarray(Image.open(image).convert("RGB"))
    else:
        array = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return round(float(array.mean()), 4)


def _signature(rows: str, images: list[torch.Tensor | Path]) -> Signature:
    return {
        "rows": hashlib.sha256(rows.encode()).hexdigest(),
        "means": [_mean_level(i) for i in images],
    }


def _toy_recognizer(input_size: int) -> TorchRecognizer:
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 16),
    )
    return TorchRecognizer(network, input_size=input_size, metric="cosine", name="toy").eval()


def _bundled(per_split: int) -> pd.DataFrame:
    frame = read_manifest(bundled_manifest()).frame
    frame = frame[frame["source"] == "dcgan"]
    return pd.concat([frame[frame["split"] == s].head(per_split) for s in ("train", "dev", "test")])


def _tiny_bona_fide(folder: Path, per_split: int) -> Path:
    root = bundled_manifest().parent
    frame = _bundled(per_split)
    for path in frame["path"]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes((root / path).read_bytes())
    write_manifest(frame.reset_index(drop=True), folder / "manifest.csv")
    return folder / "manifest.csv"


def _build_digests(tmp: Path) -> dict[str, Signature]:
    """A tiny embedded build with every type: digests of its PA part and adversarial part."""
    generator = AdversarialFaces(
        _toy_recognizer(64), protocol.ADVERSARIAL_TYPES, options=FAST, device="cpu"
    )
    built = protocol.build_embedded(
        tmp / "cache",
        bona_fide=_tiny_bona_fide(tmp / "bona_fide", 14),
        adversarial={"adversarial": generator},
    )
    frame = built.manifest.frame.sort_values("path")
    adversarial = frame["attack_type"].isin(protocol.ADVERSARIAL_TYPES)
    return {
        name: _signature(
            rows[["path", "attack_type", "split"]].to_csv(),
            [built.root / path for path in rows["path"]],
        )
        for name, rows in (
            ("protocol", frame[~adversarial]),
            ("adversarial_faces", frame[adversarial]),
        )
    }


def _presentation_attacks_digest(_: Path) -> Signature:
    root = bundled_manifest().parent
    rows = _bundled(2).to_dict("records")[:3]
    images = []
    for index, row in enumerate(rows[:2]):
        face = load_image(root / row["path"], size=None)
        donor_row = rows[index + 1]
        for attack_type in presentation_attacks.PA_TYPES:
            image = presentation_attacks.simulate_pa(
                attack_type,
                face,
                protocol._landmarks(row["landmarks"]),
                seed=index,
                donor=load_image(root / donor_row["path"], size=None),
                donor_landmarks=protocol._landmarks(donor_row["landmarks"]),
            )
            images.append(image)
    return _signature(",".join(presentation_attacks.PA_TYPES), images)


def _capture_digest(_: Path) -> Signature:
    root = bundled_manifest().parent
    paths = list(_bundled(1)["path"])
    images = [capture.capture(load_image(root / p, size=None), seed=s) for s, p in enumerate(paths)]
    return _signature(",".join(paths), images)


def _physical_set_digest(tmp: Path) -> Signature:
    settings = PhysicalSettings(size=6, captures=3, steps=1, texture_size=32)
    built = build_physical_set(
        read_manifest(bundled_manifest()), _toy_recognizer(32), settings, cache_dir=tmp
    )
    frame = built.manifest.frame.sort_values("path")
    return _signature(
        frame[["path", "subject"]].to_csv(), [built.root / path for path in frame["path"]]
    )


VERSIONS = {
    "presentation_attacks": presentation_attacks.VERSION,
    "capture": capture.VERSION,
    "protocol": protocol.VERSION,
    "adversarial_faces": adversarial_faces.VERSION,
    "physical_set": physical_set.VERSION,
}
#: Generators digested on their own; the protocol and adversarial faces come from one build.
SINGLE: dict[str, Callable[[Path], Signature]] = {
    "presentation_attacks": _presentation_attacks_digest,
    "capture": _capture_digest,
    "physical_set": _physical_set_digest,
}


def _recorded() -> dict[str, dict[str, object]]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}


@pytest.fixture(scope="module")
def build_digests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Signature]:
    return _build_digests(tmp_path_factory.mktemp("build"))


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_output_changes_only_with_a_raised_version(name: str, tmp_path: Path) -> None:
    _check(name, SINGLE[name](tmp_path))


@pytest.mark.parametrize("name", ["protocol", "adversarial_faces"])
def test_build_changes_only_with_a_raised_version(
    name: str, build_digests: dict[str, Signature]
) -> None:
    _check(name, build_digests[name])


def _check(name: str, signature: Signature) -> None:
    version = VERSIONS[name]
    recorded = _recorded().get(name, {})
    assert recorded.get("version") == version, (
        f"{name} VERSION is {version} but the golden digest is for version "
        f"{recorded.get('version')}: record it with `python tests/{Path(__file__).name} --update`"
    )
    advice = (
        f"the output of {name} changed but its VERSION is still {version}: raise VERSION "
        f"(cached builds are keyed by it), then record it with "
        f"`python tests/{Path(__file__).name} --update`"
    )
    assert signature["rows"] == recorded["rows"], advice
    means, golden = np.array(signature["means"]), np.array(recorded["means"])
    assert means.shape == golden.shape, advice
    assert np.abs(means - golden).max() <= TOLERANCE, advice


def test_the_build_key_follows_the_declared_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = _tiny_bona_fide(tmp_path, 2)
    key = protocol.build_key(manifest, 0, {})
    assert protocol.build_key(manifest, 0, {}) == key
    for module in (protocol, presentation_attacks, capture):
        with monkeypatch.context() as patch:
            patch.setattr(module, "VERSION", module.VERSION + 1)
            assert protocol.build_key(manifest, 0, {}) != key, module.__name__
    assert protocol.build_key(manifest, 1, {}) != key
    assert BONA_FIDE in set(read_manifest(manifest).attack_types)


def main() -> None:
    """``--update``: record the current digest of every generator."""
    if sys.argv[1:] != ["--update"]:
        raise SystemExit(f"usage: python {sys.argv[0]} --update")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        digests = _build_digests(tmp / "build")
        digests |= {name: make(tmp / name) for name, make in SINGLE.items()}
    table = {name: {"version": VERSIONS[name]} | digests[name] for name in VERSIONS}
    GOLDEN.write_text(json.dumps(table, sort_keys=True) + "\n")
    print(f"recorded {', '.join(sorted(table))} in {GOLDEN}")


if __name__ == "__main__":
    main()
