"""The trained detectors that ship with the package, and the command that makes them.

``facecat ship-detectors`` trains (or reuses the main job's cached runs of) FaceCat
(``facecat-small``) and CDCN on the embedded protocol with the main job's seed, and writes
``facecat/data/detectors/<config>.safetensors``. FaceCat files leave out the frozen UNet (the
package ships it in ``facecat/data/fdm``; loading checks its digest), so each file is a few
MB at most. The header holds the dev-split threshold and the provenance of the training:
protocol key, config, seed, facecat version, git commit, torch version and date.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from facecat.core.paths import SHIPPED_DIR
from facecat.core.provenance import provenance
from facecat.datasets.protocol import default_cache_dir
from facecat.experiments.reproduce import Progress
from facecat.experiments.variants import VARIANTS, embedded_p1, train_variant
from facecat.models.registry import (
    load_detector,
    read_detector_header,
    save_detector,
    shipped_detectors,
)

#: The main-job variants that ship: FaceCat with text guidance and the CDCN baseline.
SHIPPED_VARIANTS = (VARIANTS[0], VARIANTS[-1])


def ship_detectors(
    out_dir: str | Path = SHIPPED_DIR,
    *,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[Path]:
    """Train (or reuse) the shipped variants on the embedded protocol and write their files.

    Args:
        out_dir: where ``<config>.safetensors`` files go (default: the package's folder).
        cache_dir: protocol, features and runs (default ``$FACECAT_CACHE``).
        seed: protocol, initialisation and batch-order seed (the main job's is 0).
        device: where training runs.
        progress: show progress bars.

    Returns:
        The written files.
    """
    report = Progress()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    protocol = embedded_p1(cache_dir, seed=seed, bona_fide=None, device=device)
    manifest = protocol.p1()
    written = []
    for variant in SHIPPED_VARIANTS:
        report(f"{variant.label}: training or reusing the main job's run ({variant.config})")
        run_dir = variant.run_dir(cache_dir, protocol.root.name, None, seed)
        trained = train_variant(
            variant,
            manifest,
            run_dir,
            seed=seed,
            device=device,
            feature_cache=cache_dir / "features",
            progress=progress,
        )
        detector = load_detector(trained)
        metadata = detector.file_metadata | provenance(device)
        metadata |= {"protocol": protocol.root.name, "config": variant.config, "seed": seed}
        if hasattr(detector, "BACKBONE_PREFIX"):  # name the packaged weights, not a local path
            metadata["backbone_source"] = f"packaged:{detector.config.default_unet_weights}"
        target = Path(out_dir) / f"{variant.config}.safetensors"
        save_detector(
            detector,
            target,
            metadata=metadata,
            omit_backbone=hasattr(detector, "BACKBONE_PREFIX"),
        )
        report(f"{variant.label}: wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
        written.append(target)
    return written


def shipped_table() -> pd.DataFrame:
    """One row per shipped detector: name, kind, dev threshold, protocol, seed, commit."""
    rows = []
    for name, path in shipped_detectors().items():
        header = read_detector_header(path)
        meta = header["metadata"]
        rows.append(
            {
                "name": name,
                "kind": header["kind"],
                "dev_threshold": meta.get("dev_threshold"),
                "dev_eer": meta.get("best_dev_eer"),
                "protocol": meta.get("protocol", ""),
                "seed": meta.get("seed", ""),
                "git_commit": meta.get("git_commit", ""),
            }
        )
    return pd.DataFrame(rows)
