"""``facecat score`` on one ordinary photograph: start-up, then seconds per photo.

Prints, for each shipped detector on the CPU:

* start-up: importing facecat, loading the shipped detector and building MTCNN;
* seconds per photo for the astronaut portrait (512x512: MTCNN, alignment in three framings,
  scoring) and, side by side, for its aligned 64x64 crop at the bona fide set's template zoom
  (``--aligned``: scoring only), with their ratio, and both decisions.

Run: ``python benchmarks/bench_score.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    import skimage.data
    from PIL import Image

    from facecat.core.landmarks import FaceDetector
    from facecat.datasets.bona_fide import PORTRAIT_ZOOM
    from facecat.datasets.crop import crop_faces
    from facecat.evaluation.photo_decisions import decide_files
    from facecat.models.registry import load_detector

    imported = time.perf_counter() - started
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor()}")
    print(f"import facecat: {imported:.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "astronaut.jpg"
        Image.fromarray(skimage.data.astronaut()).save(photo, quality=90)
        face_detector = FaceDetector()
        crops = crop_faces(
            [photo], Path(folder) / "crops", size=64, scale=PORTRAIT_ZOOM, detector=face_detector
        )
        crop = crops.parent / "astronaut.png"
        for name in ("facecat-small", "cdcn"):
            start = time.perf_counter()
            detector = load_detector(name)
            face_detector = FaceDetector()
            loaded = time.perf_counter() - start
            timings, decisions = {}, {}
            for label, path, aligned in (("photo", photo, False), ("aligned", crop, True)):
                decide_files(detector, [path], aligned=aligned, face_detector=face_detector)
                start = time.perf_counter()
                for _ in range(args.repeats):
                    table = decide_files(
                        detector, [path], aligned=aligned, face_detector=face_detector
                    )
                timings[label] = (time.perf_counter() - start) / args.repeats
                row = table.iloc[0]
                decisions[label] = f"{row['p_real']:.3f} -> {row['decision']}"
            print(
                f"{name}: load detector + MTCNN {loaded:.2f} s; per photo {timings['photo']:.3f} s,"
                f" aligned crop {timings['aligned']:.3f} s (photo / aligned "
                f"{timings['photo'] / timings['aligned']:.1f}x); P(real) of the photo "
                f"{decisions['photo']}, of the crop {decisions['aligned']}"
            )


if __name__ == "__main__":
    main()
