"""What each ``facecat`` subcommand does (the parser in :mod:`facecat.cli` dispatches here).

Each command imports what it needs when it runs, so ``facecat --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facecat.datasets.adversarial_faces import AdversarialFaces
    from facecat.models.config import FaceCatConfig

log = logging.getLogger("facecat")


def cmd_models(args: argparse.Namespace) -> None:
    from facecat.experiments.shipped import shipped_table
    from facecat.models.config import read_config_dict
    from facecat.models.registry import list_detectors

    print("detector configs (create_detector(name), facecat train --model name):")
    for name in list_detectors():
        print(f"  {name:20s} {read_config_dict(name).get('description', '')}")
    print("shipped trained detectors (load_detector(name), facecat score --detector name):")
    table = shipped_table()
    for row in table.itertuples():
        print(
            f"  {row.name:20s} {row.kind}, dev threshold {row.dev_threshold:.4f}, trained on "
            f"{row.protocol} (seed {row.seed}, commit {str(row.git_commit)[:12]})"
        )
    if table.empty:
        print("  none")


def cmd_ship_detectors(args: argparse.Namespace) -> None:
    from facecat.core.device import pick_device
    from facecat.experiments.shipped import ship_detectors

    for path in ship_detectors(
        args.out,
        cache_dir=args.cache_dir,
        seed=args.seed,
        device=pick_device(args.device),
        progress=not args.quiet,
    ):
        print(f"wrote {path}")


def cmd_train(args: argparse.Namespace) -> None:
    from facecat.core.device import pick_device
    from facecat.core.distributed import join_process_group
    from facecat.datasets.manifest import read_manifest
    from facecat.models.registry import create_detector
    from facecat.training.detector import train_detector

    manifest = read_manifest(args.manifest)
    overrides = json.loads(args.set) if args.set else {}
    detector = create_detector(
        args.model,
        unet_weights=args.unet_weights,
        text_weights=args.text_weights,
        resnet_weights=args.resnet_weights,
        seed=args.seed,
        **overrides,
    )
    world, device = join_process_group(pick_device(args.device))
    result = train_detector(
        detector,
        manifest.split("train"),
        manifest.split("dev"),
        args.out,
        epochs=args.epochs,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        seed=args.seed,
        device=device,
        progress=not args.quiet,
        shares=args.shares,
    )
    if not world.is_main:
        return
    print(
        f"saved {result.detector_path} (best epoch {result.best_epoch}, "
        f"dev EER {result.best_dev_eer:.4f})"
    )


def cmd_eval(args: argparse.Namespace) -> None:
    from facecat.core.checkpoints import atomic_write
    from facecat.core.device import pick_device
    from facecat.datasets.manifest import read_manifest
    from facecat.evaluation.evaluate import evaluate_detector
    from facecat.models.registry import load_detector

    detector = load_detector(args.detector, device=pick_device(args.device))
    manifest = read_manifest(args.manifest)
    table, scores = evaluate_detector(
        detector,
        manifest,
        size=detector.image_size,
        rule=args.threshold,
        oracle=args.oracle,
        batch_size=args.batch_size,
        device=pick_device(args.device),
        n_boot=args.bootstrap,
        progress=not args.quiet,
    )
    out = Path(args.out)
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    if args.scores:
        atomic_write(Path(args.scores), lambda tmp: scores.to_csv(tmp, index=False))
    row = table.iloc[0]
    print(
        f"{row['detector']}: ACER {row['acer']:.4f} APCER {row['apcer_max']:.4f} "
        f"BPCER {row['bpcer']:.4f} EER {row['eer']:.4f} AUC {row['auc']:.4f} "
        f"TDR@{row['fdr']:.1%}FDR {row['tdr_at_fdr']:.4f} "
        f"(threshold {row['threshold']:.4f} from {row['threshold_source']}) -> {out}"
    )


def cmd_score(args: argparse.Namespace) -> int:
    from facecat.core.checkpoints import atomic_write
    from facecat.core.device import pick_device
    from facecat.core.landmarks import FaceDetector
    from facecat.evaluation.photo_decisions import decide_files
    from facecat.models.registry import load_detector

    device = pick_device(args.device)
    detector = load_detector(args.detector, device=device)
    threshold = args.threshold
    if threshold is None and "dev_threshold" not in getattr(detector, "file_metadata", {}):
        threshold = math.nan
        log.warning(
            "%s records no dev-split threshold: P(real) only, no decisions (pass --threshold)",
            args.detector,
        )
    table = decide_files(
        detector,
        args.images,
        threshold=threshold,
        aligned=args.aligned,
        largest=args.largest,
        every_nth_frame=args.every_nth_frame,
        face_detector=None if args.aligned else FaceDetector(device=str(device)),
        device=device,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    text = (
        table.to_json(orient="records", indent=1)
        if args.format == "json"
        else table.to_csv(index=False)
    )
    if args.out:
        atomic_write(Path(args.out), lambda tmp: tmp.write_text(text))
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    for message in table.loc[table["error"] != "", "error"]:
        print(f"facecat score: error: {message}", file=sys.stderr)
    return 2 if (table["error"] != "").any() else 0


def cmd_pretrain_fdm(args: argparse.Namespace) -> None:
    from facecat.core.device import pick_device
    from facecat.datasets.bona_fide import bundled_manifest
    from facecat.datasets.manifest import read_manifest
    from facecat.models.config import FaceCatConfig, read_config_dict
    from facecat.training.pretrain import PretrainConfig, pretrain_fdm

    config = FaceCatConfig.from_dict(read_config_dict(args.model))
    if args.real_manifest == "none":
        photos = []
    else:
        manifest = read_manifest(args.real_manifest or bundled_manifest())
        photos = manifest.split("train").filter(manifest.split("train").labels == 1).paths
    settings = PretrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        lr_decay=args.lr_decay,
        seed=args.seed,
        low_noise_fraction=args.low_noise_fraction,
        low_noise_max=args.low_noise_max,
        checkpoint_every=args.checkpoint_every,
        amp=not args.no_amp,
        time_budget_s=None if args.max_minutes is None else args.max_minutes * 60,
        export_dtype=args.export_dtype,
    )
    weights = pretrain_fdm(
        config.unet,
        args.out,
        settings,
        real_images=photos,
        device=pick_device(args.device),
        dcgan_weights=args.dcgan_weights,
        init_weights=_unet_weights_file(config, args.init_weights),
        progress=not args.quiet,
    )
    print(f"saved {weights}")


def _unet_weights_file(config: FaceCatConfig, name: str | None) -> Path | None:
    """``name`` as a UNet weights file: None stays None, "shipped" is the config's own."""
    from facecat.models.facecat import RANDOM_BACKBONE, backbone_source

    if name is None:
        return None
    source = backbone_source(config, None if name == "shipped" else name)
    if source == RANDOM_BACKBONE:
        raise ValueError(f"config {config.name} has no shipped UNet weights; pass a file")
    return Path(source)


def cmd_fdm_quality(args: argparse.Namespace) -> None:
    import pandas as pd

    from facecat.core.checkpoints import atomic_write
    from facecat.core.device import pick_device
    from facecat.core.images import load_images
    from facecat.datasets.bona_fide import bundled_manifest
    from facecat.datasets.manifest import read_manifest
    from facecat.models.config import FaceCatConfig, read_config_dict
    from facecat.models.unet import UNet
    from facecat.training.pretrain import load_unet_weights, noise_prediction_mse

    config = FaceCatConfig.from_dict(read_config_dict(args.model))
    manifest = read_manifest(args.manifest or bundled_manifest()).split(args.split)
    faces = load_images(manifest.paths, size=config.unet.image_size)
    timesteps = _int_list(args.timesteps, "--timesteps")
    device = pick_device(args.device)
    rows = []
    for name in args.weights or ["shipped"]:
        unet = UNet(config.unet)
        if name != "random":
            load_unet_weights(unet, _unet_weights_file(config, name))
        mse = noise_prediction_mse(unet.to(device), faces, timesteps, seed=args.seed)
        rows += [{"weights": name, "timestep": t, "eps_mse": v} for t, v in mse.items()]
    table = pd.DataFrame(rows)
    print(f"noise-prediction MSE on {len(faces)} {args.split}-split faces of {manifest.root}")
    grid = table.pivot(index="weights", columns="timestep", values="eps_mse")
    print(grid.reindex(args.weights or ["shipped"]).to_string(float_format=lambda v: f"{v:.4f}"))
    if args.out:
        atomic_write(Path(args.out), lambda tmp: table.to_csv(tmp, index=False))


def cmd_demo_data(args: argparse.Namespace) -> None:
    from facecat.datasets.demo import write_lfw_manifest

    manifest = write_lfw_manifest(Path(args.out), size=args.size)
    print(f"wrote {manifest}")


def _adversarial_generators(args: argparse.Namespace) -> dict[str, AdversarialFaces]:
    from facecat.core.device import pick_device
    from facecat.datasets.adversarial_faces import protocol_generators

    if args.no_adversarial:
        return {}
    return protocol_generators(args.fr, str(pick_device(args.device)))


def cmd_data_build(args: argparse.Namespace) -> None:
    from facecat.datasets.protocol import MANIFEST_NAME, build_embedded

    protocol = build_embedded(
        args.cache_dir,
        seed=args.seed,
        force=args.force,
        adversarial=_adversarial_generators(args),
    )
    print(f"embedded protocol: {protocol.root / MANIFEST_NAME} ({len(protocol.manifest)} samples)")


def cmd_data_show(args: argparse.Namespace) -> None:
    from facecat.datasets.protocol import pa_contact_sheet

    print(f"wrote {pa_contact_sheet(args.out, faces=args.faces, seed=args.seed)}")


def cmd_data_stats(args: argparse.Namespace) -> None:
    from facecat.datasets.manifest import read_manifest
    from facecat.datasets.protocol import build_embedded, counts

    if args.manifest:
        manifest = read_manifest(args.manifest)
    else:
        manifest = build_embedded(
            args.cache_dir, seed=args.seed, adversarial=_adversarial_generators(args)
        ).manifest
    print(counts(manifest).to_string())


def cmd_data_siw_mv2(args: argparse.Namespace) -> None:
    from facecat.datasets.siw_mv2 import write_siw_mv2_manifest

    out = write_siw_mv2_manifest(
        args.root,
        args.train_list,
        args.test_list,
        args.out,
        dev_fraction=args.dev_fraction,
        frames_per_video=args.frames_per_video,
        seed=args.seed,
        skip_missing=args.skip_missing,
    )
    print(f"wrote {out}")


def cmd_crop(args: argparse.Namespace) -> None:
    from facecat.datasets.crop import crop_faces

    out = crop_faces(
        [Path(p) for p in args.inputs],
        args.out,
        size=args.size,
        scale=args.scale,
        every_nth_frame=args.every_nth_frame,
    )
    print(f"wrote {out}")


def cmd_attack(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd

    from facecat.core.device import pick_device
    from facecat.datasets.adversarial_faces import (
        craft_batches,
        create_recognizer,
        pick_targets,
        save_image,
    )
    from facecat.datasets.manifest import read_manifest, write_manifest

    manifest = read_manifest(args.manifest)
    if args.split:
        manifest = manifest.split(args.split)
    frame = manifest.frame[manifest.frame["label"] == 1].reset_index(drop=True)
    if args.limit:
        frame = frame.head(args.limit)
    if "landmarks" not in frame:
        raise ValueError(f"{args.manifest}: attacks need a landmarks column (facecat crop adds it)")
    recognizer = create_recognizer(args.fr, pick_device(args.device))
    rng = np.random.default_rng(args.seed)
    targets = frame.iloc[pick_targets(frame["subject"].to_numpy(), rng)]
    out = Path(args.out)
    rows = []
    batches = craft_batches(
        args.type,
        recognizer,
        frame,
        targets,
        manifest.root,
        seed=args.seed,
        batch_size=args.batch_size,
        size=args.size,
        device=args.device,
    )
    for batch, _, result in batches:
        for i, (_, row) in enumerate(batch.iterrows()):
            name = f"images/{args.type}/{Path(row['path']).stem}.png"
            save_image(result.images[i], out / name)
            rows.append(
                row.to_dict()
                | {
                    "path": name,
                    "label": 0,
                    "attack_type": args.type,
                    "fr_success": bool(result.success[i]),
                    "linf": float(result.linf[i]),
                }
            )
    table = pd.DataFrame(rows)
    write_manifest(table, out / "manifest.csv")
    print(
        f"{args.type} against {recognizer.name}: ASR {table['fr_success'].mean():.3f} "
        f"on {len(table)} faces -> {out / 'manifest.csv'}"
    )


def cmd_attack_table(args: argparse.Namespace) -> None:
    from facecat.core.checkpoints import atomic_write
    from facecat.core.device import pick_device
    from facecat.datasets.adversarial_faces import (
        adversarial_contact_sheet,
        bundled_test_faces,
        create_recognizer,
        success_table,
    )
    from facecat.datasets.protocol import ADVERSARIAL_TYPES

    recognizer = create_recognizer(args.fr, pick_device(args.device))
    images, landmarks, subjects, _ = bundled_test_faces(args.faces)
    types = tuple(args.types.split(",")) if args.types else ADVERSARIAL_TYPES
    table = success_table(
        recognizer,
        images.to(args.device),
        landmarks.to(args.device),
        subjects,
        types=types,
        seed=args.seed,
    )
    atomic_write(Path(args.out), lambda tmp: table.to_csv(tmp, index=False))
    print(table[["type", "asr", "mean_linf", "mean_queries", "images_per_s"]].to_string())
    if args.sheet:
        adversarial_contact_sheet(recognizer, args.sheet, types=types, seed=args.seed)
        print(f"wrote {args.sheet}")


def cmd_reproduce(args: argparse.Namespace) -> None:
    from facecat.core.device import pick_device
    from facecat.experiments.reproduce import run_main_job

    table = run_main_job(
        args.out,
        cache_dir=args.cache_dir,
        epochs=args.epochs,
        seed=args.seed,
        device=pick_device(args.device),
        n_boot=args.bootstrap,
        progress=not args.quiet,
    )
    columns = ["detector", "apcer_max", "bpcer", "acer", "eer", "auc", "tdr_at_fdr"]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def cmd_seeds(args: argparse.Namespace) -> None:
    from facecat.core.device import pick_device
    from facecat.experiments.reproduce import run_seed_study

    table = run_seed_study(
        _int_list(args.seeds, "--seeds"),
        args.out,
        cache_dir=args.cache_dir,
        epochs=args.epochs,
        device=pick_device(args.device),
        n_boot=args.bootstrap,
        progress=not args.quiet,
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def cmd_ablate_blocks(args: argparse.Namespace) -> None:
    from facecat.core.device import pick_device
    from facecat.experiments.reproduce import run_block_ablation

    try:
        block_sets = tuple(tuple(int(b) for b in text.split(",")) for text in args.blocks)
    except ValueError as error:
        raise ValueError(
            f"--blocks takes comma-separated block indices, e.g. 1,3,5: {error}"
        ) from error
    table = run_block_ablation(
        block_sets,
        args.out,
        config=args.model,
        cache_dir=args.cache_dir,
        epochs=args.epochs,
        seed=args.seed,
        device=pick_device(args.device),
        progress=not args.quiet,
    )
    columns = ["blocks", "dev_eer", "acer", "eer", "auc", "tdr_at_fdr", "chosen"]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as error:
        raise ValueError(f"{what} takes comma-separated integers, e.g. 1,10,50: {error}") from error


def cmd_probe(args: argparse.Namespace) -> None:
    from facecat.core.device import pick_device
    from facecat.experiments.reproduce import run_probe_job

    table = run_probe_job(
        args.out,
        manifest=args.manifest,
        config=args.model,
        timesteps=_int_list(args.timesteps, "--timesteps"),
        pool=args.pool,
        backbones=tuple(args.backbones.split(",")),
        cache_dir=args.cache_dir,
        seed=args.seed,
        device=pick_device(args.device),
        n_boot=args.bootstrap,
        progress=not args.quiet,
    )
    grid = table.pivot_table(index=["backbone", "timestep"], columns="block", values="dev_auc")
    print("linear-probe dev AUC (rows: backbone, timestep; columns: decoder block)")
    print(grid.to_string(float_format=lambda v: f"{v:.3f}"))
    chosen = table[table["chosen"]]
    columns = ["backbone", "timestep", "block", "dev_auc", "test_auc"]
    print("chosen on dev (test scored once):")
    print(chosen[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def cmd_info(args: argparse.Namespace) -> None:
    from facecat.models.registry import read_detector_header, resolve_detector_path

    header = read_detector_header(resolve_detector_path(args.detector))
    print(
        json.dumps(
            {
                "kind": header["kind"],
                "config": header["config"],
                "metadata": header["metadata"],
                "tensors": len(header["keys"]),
            },
            indent=2,
        )
    )
