"""facecat.robustness.transforms: smoke, cardinality, gradients, references, exceptions."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps
from skimage import data

from facecat.core.images import load_images
from facecat.datasets.bona_fide import bundled_manifest
from facecat.robustness.transforms import (
    BLUR_REFERENCE_WIDTH,
    TRANSFORMS,
    ApplyTransform,
    Transformation,
    apply_transform,
    bit_depth,
    contrast,
    gaussian_blur,
    gaussian_noise,
    jpeg,
    register_transform,
    severity_table,
)

NAMES = sorted(TRANSFORMS)
SEVERITIES = (1, 2, 3, 4, 5)
BUILTIN_TABLES = {
    "jpeg": (25, 18, 15, 10, 7),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "bit_depth": (6, 5, 4, 3, 2),
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "downscale": (0.8, 0.6, 0.5, 0.4, 0.3),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "gamma": (1.5, 2.0, 2.5, 3.0, 3.5),
}
# PSNR (dB) of kornia's differentiable JPEG against PIL's libjpeg encoder at the same quality
# and 4:2:0 on the images below: lowest 34.05 on the 64x64 faces (quality 10) and 33.86 on the
# 128x128 astronaut (quality 7). PIL's output is 19-35 dB from the clean image, always at least
# 10.8 dB nearer to kornia's output than to the clean image. Against PIL at 4:4:4 the worst
# image scores 24.9-29.9 dB at every quality, so the bound also pins 4:2:0 subsampling.
JPEG_PSNR_BOUND = 31.0


def _images(
    shape: tuple[int, ...], device: torch.device | str = "cpu", seed: int = 0
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator).to(device)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """Four real 64x64 face photographs from the bundled manifest (LFW, astronaut, Hopper)."""
    manifest = bundled_manifest()
    frame = pd.read_csv(manifest)
    chosen = pd.concat(
        frame[frame["source"] == source].head(count)
        for source, count in (("lfw", 2), ("astronaut", 1), ("grace_hopper", 1))
    )
    return load_images([manifest.parent / path for path in chosen["path"]], size=64)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """scikit-image's astronaut photograph resized to 128x128, [1, 3, 128, 128]."""
    image = Image.fromarray(data.astronaut()).resize((128, 128), Image.Resampling.LANCZOS)
    return _from_pil(image)[None]


@pytest.fixture
def registry() -> Iterator[dict[str, Transformation]]:
    """The registry, restored after the test."""
    before = dict(TRANSFORMS)
    yield TRANSFORMS
    TRANSFORMS.clear()
    TRANSFORMS.update(before)


# --------------------------------------------------------------------------------------------
# registry and tables


def test_registry_holds_the_imagenet_c_tables() -> None:
    assert {name: TRANSFORMS[name].severities for name in BUILTIN_TABLES} == {
        name: tuple(float(v) for v in values) for name, values in BUILTIN_TABLES.items()
    }
    table = severity_table()
    assert list(table.columns) == ["name", "severity", "value", "unit"]
    assert len(table) == 5 * len(TRANSFORMS)
    jpeg_rows = table[table["name"] == "jpeg"]
    assert jpeg_rows["severity"].tolist() == [1, 2, 3, 4, 5]
    assert jpeg_rows["value"].tolist() == [25, 18, 15, 10, 7]
    assert set(jpeg_rows["unit"]) == {"JPEG quality"}


@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_is_identity(name: str) -> None:
    images = _images((2, 3, 16, 16))
    assert apply_transform(name, images, 0) is images


# --------------------------------------------------------------------------------------------
# smoke and cardinality


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_smoke_shape_range_determinism(name: str, severity: int, device: torch.device) -> None:
    images = _images((2, 3, 40, 72), device)  # neither side a multiple of 16
    out = apply_transform(name, images, severity, seed=3)
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    assert out.device == images.device
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.equal(out, images)
    assert torch.equal(out, apply_transform(name, images, severity, seed=3))


def test_noise_depends_on_seed_and_has_the_table_std() -> None:
    gray = torch.full((4, 3, 32, 32), 0.5)
    first = apply_transform("gaussian_noise", gray, 1, seed=0)
    assert not torch.equal(first, apply_transform("gaussian_noise", gray, 1, seed=1))
    assert float((first - gray).std()) == pytest.approx(0.08, rel=0.05)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_dtype_is_kept(name: str, dtype: torch.dtype) -> None:
    images = _images((1, 3, 16, 12)).to(dtype)
    out = apply_transform(name, images, 3)
    assert out.dtype == dtype
    reference = apply_transform(name, images.float(), 3)
    tolerance = 1e-5 if dtype == torch.float64 else 1e-2
    torch.testing.assert_close(out.float(), reference, atol=tolerance, rtol=0)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    name=st.sampled_from(NAMES),
    severity=st.integers(0, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_any_size_keeps_shape_and_range(
    batch: int, height: int, width: int, name: str, severity: int, seed: int
) -> None:
    images = _images((batch, 3, height, width), seed=seed)
    out = apply_transform(name, images, severity, seed=seed)
    assert out.shape == images.shape
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0 and float(out.max()) <= 1


# --------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_gradient_is_finite_and_not_zero(name: str, severity: int) -> None:
    images = _images((2, 3, 20, 24))
    images[:, :, 0] = 0  # x ** g and clamps at the ends of the range
    images[:, :, 1] = 1
    images.requires_grad_(True)
    weights = _images((2, 3, 20, 24), seed=1) - 0.5
    (apply_transform(name, images, severity) * weights).sum().backward()
    assert images.grad is not None
    assert bool(torch.isfinite(images.grad).all())
    assert float(images.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["gaussian_blur", "gaussian_noise", "downscale", "contrast"])
def test_gradcheck(name: str) -> None:
    images = (0.25 + 0.5 * _images((1, 3, 6, 5))).double().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: apply_transform(name, x, 1), (images,), fast_mode=True
    )


def test_gradcheck_gamma_includes_zero() -> None:
    images = _images((1, 3, 4, 4)).double()
    images[0, 0, 0] = 0
    images.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: apply_transform("gamma", x, 2), (images,), fast_mode=True
    )


def test_bit_depth_gradient_is_straight_through() -> None:
    images = _images((1, 3, 8, 8)).requires_grad_(True)
    weights = _images((1, 3, 8, 8), seed=1)
    (bit_depth(images, 3) * weights).sum().backward()
    assert torch.equal(images.grad, weights)


# --------------------------------------------------------------------------------------------
# references: PIL's JPEG encoder and posterize, ImageNet-C definitions


def _pil_jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(image)).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
    buffer.seek(0)
    return _from_pil(Image.open(buffer))


@pytest.mark.parametrize("quality", BUILTIN_TABLES["jpeg"])
def test_jpeg_close_to_pil_encoder(
    quality: int, faces: torch.Tensor, astronaut: torch.Tensor
) -> None:
    for batch in (faces, astronaut):
        coded = jpeg(batch, quality)
        for image, ours in zip(batch, coded, strict=True):
            theirs = _pil_jpeg(image, quality)
            agreement = _psnr(ours, theirs)
            assert agreement > JPEG_PSNR_BOUND
            assert agreement > _psnr(image, theirs) + 8  # far closer to PIL than to clean


def test_jpeg_handles_sizes_not_multiple_of_16(astronaut: torch.Tensor) -> None:
    crop = astronaut[..., :37, :53]
    out = jpeg(crop, 25)
    assert out.shape == crop.shape
    torch.testing.assert_close(out, jpeg(astronaut, 25)[..., :37, :53], atol=0.2, rtol=0)


@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_depth_equals_pil_posterize(bits: int, faces: torch.Tensor) -> None:
    noise = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    images = torch.cat([faces[:, :, :16, :16], noise / 255])
    ours = bit_depth(images, bits)
    for image, got in zip(images, ours, strict=True):
        expected = _from_pil(ImageOps.posterize(Image.fromarray(_to_uint8(image)), bits))
        assert torch.equal(got, expected)


def test_gaussian_blur_sigma_scales_with_width() -> None:
    sigma = 4.0
    width = BLUR_REFERENCE_WIDTH // 2
    impulse = torch.zeros(1, 3, 9, width)
    impulse[..., width // 2] = 1
    row = gaussian_blur(impulse, sigma)[0, 0, 4].double()
    position = torch.arange(width, dtype=torch.float64)
    mean = (row * position).sum() / row.sum()
    std = math.sqrt(float((row * (position - mean) ** 2).sum() / row.sum()))
    # A kernel truncated at 3 sigma has a standard deviation about 1.3% below sigma.
    assert std == pytest.approx(sigma * width / BLUR_REFERENCE_WIDTH, rel=0.03)


def test_contrast_keeps_the_per_channel_mean(faces: torch.Tensor) -> None:
    out = contrast(faces, 0.2)
    torch.testing.assert_close(out.mean(dim=(-2, -1)), faces.mean(dim=(-2, -1)))
    assert float(out.std()) < float(faces.std())


@pytest.mark.parametrize("name", NAMES)
def test_distortion_grows_with_severity(
    name: str, faces: torch.Tensor, astronaut: torch.Tensor
) -> None:
    for batch in (faces, astronaut):
        distortion = torch.stack(
            [
                (apply_transform(name, batch, severity) - batch).abs().mean(dim=(1, 2, 3))
                for severity in range(6)
            ]
        )  # [severity, image]
        assert bool((distortion[1] > 0).all())
        assert bool((distortion.diff(dim=0) >= 0).all()), distortion.T


# --------------------------------------------------------------------------------------------
# exceptions


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.rand(3, 8, 8), "4-D BCHW"),
        (torch.rand(1, 1, 8, 8), "3 channels"),
        (torch.rand(1, 4, 8, 8), "3 channels"),
        (torch.zeros(0, 3, 8, 8), "empty"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "floating-point.*divide 8-bit"),
        (torch.full((1, 3, 8, 8), 1.5), r"\[0, 1\].*max 1.5"),
        (torch.full((1, 3, 8, 8), -0.1), r"\[0, 1\].*min -0.1"),
        (torch.full((1, 3, 8, 8), 1 + 2e-6), r"tolerance 1e-06"),
        (torch.full((1, 3, 8, 8), float("nan")), "192 NaN"),
        (torch.full((1, 3, 8, 8), float("inf")), "max inf"),
    ],
)
@pytest.mark.parametrize("severity", [0, 2])
def test_bad_images_raise(images: torch.Tensor, match: str, severity: int) -> None:
    with pytest.raises(ValueError, match=match):
        apply_transform("jpeg", images, severity)
    with pytest.raises(ValueError, match=match):
        jpeg(images, 25)


def test_values_within_tolerance_are_accepted() -> None:
    images = torch.full((1, 3, 8, 8), 0.5)
    images[..., 0, 0] = -5e-7
    images[..., 0, 1] = 1 + 5e-7
    for name in NAMES:
        out = apply_transform(name, images, 5)
        assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_non_tensor_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        apply_transform("jpeg", np.zeros((1, 3, 8, 8)), 1)  # type: ignore[arg-type]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown transformation 'jpg'; known: bit_depth, "):
        apply_transform("jpg", torch.rand(1, 3, 8, 8), 1)


@pytest.mark.parametrize("severity", [-1, 6, 1.0, True, "1", None])
def test_bad_severity_raises(severity: object) -> None:
    with pytest.raises(ValueError, match=r"severity must be an int in 0\.\.5"):
        apply_transform("jpeg", torch.rand(1, 3, 8, 8), severity)  # type: ignore[arg-type]


def test_numpy_integer_severity_is_accepted() -> None:
    images = torch.rand(1, 3, 8, 8)
    assert torch.equal(apply_transform("contrast", images, np.int64(2)), contrast(images, 0.3))


@pytest.mark.parametrize(
    ("fn", "value", "match"),
    [
        (jpeg, 101, "quality must lie in"),
        (gaussian_blur, 0, "sigma must be > 0"),
        (bit_depth, 2.5, "bits must be an integer"),
        (bit_depth, 0, "bits must be an integer"),
        (gaussian_noise, -0.1, "std must be >= 0"),
        (contrast, -1, "factor must be >= 0"),
    ],
)
def test_bad_parameter_raises(fn: Callable[..., torch.Tensor], value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(torch.rand(1, 3, 8, 8), value)


# --------------------------------------------------------------------------------------------
# user registrations and the module form


def test_register_user_transform(registry: dict[str, Transformation]) -> None:
    seen: list[torch.dtype] = []

    def invert(images: torch.Tensor, amount: float, generator: torch.Generator | None):
        seen.append(images.dtype)
        return images + amount * (1 - 2 * images)

    entry = register_transform(
        "invert", invert, [0.1, 0.2, 0.3, 0.4, 0.5], unit="blend", description="toward 1 - x"
    )
    assert registry["invert"] is entry
    assert entry.severities == (0.1, 0.2, 0.3, 0.4, 0.5)
    images = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(apply_transform("invert", images, 5), torch.full_like(images, 0.5))
    assert apply_transform("invert", images.half(), 1).dtype == torch.float16
    assert seen[-1] == torch.float32
    assert "invert" in set(severity_table()["name"])
    with pytest.raises(ValueError, match="already registered"):
        register_transform("invert", invert, [1, 2, 3, 4, 5], unit="blend")
    register_transform("invert", invert, [1, 2, 3, 4, 5], unit="blend", overwrite=True)
    assert registry["invert"].severities[0] == 1


@pytest.mark.parametrize(
    ("name", "severities", "match"),
    [
        ("bad name", [1, 2, 3, 4, 5], "letters, digits and underscores"),
        ("", [1, 2, 3, 4, 5], "letters, digits and underscores"),
        ("short", [1, 2, 3, 4], "5 finite numbers"),
        ("nan", [1, 2, float("nan"), 4, 5], "5 finite numbers"),
    ],
)
def test_bad_registration_raises(
    name: str, severities: list[float], match: str, registry: dict[str, Transformation]
) -> None:
    with pytest.raises(ValueError, match=match):
        register_transform(name, contrast, severities, unit="u")
    assert name not in registry


def test_wrong_output_shape_raises(registry: dict[str, Transformation]) -> None:
    register_transform("crop", lambda x, v, g: x[..., 1:, :], [1, 2, 3, 4, 5], unit="px")
    with pytest.raises(ValueError, match=r"'crop' returned \(1, 3, 7, 8\)"):
        apply_transform("crop", torch.rand(1, 3, 8, 8), 1)


def test_module_form_matches_the_function() -> None:
    module = ApplyTransform("gaussian_noise", 2, seed=5)
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(module(images), apply_transform("gaussian_noise", images, 2, seed=5))
    assert "gaussian_noise" in repr(module)
    with pytest.raises(ValueError, match="unknown transformation"):
        ApplyTransform("nope", 1)
    with pytest.raises(ValueError, match="severity"):
        ApplyTransform("jpeg", 7)


# --------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name: str) -> None:
    images = _images((2, 3, 24, 20))
    on_gpu = images.cuda().requires_grad_(True)
    out = apply_transform(name, on_gpu, 4, seed=1)
    assert out.device == on_gpu.device
    assert torch.equal(out, apply_transform(name, on_gpu, 4, seed=1))
    out.sum().backward()
    assert bool(torch.isfinite(on_gpu.grad).all())
    if name != "gaussian_noise":  # CPU and CUDA generators draw different streams
        reference = apply_transform(name, images, 4, seed=1)
        # JPEG rounds at half steps: a rare coefficient may round differently per device.
        assert float((out.detach().cpu() - reference).abs().mean()) < 5e-3
