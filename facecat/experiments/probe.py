"""Linear probes of frozen diffusion features: which timestep and decoder block to read.

For every timestep and decoder output block of a FaceCat config, the block's activations
(average-pooled to ``pool`` x ``pool``) are standardised on the train split and a logistic
regression is fitted on them; its inverse regularisation strength C is picked by dev AUC.
The probe runs on the trained face diffusion model and on a randomly initialised one of the
same architecture (what the pretraining adds), reports the dev AUC with a bootstrap interval
for every cell, marks the best cell per backbone by dev AUC, and scores only that cell on the
test split. This is the paper's timestep study (its Table 6) next to its block study (Table 3),
as a tool to pick the features of a new face diffusion model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from facecat.core.images import ImageFiles
from facecat.datasets.manifest import Manifest
from facecat.evaluation import metrics
from facecat.models.facecat import RANDOM_BACKBONE
from facecat.models.features import unflatten_features
from facecat.models.registry import create_detector
from facecat.models.unet import decoder_block_shapes
from facecat.training.cache import FeatureCache

log = logging.getLogger(__name__)

PROBE_NAME = "embedded_feature_probe.csv"
TRAINED_BACKBONE = "trained"
#: Inverse L2 strengths tried per cell; dev AUC picks one.
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def block_features(
    config: str,
    manifest: Manifest,
    timestep: int,
    blocks: list[int],
    *,
    pool: int,
    unet_weights: str | Path | None,
    cache_dir: Path,
    device: torch.device,
    progress: bool,
) -> dict[str, list[np.ndarray]]:
    """Pooled activations of every decoder block at one timestep, per split.

    Returns:
        ``{split: [array (N, C_b * pool_b**2) per block]}`` for train, dev and test.
    """
    options = {} if unet_weights is None else {"unet_weights": unet_weights}
    detector = create_detector(
        config,
        features={"timesteps": [timestep], "blocks": blocks, "pool": pool},
        device=device,
        **options,
    )
    extractor = detector.extractor
    cache = FeatureCache(cache_dir)
    out = {}
    for split in ("train", "dev", "test"):
        images = ImageFiles(manifest.split(split).paths, detector.image_size)
        rows = cache.features(
            extractor,
            detector.backbone_digest(),
            images,
            device=device,
            progress=progress,
            dtype="float16",
        )
        blocks = unflatten_features(torch.from_numpy(np.array(rows)), extractor.block_shapes())
        out[split] = [b.flatten(1).float().numpy() for b in blocks]
    return out


def fit_probe(
    train: np.ndarray, train_labels: np.ndarray, dev: np.ndarray, dev_labels: np.ndarray
) -> tuple[StandardScaler, LogisticRegression, float, float]:
    """Standardise on train, fit one logistic regression per C, keep the best by dev AUC.

    Returns:
        ``(scaler, model, C, dev AUC)``.
    """
    scaler = StandardScaler().fit(train)
    train_z, dev_z = scaler.transform(train), scaler.transform(dev)
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(train_z, train_labels)
        auc = metrics.auc(model.decision_function(dev_z), dev_labels)
        if best is None or auc > best[3]:
            best = (scaler, model, c, auc)
    return best


def run_feature_probe(
    manifest: Manifest,
    *,
    config: str = "facecat-small",
    timesteps: Sequence[int] = (1, 10, 50, 150, 300),
    pool: int = 8,
    backbones: Sequence[str] = (TRAINED_BACKBONE, RANDOM_BACKBONE),
    cache_dir: str | Path,
    device: str | torch.device = "cpu",
    n_boot: int = 200,
    progress: bool = True,
) -> pd.DataFrame:
    """Linear probes per backbone x timestep x decoder block of ``config``.

    Args:
        manifest: protocol with train, dev and test splits.
        config: the FaceCat config whose UNet (architecture and default weights) is probed.
        timesteps: diffusion steps at which the images are noised.
        pool: every block is average-pooled to at most ``pool`` x ``pool``.
        backbones: "trained" (the config's weights) and/or "random" (initialised), or paths
            of other UNet weight files.
        cache_dir: feature cache folder.
        device: where the UNet runs.
        n_boot: bootstrap resamples of the AUC intervals.
        progress: show progress bars.

    Returns:
        One row per cell: backbone, timestep, block, channels, resolution, C, dev AUC with
        its interval, ``chosen`` (best dev AUC of its backbone) and, for chosen cells only,
        the test AUC with its interval.
    """
    device = torch.device(device)
    labels = {split: manifest.split(split).labels for split in ("train", "dev", "test")}
    shapes = decoder_block_shapes(create_detector(config, device="meta").config.unet)
    rows, fitted = [], {}
    for backbone in backbones:
        weights = None if backbone == TRAINED_BACKBONE else backbone
        for t in timesteps:
            features = block_features(
                config,
                manifest,
                t,
                list(range(len(shapes))),
                pool=pool,
                unet_weights=weights,
                cache_dir=Path(cache_dir),
                device=device,
                progress=progress,
            )
            for block, shape in enumerate(shapes):
                scaler, model, c, dev_auc = fit_probe(
                    features["train"][block], labels["train"], features["dev"][block], labels["dev"]
                )
                dev_scores = model.decision_function(scaler.transform(features["dev"][block]))
                low, high = metrics.bootstrap_ci(
                    metrics.auc, dev_scores, labels["dev"], n_boot=n_boot
                )
                fitted[(backbone, t, block)] = (scaler, model, features["test"][block])
                rows.append(
                    {
                        "backbone": str(backbone),
                        "timestep": t,
                        "block": block,
                        "channels": shape.channels,
                        "resolution": min(shape.resolution, pool),
                        "C": c,
                        "dev_auc": dev_auc,
                        "dev_auc_ci_low": low,
                        "dev_auc_ci_high": high,
                    }
                )
                log.info("probe %s t=%d block %d: dev AUC %.4f", backbone, t, block, dev_auc)
    table = pd.DataFrame(rows)
    table["chosen"] = table.index.isin(table.groupby("backbone")["dev_auc"].idxmax())
    for column in ("test_auc", "test_auc_ci_low", "test_auc_ci_high"):
        table[column] = np.nan
    for index, row in table[table["chosen"]].iterrows():
        scaler, model, test = fitted[(row["backbone"], row["timestep"], row["block"])]
        scores = model.decision_function(scaler.transform(test))
        low, high = metrics.bootstrap_ci(metrics.auc, scores, labels["test"], n_boot=n_boot)
        table.loc[index, ["test_auc", "test_auc_ci_low", "test_auc_ci_high"]] = (
            metrics.auc(scores, labels["test"]),
            low,
            high,
        )
    return table
