"""Guided-diffusion UNet whose parameter names and shapes match the public checkpoints.

The module tree follows guided-diffusion's ``UNetModel`` (``time_embed``, ``input_blocks``,
``middle_block``, ``output_blocks``, ``out``) so that real checkpoints such as the FFHQ-256
model of "Label-efficient semantic segmentation with diffusion models" load with
``strict=True``. Besides the usual noise prediction, :meth:`UNet.decoder_features` returns the
activations of chosen decoder (output) blocks and stops as soon as the last one is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a guided-diffusion UNet (the flags of its ``image_train.py``).

    ``attention_resolutions`` are feature-map resolutions in pixels (e.g. 32, 16, 8), as on
    guided-diffusion's command line.
    """

    image_size: int = 64
    in_channels: int = 3
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 4
    num_head_channels: int = -1
    learn_sigma: bool = True
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    conv_resample: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(
            self, "attention_resolutions", tuple(int(r) for r in self.attention_resolutions)
        )
        levels = len(self.channel_mult)
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**{levels - 1} "
                f"for channel_mult {self.channel_mult}"
            )
        for mult in self.channel_mult:
            if (self.model_channels * mult) % 32:
                raise ValueError(
                    f"model_channels * channel_mult = {self.model_channels * mult} must be a "
                    "multiple of 32 (GroupNorm with 32 groups)"
                )

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channel_mult"] = list(self.channel_mult)
        data["attention_resolutions"] = list(self.attention_resolutions)
        return data


@dataclass(frozen=True)
class BlockShape:
    """Channels and square resolution of one decoder block's output."""

    channels: int
    resolution: int


def decoder_block_shapes(config: UNetConfig) -> list[BlockShape]:
    """Shapes of every output block's activation, derived from the config alone.

    Args:
        config: the UNet architecture.

    Returns:
        One :class:`BlockShape` per output block, in ``output_blocks`` order.
    """
    levels = len(config.channel_mult)
    resolution = config.image_size // 2 ** (levels - 1)
    shapes = []
    for level in reversed(range(levels)):
        channels = config.model_channels * config.channel_mult[level]
        for i in range(config.num_res_blocks + 1):
            if level and i == config.num_res_blocks:
                resolution *= 2
            shapes.append(BlockShape(channels, resolution))
    return shapes


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of raw (unscaled) timesteps, cosine half first.

    Shape:
        timesteps: (B,) -> (B, dim)
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        out = F.group_norm(x.float(), self.num_groups, weight, bias, self.eps)
        return out.to(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def _zeroed(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class Upsample(nn.Module):
    """Nearest 2x upsampling, optionally followed by a 3x3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class Downsample(nn.Module):
    """2x downsampling: strided 3x3 conv (key ``op``) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op = (
            nn.Conv2d(channels, channels, 3, stride=2, padding=1)
            if use_conv
            else nn.AvgPool2d(kernel_size=2, stride=2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, optionally resampling."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int,
        use_scale_shift_norm: bool,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.resample: nn.Module | None = None
        if up:
            self.resample = Upsample(channels, use_conv=False)
        elif down:
            self.resample = Downsample(channels, use_conv=False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels),
        )
        self.out_layers = nn.Sequential(
            _norm(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.resample is None:
            h = self.in_layers(x)
        else:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.resample(h))
            x = self.resample(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with guided-diffusion's legacy head ordering."""

    def __init__(self, channels: int, num_heads: int, num_head_channels: int) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(
                    f"channels {channels} not divisible by num_head_channels {num_head_channels}"
                )
            self.num_heads = channels // num_head_channels
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        batch, channels, height, width = x.shape
        flat = x.reshape(batch, channels, height * width)
        qkv = self.qkv(self.norm(flat))
        head_channels = channels // self.num_heads
        # Legacy order: split heads first, then q, k, v within each head.
        # Contiguous (batch, heads, tokens, head channels) inputs let SDPA pick a fused
        # kernel (flash attention, CPU and GPU) instead of the unfused math path.
        qkv = qkv.reshape(batch, self.num_heads, 3 * head_channels, height * width)
        q, k, v = (part.transpose(2, 3).contiguous() for part in qkv.split(head_channels, dim=2))
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(2, 3).reshape(batch, channels, height * width)
        return (flat + self.proj_out(attended)).reshape(batch, channels, height, width)


class TimestepSequential(nn.Sequential):
    """Sequential container that passes the timestep embedding to the blocks that take it."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock | AttentionBlock) else layer(x)
        return x


class UNet(nn.Module):
    """Guided-diffusion UNet (unconditional), strict-loadable from its checkpoints.

    Args:
        config: the architecture.

    Example:
        >>> unet = UNet(UNetConfig(image_size=32, model_channels=32, channel_mult=(1, 2)))
        >>> unet(torch.zeros(2, 3, 32, 32), torch.tensor([50, 50])).shape
        torch.Size([2, 6, 32, 32])
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        emb_dim = mc * 4
        attention_ds = {config.image_size // r for r in config.attention_resolutions}

        def res_block(ch: int, out: int, **resample: bool) -> ResBlock:
            return ResBlock(
                ch, emb_dim, config.dropout, out, config.use_scale_shift_norm, **resample
            )

        def attention(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, config.num_heads, config.num_head_channels)

        self.time_embed = nn.Sequential(
            nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        ch = mc * config.channel_mult[0]
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(nn.Conv2d(config.in_channels, ch, 3, padding=1))]
        )
        skip_channels = [ch]
        ds = 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res_block(ch, mc * mult)]
                ch = mc * mult
                if ds in attention_ds:
                    layers.append(attention(ch))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                down = (
                    res_block(ch, ch, down=True)
                    if config.resblock_updown
                    else Downsample(ch, config.conv_resample)
                )
                self.input_blocks.append(TimestepSequential(down))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(res_block(ch, ch), attention(ch), res_block(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [res_block(ch + skip_channels.pop(), mc * mult)]
                ch = mc * mult
                if ds in attention_ds:
                    layers.append(attention(ch))
                if level and i == config.num_res_blocks:
                    layers.append(
                        res_block(ch, ch, up=True)
                        if config.resblock_updown
                        else Upsample(ch, config.conv_resample)
                    )
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(
            _norm(ch), nn.SiLU(), _zeroed(nn.Conv2d(ch, config.out_channels, 3, padding=1))
        )

    def _encode(self, x: Tensor, timesteps: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"UNet expects (B, {self.config.in_channels}, H, W) input, got {tuple(x.shape)}"
            )
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        return self.middle_block(h, emb), emb, skips

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        """Predict noise (and variance when ``learn_sigma``).

        Shape:
            x: (B, C, H, W) in model scale [-1, 1]; timesteps: (B,) raw steps ->
            (B, out_channels, H, W)
        """
        h, emb, skips = self._encode(x, timesteps)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

    def decoder_features(
        self, x: Tensor, timesteps: Tensor, blocks: Sequence[int]
    ) -> dict[int, Tensor]:
        """Activations of the given output blocks; later blocks are never computed.

        Args:
            x: noisy images in model scale, (B, C, H, W).
            timesteps: raw timesteps, (B,) or a scalar tensor.
            blocks: output-block indices (0-based, as in ``output_blocks``).

        Returns:
            ``{block: activation}`` with activation shape (B, C_b, H_b, W_b).
        """
        wanted = set(blocks)
        if not wanted or min(wanted) < 0 or max(wanted) >= len(self.output_blocks):
            raise ValueError(
                f"blocks {sorted(wanted)} out of range: this UNet has output blocks "
                f"0..{len(self.output_blocks) - 1}"
            )
        h, emb, skips = self._encode(x, timesteps)
        features = {}
        for index, block in enumerate(self.output_blocks[: max(wanted) + 1]):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if index in wanted:
                features[index] = h
        return features
