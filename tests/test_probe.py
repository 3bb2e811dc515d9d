"""The feature probe: linear probes per timestep x block, end to end on the LFW demo data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facecat.cli import main
from facecat.experiments.probe import C_GRID, fit_probe


def test_fit_probe_picks_c_on_dev_and_separates_separable_rows() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    rows = rng.normal(size=(80, 6)) + labels[:, None] * 3.0
    scaler, model, c, dev_auc = fit_probe(rows[::2], labels[::2], rows[1::2], labels[1::2])
    assert c in C_GRID
    assert dev_auc > 0.95
    assert model.coef_.shape == (1, 6)
    assert scaler.mean_.shape == (6,)


def test_probe_command_end_to_end(lfw_manifest, tmp_path, capsys) -> None:
    out = tmp_path / "results"
    argv = ["probe", "--manifest", str(lfw_manifest), "--model", "facecat-tiny"]
    argv += ["--timesteps", "1,50", "--pool", "4", "--backbones", "trained,random"]
    argv += ["--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "20"]
    assert main([*argv, "--quiet"]) == 0
    table = pd.read_csv(out / "embedded_feature_probe.csv")
    blocks = table["block"].nunique()
    assert blocks == 4  # facecat-tiny's UNet has four decoder output blocks
    assert len(table) == 2 * 2 * blocks
    assert set(table["timestep"]) == {1, 50}
    assert (table["resolution"] <= 4).all()
    assert table["dev_auc"].between(0, 1).all()
    assert (table["dev_auc_ci_low"] <= table["dev_auc"]).all()
    assert (table["dev_auc"] <= table["dev_auc_ci_high"]).all()
    chosen = table[table["chosen"]]
    assert sorted(chosen["backbone"]) == ["random", "trained"]
    for _, part in table.groupby("backbone"):
        assert part.loc[part["chosen"], "dev_auc"].item() == pytest.approx(part["dev_auc"].max())
    assert chosen["test_auc"].notna().all()
    assert table.loc[~table["chosen"], "test_auc"].isna().all()
    assert (out / "embedded_feature_probe.png").stat().st_size > 1000
    assert "chosen on dev" in capsys.readouterr().out


def test_probe_command_rejects_bad_timesteps(lfw_manifest, tmp_path, capsys) -> None:
    argv = ["probe", "--manifest", str(lfw_manifest), "--timesteps", "1,x"]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert "--timesteps" in capsys.readouterr().err
