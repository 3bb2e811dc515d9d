"""Tests for facecat.models.fusion and facecat.models.head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from facecat.core.checkpoints import CheckpointError
from facecat.models.config import FaceCatConfig, read_config_dict
from facecat.models.fusion import PoolingFusion, StridedConvFusion, create_fusion
from facecat.models.head import EmbeddingHead
from facecat.models.unet import BlockShape, decoder_block_shapes


@pytest.fixture(scope="module")
def ffhq_shapes() -> list[BlockShape]:
    config = FaceCatConfig.from_dict(read_config_dict("facecat-ffhq256"))
    shapes = decoder_block_shapes(config.unet)
    return [shapes[b] for b in config.features.blocks]


def _meta_features(shapes: list[BlockShape], batch: int = 2) -> list[torch.Tensor]:
    return [
        torch.empty(batch, s.channels, s.resolution, s.resolution, device="meta") for s in shapes
    ]


def test_ffhq_release_fusion_cardinality(ffhq_shapes: list[BlockShape]) -> None:
    assert ffhq_shapes == [
        BlockShape(1024, 32),
        BlockShape(512, 32),
        BlockShape(512, 32),
        BlockShape(512, 64),
        BlockShape(256, 128),
    ]
    with torch.device("meta"):
        fusion = create_fusion("strided", ffhq_shapes)
    assert isinstance(fusion, StridedConvFusion)
    assert fusion.out_channels == 2432
    assert fusion(_meta_features(ffhq_shapes)).shape == (2, 2432, 32, 32)


def test_ffhq_release_fusion_layers(ffhq_shapes: list[BlockShape]) -> None:
    with torch.device("meta"):
        fusion = create_fusion("strided", ffhq_shapes)
    convs = [[m for m in b.modules() if isinstance(m, nn.Conv2d)] for b in fusion.branches]
    described = [[(c.in_channels, c.out_channels, c.stride) for c in branch] for branch in convs]
    # Blocks 5, 6, 7 pass through; block 8: 512 -> 256; block 12: 256 -> 256 -> 128.
    assert described == [
        [],
        [],
        [],
        [(512, 256, (2, 2))],
        [(256, 256, (2, 2)), (256, 128, (2, 2))],
    ]
    assert all(c.kernel_size == (3, 3) for branch in convs for c in branch)
    batch_norms = [m for m in fusion.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [bn.num_features for bn in batch_norms] == [256, 256, 128]


def test_ffhq_pooling_fusion_cardinality(ffhq_shapes: list[BlockShape]) -> None:
    fusion = create_fusion("pooling", ffhq_shapes)
    assert isinstance(fusion, PoolingFusion)
    assert fusion.out_channels == 2816
    assert fusion(_meta_features(ffhq_shapes)).shape == (2, 2816, 32, 32)
    assert sum(p.numel() for p in fusion.parameters()) == 0


def test_pooling_fusion_values() -> None:
    shapes = [BlockShape(2, 4), BlockShape(3, 8), BlockShape(1, 16)]
    generator = torch.Generator().manual_seed(0)
    features = [
        torch.randn(2, s.channels, s.resolution, s.resolution, generator=generator) for s in shapes
    ]
    fused = create_fusion("pooling", shapes)(features)
    expected = torch.cat(
        [features[0], F.avg_pool2d(features[1], 2), F.avg_pool2d(features[2], 4)], 1
    )
    assert torch.equal(fused, expected)


def test_strided_fusion_smoke_small() -> None:
    shapes = [BlockShape(8, 4), BlockShape(6, 8), BlockShape(4, 16)]
    fusion = create_fusion("strided", shapes).eval()
    assert fusion.out_channels == 8 + 3 + 2
    features = [torch.randn(3, s.channels, s.resolution, s.resolution) for s in shapes]
    fused = fusion(features)
    assert fused.shape == (3, 13, 4, 4)
    assert torch.equal(fused[:, :8], features[0])  # the target-resolution block is untouched
    assert (fused[:, 8:] >= 0).all()  # ReLU outputs


@pytest.mark.parametrize("name", ["strided", "pooling"])
def test_fusion_gradcheck(name: str) -> None:
    shapes = [BlockShape(2, 2), BlockShape(2, 4)]
    fusion = create_fusion(name, shapes).double().eval()
    inputs = tuple(
        torch.randn(1, s.channels, s.resolution, s.resolution, dtype=torch.float64).requires_grad_()
        for s in shapes
    )
    assert torch.autograd.gradcheck(lambda *xs: fusion(list(xs)), inputs)


@pytest.mark.parametrize("name", ["strided", "pooling"])
@pytest.mark.parametrize("resolutions", [(48, 32), (32, 96), (16, 40)], ids=["1.5x", "3x", "2.5x"])
def test_fusion_non_power_of_two_exception(name: str, resolutions: tuple[int, int]) -> None:
    shapes = [BlockShape(8, r) for r in resolutions]
    with pytest.raises(ValueError, match="power-of-two"):
        create_fusion(name, shapes)


def test_create_fusion_unknown_exception() -> None:
    with pytest.raises(ValueError, match="unknown fusion 'concat'") as info:
        create_fusion("concat", [BlockShape(8, 4)])
    assert "strided" in str(info.value)
    assert "pooling" in str(info.value)


@pytest.mark.parametrize(("embed_dim", "projected"), [(512, False), (384, True)])
def test_embedding_head_cardinality(embed_dim: int, projected: bool) -> None:
    head = EmbeddingHead(in_channels=40, embed_dim=embed_dim).eval()
    assert isinstance(head.project, nn.Linear) == projected
    out = head(torch.randn(3, 40, 32, 32))
    assert out.shape == (3, embed_dim)
    assert head.embed_dim == embed_dim
    assert torch.isfinite(out).all()


def test_embedding_head_ffhq_fused_on_meta() -> None:
    with torch.device("meta"):
        head = EmbeddingHead(in_channels=2432)
        out = head(torch.empty(2, 2432, 32, 32))
    assert out.shape == (2, 512)
    assert head.stem[0].weight.shape == (64, 2432, 3, 3)


def test_embedding_head_backward() -> None:
    head = EmbeddingHead(in_channels=8, embed_dim=384)
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    head(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.parameters())


def _resnet_file(tmp_path: Path, drop: str | None = None, reshape: str | None = None) -> tuple:
    state = resnet18(weights=None).state_dict()
    # every float tensor random, so that no copied value can equal a default by chance
    generator = torch.Generator().manual_seed(0)
    for value in state.values():
        if value.is_floating_point():
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
    if drop:
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
    if reshape:
        state[reshape] = torch.zeros(3, 3)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    return path, state


def test_load_resnet18_copies_layers(tmp_path: Path) -> None:
    path, reference = _resnet_file(tmp_path)
    torch.manual_seed(1)
    head = EmbeddingHead(in_channels=16, embed_dim=384)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    head.load_resnet18(path)
    after = head.state_dict()
    layer_keys = [k for k in after if k.split(".")[0] in ("layer1", "layer2", "layer3", "layer4")]
    assert len(layer_keys) > 80
    for key in layer_keys:
        assert torch.equal(after[key], reference[key]), key
    changed = {k for k in layer_keys if not torch.equal(before[k], after[k])}
    assert changed == {k for k in layer_keys if after[k].is_floating_point()}
    for key in after:
        if key not in layer_keys:  # stem and projection untouched
            assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize(
    ("drop", "reshape", "message"),
    [
        ("layer4", None, "missing keys"),
        ("layer2.1.bn2", None, "layer2.1.bn2"),
        (None, "layer1.0.conv1.weight", "layer1.0.conv1.weight"),
    ],
)
def test_load_resnet18_exception(
    tmp_path: Path, drop: str | None, reshape: str | None, message: str
) -> None:
    path, _ = _resnet_file(tmp_path, drop=drop, reshape=reshape)
    head = EmbeddingHead(in_channels=16)
    with pytest.raises(CheckpointError, match=message):
        head.load_resnet18(path)


def test_load_resnet18_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        EmbeddingHead(in_channels=16).load_resnet18(tmp_path / "absent.pth")
