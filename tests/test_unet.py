"""Tests for facecat.models.unet, facecat.models.diffusion and the strict checkpoint loading of
the UNet.

The FFHQ-256 model (553M parameters) is only ever built on the meta device: shapes, keys and
parameter counts need no memory and no compute. Numerical tests use small UNets whose
parameters are re-drawn at random (the released layout zero-initialises the last conv of
every block, which would make many outputs trivially zero).
"""

from __future__ import annotations

import math
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from facecat.core.checkpoints import CheckpointError, load_state_dict_file, load_strict
from facecat.models.config import FaceCatConfig, read_config_dict
from facecat.models.diffusion import GaussianDiffusion
from facecat.models.unet import (
    AttentionBlock,
    BlockShape,
    GroupNorm32,
    ResBlock,
    UNet,
    UNetConfig,
    decoder_block_shapes,
    timestep_embedding,
)

PAPER_BLOCKS = {5: (1024, 32), 6: (512, 32), 7: (512, 32), 8: (512, 64), 12: (256, 128)}


@pytest.fixture(scope="module")
def ffhq() -> UNet:
    config = FaceCatConfig.from_dict(read_config_dict("facecat-ffhq256"))
    with torch.device("meta"):
        return UNet(config.unet)


@pytest.fixture(scope="module")
def ffhq_state(ffhq: UNet) -> dict[str, torch.Tensor]:
    return ffhq.state_dict()


def _small_config(**overrides) -> UNetConfig:
    values = {
        "image_size": 16,
        "model_channels": 32,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (8,),
        "num_head_channels": 32,
    }
    values.update(overrides)
    return UNetConfig(**values)


def _randomised(unet: UNet, seed: int) -> UNet:
    """Re-draw every parameter so that no output is trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return unet.eval()


def _small_unet(seed: int = 0, **overrides) -> UNet:
    return _randomised(UNet(_small_config(**overrides)), seed)


def _inputs(batch: int = 2, size: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=generator)
    return x, torch.full((batch,), 50, dtype=torch.long)


def _relative_keys(state: dict[str, torch.Tensor], prefix: str) -> dict[str, tuple[int, ...]]:
    return {
        k.removeprefix(prefix): tuple(v.shape) for k, v in state.items() if k.startswith(prefix)
    }


# --------------------------------------------------------------------------------------------
# FFHQ-256 on the meta device: size, decoder feature shapes, checkpoint layout


def test_ffhq_parameter_count(ffhq: UNet) -> None:
    count = sum(p.numel() for p in ffhq.parameters())
    assert count == 552_814_086
    assert round(count / 1e6) == 553  # the reported ~553M
    assert all(p.is_meta for p in ffhq.parameters())


def test_ffhq_paper_decoder_blocks_cardinality(ffhq: UNet) -> None:
    x = torch.empty(2, 3, 256, 256, device="meta")
    features = ffhq.decoder_features(x, torch.full((2,), 50, device="meta"), [12, 5, 8, 6, 7])
    assert sorted(features) == [5, 6, 7, 8, 12]
    for block, (channels, size) in PAPER_BLOCKS.items():
        assert tuple(features[block].shape) == (2, channels, size, size), block


def test_ffhq_decoder_block_shapes_agree_with_forward(ffhq: UNet) -> None:
    shapes = decoder_block_shapes(ffhq.config)
    assert len(shapes) == len(ffhq.output_blocks) == 18
    x = torch.empty(1, 3, 256, 256, device="meta")
    features = ffhq.decoder_features(x, torch.tensor(50, device="meta"), range(18))
    for block, shape in enumerate(shapes):
        assert tuple(features[block].shape) == (
            1,
            shape.channels,
            shape.resolution,
            shape.resolution,
        )
    for block, (channels, size) in PAPER_BLOCKS.items():
        assert shapes[block] == BlockShape(channels, size)


def test_ffhq_forward_cardinality(ffhq: UNet) -> None:
    x = torch.empty(3, 3, 256, 256, device="meta")
    out = ffhq(x, torch.full((3,), 50, device="meta"))
    assert tuple(out.shape) == (3, 6, 256, 256)


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("time_embed.0.weight", (1024, 256)),
        ("time_embed.0.bias", (1024,)),
        ("time_embed.2.weight", (1024, 1024)),
        ("input_blocks.0.0.weight", (256, 3, 3, 3)),
        ("input_blocks.1.0.in_layers.0.weight", (256,)),
        ("input_blocks.1.0.in_layers.2.weight", (256, 256, 3, 3)),
        ("input_blocks.1.0.emb_layers.1.weight", (512, 1024)),
        ("input_blocks.1.0.out_layers.0.weight", (256,)),
        ("input_blocks.1.0.out_layers.3.weight", (256, 256, 3, 3)),
        ("input_blocks.7.0.skip_connection.weight", (512, 256, 1, 1)),
        ("middle_block.0.emb_layers.1.weight", (2048, 1024)),
        ("middle_block.1.norm.weight", (1024,)),
        ("middle_block.1.qkv.weight", (3072, 1024, 1)),
        ("middle_block.1.qkv.bias", (3072,)),
        ("middle_block.1.proj_out.weight", (1024, 1024, 1)),
        ("middle_block.1.proj_out.bias", (1024,)),
        ("output_blocks.0.0.skip_connection.weight", (1024, 2048, 1, 1)),
        ("output_blocks.17.0.in_layers.2.weight", (256, 512, 3, 3)),
        ("out.0.weight", (256,)),
        ("out.2.weight", (6, 256, 3, 3)),
        ("out.2.bias", (6,)),
    ],
)
def test_ffhq_checkpoint_key_shapes(ffhq_state: dict, key: str, shape: tuple[int, ...]) -> None:
    assert key in ffhq_state
    assert tuple(ffhq_state[key].shape) == shape


def test_ffhq_module_kinds(ffhq: UNet) -> None:
    assert isinstance(ffhq.time_embed[0], nn.Linear)
    assert isinstance(ffhq.time_embed[1], nn.SiLU)
    assert isinstance(ffhq.middle_block[0], ResBlock)
    assert isinstance(ffhq.middle_block[1], AttentionBlock)
    assert isinstance(ffhq.middle_block[2], ResBlock)
    assert ffhq.middle_block[1].num_heads == 1024 // 64
    assert isinstance(ffhq.out[0], GroupNorm32)
    assert ffhq.out[0].num_groups == 32


def test_ffhq_resblock_keys(ffhq_state: dict) -> None:
    keys = _relative_keys(ffhq_state, "input_blocks.1.0.")
    assert keys == {
        "in_layers.0.weight": (256,),
        "in_layers.0.bias": (256,),
        "in_layers.2.weight": (256, 256, 3, 3),
        "in_layers.2.bias": (256,),
        "emb_layers.1.weight": (2 * 256, 4 * 256),  # scale and shift
        "emb_layers.1.bias": (2 * 256,),
        "out_layers.0.weight": (256,),
        "out_layers.0.bias": (256,),
        "out_layers.3.weight": (256, 256, 3, 3),
        "out_layers.3.bias": (256,),
    }


def test_ffhq_skip_connection_only_when_channels_change(ffhq: UNet, ffhq_state: dict) -> None:
    checked = with_skip = 0
    for name, module in ffhq.named_modules():
        if isinstance(module, ResBlock):
            channels_in = module.in_layers[0].num_channels
            channels_out = module.in_layers[2].out_channels
            has_skip = f"{name}.skip_connection.weight" in ffhq_state
            assert has_skip == (channels_in != channels_out), name
            checked += 1
            with_skip += has_skip
    assert checked > 30
    assert 0 < with_skip < checked


def test_ffhq_up_down_resblocks_add_no_parameters(ffhq_state: dict) -> None:
    plain = _relative_keys(ffhq_state, "input_blocks.1.0.")  # ResBlock 256 -> 256
    down = _relative_keys(ffhq_state, "input_blocks.3.0.")  # down-ResBlock 256 -> 256
    assert down == plain
    plain_1024 = _relative_keys(ffhq_state, "middle_block.0.")  # ResBlock 1024 -> 1024
    up = _relative_keys(ffhq_state, "output_blocks.2.2.")  # up-ResBlock 1024 -> 1024
    assert up == plain_1024
    assert "output_blocks.2.3.in_layers.0.weight" not in ffhq_state


def test_ffhq_block_counts_and_attention_placement(ffhq: UNet, ffhq_state: dict) -> None:
    config = ffhq.config
    assert len(ffhq.output_blocks) == (config.num_res_blocks + 1) * len(config.channel_mult) == 18
    assert len(ffhq.input_blocks) == 1 + 6 * 2 + 5
    with_attention_in = {
        i for i in range(len(ffhq.input_blocks)) if f"input_blocks.{i}.1.qkv.weight" in ffhq_state
    }
    with_attention_out = {
        i for i in range(len(ffhq.output_blocks)) if f"output_blocks.{i}.1.qkv.weight" in ffhq_state
    }
    # Attention at 32, 16 and 8 pixels: encoder levels 3, 4, 5 and decoder levels 5, 4, 3.
    assert with_attention_in == {10, 11, 13, 14, 16, 17}
    assert with_attention_out == set(range(9))


def test_resblock_emb_layers_without_scale_shift() -> None:
    unet = UNet(_small_config(use_scale_shift_norm=False))
    assert tuple(unet.state_dict()["input_blocks.1.0.emb_layers.1.weight"].shape) == (32, 128)
    x, t = _inputs()
    assert unet(x, t).shape == (2, 6, 16, 16)


# --------------------------------------------------------------------------------------------
# strict loading and safe file reading


def test_load_strict_round_trip(tmp_path: Path) -> None:
    source, target = _small_unet(seed=0), _small_unet(seed=1)
    x, t = _inputs()
    with torch.no_grad():
        assert not torch.allclose(source(x, t), target(x, t))
    path = tmp_path / "unet.pt"
    torch.save(source.state_dict(), path)
    load_strict(target, load_state_dict_file(path, what="test UNet"), source=str(path))
    with torch.no_grad():
        assert torch.equal(source(x, t), target(x, t))


def _tamper(state: dict, how: str) -> tuple[dict, list[str]]:
    state = dict(state)
    if how == "missing":
        del state["middle_block.1.qkv.weight"]
        return state, ["middle_block.1.qkv.weight", "missing"]
    if how == "renamed":
        state["out.3.weight"] = state.pop("out.2.weight")
        return state, ["out.2.weight", "out.3.weight"]
    state["time_embed.0.weight"] = torch.zeros(7, 5)
    return state, ["time_embed.0.weight", "(7, 5)", "(128, 32)"]


@pytest.mark.parametrize("how", ["missing", "renamed", "wrong_shape"])
def test_load_strict_exception_names_key(how: str) -> None:
    target = _small_unet(seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state, expected = _tamper(_small_unet(seed=0).state_dict(), how)
    with pytest.raises(CheckpointError) as info:
        load_strict(target, state, source="tampered.pt")
    message = str(info.value)
    assert "tampered.pt" in message
    for part in expected:
        assert part in message
    after = target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing half-loaded


class _Payload:
    """Unpickling this object runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_payload_is_live(tmp_path: Path) -> None:
    """Control: the payload used below really executes when unpickled unsafely."""
    marker = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch_save"])
def test_load_state_dict_file_refuses_malicious_pickle(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"time_embed.0.weight": torch.zeros(2), "evil": _Payload(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="safe checkpoint"):
        load_state_dict_file(path, what="FFHQ-256 UNet")
    assert not marker.exists()


def test_load_state_dict_file_reads_safetensors(tmp_path: Path) -> None:
    unet = _small_unet(seed=3)
    state = {k: v.contiguous() for k, v in unet.state_dict().items()}
    path = tmp_path / "unet.safetensors"
    safetensors.torch.save_file(state, str(path))
    loaded = load_state_dict_file(path, what="test UNet")
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    target = _small_unet(seed=4)
    load_strict(target, loaded, source=str(path))
    x, t = _inputs()
    with torch.no_grad():
        assert torch.equal(unet(x, t), target(x, t))


def test_load_state_dict_file_unwraps(tmp_path: Path) -> None:
    state = _small_unet(seed=0).state_dict()
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_state_dict_file(path, what="test UNet")
    assert set(loaded) == set(state)


def test_load_state_dict_file_exceptions(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_file(tmp_path / "absent.pt", what="test UNet")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_state_dict_file(garbage, what="test UNet")
    not_flat = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_flat)
    with pytest.raises(CheckpointError, match="flat state dict"):
        load_state_dict_file(not_flat, what="test UNet")


# --------------------------------------------------------------------------------------------
# timestep embedding, forward, dtypes, variants, config validation, early stop


def test_timestep_embedding_matches_formula() -> None:
    steps = np.array([0, 1, 50, 999])
    dim = 64
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half) / half)
    args = steps[:, None] * freqs[None]
    expected = np.concatenate([np.cos(args), np.sin(args)], axis=1)
    got = timestep_embedding(torch.tensor(steps), dim)
    assert got.shape == (4, dim)
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-4)


def test_timestep_embedding_cos_first() -> None:
    got = timestep_embedding(torch.tensor([0]), 8)
    assert torch.equal(got, torch.tensor([[1.0, 1, 1, 1, 0, 0, 0, 0]]))
    odd = timestep_embedding(torch.tensor([3, 7]), 9)
    assert odd.shape == (2, 9)
    assert torch.equal(odd[:, -1], torch.zeros(2))


@pytest.mark.parametrize("learn_sigma", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_cardinality(learn_sigma: bool, batch: int) -> None:
    unet = _small_unet(learn_sigma=learn_sigma)
    x, t = _inputs(batch)
    with torch.no_grad():
        out = unet(x, t)
    assert out.shape == (batch, 6 if learn_sigma else 3, 16, 16)
    assert torch.isfinite(out).all()


def test_forward_scalar_timestep_equals_vector() -> None:
    unet = _small_unet()
    x, t = _inputs()
    with torch.no_grad():
        assert torch.allclose(unet(x, torch.tensor(50)), unet(x, t))
        assert not torch.allclose(unet(x, torch.tensor(500)), unet(x, t))


def test_forward_smoke_device(device: torch.device) -> None:
    unet = _small_unet().to(device)
    x, t = _inputs()
    with torch.no_grad():
        out = unet(x.to(device), t.to(device))
    assert out.device.type == device.type
    with torch.no_grad():
        reference = _small_unet()(x, t)
    # GPUs run float32 convolutions on TF32 tensor cores (cuDNN's default): ~1e-3 relative
    assert ((out.cpu() - reference).norm() / reference.norm()).item() < 5e-3


def _fp16_autocast_supported() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1))
    except (RuntimeError, NotImplementedError):
        return False
    return True


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_close_to_fp32(dtype: torch.dtype) -> None:
    if dtype == torch.float16 and not _fp16_autocast_supported():
        pytest.skip("this CPU/torch build has no float16 autocast")
    unet = _small_unet()
    x, t = _inputs()
    with torch.no_grad():
        reference = unet(x, t)
        with torch.autocast("cpu", dtype=dtype):
            low = unet(x, t)
            features = unet.decoder_features(x, t, [1])[1]
    assert low.dtype == dtype
    assert features.dtype == dtype
    low = low.float()
    assert torch.isfinite(low).all()
    relative = (low - reference).norm() / reference.norm()
    assert relative < 0.05


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_groupnorm32_returns_input_dtype(dtype: torch.dtype) -> None:
    norm = GroupNorm32(32, 64)
    generator = torch.Generator().manual_seed(0)
    # Large values: the variance (~1e6) would overflow float16 if computed in float16.
    x = (torch.randn(2, 64, 4, 4, generator=generator) * 1000 + 500).to(dtype)
    out = norm(x)
    assert out.dtype == dtype
    reference = torch.nn.functional.group_norm(x.float(), 32)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("conv_resample", [True, False])
def test_variant_without_resblock_updown(conv_resample: bool) -> None:
    unet = _small_unet(resblock_updown=False, conv_resample=conv_resample)
    state = unet.state_dict()
    # input_blocks.2 is the downsampler, output_blocks.1.{0, [1 attention], last} the upsampler.
    assert ("input_blocks.2.0.op.weight" in state) == conv_resample
    assert ("output_blocks.1.2.conv.weight" in state) == conv_resample
    assert "input_blocks.2.0.in_layers.0.weight" not in state
    x, t = _inputs()
    with torch.no_grad():
        out = unet(x, t)
        features = unet.decoder_features(x, t, range(len(unet.output_blocks)))
    assert out.shape == (2, 6, 16, 16)
    for block, shape in enumerate(decoder_block_shapes(unet.config)):
        assert features[block].shape == (2, shape.channels, shape.resolution, shape.resolution)


def test_variant_head_count_without_head_channels() -> None:
    unet = _small_unet(num_heads=2, num_head_channels=-1)
    assert unet.middle_block[1].num_heads == 2
    x, t = _inputs()
    with torch.no_grad():
        assert torch.isfinite(unet(x, t)).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_size": 30, "channel_mult": (1, 2, 2)}, "divisible"),
        ({"image_size": 20, "channel_mult": (1, 1, 2, 2)}, "divisible"),
        ({"model_channels": 48, "channel_mult": (1, 2)}, "multiple of 32"),
        ({"model_channels": 16, "channel_mult": (2, 3)}, "multiple of 32"),
    ],
)
def test_config_exception(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _small_config(**overrides)


def test_attention_head_channels_exception() -> None:
    with pytest.raises(ValueError, match="num_head_channels"):
        UNet(_small_config(num_head_channels=48))


@pytest.mark.parametrize("blocks", [[4], [-1], [], [0, 9]])
def test_decoder_features_block_range_exception(blocks: list[int]) -> None:
    unet = _small_unet()
    x, t = _inputs()
    with pytest.raises(ValueError, match=r"out of range.*0\.\.3"):
        unet.decoder_features(x, t, blocks)


def test_forward_input_shape_exception() -> None:
    unet = _small_unet()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        unet(torch.zeros(2, 1, 16, 16), torch.tensor([50, 50]))


def _count_calls(module: nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls = [0]

    def hook(*_) -> None:
        calls[0] += 1

    return calls, module.register_forward_hook(hook)


def test_decoder_features_stops_early() -> None:
    unet = _small_unet()
    x, t = _inputs()
    first, h1 = _count_calls(unet.output_blocks[0])
    last, h2 = _count_calls(unet.output_blocks[-1])
    head, h3 = _count_calls(unet.out)
    try:
        with torch.no_grad():
            features = unet.decoder_features(x, t, [0])
        assert list(features) == [0]
        assert (first[0], last[0], head[0]) == (1, 0, 0)
        with torch.no_grad():
            unet.decoder_features(x, t, [len(unet.output_blocks) - 1])
        assert (first[0], last[0], head[0]) == (2, 1, 0)
    finally:
        for handle in (h1, h2, h3):
            handle.remove()


def test_decoder_features_equal_forward_activations() -> None:
    unet = _small_unet()
    x, t = _inputs()
    captured: dict[int, torch.Tensor] = {}
    handles = [
        block.register_forward_hook(lambda _m, _i, out, i=i: captured.__setitem__(i, out))
        for i, block in enumerate(unet.output_blocks)
    ]
    try:
        with torch.no_grad():
            unet(x, t)
            features = unet.decoder_features(x, t, [1, 2])
    finally:
        for handle in handles:
            handle.remove()
    assert torch.equal(features[1], captured[1])
    assert torch.equal(features[2], captured[2])


# --------------------------------------------------------------------------------------------
# forward diffusion


def test_q_sample_coefficients_at_50() -> None:
    diffusion = GaussianDiffusion(1000)
    assert diffusion.sqrt_alphas_cumprod[50] == pytest.approx(0.98486, abs=1e-5)
    assert diffusion.sqrt_one_minus_alphas_cumprod[50] == pytest.approx(0.17335, abs=1e-5)
    assert diffusion.betas.dtype == np.float64
    assert diffusion.betas[0] == pytest.approx(1e-4)
    assert diffusion.betas[-1] == pytest.approx(0.02)
    t = torch.tensor([50, 50])
    ones, zeros = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    torch.testing.assert_close(
        diffusion.q_sample(ones, t, zeros), torch.full_like(ones, 0.98486), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        diffusion.q_sample(zeros, t, ones), torch.full_like(ones, 0.17335), atol=1e-5, rtol=0
    )


def test_q_sample_per_sample_timesteps() -> None:
    diffusion = GaussianDiffusion(1000)
    x0 = torch.ones(2, 3, 2, 2)
    out = diffusion.q_sample(x0, torch.tensor([0, 999]), torch.zeros_like(x0))
    assert out[0, 0, 0, 0] == pytest.approx(diffusion.sqrt_alphas_cumprod[0], rel=1e-6)
    assert out[1, 0, 0, 0] == pytest.approx(diffusion.sqrt_alphas_cumprod[999], rel=1e-5)
    assert out[0, 0, 0, 0] > 0.99 > 0.01 > out[1, 0, 0, 0]


@pytest.mark.parametrize("t", [-1, 1000, 5000])
def test_q_sample_exception(t: int) -> None:
    diffusion = GaussianDiffusion(1000)
    x0 = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        diffusion.q_sample(x0, torch.tensor([t]), x0)


def test_diffusion_steps_exception() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        GaussianDiffusion(0)


def test_diffusion_rescaled_schedule() -> None:
    diffusion = GaussianDiffusion(100)
    assert diffusion.betas[0] == pytest.approx(1e-3)
    assert diffusion.betas[-1] == pytest.approx(0.2)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 999))
def test_q_sample_preserves_variance(t: int) -> None:
    diffusion = GaussianDiffusion(1000)
    a, b = diffusion.sqrt_alphas_cumprod[t], diffusion.sqrt_one_minus_alphas_cumprod[t]
    assert a**2 + b**2 == pytest.approx(1.0, abs=1e-12)
    if t:
        assert a < diffusion.sqrt_alphas_cumprod[t - 1]
