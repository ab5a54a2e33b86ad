"""A randomly initialised CLIP (from a `transformers` config), its towers exported to ONNX and a word-level
tokenizer folder, for tests and timing benchmarks of text-image search (issue 15, item 4).

No CLIP weights exist on these machines, so the text-image backend is exercised with random ones:
`tiny` (2 layers, 16-d, 32×32 input) for tests, `b32` (the shape of OpenAI's CLIP ViT-B/32: 12-layer
512-wide text tower, 12-layer 768-wide vision tower at 224×224 with 32×32 patches, 512-d output) for
timings that match the real model's cost. Its vectors are noise: this measures plumbing and speed,
never accuracy. The tokenizer knows the words of the descriptions operators type and crossview's
template writes; any other word is [UNK] (a real CLIP's BPE gives about as many tokens).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import InvalidInputError, require

WORDS = ("a", "the", "man", "woman", "person", "in", "with", "and", "no", "red", "blue", "black", "white", "green",
         "jacket", "shirt", "top", "trousers", "jeans", "shorts", "backpack", "bag", "long", "hair", "wearing",
         "grey", "yellow", "purple", "pink", "brown", "orange", "hat", "short", "sleeved", "dress", "skirt", "coat")
SPECIAL = ("[UNK]", "<|startoftext|>", "<|padding|>", "<|endoftext|>")  # eos at 3: not CLIP's legacy id 2
IMAGE_SIDE, DIM, MAX_LENGTH = 32, 16, 16  # the tiny shape's


@dataclass(frozen=True)
class ClipShape:
    text_width: int
    text_layers: int
    text_heads: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    image_side: int
    patch: int
    dim: int
    max_length: int


SHAPES = {
    "tiny": ClipShape(32, 2, 2, 32, 2, 2, IMAGE_SIDE, 8, DIM, MAX_LENGTH),
    "b32": ClipShape(512, 12, 8, 768, 12, 12, 224, 32, 512, 77),
}


@dataclass(frozen=True)
class RandomClip:
    image_onnx: Path
    text_onnx: Path
    tokenizer: Path
    model: Any  # the torch CLIPModel the towers were exported from
    shape: ClipShape

    def image_features(self, batch: np.ndarray) -> np.ndarray:
        """The torch image tower on a preprocessed (N, 3, H, W) batch: (N, D) projections (not normalised)."""
        import torch

        with torch.no_grad():
            pooled = self.model.vision_model(pixel_values=torch.from_numpy(batch)).pooler_output
            return self.model.visual_projection(pooled).numpy()

    def text_features(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            pooled = self.model.text_model(input_ids=torch.from_numpy(input_ids),
                                           attention_mask=torch.from_numpy(attention_mask)).pooler_output
            return self.model.text_projection(pooled).numpy()


def _tokenizer(folder: Path, max_length: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate((*SPECIAL, *WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 1), ("<|endoftext|>", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", bos_token="<|startoftext|>",
                            eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                            model_max_length=max_length).save_pretrained(str(folder))


def build_random_clip(folder: Path, shape: str = "tiny", seed: int = 0) -> RandomClip:
    """Write image.onnx, text.onnx and tokenizer/ under `folder` (dynamic batch and text length)."""
    torch = require("torch")
    transformers = require("transformers")
    if shape not in SHAPES:
        raise InvalidInputError(f"shape: expected one of {', '.join(SHAPES)}, got {shape!r}")
    s = SHAPES[shape]
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": s.text_width, "intermediate_size": 4 * s.text_width,
                     "num_hidden_layers": s.text_layers, "num_attention_heads": s.text_heads,
                     "vocab_size": len(SPECIAL) + len(WORDS), "max_position_embeddings": s.max_length,
                     "bos_token_id": 1, "eos_token_id": 3, "pad_token_id": 3},
        vision_config={"hidden_size": s.vision_width, "intermediate_size": 4 * s.vision_width,
                       "num_hidden_layers": s.vision_layers, "num_attention_heads": s.vision_heads,
                       "image_size": s.image_side, "patch_size": s.patch}, projection_dim=s.dim)
    config._attn_implementation = "eager"
    model = transformers.CLIPModel(config).eval().requires_grad_(False)

    image, text = folder / "image.onnx", folder / "text.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on CLIP's shape checks; parity is tested instead
        torch.onnx.export(_image_tower(model), (torch.zeros(2, 3, s.image_side, s.image_side),), str(image),
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                          opset_version=17, dynamo=False)
    export_text_tower(model, text)
    _tokenizer(folder / "tokenizer", s.max_length)
    return RandomClip(image, text, folder / "tokenizer", model, s)


def export_text_tower(model: Any, path: Path, *, dynamic: tuple[str, ...] = ("batch", "tokens"),
                      tokens: int = 5) -> Path:
    """`model`'s text tower to ONNX at `path`; `dynamic` names the axes left free ("batch", "tokens"),
    the others fixed at 2 texts of `tokens` tokens (a deployment's fixed-shape export, for tests)."""
    torch = require("torch")
    ids = torch.full((2, tokens), 3, dtype=torch.int64)
    ids[:, 0], ids[0, 1:3], ids[1, 1:4] = 1, torch.tensor([4, 5]), torch.tensor([6, 7, 8])
    axes = {i: name for i, name in enumerate(("batch", "tokens")) if name in dynamic}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_text_tower(model), (ids, torch.ones_like(ids)), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        "text_embeds": {0: "batch"} if "batch" in dynamic else {}},
                          opset_version=17, dynamo=False)
    return path


def _modules() -> tuple[type, type]:
    torch = require("torch")

    class ImageTower(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, pixel_values: Any) -> Any:
            return self.clip.visual_projection(self.clip.vision_model(pixel_values=pixel_values).pooler_output)

    class TextTower(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            pooled = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            return self.clip.text_projection(pooled)

    return ImageTower, TextTower


def _image_tower(model: Any) -> Any:
    return _modules()[0](model)


def _text_tower(model: Any) -> Any:
    return _modules()[1](model)
