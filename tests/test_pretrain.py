"""Face diffusion pretraining: loss log, export, exact resume, time budget."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import safetensors
import safetensors.torch
import torch

from facecat.core.checkpoints import CheckpointError, load_strict
from facecat.models.unet import UNet, UNetConfig
from facecat.training.pretrain import (
    CHECKPOINT_NAME,
    LOSS_LOG_NAME,
    PretrainConfig,
    noise_prediction_mse,
    pretrain_fdm,
    sample_timesteps,
)

pytest.importorskip("gan_face_generate", reason="pretraining streams DCGAN faces")

UNET = UNetConfig(
    image_size=32,
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(16,),
    num_head_channels=32,
)
CONFIG = PretrainConfig(steps=4, batch_size=4, checkpoint_every=2, log_every=1, warmup=2)


class StopError(Exception):
    pass


def test_training_lowers_nothing_silently_and_exports_loadable_weights(tmp_path):
    path = pretrain_fdm(UNET, tmp_path, CONFIG, progress=False)
    log = pd.read_csv(tmp_path / LOSS_LOG_NAME)
    assert list(log["step"]) == [1, 2, 3, 4]
    assert log["loss"].notna().all() and (log["loss"] > 0).all()
    unet = UNet(UNET)
    load_strict(unet, safetensors.torch.load_file(str(path)), source=str(path))
    with safetensors.safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["facecat"])
    assert meta["steps_done"] == 4
    assert meta["unet"]["image_size"] == 32
    # the zero-initialised output conv has moved away from zero: the model learned something
    assert unet.out[2].weight.abs().sum() > 0


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    reference = safetensors.torch.load_file(
        str(pretrain_fdm(UNET, tmp_path / "a", CONFIG, progress=False))
    )
    partial = PretrainConfig(**{**CONFIG.__dict__, "steps": 2})
    pretrain_fdm(UNET, tmp_path / "b", partial, progress=False)
    assert (tmp_path / "b" / CHECKPOINT_NAME).is_file()
    resumed = safetensors.torch.load_file(
        str(pretrain_fdm(UNET, tmp_path / "b", CONFIG, progress=False))
    )
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    pretrain_fdm(UNET, tmp_path, PretrainConfig(steps=1, batch_size=2), progress=False)
    with pytest.raises(CheckpointError, match="different pretraining run"):
        pretrain_fdm(UNET, tmp_path, PretrainConfig(steps=2, batch_size=2, lr=1e-3), progress=False)


def test_time_budget_stops_and_exports(tmp_path):
    config = PretrainConfig(steps=10_000, batch_size=2, time_budget_s=0.0, export_dtype="float16")
    path = pretrain_fdm(UNET, tmp_path, config, progress=False)
    weights = safetensors.torch.load_file(str(path))
    assert all(t.dtype == torch.float16 for t in weights.values())
    assert len(pd.read_csv(tmp_path / LOSS_LOG_NAME)) == 1


def test_low_noise_timesteps_are_favoured():
    generator = torch.Generator().manual_seed(0)
    config = PretrainConfig(low_noise_fraction=0.5, low_noise_max=200)
    t = sample_timesteps(20_000, config, 1000, generator)
    share_low = (t < 200).float().mean().item()
    assert 0.58 < share_low < 0.62  # 0.5 + 0.5 * 0.2
    assert t.min() >= 0 and t.max() < 1000


def test_training_can_start_from_existing_weights_and_resume_checks_them(tmp_path):
    start = pretrain_fdm(UNET, tmp_path / "start", CONFIG, progress=False)
    frozen = PretrainConfig(steps=2, batch_size=2, lr=0.0, warmup=1)
    path = pretrain_fdm(UNET, tmp_path / "more", frozen, init_weights=start, progress=False)
    # with a zero learning rate the exported EMA is exactly the weights it started from
    for name, tensor in safetensors.torch.load_file(str(start)).items():
        torch.testing.assert_close(safetensors.torch.load_file(str(path))[name], tensor)
    reseeded = PretrainConfig(**{**CONFIG.__dict__, "seed": 1})
    other = pretrain_fdm(UNET, tmp_path / "other", reseeded, progress=False)
    longer = PretrainConfig(steps=3, batch_size=2, lr=0.0, warmup=1)
    with pytest.raises(CheckpointError, match="different pretraining run"):
        pretrain_fdm(UNET, tmp_path / "more", longer, init_weights=other, progress=False)


def test_initial_weights_of_another_layout_are_refused(tmp_path):
    wider = UNetConfig(**{**UNET.to_dict(), "model_channels": 64})
    path = pretrain_fdm(
        wider, tmp_path / "wide", PretrainConfig(steps=1, batch_size=2), progress=False
    )
    with pytest.raises(CheckpointError, match="does not fit the model"):
        pretrain_fdm(UNET, tmp_path / "small", CONFIG, init_weights=path, progress=False)


def test_learning_rate_warms_up_then_stays_or_decays_to_zero():
    constant = PretrainConfig(steps=100, lr=1e-3, warmup=10)
    cosine = PretrainConfig(steps=100, lr=1e-3, warmup=10, lr_decay="cosine")
    for config in (constant, cosine):
        assert config.learning_rate(0) == pytest.approx(1e-4)
        assert config.learning_rate(9) == pytest.approx(1e-3)
    assert constant.learning_rate(99) == pytest.approx(1e-3)
    assert cosine.learning_rate(55) == pytest.approx(0.5e-3, rel=0.01)
    assert cosine.learning_rate(99) < 1e-6
    with pytest.raises(ValueError, match="lr_decay"):
        PretrainConfig(lr_decay="step")


def test_noise_prediction_mse_is_one_untrained_and_lower_once_trained(tmp_path):
    faces = torch.rand(6, 3, 32, 32)
    untrained = noise_prediction_mse(UNet(UNET), faces, [10, 500], seed=1, batch_size=4)
    assert set(untrained) == {10, 500}
    # the output convolution starts at zero, so an untrained UNet predicts no noise at all
    assert all(v == pytest.approx(1.0, abs=0.05) for v in untrained.values())
    trained = UNet(UNET)
    path = pretrain_fdm(
        UNET, tmp_path, PretrainConfig(steps=30, batch_size=8, warmup=1, lr=1e-3), progress=False
    )
    load_strict(trained, safetensors.torch.load_file(str(path)), source=str(path))
    first = noise_prediction_mse(trained, faces, [500], seed=1)
    assert first[500] < untrained[500]
    assert noise_prediction_mse(trained, faces, [500], seed=1) == first  # same seed, same noise
    with pytest.raises(ValueError, match=r"images must be \(N, 3, H, W\)"):
        noise_prediction_mse(trained, faces[0], [500])
    with pytest.raises(ValueError, match="timestep 1000 outside"):
        noise_prediction_mse(trained, faces, [1000])
