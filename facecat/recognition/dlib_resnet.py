"""A PyTorch port of dlib's face-recognition ResNet, read from its ``.dat`` file.

The network is dlib's ``dlib_face_recognition_resnet_model_v1`` (LFW 99.38%; CC0; shipped in
the ``face-recognition-models`` package): a 29-conv ResNet on 150x150 aligned face chips that
outputs 128-d descriptors; two faces are the same person when the Euclidean distance of their
descriptors is below 0.6. This module parses dlib's own serialisation (no dlib needed) and
rebuilds the network with torch layers, including dlib's residual additions that zero-pad
the smaller operand instead of projecting it. Crops in facecat's convention (the ArcFace
template at zoom 1.1, as the bundled faces) are warped to dlib's chip geometry (its 5-point
template with padding 0.25) with a fixed, differentiable similarity transform.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecat.core.landmarks import similarity_transform, template
from facecat.recognition.face_recognition import (
    FaceRecognitionError,
    FaceRecognizer,
    check_face_batch,
)

CHIP_SIZE = 150
CHIP_PADDING = 0.25
# dlib's 5-point chip template (unit coordinates): right-eye corners, left-eye corners, nose.
DLIB_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
PIXEL_MEANS = (122.782, 117.001, 104.298)
CROP_ZOOM = 1.1
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class DlibFormatError(FaceRecognitionError):
    """The file is not a dlib face-recognition network this parser understands."""


class _Reader:
    """Sequential reader of dlib's serialisation format."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, message: str) -> DlibFormatError:
        return DlibFormatError(f"{self.source}: at byte {self.pos}: {message}")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends early (needs {n} more bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if not 1 <= size <= 8:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        special = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        return special.get(exponent, mantissa * 2.0**exponent)

    def boolean(self) -> bool:
        flag = self.take(1)
        if flag not in (b"0", b"1"):
            raise self.fail(f"bad boolean byte {flag!r}")
        return flag == b"1"

    def string(self) -> str:
        return self.take(self.integer()).decode("ascii")

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise self.fail(f"tensor version {version}, expected 2")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self.take(4 * count), dtype="<f4")
        return values.reshape(shape)

    def alias_tensor(self) -> None:
        if self.integer() != 1:
            raise self.fail("alias tensor version, expected 1")
        for _ in range(4):
            self.integer()


@dataclass(frozen=True)
class DlibLayers:
    """Parameters of the network, input to output order."""

    convs: list[tuple[np.ndarray, np.ndarray, int]]  # weight (out,in,kh,kw), bias, stride
    affines: list[tuple[np.ndarray, np.ndarray]]  # gamma, beta
    fc: np.ndarray  # (128, 256): torch Linear.weight layout
    means: tuple[float, float, float]
    threshold: float


def _conv(reader: _Reader, version: str) -> tuple[np.ndarray, np.ndarray, int]:
    params = reader.tensor().reshape(-1)
    filters, rows, cols = reader.integer(), reader.integer(), reader.integer()
    stride_y, stride_x = reader.integer(), reader.integer()
    reader.integer(), reader.integer()  # padding: dlib's rule is re-derived from the stride
    reader.alias_tensor(), reader.alias_tensor()
    for _ in range(4):
        reader.real()  # learning-rate and weight-decay multipliers
    if version in ("con_5", "con_6"):
        reader.boolean()
    if version == "con_6":
        reader.boolean()
    if stride_x != stride_y:
        raise reader.fail("non-square convolution strides are not supported")
    n_weights = params.size - filters
    in_channels = n_weights // (filters * rows * cols)
    weight = params[:n_weights].reshape(filters, in_channels, rows, cols)
    return weight.copy(), params[n_weights:].copy(), stride_y


def _affine(reader: _Reader, version: str) -> tuple[np.ndarray, np.ndarray]:
    params = reader.tensor().reshape(-1)
    reader.alias_tensor(), reader.alias_tensor()
    if reader.integer() != 0:
        raise reader.fail("only per-channel affine layers are supported")
    if version == "affine_2":
        reader.boolean()
    half = params.size // 2
    return params[:half].copy(), params[half:].copy()


def _pool(reader: _Reader) -> None:
    for _ in range(6):
        reader.integer()


def _fc(reader: _Reader) -> np.ndarray:
    outputs, inputs = reader.integer(), reader.integer()
    params = reader.tensor().reshape(-1)
    reader.alias_tensor(), reader.alias_tensor()
    if reader.integer() != 1:
        raise reader.fail("expected an fc layer without bias (bias_mode 1)")
    for _ in range(4):
        reader.real()
    return params[: inputs * outputs].reshape(inputs, outputs).T.copy()


def parse_dlib_resnet(path: str | Path) -> DlibLayers:
    """Read the layers of dlib's face-recognition network from its ``.dat`` file.

    Args:
        path: ``dlib_face_recognition_resnet_model_v1.dat``.

    Returns:
        The convolution, affine and fc parameters with the input means and threshold.
    """
    path = Path(path)
    if not path.is_file():
        raise DlibFormatError(
            f"dlib model file not found: {path} (it ships in the face-recognition-models "
            "package: pip install face-recognition-models==0.3.0)"
        )
    reader = _Reader(path.read_bytes(), str(path))
    if reader.integer() != 1 or reader.string() != "loss_metric_2":
        raise reader.fail("not a dlib metric-learning network (expected loss_metric_2)")
    reader.real()  # margin
    threshold = reader.real()
    wrappers = []
    while True:
        version = reader.integer()
        if version not in (1, 2, 3):
            raise reader.fail(f"unexpected layer wrapper version {version}")
        wrappers.append(version)
        if version == 3:
            break
    if reader.string() != "input_rgb_image_sized":
        raise reader.fail("expected the input_rgb_image_sized input layer")
    means = (reader.real(), reader.real(), reader.real())
    if (reader.integer(), reader.integer()) != (CHIP_SIZE, CHIP_SIZE):
        raise reader.fail(f"expected a {CHIP_SIZE}x{CHIP_SIZE} input layer")
    convs, affines, fc = [], [], None
    for wrapper in reversed(wrappers):
        if wrapper == 1:  # tag and skip layers carry no details
            continue
        name = reader.string()
        if name.startswith("con_"):
            convs.append(_conv(reader, name))
        elif name.startswith("affine_"):
            affines.append(_affine(reader, name))
        elif name.startswith(("max_pool_", "avg_pool_")):
            _pool(reader)
        elif name.startswith("fc_"):
            fc = _fc(reader)
        elif name not in ("relu_", "add_prev_"):
            raise reader.fail(f"unsupported layer {name!r}")
        for _ in range(3):
            reader.boolean()
        for _ in range(3):
            reader.tensor()
        if wrapper == 3:
            reader.integer()  # sample expansion factor
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} unexpected bytes after the network")
    if fc is None or len(convs) != 29 or len(affines) != 29:
        raise reader.fail(
            f"expected 29 conv, 29 affine and one fc layer; found {len(convs)}, "
            f"{len(affines)}, {0 if fc is None else 1}"
        )
    return DlibLayers(convs, affines, fc, means, threshold)


def _pad_add(a: Tensor, b: Tensor) -> Tensor:
    """dlib's add_prev: zero-pad the smaller operand at the end of each dimension."""
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True)]

    def grow(t: Tensor) -> Tensor:
        c, h, w = (s - n for s, n in zip(shape, t.shape[1:], strict=True))
        return F.pad(t, (0, w, 0, h, 0, c)) if c or h or w else t

    return grow(a) + grow(b)


class _Affine(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


class _Block(nn.Module):
    """ares / ares_down: relu(skip + affine(conv(relu(affine(conv(x))))))."""

    def __init__(self, in_channels: int, channels: int, down: bool) -> None:
        super().__init__()
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 0 if down else 1)
        self.affine1 = _Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.affine2 = _Affine(channels)
        self.down = down

    def forward(self, x: Tensor) -> Tensor:
        h = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_pad_add(skip, h))


_PLAN = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2
_PLAN += [(256, True)] + [(256, False)] * 2 + [(256, True)]


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet.

    Shape:
        (B, 3, 150, 150) float RGB in [0, 255] minus nothing -> (B, 128) raw descriptors
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        self.stem_affine = _Affine(32)
        blocks, channels = [], 32
        for width, down in _PLAN:
            blocks.append(_Block(channels, width, down))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("means", torch.tensor(PIXEL_MEANS).view(1, 3, 1, 1))

    def forward(self, pixels: Tensor) -> Tensor:
        x = (pixels - self.means) / 256.0
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_layers(cls, layers: DlibLayers) -> DlibResNet:
        """Build the network and copy the parsed parameters in."""
        model = cls()
        convs = [model.stem] + [c for b in model.blocks for c in (b.conv1, b.conv2)]
        affines = [model.stem_affine] + [a for b in model.blocks for a in (b.affine1, b.affine2)]
        with torch.no_grad():
            for conv, (weight, bias, stride) in zip(convs, layers.convs, strict=True):
                if tuple(weight.shape) != tuple(conv.weight.shape) or stride != conv.stride[0]:
                    raise DlibFormatError(
                        f"conv layer mismatch: file {weight.shape} stride {stride}, "
                        f"network {tuple(conv.weight.shape)} stride {conv.stride[0]}"
                    )
                conv.weight.copy_(torch.from_numpy(weight))
                conv.bias.copy_(torch.from_numpy(bias))
            for affine, (gamma, beta) in zip(affines, layers.affines, strict=True):
                affine.gamma.copy_(torch.from_numpy(gamma))
                affine.beta.copy_(torch.from_numpy(beta))
            model.fc.weight.copy_(torch.from_numpy(layers.fc))
            model.means.copy_(torch.tensor(layers.means).view(1, 3, 1, 1))
        return model.eval()


def chip_matrix(crop_size: int) -> Tensor:
    """Affine (2, 3) mapping dlib chip pixels to crop pixels (eye centres and nose tip)."""
    unit = (CHIP_PADDING + DLIB_TEMPLATE) / (1 + 2 * CHIP_PADDING) * CHIP_SIZE
    chip_points = torch.tensor(
        np.stack([unit[2:4].mean(0), unit[0:2].mean(0)]), dtype=torch.float64
    )
    crop_points = template(crop_size, CROP_ZOOM)[:2].double()
    return similarity_transform(chip_points, crop_points)


def warp_to_chip(images: Tensor) -> Tensor:
    """Differentiably warp facecat crops (B, 3, S, S) to dlib chips (B, 3, 150, 150)."""
    size = images.shape[-1]
    matrix = chip_matrix(size).to(images)
    # affine_grid works in normalised coordinates (align_corners=False): pixel centres at
    # (2 i + 1) / n - 1.
    to_norm_in = torch.tensor([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1]])
    from_norm_out = torch.tensor(
        [
            [CHIP_SIZE / 2, 0, CHIP_SIZE / 2 - 0.5],
            [0, CHIP_SIZE / 2, CHIP_SIZE / 2 - 0.5],
            [0, 0, 1],
        ]
    )
    theta = to_norm_in.to(images) @ torch.cat([matrix, torch.tensor([[0, 0, 1.0]]).to(images)])
    theta = theta @ from_norm_out.to(images)
    grid = F.affine_grid(
        theta.expand(len(images), 2, 3), [len(images), 3, CHIP_SIZE, CHIP_SIZE], align_corners=False
    )
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def packaged_model_file() -> Path:
    """The ``.dat`` file inside the installed ``face-recognition-models`` package.

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DlibFormatError(
            "the dlib FR model ships in face-recognition-models: "
            "pip install face-recognition-models==0.3.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILE


class DlibRecognizer(FaceRecognizer):
    """The dlib ResNet as an FR target: Euclidean distance on raw descriptors, threshold 0.6.

    Args:
        path: the ``.dat`` file (default: from ``face-recognition-models``).
    """

    name = "dlib"
    metric = "euclidean"
    input_size = 64

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        layers = parse_dlib_resnet(path if path is not None else packaged_model_file())
        self.network = DlibResNet.from_layers(layers)
        self.threshold = layers.threshold

    def forward(self, images: Tensor) -> Tensor:
        """Descriptors of facecat crops of any size (warped to dlib chips)."""
        check_face_batch(images)
        return self.descriptors(images)

    def descriptors(self, images: Tensor) -> Tensor:
        return self.chip_descriptors(warp_to_chip(images))

    def chip_descriptors(self, chips: Tensor) -> Tensor:
        """Descriptors of dlib chips (B, 3, 150, 150) in [0, 1] (dlib's own input)."""
        return self.network(chips * 255.0)
