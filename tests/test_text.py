"""Tests for facecat.models.text: prompt sets, text encoders, class weights and cosine logits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facecat.models.text import (
    CLASS_NAMES,
    FAKE_INDEX,
    REAL_INDEX,
    ClipTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
    TextEncoderError,
    class_weights,
    cosine_logits,
    create_text_encoder,
    list_prompt_sets,
    list_text_encoders,
    load_prompt_set,
)

PAPER_REAL_FIRST = "A photo of a real face."


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


@pytest.fixture(scope="module")
def paper() -> dict[str, list[str]]:
    return load_prompt_set("paper")


# ---------------------------------------------------------------------- prompt sets


def test_packaged_prompt_sets_shape() -> None:
    assert list_prompt_sets() == ["paper", "release"]
    for name in list_prompt_sets():
        prompts = load_prompt_set(name)
        assert set(prompts) == {"real", "fake"}
        assert len(prompts["real"]) == len(prompts["fake"]) == 6
        assert not set(prompts["real"]) & set(prompts["fake"])


def test_paper_prompts_are_table_2(paper: dict[str, list[str]]) -> None:
    assert paper["real"][0] == PAPER_REAL_FIRST
    assert "An example of attack face." in paper["fake"]
    assert "This is not a fake face." in paper["real"]


def test_load_prompt_set_returns_fresh_lists(paper: dict[str, list[str]]) -> None:
    paper["real"].append("mutated")
    assert load_prompt_set("paper")["real"][-1] != "mutated"
    paper["real"].pop()


def test_unknown_prompt_set_lists_available() -> None:
    with pytest.raises(ValueError, match=r"unknown prompt set 'nope'.*paper.*release"):
        load_prompt_set("nope")


def test_missing_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("absent.json")):
        load_prompt_set(tmp_path / "absent.json")


def test_user_prompt_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"real": ["a live face"], "fake": ["a mask", "a print"]}))
    assert load_prompt_set(path) == {"real": ["a live face"], "fake": ["a mask", "a print"]}
    assert load_prompt_set(str(path))["fake"] == ["a mask", "a print"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"real": ["a"]}, "missing: \\['fake'\\]"),
        ({"real": ["a"], "fake": ["b"], "Real": ["c"]}, "unexpected: \\['Real'\\]"),
        ({"real": [], "fake": ["b"]}, "'real' must be a non-empty list"),
        ({"real": "a live face", "fake": ["b"]}, "'real' must be a non-empty list"),
        ({"real": ["a", 3], "fake": ["b"]}, "'real' holds empty or non-string"),
        ({"real": ["a"], "fake": ["  "]}, "'fake' holds empty or non-string"),
        (["a", "b"], "expected an object"),
    ],
)
def test_user_prompt_file_validation(tmp_path: Path, content: object, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match):
        load_prompt_set(path)


def test_user_prompt_file_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_prompt_set(path)


# ---------------------------------------------------------------------- MiniLM encoder


def test_minilm_shape_norm_dtype(minilm: MiniLMTextEncoder, paper: dict[str, list[str]]) -> None:
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384
    assert minilm.logit_scale is None
    emb = minilm.encode(paper["real"] + paper["fake"])
    assert emb.shape == (12, 384)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(12), atol=1e-5, rtol=0)


def test_minilm_deterministic_and_batch_independent(
    minilm: MiniLMTextEncoder, paper: dict[str, list[str]]
) -> None:
    texts = paper["real"] + paper["fake"]
    first = minilm.encode(texts)
    torch.testing.assert_close(minilm.encode(texts), first, atol=0, rtol=0)
    # padding inside a batch must not change an embedding
    alone = minilm.encode([texts[1]])
    torch.testing.assert_close(alone[0], first[1], atol=1e-5, rtol=0)


def test_minilm_matches_sentence_transformers(
    minilm: MiniLMTextEncoder, paper: dict[str, list[str]]
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = [*paper["real"], *paper["fake"], "a much longer sentence about a silicone mask attack"]
    reference = sentence_transformers.SentenceTransformer(str(minilm.model_dir), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_tensor=True)
    torch.testing.assert_close(minilm.encode(texts), expected.cpu().float(), atol=1e-5, rtol=0)


def test_minilm_semantics(minilm: MiniLMTextEncoder) -> None:
    emb = minilm.encode(["a photo of a real face", "a picture of a genuine face", "a red car"])
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_encode_rejects_bad_input(minilm: MiniLMTextEncoder) -> None:
    with pytest.raises(ValueError, match="non-empty list of strings"):
        minilm.encode([])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        minilm.encode("a single string")  # type: ignore[arg-type]


def test_minilm_missing_model_dir(tmp_path: Path) -> None:
    with pytest.raises(TextEncoderError, match=re.escape("model.safetensors")):
        MiniLMTextEncoder(model_dir=tmp_path)


# ---------------------------------------------------------------------- class weights, logits


@pytest.mark.parametrize("set_name", ["paper", "release"])
def test_class_weights(minilm: MiniLMTextEncoder, set_name: str) -> None:
    prompts = load_prompt_set(set_name)
    weights = class_weights(minilm, prompts)
    assert weights.shape == (2, 384)
    assert CLASS_NAMES[FAKE_INDEX] == "fake" and CLASS_NAMES[REAL_INDEX] == "real"
    torch.testing.assert_close(weights.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    assert not torch.allclose(weights[0], weights[1], atol=1e-3)
    sims = {name: minilm.encode(prompts[name]) @ weights.T for name in ("real", "fake")}
    # each class weight is, on average, closer to its own prompts than to the other class's
    assert sims["real"][:, REAL_INDEX].mean() > sims["fake"][:, REAL_INDEX].mean()
    assert sims["fake"][:, FAKE_INDEX].mean() > sims["real"][:, FAKE_INDEX].mean()


def test_class_weights_is_normalised_mean(minilm: MiniLMTextEncoder) -> None:
    prompts = {"real": ["a real face", "a live face"], "fake": ["a fake face"]}
    weights = class_weights(minilm, prompts)
    real = minilm.encode(prompts["real"]).mean(dim=0)
    torch.testing.assert_close(weights[REAL_INDEX], real / real.norm(), atol=1e-6, rtol=0)
    torch.testing.assert_close(weights[FAKE_INDEX], minilm.encode(["a fake face"])[0])


def test_cosine_logits_hand_computation() -> None:
    embeddings = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = 10.0 * torch.tensor([[0.6, 0.8], [0.0, -1.0]])
    torch.testing.assert_close(cosine_logits(embeddings, weights, 10.0), expected)


def test_cosine_logits_random_and_grad() -> None:
    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = F.normalize(torch.randn(2, 7, generator=gen), dim=1)
    logits = cosine_logits(embeddings, weights, 100.0)
    e = embeddings.detach()
    w = weights.double()
    manual = torch.stack(
        [torch.stack([100.0 * (e[i] @ w[k]) / e[i].norm() for k in range(2)]) for i in range(5)]
    )
    assert logits.dtype == torch.float64
    torch.testing.assert_close(logits.detach(), manual)
    p_real = logits.softmax(dim=1)[:, REAL_INDEX]
    assert torch.all((p_real >= 0) & (p_real <= 1))
    assert torch.autograd.gradcheck(
        lambda x: cosine_logits(x, weights.double(), 3.0), (embeddings,)
    )


def test_cosine_logits_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="expected embeddings"):
        cosine_logits(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)


# ---------------------------------------------------------------------- registry


def test_registry() -> None:
    assert list_text_encoders() == ["clip", "minilm"]
    with pytest.raises(ValueError, match=r"unknown text encoder backend 'bert'.*clip.*minilm"):
        create_text_encoder("bert")


def test_create_minilm_via_registry(minilm: MiniLMTextEncoder) -> None:
    encoder = create_text_encoder("minilm", model_dir=minilm.model_dir)
    assert isinstance(encoder, MiniLMTextEncoder)
    torch.testing.assert_close(encoder.encode(["a face"]), minilm.encode(["a face"]))


# ---------------------------------------------------------------------- CLIP encoder


def test_clip_missing_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "ViT-B-16-openai.safetensors"
    with pytest.raises(TextEncoderError, match=re.escape("ViT-B-16-openai.safetensors")) as info:
        create_text_encoder("clip", weights=missing)
    assert "must be supplied by the user" in str(info.value)


def test_clip_no_weights_given() -> None:
    with pytest.raises(TextEncoderError, match="must be supplied by the user"):
        ClipTextEncoder()


def test_clip_corrupt_weights_file(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(TextEncoderError, match=re.escape("broken.bin")):
        ClipTextEncoder(weights=bad)


def test_clip_tokenizer_offline(paper: dict[str, list[str]]) -> None:
    open_clip = pytest.importorskip("open_clip")
    tokens = open_clip.get_tokenizer("ViT-B-16")(paper["real"] + paper["fake"])
    assert tokens.shape == (12, 77)
    assert tokens.dtype == torch.long
    assert len(set(map(tuple, tokens.tolist()))) == 12


def test_clip_encoder_roundtrip_random_weights(tmp_path: Path) -> None:
    """A random-init ViT-B-16 saved to a file loads strictly and encodes like open_clip."""
    open_clip = pytest.importorskip("open_clip")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).eval()
    path = tmp_path / "vit_b_16_random.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))

    encoder = ClipTextEncoder("ViT-B-16", weights=path)
    assert isinstance(encoder, TextEncoder)
    assert encoder.dim == 512
    assert encoder.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))
    texts = ["a photo of a real face", "a printout shown to be a spoof face"]
    with torch.no_grad():
        expected = F.normalize(model.encode_text(open_clip.get_tokenizer("ViT-B-16")(texts)), dim=1)
    emb = encoder.encode(texts)
    assert emb.shape == (2, 512) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, expected, atol=1e-5, rtol=0)
    weights = class_weights(encoder, load_prompt_set("release"))
    assert weights.shape == (2, 512)
