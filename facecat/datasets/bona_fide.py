"""Build the bundled bona fide face set of the embedded protocol, exactly, from a seed.

Sources (all installable offline):

* ``dcgan``: faces from the DCGAN generator of ``gan-face-generate`` (MIT, trained on the
  synthetic DigiFace-1M faces). One latent vector is one subject; its captures are the latent
  plus small seeded perturbations, which keep the identity and vary pose and expression.
* ``lfw``: the 100 real LFW face crops shipped with scikit-image (25x25 grayscale, upscaled);
  LFW gives no identities in this subset, so each crop is its own subject.
* ``astronaut`` (scikit-image, public domain NASA photo) and ``grace_hopper`` (matplotlib
  sample data, public domain US Navy photo): real portraits, three aligned captures each.
* ``obama`` and ``biden``: the White House photographs among the test images of the
  ``face_recognition`` 1.3.0 source distribution (three of Barack Obama, one of Joe Biden),
  three aligned captures each. Fetch it with ``pip download --no-deps --no-binary :all:
  face_recognition==1.3.0`` and pass its path as ``--face-recognition-sdist``.

Every face gets MTCNN 5-point landmarks; faces without a confident, upright, near-frontal
detection are dropped. Subjects are split 60 / 20 / 20 into train / dev / test, separately
per source; the real colour photographs are too few for that and have fixed splits
(``PHOTO_SPLITS``): Obama trains, Biden is the dev split's real colour photograph, and the two
portraits stay the test split's. Run ``python -m facecat.datasets.bona_fide OUT
--face-recognition-sdist PATH`` (needs ``gan-face-generate`` and ``facenet-pytorch``, see the
README) to regenerate the bundled folder.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from facecat.core.landmarks import FaceDetector, align_face
from facecat.datasets.dcgan import LATENT_DIM, load_generator
from facecat.datasets.manifest import BONA_FIDE, write_manifest

log = logging.getLogger(__name__)

SIZE = 64
SPLIT_SHARES = (("train", 0.6), ("dev", 0.2), ("test", 0.2))
CAPTURE_SPREAD = 0.3
PORTRAIT_SCALES = (1.0, 1.1, 1.2)
PORTRAIT_ZOOM = 1.1
#: Template zooms of the three captures of a real photograph (the framing of the bona fide set).
PORTRAIT_FRAMINGS = tuple(PORTRAIT_ZOOM * scale for scale in PORTRAIT_SCALES)
FACE_RECOGNITION_SDIST = "face_recognition-1.3.0.tar.gz"
WHITE_HOUSE_PHOTOS = {  # file in the sdist's tests/test_images -> subject
    "obama.jpg": "obama",
    "obama2.jpg": "obama",
    "obama3.jpg": "obama",
    "biden.jpg": "biden",
}
PHOTO_SPLITS = {"obama": "train", "biden": "dev", "astronaut": "test", "grace_hopper": "test"}


@dataclass(frozen=True)
class Face:
    """One bona fide face before it is written."""

    image: np.ndarray  # (SIZE, SIZE, 3) uint8
    landmarks: np.ndarray  # (5, 2) float32 pixels
    subject: str
    source: str


def bundled_manifest() -> Path:
    """Path of the bundled bona fide manifest inside the installed package."""
    return Path(str(resources.files("facecat") / "data" / "bona_fide" / "manifest.csv"))


def usable(landmarks: np.ndarray | None, probability: float, size: int = SIZE) -> bool:
    """A confident, upright, near-frontal face whose landmarks lie inside the image."""
    if landmarks is None or probability < 0.95:
        return False
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = landmarks
    inside = bool(np.all((landmarks >= 1) & (landmarks <= size - 2)))
    upright = max(ly, ry) < ny < min(mly, mry) and lx < rx and mlx < mrx
    frontal = lx + 0.15 * (rx - lx) < nx < rx - 0.15 * (rx - lx)
    return inside and upright and frontal and (rx - lx) > 0.2 * size


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def dcgan_faces(subjects: int, captures: int, seed: int, detector: FaceDetector) -> list[Face]:
    """``captures`` usable faces for each of up to ``subjects`` generated identities."""
    generator = load_generator()
    rng = torch.Generator().manual_seed(seed)
    faces = []
    for index in tqdm(range(subjects), desc="dcgan subjects", unit="subject"):
        base = torch.randn(LATENT_DIM, generator=rng)
        found = []
        for attempt in range(4 * captures):
            jitter = torch.randn(LATENT_DIM, generator=rng)
            latent = base if attempt == 0 else (base + CAPTURE_SPREAD * jitter)
            latent = latent / math.sqrt(1 + (attempt > 0) * CAPTURE_SPREAD**2)
            image = _to_uint8(generator.faces(latent[None])[0])
            detection = detector.detect(image)
            if detection is not None and usable(detection.landmarks, detection.probability):
                found.append((image, detection.landmarks))
            if len(found) == captures:
                break
        if len(found) == captures:
            subject = f"dcgan{index:04d}"
            faces += [Face(img, lm, subject, "dcgan") for img, lm in found]
    return faces


def lfw_faces(detector: FaceDetector) -> list[Face]:
    """The scikit-image LFW crops, upscaled to SIZE, one subject each."""
    from skimage.data import lfw_subset

    faces = []
    for index, gray in enumerate(lfw_subset()[:100]):
        resized = Image.fromarray((gray * 255).round().astype(np.uint8)).resize(
            (SIZE, SIZE), Image.BICUBIC
        )
        image = np.repeat(np.asarray(resized)[..., None], 3, axis=2)
        detection = detector.detect(image)
        if detection is not None and usable(detection.landmarks, detection.probability):
            faces.append(Face(image, detection.landmarks, f"lfw{index:03d}", "lfw"))
    return faces


def aligned_captures(
    photo: np.ndarray, subject: str, detector: FaceDetector, *, name: str
) -> list[Face]:
    """Three aligned captures (``PORTRAIT_FRAMINGS``) of the largest face in an RGB photograph.

    Raises:
        RuntimeError: when no face is found in ``photo`` (``name`` says which).
    """
    detections = detector.detect_all(photo)
    if not detections:
        raise RuntimeError(f"no face found in the {name} photograph")
    detection = max(detections, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    tensor = torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255
    faces = []
    for zoom in PORTRAIT_FRAMINGS:
        crop, landmarks = align_face(tensor, torch.from_numpy(detection.landmarks), SIZE, zoom)
        faces.append(Face(_to_uint8(crop), landmarks.numpy(), subject, subject))
    return faces


def portrait_faces(detector: FaceDetector) -> list[Face]:
    """Aligned captures of the real portraits that ship with scikit-image and matplotlib."""
    import matplotlib
    from skimage.data import astronaut

    grace = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos = {
        "astronaut": astronaut(),
        "grace_hopper": np.asarray(Image.open(grace).convert("RGB")),
    }
    faces = []
    for name, photo in photos.items():
        faces += aligned_captures(photo, name, detector, name=name)
    return faces


def white_house_faces(sdist: str | Path, detector: FaceDetector) -> list[Face]:
    """Aligned captures of the White House photographs in the face_recognition sdist.

    Args:
        sdist: path of ``face_recognition-1.3.0.tar.gz``.
        detector: MTCNN detector.

    Raises:
        FileNotFoundError: when ``sdist`` is missing or lacks one of ``WHITE_HOUSE_PHOTOS``.
    """
    sdist = Path(sdist)
    if not sdist.is_file():
        raise FileNotFoundError(
            f"{sdist} not found: fetch it with `pip download --no-deps --no-binary :all: "
            "face_recognition==1.3.0`"
        )
    faces = []
    with tarfile.open(sdist) as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if "test_images" in m.name}
        for file, subject in WHITE_HOUSE_PHOTOS.items():
            if file not in members:
                raise FileNotFoundError(f"{sdist} holds no tests/test_images/{file}")
            data = archive.extractfile(members[file]).read()
            photo = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            faces += aligned_captures(photo, subject, detector, name=f"{sdist.name}:{file}")
    return faces


def assign_splits(subjects: list[str], sources: list[str], seed: int) -> dict[str, str]:
    """Subject -> split: ``PHOTO_SPLITS`` for the real colour photographs, otherwise
    60 / 20 / 20 within each source, seeded."""
    rng = np.random.default_rng(seed)
    splits = {}
    for source in sorted(set(sources)):
        members = sorted({s for s, src in zip(subjects, sources, strict=True) if src == source})
        if all(member in PHOTO_SPLITS for member in members):
            splits.update({member: PHOTO_SPLITS[member] for member in members})
            continue
        members = [members[i] for i in rng.permutation(len(members))]
        bounds = np.cumsum([round(share * len(members)) for _, share in SPLIT_SHARES[:-1]])
        for position, member in enumerate(members):
            splits[member] = SPLIT_SHARES[int(np.searchsorted(bounds, position, "right"))][0]
    return splits


def build_bona_fide(
    out_dir: str | Path, face_recognition_sdist: str | Path, *, seed: int = 0, subjects: int = 240
) -> Path:
    """Regenerate the bona fide set: PNG images plus ``manifest.csv``.

    Args:
        out_dir: output folder (images go to ``out_dir/images``).
        face_recognition_sdist: path of ``face_recognition-1.3.0.tar.gz`` (White House photos).
        seed: seed of the generator latents and of the split assignment.
        subjects: number of DCGAN identities tried (three captures each).

    Returns:
        The manifest path.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    detector = FaceDetector(min_face_size=20, upsample=2)
    faces = dcgan_faces(subjects, 3, seed, detector)
    faces += lfw_faces(FaceDetector(min_face_size=20, upsample=3))
    photo_detector = FaceDetector(min_face_size=40, upsample=1)
    faces += portrait_faces(photo_detector)
    faces += white_house_faces(face_recognition_sdist, photo_detector)
    splits = assign_splits([f.subject for f in faces], [f.source for f in faces], seed)
    rows = []
    counts: dict[str, int] = {}
    for face in faces:
        counts[face.subject] = counts.get(face.subject, 0) + 1
        name = f"images/{face.subject}_{counts[face.subject]}.png"
        Image.fromarray(face.image).save(out_dir / name, optimize=True)
        rows.append(
            {
                "path": name,
                "label": 1,
                "attack_type": BONA_FIDE,
                "split": splits[face.subject],
                "subject": face.subject,
                "landmarks": " ".join(f"{v:.2f}" for v in face.landmarks.reshape(-1)),
                "source": face.source,
            }
        )
    manifest = out_dir / "manifest.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    log.info("wrote %d bona fide faces of %d subjects to %s", len(rows), len(counts), out_dir)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the bundled bona fide face set.")
    parser.add_argument("out", help="output folder")
    parser.add_argument(
        "--face-recognition-sdist",
        required=True,
        help=f"path of {FACE_RECOGNITION_SDIST} (pip download --no-deps --no-binary :all: "
        "face_recognition==1.3.0)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subjects", type=int, default=240)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    print(
        build_bona_fide(
            args.out, args.face_recognition_sdist, seed=args.seed, subjects=args.subjects
        )
    )


if __name__ == "__main__":
    main()
