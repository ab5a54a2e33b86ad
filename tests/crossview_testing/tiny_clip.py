"""A tiny randomly initialised CLIP (from a `transformers` config), its towers exported to ONNX and a
word-level tokenizer folder: the plumbing of text-image search tested without real CLIP weights."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORDS = ("a", "the", "man", "woman", "person", "in", "with", "and", "no", "red", "blue", "black", "white", "green",
         "jacket", "shirt", "top", "trousers", "jeans", "shorts", "backpack", "bag", "long", "hair", "wearing")
SPECIAL = ("[UNK]", "<|startoftext|>", "<|padding|>", "<|endoftext|>")  # eos at 3: not CLIP's legacy id 2
IMAGE_SIDE, DIM, MAX_LENGTH = 32, 16, 16


@dataclass(frozen=True)
class TinyClip:
    image_onnx: Path
    text_onnx: Path
    tokenizer: Path
    model: Any  # the torch CLIPModel the towers were exported from

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


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate((*SPECIAL, *WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 1), ("<|endoftext|>", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", bos_token="<|startoftext|>",
                            eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                            model_max_length=MAX_LENGTH).save_pretrained(str(folder))


def build_tiny_clip(folder: Path, seed: int = 0) -> TinyClip:
    """Write image.onnx, text.onnx and tokenizer/ under `folder` (dynamic batch and text length)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**small, "vocab_size": len(SPECIAL) + len(WORDS), "max_position_embeddings": MAX_LENGTH,
                     "bos_token_id": 1, "eos_token_id": 3, "pad_token_id": 3},
        vision_config={**small, "image_size": IMAGE_SIDE, "patch_size": 8}, projection_dim=DIM)
    config._attn_implementation = "eager"
    model = CLIPModel(config).eval().requires_grad_(False)

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.clip.visual_projection(self.clip.vision_model(pixel_values=pixel_values).pooler_output)

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            pooled = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            return self.clip.text_projection(pooled)

    image, text = folder / "image.onnx", folder / "text.onnx"
    ids = torch.tensor([[1, 4, 5, 3, 3], [1, 6, 7, 8, 3]], dtype=torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on CLIP's shape checks; parity is tested instead
        torch.onnx.export(ImageTower(), (torch.zeros(2, 3, IMAGE_SIDE, IMAGE_SIDE),), str(image),
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                          opset_version=17, dynamo=False)
        torch.onnx.export(TextTower(), (ids, torch.ones_like(ids)), str(text),
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "text_embeds": {0: "batch"}},
                          opset_version=17, dynamo=False)
    _tokenizer(folder / "tokenizer")
    return TinyClip(image, text, folder / "tokenizer", model)
