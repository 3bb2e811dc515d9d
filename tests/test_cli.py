"""The facecat command end to end: train 2 epochs, eval to CSV, score, info, errors, help."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

import facecat
from facecat.cli import main


@pytest.fixture(scope="module")
def trained(lfw_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-run")
    code = main(
        [
            "train",
            "--model",
            "facecat-tiny",
            "--manifest",
            str(lfw_manifest),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    return out / "detector.safetensors"


def test_models_lists_configs(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "facecat-ffhq256" in out and "facecat-tiny" in out


def test_eval_writes_metrics_csv(trained, lfw_manifest, tmp_path, capsys):
    out = tmp_path / "metrics.csv"
    scores = tmp_path / "scores.csv"
    code = main(
        [
            "eval",
            "--detector",
            str(trained),
            "--manifest",
            str(lfw_manifest),
            "--out",
            str(out),
            "--scores",
            str(scores),
            "--bootstrap",
            "50",
            "--quiet",
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["threshold_source"] == "dev-eer"
    for column in ("apcer_max", "bpcer", "acer", "eer", "auc", "tdr_at_fdr"):
        assert 0 <= row[column] <= 1
        assert row[f"{column}_ci_low"] <= row[f"{column}_ci_high"]
    assert {"apcer[Paper]", "apcer[Replay]"} <= set(table.columns)
    assert row["n_bona_fide"] == 20 and row["n_attack"] == 40
    per_image = pd.read_csv(scores)
    assert set(per_image["split"]) == {"dev", "test"}
    assert "ACER" in capsys.readouterr().out


def test_eval_oracle_is_labelled(trained, lfw_manifest, tmp_path):
    out = tmp_path / "oracle.csv"
    assert (
        main(
            [
                "eval",
                "--detector",
                str(trained),
                "--manifest",
                str(lfw_manifest),
                "--out",
                str(out),
                "--oracle",
                "--bootstrap",
                "0",
                "--quiet",
            ]
        )
        == 0
    )
    assert pd.read_csv(out).iloc[0]["threshold_source"] == "oracle-test-acer"


def test_score_prints_p_real_and_decision_for_files_and_folders(trained, lfw_manifest, capsys):
    folder = lfw_manifest.parent
    argv = ["score", "--aligned", "--detector", str(trained)]
    assert main([*argv, str(folder / "live_000.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "path,frames,p_real,threshold,decision,frames_over_threshold,error"
    row = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert 0 <= float(row["p_real"]) <= 1 and 0 <= float(row["threshold"]) <= 1
    assert row["decision"] == ("bona fide" if row["p_real"] >= row["threshold"] else "attack")
    assert main([*argv, "--format", "json", str(folder)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 300
    assert all(0 <= r["p_real"] <= 1 and r["decision"] for r in records)


def test_info_shows_config_and_metadata(trained, capsys):
    assert main(["info", str(trained)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "facecat"
    assert info["config"]["name"] == "facecat-tiny"
    assert info["metadata"]["best_epoch"] in (1, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["eval", "--detector", "missing.safetensors", "--manifest", "m.csv", "--out", "x.csv"],
            "missing.safetensors",
        ),
        (["score", "--detector", "missing.safetensors", "nothing.png"], "missing.safetensors"),
        (["train", "--manifest", "nope.csv", "--out", "o"], "nope.csv"),
        (["train", "--model", "bogus", "--manifest", "{manifest}", "--out", "o"], "bogus"),
    ],
)
def test_exception_user_errors_exit_2_with_one_line(argv, message, lfw_manifest, capsys):
    argv = [a.replace("{manifest}", str(lfw_manifest)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_fdm_quality_scores_unet_weights_per_timestep(lfw_manifest, tmp_path, capsys):
    out = tmp_path / "quality.csv"
    argv = ["fdm-quality", "random", "--model", "facecat-tiny", "--manifest", str(lfw_manifest)]
    assert main([*argv, "--split", "test", "--timesteps", "10,500", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["timestep"]) == [10, 500]
    assert (table["eps_mse"] - 1.0).abs().max() < 0.1  # an untrained UNet predicts no noise
    assert "noise-prediction MSE" in capsys.readouterr().out
    assert main(["fdm-quality", "shipped", "--model", "facecat-tiny"]) == 2
    assert "facecat-tiny has no shipped UNet weights" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"facecat {facecat.__version__}"


HELP_SCRIPT = """
import sys
from facecat.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("heavy:" + ",".join(m for m in ("torch", "pandas", "numpy") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["--help"], "{models,ship-detectors,"),
        (["score", "--help"], "(default: 10)"),
        (["reproduce", "--help"], "(default: results)"),
    ],
)
def test_help_imports_no_heavy_module_and_shows_defaults(argv, shown):
    result = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    heavy = result.stdout.splitlines()[-1].removeprefix("heavy:")
    assert not heavy, f"facecat {' '.join(argv)} imported {heavy}"
    assert shown in result.stdout
