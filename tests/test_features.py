"""Tests for facecat.models.features: frozen diffusion features with the facecat-tiny UNet."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facecat.models.config import FaceCatConfig, read_config_dict
from facecat.models.diffusion import GaussianDiffusion
from facecat.models.features import (
    DiffusionFeatureExtractor,
    FeatureConfig,
    flatten_features,
    unflatten_features,
)
from facecat.models.unet import BlockShape, UNet, UNetConfig

TINY = FaceCatConfig.from_dict(read_config_dict("facecat-tiny"))
SIZE = TINY.unet.image_size


def _unet(config: UNetConfig = TINY.unet, seed: int = 0) -> UNet:
    """The tiny UNet with every parameter re-drawn (the zero-initialised convs would hide a
    lot of the image dependence)."""
    unet = UNet(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return unet


def _extractor(
    unet_config: UNetConfig = TINY.unet, **feature_overrides
) -> DiffusionFeatureExtractor:
    features = dataclasses.replace(TINY.features, **feature_overrides)
    return DiffusionFeatureExtractor(
        _unet(unet_config), GaussianDiffusion(TINY.diffusion_steps), features
    )


@pytest.fixture(scope="module")
def extractor() -> DiffusionFeatureExtractor:
    return _extractor()


def _images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _equal(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = 0.0) -> bool:
    return len(a) == len(b) and all(
        torch.allclose(x, y, atol=atol, rtol=0) for x, y in zip(a, b, strict=True)
    )


def test_smoke_cardinality(extractor: DiffusionFeatureExtractor) -> None:
    features = extractor(_images(3))
    shapes = extractor.block_shapes()
    assert len(features) == len(shapes) == len(TINY.features.blocks)
    for feature, shape in zip(features, shapes, strict=True):
        assert feature.shape == (3, shape.channels, shape.resolution, shape.resolution)
        assert feature.dtype == torch.float32
        assert torch.isfinite(feature).all()
    # facecat-tiny: blocks 0, 1, 3 of a (1, 2)-level UNet with 32 base channels.
    assert shapes == [BlockShape(64, 16), BlockShape(64, 32), BlockShape(32, 32)]


def test_deterministic(extractor: DiffusionFeatureExtractor) -> None:
    images = _images(2)
    assert _equal(extractor(images), extractor(images))


def test_shared_noise_independent_of_batch(extractor: DiffusionFeatureExtractor) -> None:
    face = _images(1, seed=7)
    first = extractor(torch.cat([face, _images(1, seed=1)]))
    second = extractor(torch.cat([_images(2, seed=2), face]))
    alone = extractor(face)
    assert _equal([f[:1] for f in first], [f[2:] for f in second], atol=1e-5)
    assert _equal([f[:1] for f in first], alone, atol=1e-5)
    # ... and different images do get different features.
    assert not torch.allclose(first[0][0], first[0][1], atol=1e-3)


def test_matches_manual_pipeline(extractor: DiffusionFeatureExtractor) -> None:
    """Images in [0, 1] -> model scale [-1, 1] -> q_sample(t=50, shared noise) -> UNet."""
    images = _images(2, seed=3)
    noise = extractor.shared_noise(3, SIZE, torch.device("cpu"))
    assert noise.shape == (1, 3, SIZE, SIZE)
    generator = torch.Generator().manual_seed(TINY.features.noise_seed)
    assert torch.equal(noise, torch.randn(1, 3, SIZE, SIZE, generator=generator))
    t = torch.full((2,), 50)
    diffusion = GaussianDiffusion(1000)
    xt = diffusion.q_sample(images * 2 - 1, t, noise[0].expand(2, -1, -1, -1))
    with torch.no_grad():
        expected = extractor.unet.decoder_features(xt, t, TINY.features.blocks)
    got = extractor(images)
    assert _equal(got, [expected[b] for b in TINY.features.blocks], atol=1e-6)


def test_noise_seed_changes_features(extractor: DiffusionFeatureExtractor) -> None:
    other = DiffusionFeatureExtractor(
        extractor.unet, extractor.diffusion, dataclasses.replace(extractor.config, noise_seed=1)
    )
    device = torch.device("cpu")
    assert not torch.equal(
        extractor.shared_noise(3, SIZE, device), other.shared_noise(3, SIZE, device)
    )
    images = _images(2)
    for a, b in zip(extractor(images), other(images), strict=True):
        assert not torch.allclose(a, b, atol=1e-3)


def test_multiple_timesteps_concatenate_channels() -> None:
    single = _extractor()
    multi = _extractor(timesteps=(50, 200))
    images = _images(2)
    two = multi(images)
    assert len(two) == len(single.block_shapes())
    shapes = multi.block_shapes()
    for b, shape, base in zip(two, shapes, single.block_shapes(), strict=True):
        assert shape == BlockShape(base.channels * 2, base.resolution)
        assert b.shape == (2, base.channels * 2, base.resolution, base.resolution)
        c = base.channels
        # The two timesteps give different halves.
        assert not torch.allclose(b[:, :c], b[:, c:], atol=1e-3)
    # First half is the t=50 pass with the first noise draw.
    noise = multi.shared_noise(3, SIZE, torch.device("cpu"))
    assert noise.shape == (2, 3, SIZE, SIZE)
    t = torch.full((2,), 50)
    xt = multi.diffusion.q_sample(images * 2 - 1, t, noise[0].expand(2, -1, -1, -1))
    with torch.no_grad():
        expected = multi.unet.decoder_features(xt, t, multi.config.blocks)
    for b, block, base in zip(two, multi.config.blocks, single.block_shapes(), strict=True):
        assert torch.allclose(b[:, : base.channels], expected[block], atol=1e-6)


def test_no_grad_by_default(extractor: DiffusionFeatureExtractor) -> None:
    images = _images(2).requires_grad_(True)
    for feature in extractor(images):
        assert not feature.requires_grad
        assert feature.grad_fn is None


def test_differentiable_gradients(extractor: DiffusionFeatureExtractor) -> None:
    images = _images(2).requires_grad_(True)
    features = extractor(images, differentiable=True)
    assert all(f.requires_grad for f in features)
    weights = [
        torch.randn(f.shape, generator=torch.Generator().manual_seed(i))
        for i, f in enumerate(features)
    ]
    loss = sum((f * w).sum() for f, w in zip(features, weights, strict=True))
    (grad,) = torch.autograd.grad(loss, images)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    assert (grad[0].abs().sum() > 0) and (grad[1].abs().sum() > 0)
    # Finite-difference spot check of the directional derivative (float32, loose).
    direction = torch.randn(images.shape, generator=torch.Generator().manual_seed(9))
    step = 1e-2
    with torch.no_grad():
        plus = extractor(images + step * direction)
        minus = extractor(images - step * direction)
        numeric = sum(((p - m) * w).sum() for p, m, w in zip(plus, minus, weights, strict=True)) / (
            2 * step
        )
    analytic = (grad * direction).sum()
    assert numeric.item() == pytest.approx(analytic.item(), rel=0.05)
    assert all(p.grad is None for p in extractor.unet.parameters())


def test_unet_frozen(extractor: DiffusionFeatureExtractor) -> None:
    assert not any(p.requires_grad for p in extractor.unet.parameters())
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor(_images(1).requires_grad_(True), differentiable=True)
    assert not any(p.requires_grad for p in extractor.unet.parameters())


def test_train_keeps_unet_in_eval() -> None:
    dropout_unet = dataclasses.replace(TINY.unet, dropout=0.5)
    extractor = _extractor(dropout_unet)
    result = extractor.train()
    assert result is extractor
    assert extractor.training
    assert not any(m.training for m in extractor.unet.modules())
    images = _images(2)
    assert _equal(extractor(images), extractor(images))  # dropout stays off
    extractor.eval()
    assert not extractor.training and not extractor.unet.training


def test_block_order_is_sorted() -> None:
    extractor = _extractor(blocks=(3, 0))
    assert extractor.config.blocks == (0, 3)
    features = extractor(_images(1))
    assert [f.shape[1:] for f in features] == [(64, 16, 16), (32, 32, 32)]


def test_bfloat16_compute_close_to_float32() -> None:
    low = _extractor(compute_dtype="bfloat16")
    reference = _extractor()
    images = _images(2)
    for a, b in zip(low(images), reference(images), strict=True):
        assert a.dtype == torch.float32
        assert ((a - b).norm() / b.norm()).item() < 0.05


def test_flatten_unflatten_round_trip(extractor: DiffusionFeatureExtractor) -> None:
    features = extractor(_images(3))
    rows = flatten_features(features)
    shapes = extractor.block_shapes()
    assert rows.shape == (3, sum(s.channels * s.resolution**2 for s in shapes))
    back = unflatten_features(rows, shapes)
    assert all(torch.equal(a, b) for a, b in zip(features, back, strict=True))
    with pytest.raises(ValueError, match="block shapes need"):
        unflatten_features(rows[:, 1:], shapes)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4),
    st.integers(1, 3),
)
def test_flatten_unflatten_property(dims: list[tuple[int, int]], batch: int) -> None:
    shapes = [BlockShape(c, r) for c, r in dims]
    features = [torch.randn(batch, s.channels, s.resolution, s.resolution) for s in shapes]
    back = unflatten_features(flatten_features(features), shapes)
    assert all(torch.equal(a, b) for a, b in zip(features, back, strict=True))


@pytest.mark.parametrize(
    "shape", [(2, 3, 16, 16), (3, SIZE, SIZE), (2, 1, SIZE, SIZE), (2, 3, SIZE, SIZE + 1)]
)
def test_input_shape_exception(extractor: DiffusionFeatureExtractor, shape: tuple) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        extractor(torch.zeros(shape))


def test_config_exception() -> None:
    with pytest.raises(ValueError, match="exceed"):
        _extractor(blocks=(0, 4))
    with pytest.raises(ValueError, match="outside"):
        _extractor(timesteps=(1000,))
    with pytest.raises(ValueError, match="outside"):
        _extractor(timesteps=(-1,))
    with pytest.raises(ValueError, match="compute_dtype"):
        FeatureConfig(compute_dtype="float64")
    with pytest.raises(ValueError, match="at least one"):
        FeatureConfig(timesteps=())


def test_device(extractor: DiffusionFeatureExtractor, device: torch.device) -> None:
    moved = _extractor().to(device)
    images = _images(2)
    features = moved(images.to(device))
    assert all(f.device.type == device.type for f in features)
    reference = extractor(images)
    for on_device, on_cpu in zip(features, reference, strict=True):
        # GPUs run float32 convolutions on TF32 tensor cores (cuDNN's default): ~1e-3 relative
        assert ((on_device.cpu() - on_cpu).norm() / on_cpu.norm()).item() < 5e-3


def test_groupnorm_is_computed_in_float32_under_autocast() -> None:
    norm = next(m for m in UNet(TINY.unet).modules() if isinstance(m, torch.nn.GroupNorm))
    x = torch.randn(2, norm.num_channels, 8, 8).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    expected = torch.nn.functional.group_norm(
        x.float(), norm.num_groups, norm.weight, norm.bias, norm.eps
    ).to(torch.bfloat16)
    assert torch.equal(out, expected)


def test_channels_last_gives_the_same_features() -> None:
    images = _images(3)
    plain = _extractor().accelerate(channels_last=False)
    reference = plain(images)
    assert plain.unet.input_blocks[0][0].weight.is_contiguous()
    fast = _extractor()  # the default on the CPU: channels-last
    features = fast(images)
    assert fast.unet.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert _equal(features, reference, atol=1e-5)
    assert _equal(fast.accelerate(channels_last=False)(images), reference, atol=0)


@pytest.mark.slow
def test_compiled_feature_path_gives_the_same_features() -> None:
    images = _images(2)
    reference = _extractor()(images)
    assert _equal(_extractor().accelerate(compile=True)(images), reference, atol=1e-4)
