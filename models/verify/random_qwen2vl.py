"""A randomly initialised Qwen2-VL and an offline processor, for tests and throughput benchmarks.

No MLLM weights exist on these machines and no hub can be reached (docs/architecture.md §6), so the
`transformers` judge is exercised with a model built from a `Qwen2VLConfig` with random weights and
a processor made locally: a word-level `tokenizers` model (whose vocabulary holds every word of the
judge prompt, "Yes", "No" and Qwen's special tokens) wrapped in `PreTrainedTokenizerFast`, a
Qwen-style chat template and `Qwen2VLImageProcessor`. Saved with `save_random_qwen2vl`, the folder
loads through the judge's normal ``AutoProcessor`` / ``AutoModelForImageTextToText`` path.

Its answers are noise: this measures plumbing and speed, never accuracy. The word-level tokenizer
yields about as many text tokens as Qwen's BPE for this prompt, and the image tokens are exactly
Qwen2-VL's (one per 28×28 pixels), so sequence lengths and hence throughput match the real model.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from models.errors import require
from models.verify.base import JudgeConfigError
from models.verify.prompt import NO, PROMPT_PARTS, YES

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")

#: Qwen2-VL's chat layout: <|im_start|>role\n ... <|im_end|>\n, images as vision_start/pad/end
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_VISION_COMMON = {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}

#: name -> (text config, vision config); the real sizes follow the published config.json files
QWEN2_VL_CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny": (
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "mrope_section": [2, 3, 3], "vocab_size": None, "tie_word_embeddings": False},
        {"depth": 1, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2},
    ),
    "qwen2-vl-2b": (
        {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
         "num_key_value_heads": 2, "mrope_section": [16, 24, 24], "vocab_size": 151936,
         "tie_word_embeddings": True},
        {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4},
    ),
    "qwen2-vl-7b": (
        {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
         "num_key_value_heads": 4, "mrope_section": [16, 24, 24], "vocab_size": 152064,
         "tie_word_embeddings": False},
        {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4},
    ),
}


def _prompt_words() -> list[str]:
    words: dict[str, None] = {}
    texts = [p.text for p in PROMPT_PARTS if p.kind == "text"] + [YES, NO, "system user assistant"]
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]+", text):
            words[word] = None
    return list(words)


def build_offline_processor(min_pixels: int = 28 * 28, max_pixels: int = 28 * 28 * 1280) -> Any:
    """A Qwen2VLProcessor made without downloads: word-level tokenizer + Qwen2-VL image processor."""
    transformers = require("transformers")
    tokenizers = require("tokenizers")
    vocab = {word: index for index, word in enumerate(["[UNK]", *_prompt_words()])}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.add_special_tokens([tokenizers.AddedToken(token, special=True) for token in SPECIAL_TOKENS])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="<|endoftext|>", eos_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
    )
    image_processor = transformers.Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    parts: dict[str, Any] = {"image_processor": image_processor, "tokenizer": tokenizer,
                             "chat_template": CHAT_TEMPLATE}
    # transformers 5 gives Qwen2-VL a separate (required) video processor; 4.x has none
    if "video_processor" in inspect.signature(transformers.Qwen2VLProcessor.__init__).parameters:
        parts["video_processor"] = transformers.Qwen2VLVideoProcessor()
    return transformers.Qwen2VLProcessor(**parts)


def qwen2vl_config(name: str, tokenizer: Any) -> Any:
    """A `Qwen2VLConfig` of size `name` whose special token ids are those of `tokenizer`."""
    transformers = require("transformers")
    if name not in QWEN2_VL_CONFIGS:
        raise JudgeConfigError(f"unknown Qwen2-VL config {name!r}; known: {', '.join(QWEN2_VL_CONFIGS)}")
    text, vision = (dict(part) for part in QWEN2_VL_CONFIGS[name])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    mrope = text.pop("mrope_section")
    text["vocab_size"] = text["vocab_size"] or len(tokenizer)
    return transformers.Qwen2VLConfig(
        **text,  # flat text keys: the layout both transformers 4.x and 5.x read
        rope_scaling={"type": "mrope", "mrope_section": mrope},
        rope_theta=1_000_000.0,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        vision_config={**_VISION_COMMON, **vision, "hidden_size": text["hidden_size"]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def build_random_qwen2vl(name: str = "tiny", processor: Any | None = None, *, seed: int = 0,
                         dtype: Any = None, device: str = "cpu") -> tuple[Any, Any]:
    """(model, processor): a randomly initialised Qwen2-VL of size `name`, built directly on `device`."""
    torch = require("torch")
    transformers = require("transformers")
    processor = processor if processor is not None else build_offline_processor()
    config = qwen2vl_config(name, processor.tokenizer)
    torch.manual_seed(seed)
    dtype_key = "dtype" if _transformers_major() >= 5 else "torch_dtype"
    kwargs = {dtype_key: dtype} if dtype is not None else {}
    with torch.device(device):
        model = transformers.AutoModelForImageTextToText.from_config(config, **kwargs)
    return model.eval(), processor


def save_random_qwen2vl(folder: str | Path, name: str = "tiny", *, seed: int = 0) -> Path:
    """Write a random Qwen2-VL (`name`) and its offline processor to `folder`, as a hub folder would be."""
    folder = Path(folder)
    model, processor = build_random_qwen2vl(name, seed=seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _transformers_major() -> int:
    version = require("transformers").__version__
    return int(version.split(".")[0])
