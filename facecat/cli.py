"""The ``facecat`` command: train, eval, score, data, crop, pretrain-fdm and helpers."""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from collections.abc import Callable, Sequence

from facecat import __version__
from facecat.commands import (
    cmd_ablate_blocks,
    cmd_attack,
    cmd_attack_table,
    cmd_crop,
    cmd_data_build,
    cmd_data_show,
    cmd_data_siw_mv2,
    cmd_data_stats,
    cmd_demo_data,
    cmd_eval,
    cmd_fdm_quality,
    cmd_info,
    cmd_models,
    cmd_pretrain_fdm,
    cmd_probe,
    cmd_reproduce,
    cmd_score,
    cmd_seeds,
    cmd_ship_detectors,
    cmd_train,
)
from facecat.core.paths import SHIPPED_DIR

#: Built-in exceptions that main() reports as user errors (facecat's own: _is_user_error).
_BUILTIN_USER_ERRORS = (FileNotFoundError, FloatingPointError, ValueError, KeyError, RuntimeError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help with each option's default, unless it is None, False or the help text states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action).strip()

    def _format_action(self, action: argparse.Action) -> str:
        text = self._get_help_string(action)
        if not action.help and text:
            action = copy.copy(action)
            action.help = text
        return super()._format_action(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``facecat`` command."""
    parser = argparse.ArgumentParser(
        prog="facecat",
        description="Face anti-spoofing and adversarial-face detection.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"facecat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], None], text: str):
        command = sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)
        command.set_defaults(handler=handler)
        return command

    add("models", cmd_models, "list the detector configs and the shipped trained detectors")
    ship = add(
        "ship-detectors",
        cmd_ship_detectors,
        "train (or reuse the main job's runs of) facecat-small and cdcn on the embedded "
        "protocol and write the shipped detector files",
    )
    ship.add_argument("--out", default=str(SHIPPED_DIR), help="folder of the detector files")
    ship.add_argument("--cache-dir", help="protocol, features and runs ($FACECAT_CACHE)")
    ship.add_argument("--seed", type=int, default=0)
    ship.add_argument("--device", default="cpu")
    ship.add_argument("--quiet", action="store_true", help="no progress bars")

    train = add("train", cmd_train, "train a FaceCat head on a manifest's train/dev splits")
    train.add_argument("--model", default="facecat-small", help="config name or JSON path")
    train.add_argument("--manifest", required=True, help="manifest CSV")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--epochs", type=int, help="override the config's epochs")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--cache-dir", help="feature cache folder (default OUT/feature-cache)")
    train.add_argument(
        "--no-cache",
        action="store_true",
        help="re-extract features every epoch (as the authors' release does)",
    )
    train.add_argument("--unet-weights", help="guided-diffusion UNet checkpoint (strict)")
    train.add_argument("--text-weights", help="CLIP weights file (clip text backend)")
    train.add_argument("--resnet-weights", help="torchvision ResNet-18 ImageNet state dict")
    train.add_argument("--set", help="JSON config overrides, e.g. '{\"text_guided\": false}'")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--shares",
        type=int,
        default=1,
        help="split every batch into N shares in one process: the same updates as "
        "`torchrun --nproc_per_node N facecat train ...` (FaceCat kinds)",
    )

    evaluate = add("eval", cmd_eval, "evaluate a detector on a manifest's test split")
    evaluate.add_argument("--detector", required=True, help="detector .safetensors file")
    evaluate.add_argument("--manifest", required=True)
    evaluate.add_argument("--out", required=True, help="metrics CSV")
    evaluate.add_argument("--scores", help="also write per-image scores to this CSV")
    evaluate.add_argument(
        "--threshold", default="eer", help="dev-split rule: eer | bpcer=0.05 | fixed=0.5"
    )
    evaluate.add_argument(
        "--oracle",
        action="store_true",
        help="pick the threshold on the test split (optimistic; labelled)",
    )
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="CI resamples (0: none)")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--quiet", action="store_true")

    score = add(
        "score",
        cmd_score,
        "detect and align the face in photographs or videos, print P(real) and the decision",
    )
    score.add_argument(
        "--detector",
        default="facecat-small",
        help="shipped detector name or detector .safetensors file (default: facecat-small)",
    )
    score.add_argument("images", nargs="+", help="image or video files, or folders")
    score.add_argument(
        "--threshold",
        type=float,
        help="P(real) at or above which a face is bona fide (default: the detector's dev "
        "threshold)",
    )
    score.add_argument(
        "--aligned", action="store_true", help="inputs are aligned face crops: no face detection"
    )
    score.add_argument(
        "--largest", action="store_true", help="score the largest face instead of refusing"
    )
    score.add_argument(
        "--every-nth-frame", type=int, default=10, help="video frames scored: 0, n, 2n, ..."
    )
    score.add_argument("--format", choices=("csv", "json"), default="csv")
    score.add_argument("--out", help="write to this file instead of stdout")
    score.add_argument("--device", default="cpu")
    score.add_argument("--quiet", action="store_true", help="no progress bar")

    fdm = add(
        "pretrain-fdm",
        cmd_pretrain_fdm,
        "pretrain a face diffusion UNet (DDPM, L_simple) for a detector config",
    )
    fdm.add_argument("--model", default="facecat-small", help="detector config whose UNet to train")
    fdm.add_argument("--out", required=True, help="output folder (checkpoint, loss log, weights)")
    fdm.add_argument("--steps", type=int, default=20_000)
    fdm.add_argument("--batch-size", type=int, default=64)
    fdm.add_argument("--lr", type=float, default=2e-4)
    fdm.add_argument("--warmup", type=int, default=500, help="linear warm-up steps")
    fdm.add_argument(
        "--lr-decay",
        choices=("constant", "cosine"),
        default="constant",
        help="after the warm-up: constant, or cosine-decayed to zero at --steps",
    )
    fdm.add_argument(
        "--init-weights",
        help="UNet weights to start from: a file, or 'shipped' for the config's packaged "
        "weights (default: random initialisation)",
    )
    fdm.add_argument("--seed", type=int, default=0)
    fdm.add_argument(
        "--low-noise-fraction",
        type=float,
        default=0.5,
        help="share of each batch with timesteps below --low-noise-max",
    )
    fdm.add_argument("--low-noise-max", type=int, default=200)
    fdm.add_argument("--checkpoint-every", type=int, default=1_000)
    fdm.add_argument(
        "--real-manifest",
        help="real photos to mix in: its train-split bona fide images (default: the "
        "bundled bona fide set; 'none' for DCGAN faces only)",
    )
    fdm.add_argument("--dcgan-weights", help="DCGAN weights.tar (default: gan-face-generate's)")
    fdm.add_argument("--device", default="cpu")
    fdm.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    fdm.add_argument("--max-minutes", type=float, help="stop, checkpoint and export after this")
    fdm.add_argument("--export-dtype", choices=("float32", "float16"), default="float32")
    fdm.add_argument("--quiet", action="store_true")

    quality = add(
        "fdm-quality",
        cmd_fdm_quality,
        "noise-prediction MSE of UNet weights on held-out bona fide faces, per timestep",
    )
    quality.add_argument(
        "weights",
        nargs="*",
        help="UNet weight files, 'shipped' (the config's) or 'random' (default: shipped)",
    )
    quality.add_argument("--model", default="facecat-small", help="config of the UNet layout")
    quality.add_argument("--manifest", help="faces to score (default: the bundled bona fide set)")
    quality.add_argument("--split", default="test", help="manifest split to score")
    quality.add_argument("--timesteps", default="1,10,50,200,500", help="comma-separated")
    quality.add_argument("--seed", type=int, default=0, help="seed of the noise")
    quality.add_argument("--device", default="cpu")
    quality.add_argument("--out", help="also write the figures as CSV")

    demo = add(
        "demo-data",
        cmd_demo_data,
        "write a small manifest of real LFW faces with simulated print/replay attacks",
    )
    demo.add_argument("out", help="output folder")
    demo.add_argument("--size", type=int, default=64, help="image side length")

    data = sub.add_parser(
        "data", help="the embedded protocol: build, show, stats", formatter_class=_HelpFormatter
    )
    data_sub = data.add_subparsers(dest="data_command", required=True)
    for name, handler, text in (
        ("build", cmd_data_build, "build (or reuse) the embedded protocol in the cache"),
        ("show", cmd_data_show, "contact sheet of the presentation-attack types"),
        ("stats", cmd_data_stats, "samples per attack type and split"),
    ):
        command = data_sub.add_parser(
            name, help=text, description=text, formatter_class=_HelpFormatter
        )
        command.set_defaults(handler=handler)
        command.add_argument("--seed", type=int, default=0, help="protocol seed")
        if name != "show":
            command.add_argument("--cache-dir", help="cache folder (default $FACECAT_CACHE)")
    data_sub.choices["build"].add_argument("--force", action="store_true", help="rebuild")
    for name in ("build", "stats"):
        command = data_sub.choices[name]
        command.add_argument(
            "--no-adversarial",
            action="store_true",
            help="presentation attacks only (skip crafting the 14 adversarial types, ~6 min)",
        )
        command.add_argument("--fr", default="dlib", help="FR target: dlib or an .onnx file")
        command.add_argument("--device", default="cpu")
    data_sub.choices["show"].add_argument(
        "--out", default="results/embedded_pa_contact_sheet.png", help="output PNG"
    )
    data_sub.choices["show"].add_argument("--faces", type=int, default=4)
    data_sub.choices["stats"].add_argument("--manifest", help="any manifest instead")
    siw = data_sub.add_parser(
        "siw-mv2",
        help="manifest for SiW-Mv2 cropped frames and the authors' protocol lists",
        formatter_class=_HelpFormatter,
    )
    siw.set_defaults(handler=cmd_data_siw_mv2)
    siw.add_argument("--root", required=True, help="folder with Live/ and Spoof/ frames")
    siw.add_argument("--train-list", nargs="+", required=True, help="train list file(s)")
    siw.add_argument("--test-list", nargs="+", required=True, help="test list file(s)")
    siw.add_argument("--out", required=True, help="manifest CSV to write")
    siw.add_argument("--dev-fraction", type=float, default=0.2)
    siw.add_argument("--frames-per-video", type=int)
    siw.add_argument("--seed", type=int, default=0)
    siw.add_argument("--skip-missing", action="store_true", help="skip listed videos not found")

    crop = add("crop", cmd_crop, "detect, align and crop faces from images or videos (MTCNN)")
    crop.add_argument("inputs", nargs="+", help="images, videos or folders")
    crop.add_argument("--out", required=True, help="output folder (PNGs + crops.csv)")
    crop.add_argument("--size", type=int, default=64)
    crop.add_argument("--scale", type=float, default=1.0, help="template zoom (<1: more context)")
    crop.add_argument("--every-nth-frame", type=int, default=10)

    attack = add("attack", cmd_attack, "craft an adversarial type against an FR model")
    attack.add_argument("--type", required=True, help="e.g. PGD_Dodging, Eyeglass_Impersonation")
    attack.add_argument("--manifest", required=True, help="manifest of bona fide faces (landmarks)")
    attack.add_argument("--split", help="only this split")
    attack.add_argument("--out", required=True, help="output folder (images + manifest.csv)")
    attack.add_argument("--fr", default="dlib", help="FR target: dlib or an .onnx file")
    attack.add_argument("--size", type=int, default=64, help="face size the attack works at")
    attack.add_argument("--limit", type=int, help="at most this many faces")
    attack.add_argument("--batch-size", type=int, default=32)
    attack.add_argument("--seed", type=int, default=0)
    attack.add_argument("--device", default="cpu")

    table = add(
        "attack-table",
        cmd_attack_table,
        "attack success rates of the adversarial types on bundled test faces",
    )
    table.add_argument("--out", default="results/attack_success.csv")
    table.add_argument(
        "--sheet",
        default="results/embedded_adversarial_contact_sheet.png",
        help="also write a contact sheet ('' to skip)",
    )
    table.add_argument("--faces", type=int, default=64)
    table.add_argument("--types", help="comma-separated subset (default: all 14)")
    table.add_argument("--fr", default="dlib")
    table.add_argument("--seed", type=int, default=0)
    table.add_argument("--device", default="cpu")

    reproduce = add(
        "reproduce",
        cmd_reproduce,
        "the main job: FaceCat vs CDCN and the ablations on the embedded protocol -> results/",
    )
    reproduce.add_argument("--out", default="results", help="folder for the CSVs and PNGs")
    reproduce.add_argument("--cache-dir", help="protocol, features and runs ($FACECAT_CACHE)")
    reproduce.add_argument("--epochs", type=int, help="override every detector's epochs")
    reproduce.add_argument("--seed", type=int, default=0)
    reproduce.add_argument("--device", default="cpu")
    reproduce.add_argument("--bootstrap", type=int, default=1000, help="CI resamples")
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars")

    seeds = add(
        "seeds",
        cmd_seeds,
        "FaceCat and CDCN trained once per seed: spread and paired AUC differences -> results/",
    )
    seeds.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    seeds.add_argument("--out", default="results")
    seeds.add_argument("--cache-dir", help="protocol, features and runs ($FACECAT_CACHE)")
    seeds.add_argument("--epochs", type=int, help="override every detector's epochs")
    seeds.add_argument("--device", default="cpu")
    seeds.add_argument("--bootstrap", type=int, default=1000, help="CI resamples")
    seeds.add_argument("--quiet", action="store_true", help="no progress bars")

    ablate = add(
        "ablate-blocks",
        cmd_ablate_blocks,
        "FaceCat per set of decoder blocks on the embedded protocol (paper Table 3) -> results/",
    )
    ablate.add_argument("--blocks", nargs="+", required=True, help="block sets, e.g. 1,3,5 3 3,4,5")
    ablate.add_argument("--model", default="facecat-small", help="FaceCat config to vary")
    ablate.add_argument("--out", default="results")
    ablate.add_argument("--cache-dir", help="protocol, features and runs ($FACECAT_CACHE)")
    ablate.add_argument("--epochs", type=int, help="override the config's epochs")
    ablate.add_argument("--seed", type=int, default=0)
    ablate.add_argument("--device", default="cpu")
    ablate.add_argument("--quiet", action="store_true", help="no progress bars")

    probe = add(
        "probe",
        cmd_probe,
        "linear probes per timestep x decoder block, trained vs random FDM -> results/",
    )
    probe.add_argument("--model", default="facecat-small", help="FaceCat config to probe")
    probe.add_argument("--manifest", help="train/dev/test manifest (default: embedded protocol)")
    probe.add_argument("--timesteps", default="1,10,50,150,300", help="comma-separated")
    probe.add_argument("--pool", type=int, default=8, help="pool every block to this size")
    probe.add_argument(
        "--backbones",
        default="trained,random",
        help="'trained' (the config's weights), 'random', or UNet weight files, comma-separated",
    )
    probe.add_argument("--out", default="results")
    probe.add_argument("--cache-dir", help="protocol, features and runs ($FACECAT_CACHE)")
    probe.add_argument("--seed", type=int, default=0, help="protocol seed")
    probe.add_argument("--device", default="cpu")
    probe.add_argument("--bootstrap", type=int, default=200, help="CI resamples")
    probe.add_argument("--quiet", action="store_true", help="no progress bars")

    info = add("info", cmd_info, "show a detector file's config and metadata")
    info.add_argument("detector", help="detector .safetensors file or shipped detector name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line each and exit with status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status = args.handler(args)
    except Exception as error:
        if not _is_user_error(error):
            raise
        print(f"facecat {args.command}: error: {error}", file=sys.stderr)
        return 2
    return status or 0


def _is_user_error(error: Exception) -> bool:
    """Whether main() reports ``error`` in one line; facecat's classes are imported only here."""
    if isinstance(error, _BUILTIN_USER_ERRORS):
        return True
    from facecat.core.checkpoints import CheckpointError
    from facecat.core.images import ImageLoadError
    from facecat.core.landmarks import LandmarkError
    from facecat.datasets.manifest import ManifestError
    from facecat.evaluation.metrics import MetricsError
    from facecat.models.config import ConfigError
    from facecat.models.text import TextEncoderError

    return isinstance(
        error,
        (
            CheckpointError,
            ConfigError,
            LandmarkError,
            ManifestError,
            ImageLoadError,
            MetricsError,
            TextEncoderError,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
