"""The main job: FaceCat vs CDCN on the embedded protocol, with the paper's ablations.

One call builds (or reuses) the embedded protocol with all 28 attack types (protocol 1),
trains every variant on its train split with dev-split model selection, evaluates each on
the test split at a threshold fixed on the dev split, and writes a Table-4-style comparison
(APCER, BPCER, ACER, EER, AUC, TDR@0.2%FDR with bootstrap confidence intervals), per-type
APCER, per-image scores and their plots. Trained runs live in the cache folder and resume or
are reused when the job runs again with the same inputs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from facecat.core.checkpoints import atomic_write
from facecat.core.provenance import stamped
from facecat.datasets.manifest import Manifest, read_manifest
from facecat.datasets.protocol import EmbeddedProtocol, counts, default_cache_dir
from facecat.evaluation import metrics, plots
from facecat.evaluation.evaluate import evaluate_detector
from facecat.evaluation.headline import bpcer_by_source, family_auc, paired_auc_differences
from facecat.experiments.probe import PROBE_NAME, TRAINED_BACKBONE, run_feature_probe
from facecat.experiments.variants import VARIANTS, Variant, embedded_p1, train_variant
from facecat.models.facecat import FaceCat
from facecat.models.registry import load_detector
from facecat.training.facecat import cached_scores

log = logging.getLogger(__name__)

COMPARISON_NAME = "embedded_table4.csv"
PER_TYPE_NAME = "embedded_per_type_apcer.csv"
SCORES_NAME = "embedded_scores.csv"
COUNTS_NAME = "embedded_protocol_counts.csv"
ABLATION_NAME = "embedded_blocks_ablation.csv"
PROBE_PLOT_NAME = "embedded_feature_probe.png"
FAMILY_NAME = "embedded_family_auc.csv"
DIFFERENCES_NAME = "embedded_auc_differences.csv"
BY_SOURCE_NAME = "embedded_bpcer_by_source.csv"
SEEDS_NAME = "embedded_seeds.csv"
SEEDS_SUMMARY_NAME = "embedded_seeds_summary.csv"


class Progress:
    """Prints each stage of a long job with the seconds elapsed since the job started."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f} s] {message}", flush=True)


@dataclass(frozen=True)
class Comparison:
    """Test-split results of several variants on one protocol."""

    table: pd.DataFrame
    per_type: pd.DataFrame
    scores: pd.DataFrame


def compare_variants(
    protocol: EmbeddedProtocol,
    manifest: Manifest,
    variants: tuple[Variant, ...],
    *,
    cache_dir: Path,
    report: Progress,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_boot: int = 1000,
    progress: bool = True,
) -> Comparison:
    """Train (or reuse) every variant on ``manifest`` and evaluate it on its test split.

    Args:
        protocol: the built protocol (its folder keys the training runs).
        manifest: the protocol split to train and test on (e.g. ``protocol.p1()``).
        variants: the detectors.
        cache_dir: where training runs live (``cache_dir/runs/<protocol>/<variant>``).
        report: stage printer.
        epochs: override every variant's configured number of epochs.
        seed: initialisation and batch-order seed.
        device: where training and scoring run.
        n_boot: bootstrap resamples of the confidence intervals.
        progress: show progress bars.

    Returns:
        The comparison table (one row per variant, plus ``dev_eer``), per-type APCER (long)
        and per-image dev and test scores (paths relative to the protocol folder).
    """
    rows, per_type, scores = [], [], []
    for variant in variants:
        report(f"{variant.label}: training ({variant.config})")
        run_dir = variant.run_dir(cache_dir, protocol.root.name, epochs, seed)
        detector_path = train_variant(
            variant,
            manifest,
            run_dir,
            epochs=epochs,
            seed=seed,
            device=device,
            feature_cache=cache_dir / "features",
            progress=progress,
        )
        report(f"{variant.label}: evaluating on the test split")
        detector = load_detector(detector_path, device=device)
        scorer = None
        if isinstance(detector, FaceCat):
            scorer = partial(
                cached_scores, detector, cache_root=cache_dir / "features", device=device
            )
        table, variant_scores = evaluate_detector(
            detector,
            manifest,
            size=detector.image_size,
            device=device,
            n_boot=n_boot,
            progress=progress,
            scorer=scorer,
        )
        dev = variant_scores[variant_scores["split"] == "dev"]
        row = {"detector": variant.label} | table.iloc[0].drop("detector").to_dict()
        row["dev_eer"] = metrics.eer(dev["score"].to_numpy(), dev["label"].to_numpy())[0]
        rows.append(row)
        per_type += [
            {"detector": variant.label, "attack_type": key[6:-1], "apcer": value}
            for key, value in row.items()
            if key.startswith("apcer[")
        ]
        variant_scores.insert(0, "detector", variant.label)
        variant_scores["path"] = [
            str(Path(p).relative_to(protocol.root)) for p in variant_scores["path"]
        ]
        scores.append(variant_scores)
        report(
            f"{variant.label}: ACER {row['acer']:.4f}  EER {row['eer']:.4f}  "
            f"AUC {row['auc']:.4f}  TDR@0.2%FDR {row['tdr_at_fdr']:.4f}"
        )
    table = pd.DataFrame(rows)
    table = table[[c for c in table.columns if "[" not in c]]
    return Comparison(table, pd.DataFrame(per_type), pd.concat(scores, ignore_index=True))


@dataclass(frozen=True)
class _Job:
    """What every job of this module shares: its stage printer, folders and run settings."""

    report: Progress
    out_dir: Path
    cache_dir: Path
    device: str | torch.device
    n_boot: int
    progress: bool
    epochs: int | None = None

    @classmethod
    def start(
        cls,
        out_dir: str | Path,
        cache_dir: str | Path | None,
        device: str | torch.device,
        n_boot: int,
        progress: bool,
        epochs: int | None = None,
    ) -> _Job:
        """A job writing to ``out_dir``, caching in ``cache_dir`` (default ``$FACECAT_CACHE``)."""
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return cls(Progress(), Path(out_dir), cache, device, n_boot, progress, epochs)

    def protocol(self, bona_fide: str | Path | None, seed: int) -> EmbeddedProtocol:
        """The embedded protocol, built or reused."""
        return embedded_p1(self.cache_dir, seed=seed, bona_fide=bona_fide, device=self.device)

    def compare(
        self,
        protocol: EmbeddedProtocol,
        manifest: Manifest,
        variants: tuple[Variant, ...],
        seed: int,
    ) -> Comparison:
        """:func:`compare_variants` with this job's settings."""
        return compare_variants(
            protocol,
            manifest,
            variants,
            cache_dir=self.cache_dir,
            report=self.report,
            epochs=self.epochs,
            seed=seed,
            device=self.device,
            n_boot=self.n_boot,
            progress=self.progress,
        )


def run_main_job(
    out_dir: str | Path = "results",
    *,
    cache_dir: str | Path | None = None,
    bona_fide: str | Path | None = None,
    variants: tuple[Variant, ...] = VARIANTS,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_boot: int = 1000,
    progress: bool = True,
) -> pd.DataFrame:
    """Build the embedded protocol, train and evaluate every variant, write tables and plots.

    Args:
        out_dir: where the CSVs and PNGs go (``results/``).
        cache_dir: protocol builds, feature caches and training runs (default
            ``$FACECAT_CACHE``).
        bona_fide: bona fide manifest the protocol is built from (default: the bundled set).
        variants: the detectors to compare.
        epochs: override every variant's configured number of epochs.
        seed: protocol, initialisation and batch-order seed.
        device: where attacks, feature extraction, training and scoring run.
        n_boot: bootstrap resamples of the confidence intervals.
        progress: show progress bars.

    Returns:
        The comparison table (one row per variant).
    """
    job = _Job.start(out_dir, cache_dir, device, n_boot, progress, epochs)
    out_dir, report = job.out_dir, job.report
    report("building or loading the embedded protocol (28 attack types)")
    protocol = job.protocol(bona_fide, seed)
    manifest = protocol.p1()
    report(f"protocol ready: {len(manifest)} samples in {protocol.root}")
    atomic_write(
        out_dir / COUNTS_NAME, lambda tmp: counts(manifest).to_csv(tmp, index_label="attack_type")
    )
    result = job.compare(protocol, manifest, variants, seed)
    labels = list(result.table["detector"])
    families = family_auc(result.scores, n_boot=n_boot, seed=seed)
    differences = paired_auc_differences(
        result.scores, labels[0], labels[1:], n_boot=n_boot, seed=seed
    )
    sources = pd.Series(
        manifest.frame["source"].to_numpy() if "source" in manifest.frame else "unspecified",
        index=[str(p.relative_to(protocol.root)) for p in manifest.paths],
    )
    by_source = bpcer_by_source(
        result.scores, sources, dict(zip(labels, result.table["threshold"], strict=True))
    )
    key = protocol.root.name
    for name, table in (
        (COMPARISON_NAME, stamped(result.table, key, device)),
        (PER_TYPE_NAME, stamped(result.per_type, key, device)),
        (SCORES_NAME, result.scores),
        (FAMILY_NAME, stamped(families, key, device)),
        (DIFFERENCES_NAME, stamped(differences, key, device)),
        (BY_SOURCE_NAME, stamped(by_source, key, device)),
    ):
        atomic_write(out_dir / name, lambda tmp, t=table: t.to_csv(tmp, index=False))
    title = "embedded protocol P1 (28 types), test split"
    plots.plot_comparison(result.table, out_dir / "embedded_table4.png", title=title)
    plots.plot_roc(result.scores, out_dir / "embedded_roc.png", title=title)
    plots.plot_det(result.scores, out_dir / "embedded_det.png", title=title)
    plots.plot_per_type(result.per_type, out_dir / "embedded_per_type_apcer.png", title=title)
    report(f"wrote tables and plots to {out_dir}")
    return result.table


def run_seed_study(
    seeds: tuple[int, ...],
    out_dir: str | Path = "results",
    *,
    variants: tuple[Variant, ...] = (VARIANTS[0], VARIANTS[-1]),
    cache_dir: str | Path | None = None,
    bona_fide: str | Path | None = None,
    epochs: int | None = None,
    device: str | torch.device = "cpu",
    n_boot: int = 1000,
    progress: bool = True,
) -> pd.DataFrame:
    """Training-seed spread: every variant trained once per seed on the same protocol 1.

    The protocol is built with seed 0 (the main job's); only head initialisation and batch
    order change, so seed 0 reuses the main job's runs. Per seed the first variant's test AUC
    is compared with every other's by a paired bootstrap.

    Writes ``embedded_seeds.csv`` (one row per variant and seed) and
    ``embedded_seeds_summary.csv`` (mean, standard deviation, min and max per variant).

    Returns:
        The per-seed table.
    """
    job = _Job.start(out_dir, cache_dir, device, n_boot, progress, epochs)
    out_dir = job.out_dir
    protocol = job.protocol(bona_fide, seed=0)
    manifest = protocol.p1()
    rows = []
    for seed in seeds:
        result = job.compare(protocol, manifest, variants, seed)
        labels = list(result.table["detector"])
        differences = paired_auc_differences(
            result.scores, labels[0], labels[1:], n_boot=n_boot, seed=seed
        )
        overall = differences[differences["family"] == "all"].set_index("versus")
        for _, row in result.table.iterrows():
            record = {"seed": seed, "detector": row["detector"], "dev_eer": row["dev_eer"]}
            record |= {m: row[m] for m in ("auc", "eer", "acer", "bpcer", "apcer_max")}
            if row["detector"] in overall.index:
                versus = overall.loc[row["detector"]]
                record["reference"] = labels[0]
                record["reference_auc_minus_this"] = versus["auc_difference"]
                record["difference_ci_low"] = versus["ci_low"]
                record["difference_ci_high"] = versus["ci_high"]
            rows.append(record)
    table = pd.DataFrame(rows)
    summary = (
        table.groupby("detector", sort=False)[["dev_eer", "auc", "eer", "acer"]]
        .agg(["mean", "std", "min", "max"])
        .reset_index()
    )
    summary.columns = ["_".join(c).strip("_") for c in summary.columns]
    table = stamped(table, protocol.root.name, device)
    summary = stamped(summary, protocol.root.name, device)
    atomic_write(out_dir / SEEDS_NAME, lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(out_dir / SEEDS_SUMMARY_NAME, lambda tmp: summary.to_csv(tmp, index=False))
    job.report(f"wrote {out_dir / SEEDS_NAME} and {out_dir / SEEDS_SUMMARY_NAME}")
    return table


def run_block_ablation(
    block_sets: tuple[tuple[int, ...], ...],
    out_dir: str | Path = "results",
    *,
    config: str = "facecat-small",
    cache_dir: str | Path | None = None,
    bona_fide: str | Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_boot: int = 200,
    progress: bool = True,
) -> pd.DataFrame:
    """Which decoder blocks to read (paper Table 3): FaceCat per block set on protocol 1.

    The recommended set is the one with the lowest dev-split EER (the test split never
    chooses); the table marks it in the ``chosen`` column.

    Args:
        block_sets: decoder output-block indices per variant.
        out_dir: receives ``embedded_blocks_ablation.csv`` and its plot.
        config: the FaceCat config whose blocks vary.
        cache_dir, bona_fide, epochs, seed, device, n_boot, progress: as
            :func:`run_main_job`.

    Returns:
        One row per block set.
    """
    job = _Job.start(out_dir, cache_dir, device, n_boot, progress, epochs)
    out_dir = job.out_dir
    protocol = job.protocol(bona_fide, seed)
    variants = tuple(
        Variant(
            "blocks " + ",".join(map(str, blocks)),
            config,
            overrides={"features": {"blocks": list(blocks)}},
        )
        for blocks in block_sets
    )
    result = job.compare(protocol, protocol.p1(), variants, seed)
    table = result.table.rename(columns={"detector": "blocks"})
    table["blocks"] = [",".join(map(str, b)) for b in block_sets]
    table["chosen"] = table["dev_eer"] == table["dev_eer"].min()
    table = stamped(table, protocol.root.name, device)
    atomic_write(out_dir / ABLATION_NAME, lambda tmp: table.to_csv(tmp, index=False))
    plots.plot_comparison(
        result.table,
        out_dir / "embedded_blocks_ablation.png",
        title=f"{config}: decoder blocks read (test split)",
    )
    job.report(f"wrote {out_dir / ABLATION_NAME}")
    return table


def run_probe_job(
    out_dir: str | Path = "results",
    *,
    manifest: str | Path | None = None,
    config: str = "facecat-small",
    timesteps: tuple[int, ...] = (1, 10, 50, 150, 300),
    pool: int = 8,
    backbones: tuple[str, ...] = (TRAINED_BACKBONE, "random"),
    cache_dir: str | Path | None = None,
    bona_fide: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_boot: int = 200,
    progress: bool = True,
) -> pd.DataFrame:
    """Linear probes per timestep x decoder block (see :mod:`facecat.experiments.probe`).

    Writes ``embedded_feature_probe.csv`` and its heat map to ``out_dir``.

    Args:
        out_dir: where the CSV and PNG go.
        manifest: a manifest with train, dev and test splits; default: the embedded
            protocol 1 (built or reused).
        config, timesteps, pool, backbones: as :func:`facecat.experiments.probe.run_feature_probe`.
        cache_dir, bona_fide, seed, device, n_boot, progress: as :func:`run_main_job`.

    Returns:
        The probe table.
    """
    job = _Job.start(out_dir, cache_dir, device, n_boot, progress)
    out_dir, cache_dir, report = job.out_dir, job.cache_dir, job.report
    data = job.protocol(bona_fide, seed).p1() if manifest is None else read_manifest(manifest)
    report(f"probing {config}: timesteps {list(timesteps)}, backbones {list(backbones)}")
    table = run_feature_probe(
        data,
        config=config,
        timesteps=timesteps,
        pool=pool,
        backbones=backbones,
        cache_dir=cache_dir / "features",
        device=device,
        n_boot=n_boot,
        progress=progress,
    )
    atomic_write(out_dir / PROBE_NAME, lambda tmp: table.to_csv(tmp, index=False))
    plots.plot_feature_probe(
        table,
        out_dir / PROBE_PLOT_NAME,
        title=f"{config}: linear-probe dev AUC (features pooled to {pool}x{pool})",
    )
    report(f"wrote {out_dir / PROBE_NAME}")
    return table
