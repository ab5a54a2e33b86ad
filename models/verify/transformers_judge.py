"""MLLM judge on a local `transformers` image-text-to-text model (Qwen2-VL / Qwen2.5-VL first).

For each (query, candidate) pair the chat turn of `models.verify.prompt` is rendered with the
model's own chat template (generation prompt appended), the two images are resized to the same small
size, and the model runs ONE forward pass — no `generate`, no sampling. The logits at the last
prompt position are the distribution of the first generated token; μ = softmax([No, Yes])[No] over
the ids of the "Yes" and "No" tokens. Pairs are batched per forward pass with left padding, so the
last position is the first generated position for every row; if a processor ignores the padding
side, the last non-padding position of each row is gathered instead.

Text mode (`score_text`): the description question of `models.verify.prompt.text_prompt_parts` with
one image, batched and read the same way (the rendered prompt of the last description is kept).

Not implemented: caching the query's image tokens (a KV-cache prefix) across its candidates
(docs/architecture.md §2 allows it). Every pair re-encodes the query image; with 280×140 images (50 tokens each
on Qwen2-VL) the prompt is ~170 tokens, so a batch of 10 candidates is one short prefill.

Accuracy cannot be measured on these machines: no MLLM weights exist here, and the tests run a tiny
randomly initialised Qwen2-VL (`models.verify.random_qwen2vl`), which checks plumbing only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.errors import require
from models.verify.base import Judge, JudgeConfigError, JudgeError, Pair, mu_from_yes_no
from models.verify.prompt import (
    DEFAULT_IMAGE_HW,
    NO,
    PROMPT_PARTS,
    YES,
    Part,
    chat_content,
    check_image_hw,
    text_prompt_parts,
    to_model_rgb,
)

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


class TransformersJudge(Judge):
    """Scores pairs with an image-text-to-text model loaded by `transformers`.

    Args:
        model: a local model folder or a hub id (loaded with ``AutoProcessor`` and
            ``AutoModelForImageTextToText``), or an already built model (then `processor` is required).
        processor: the processor to use instead of loading one from `model`.
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
        dtype: "auto" (bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU), "fp32",
            "bf16" or "fp16". Ignored for an already built model, which keeps its own.
        batch_size: pairs per forward pass (with `swap`, both orders count as pairs).
        swap: also score (candidate, query) and average the two μ.
        image_hw: (height, width) both images are resized to, or None to keep their own sizes.
        attn_implementation: passed to ``from_pretrained`` ("sdpa", "flash_attention_2", "eager").
        local_files_only: never contact the hub, only the local cache or folder.
        trust_remote_code: allow the model folder's own Python code (off by default).
        yes_token, no_token: the answer words whose first-token logits are compared.
        adapter: a LoRA adapter folder (peft ``save_pretrained``, e.g. from ``crossview train judge``)
            loaded on top of the base model and merged into it; an already built model is changed in place.
    """

    name: ClassVar[str] = "transformers"
    supports_text: ClassVar[bool] = True

    def __init__(
        self,
        model: str | Path | Any,
        *,
        processor: Any | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        swap: bool = False,
        image_hw: tuple[int, int] | None = DEFAULT_IMAGE_HW,
        attn_implementation: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        yes_token: str = YES,
        no_token: str = NO,
        adapter: str | Path | None = None,
    ) -> None:
        super().__init__(swap=swap)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise JudgeConfigError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.image_hw = check_image_hw(image_hw, JudgeConfigError)
        self._torch = require("torch")
        self._transformers = require("transformers")
        if isinstance(model, str | Path):
            self.model_name = str(model)
            self.device = self._pick_device(device)
            self.dtype = self._pick_dtype(dtype, self.device)
            hub = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
            self.processor = processor if processor is not None else self._load_processor(self.model_name, hub)
            self.model = self._load_model(self.model_name, hub, attn_implementation)
        else:
            if processor is None:
                raise JudgeConfigError("processor: required when `model` is an already built model")
            self.model_name = type(model).__name__
            self.processor = processor
            self.model = model.eval()
            first = next(model.parameters())
            self.device, self.dtype = str(first.device), first.dtype
        self.adapter = None if adapter is None else str(adapter)
        if adapter is not None:
            from models.verify.lora import load_adapter  # peft is imported only when an adapter is asked for

            self.model = load_adapter(self.model, adapter, self.model_name).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self._prepare_padding()
        self.yes_id = self._single_token_id(yes_token)
        self.no_id = self._single_token_id(no_token)
        self.prompt = self._render_prompt()
        self._text_prompt = ("", "")  # (description, its rendered text-mode prompt)
        parameters = _forward_parameters(self.model)
        # transformers >= 4.50 calls it logits_to_keep, earlier releases num_logits_to_keep
        self._keep_arg = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in parameters), None)
        self._lock = threading.Lock()  # one forward pass at a time when the hub calls from several threads

    # -- loading ---------------------------------------------------------------------------------

    def _pick_device(self, device: str) -> str:
        if device == "auto":
            return "cuda" if self._torch.cuda.is_available() else "cpu"
        if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
            raise JudgeConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
        if device.startswith("cuda") and not self._torch.cuda.is_available():
            raise JudgeConfigError(f"device {device!r} was asked for but torch sees no CUDA device")
        return device

    def _pick_dtype(self, dtype: str, device: str) -> Any:
        torch = self._torch
        if dtype == "auto":
            if device == "cpu":
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if dtype not in _DTYPES:
            raise JudgeConfigError(f"dtype: expected 'auto' or one of {', '.join(_DTYPES)}, got {dtype!r}")
        return getattr(torch, _DTYPES[dtype])

    def _load_processor(self, name: str, hub: dict[str, Any]) -> Any:
        try:
            return self._transformers.AutoProcessor.from_pretrained(name, **hub)
        except (OSError, ValueError) as exc:
            raise JudgeConfigError(f"cannot load a processor from {name!r}: {exc}") from exc

    def _load_model(self, name: str, hub: dict[str, Any], attn_implementation: str | None) -> Any:
        transformers = self._transformers
        auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        major = int(transformers.__version__.split(".")[0])
        kwargs: dict[str, Any] = {**hub, ("dtype" if major >= 5 else "torch_dtype"): self.dtype}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        if self.device.startswith("cuda"):
            kwargs["device_map"] = self.device  # straight onto the GPU (accelerate), no CPU copy
        try:
            model = auto.from_pretrained(name, **kwargs)
        except (OSError, ValueError) as exc:
            raise JudgeConfigError(f"cannot load an image-text-to-text model from {name!r}: {exc}") from exc
        return (model if "device_map" in kwargs else model.to(self.device)).eval()

    def _prepare_padding(self) -> None:
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _single_token_id(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise JudgeConfigError(
                f"the tokenizer of {self.model_name} splits {word!r} into {len(ids)} tokens {ids}; "
                "expected exactly one (pass yes_token/no_token words that are single tokens)"
            )
        return int(ids[0])

    def _render_prompt(self, parts: Sequence[Part] = PROMPT_PARTS) -> str:
        messages = [{"role": "user", "content": chat_content(lambda slot: {"type": "image"}, parts)}]
        try:
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except (ValueError, AttributeError) as exc:
            raise JudgeConfigError(f"{self.model_name} has no usable chat template: {exc}") from exc

    # -- scoring ---------------------------------------------------------------------------------

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        parts = [self._score_batch(pairs[start:start + self.batch_size])
                 for start in range(0, len(pairs), self.batch_size)]
        return np.concatenate(parts)

    def _score_text(self, description: str, images: Sequence[np.ndarray]) -> np.ndarray:
        cached = self._text_prompt  # read once: another thread may cache another description meanwhile
        if cached[0] != description:
            cached = (description, self._render_prompt(text_prompt_parts(description)))
            self._text_prompt = cached
        prompt = cached[1]
        parts = [self._score_batch([[image] for image in images[start:start + self.batch_size]], prompt)
                 for start in range(0, len(images), self.batch_size)]
        return np.concatenate(parts)

    def model_inputs(self, rows: Sequence[Sequence[np.ndarray]], prompt: str | None = None) -> dict[str, Any]:
        """The batch of tensors (on the judge's device) the model reads for rows of BGR images under `prompt`.

        Also what `models.verify.lora` trains on, so training and scoring read the same inputs.
        """
        images = [[self.model_image(image) for image in row] for row in rows]
        inputs = self.processor(text=[prompt or self.prompt] * len(rows), images=images, padding=True,
                                return_tensors="pt")
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def _score_batch(self, pairs: Sequence[Sequence[np.ndarray]], prompt: str | None = None) -> np.ndarray:
        """μ per row of images (a pair, or one photo in text mode) under `prompt` (default: the pair prompt)."""
        torch = self._torch
        inputs = self.model_inputs(pairs, prompt)
        mask = inputs.get("attention_mask")
        left_padded = mask is None or bool(mask[:, -1].all())
        kwargs = {self._keep_arg: 1} if left_padded and self._keep_arg else {}
        with self._lock, torch.inference_mode():
            self._check_open()
            logits = self.model(**inputs, use_cache=False, **kwargs).logits
        if left_padded:
            last = logits[:, -1, :]
        else:  # right padding: the last real token of each row
            width = mask.shape[1]
            position = width - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)
            last = logits[torch.arange(len(pairs), device=logits.device), position]
        yes_no = last[:, [self.yes_id, self.no_id]].float().cpu().numpy()
        if not np.all(np.isfinite(yes_no)):
            raise JudgeError(f"{self.model_name} produced NaN or infinite logits")
        return mu_from_yes_no(yes_no[:, 0], yes_no[:, 1])

    def model_image(self, image: np.ndarray) -> Any:
        """A BGR uint8 crop as the PIL RGB image the processor is given (resized to `image_hw`)."""
        pil = require("PIL.Image")
        return pil.fromarray(to_model_rgb(image, self.image_hw))

    def close(self) -> None:
        with self._lock:  # after a forward pass in progress, never during one
            self._release()

    def _release(self) -> None:
        """Drop the model (and what subclasses hold on the device); the caller holds the model lock."""
        self.model = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def _check_open(self) -> None:
        """Under the model lock, before a forward pass."""
        if self.model is None:
            raise JudgeError(f"{self.model_name}: the judge is closed")

    def __repr__(self) -> str:
        return (f"TransformersJudge(model={self.model_name!r}, device={self.device!r}, dtype={self.dtype}, "
                f"batch_size={self.batch_size}, swap={self.swap}, image_hw={self.image_hw}, adapter={self.adapter!r})")


def _forward_parameters(model: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()
