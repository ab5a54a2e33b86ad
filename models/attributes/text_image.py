"""A text-image (CLIP-style) model opened for search by description (issue 15, item 4).

`TextImageEncoder` opens a model registered with `crossview models add-text-image`
(`models.zoo.text_image`): `image` embeds person crops with its image tower (an ONNX Runtime
`Embedder`, so crops are validated, preprocessed from the manifest and L2-normalised like Re-ID crops),
and `encode_text` turns descriptions into L2-normalised vectors with its text tower. Both are in the
same space: a tracklet's stage-one text-image score is the cosine of its stored image vector and the
query's text vector (`models.attributes.scoring.combined_similarity` adds it to the attribute score).

Thread safety: ONNX Runtime sessions may be run from several threads; a fast tokenizer may not (its
padding and truncation settings are mutated per call), so tokenizing holds a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.embed.base import l2_normalise
from models.errors import CrossviewError, InvalidInputError, require
from models.zoo.spec import DEFAULT_TEXT_IMAGE_WEIGHT, check_text_image_weight

MAX_TEXT_CHARS = 10_000


class TextImageEncoder:
    """The image and text towers of registered text-image model `model` (see the module docstring), and
    where its cosines fall (`cosine_range`, from its manifest).

    `weight` is how much the text-image cosine counts at stage one against the attribute score (0–1;
    `models.attributes.scoring.combined_similarity`); `crops` how many of a tracklet's best crops an edge
    embeds with the image tower (the first, by default: a ViT-B/32 tower costs about 25 Re-ID models,
    docs/benchmarks.md)."""

    def __init__(self, model: str, *, weight: float = DEFAULT_TEXT_IMAGE_WEIGHT, crops: int = 1,
                 num_threads: int | None = 1) -> None:
        from models.embed import create_embedder
        from models.zoo.text_image import load_text_image_model, load_tokenizer

        self.weight = check_text_image_weight(weight)
        if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
            raise InvalidInputError(f"text_image.crops: expected an integer >= 1, got {crops!r}")
        self.crops = crops
        self.model = load_text_image_model(model)  # create_embedder below checks every file's checksum
        self.fingerprint = self.model.fingerprint
        self.dim = self.model.image_spec.output_dim
        self.image = create_embedder(model, "onnxruntime", num_threads=num_threads)
        self._tokenizer = load_tokenizer(self.model.tokenizer_dir)
        self._tokenizer_lock = threading.Lock()
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        try:
            self._session = ort.InferenceSession(self.model.text.relpath, sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's own load errors
            raise CrossviewError(f"{self.model.name}: cannot open the text tower: {exc}") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.cosine_range = self.model.cosine_range
        self.encode_text(["a person"])  # a tower that cannot run is refused here, not at the first text job

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 L2-normalised text vectors; a text longer than the model's `max_length` tokens is
        cut there. InvalidInputError for an empty or over-long (> MAX_TEXT_CHARS) text."""
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InvalidInputError(f"texts: expected a list of strings, got {type(texts).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(f"texts[{i}]: expected a non-empty string, got {text!r}")
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidInputError(f"texts[{i}]: expected at most {MAX_TEXT_CHARS} characters, got {len(text)}")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        padding = "max_length" if self.model.pad_to_max_length else True
        with self._tokenizer_lock:
            tokens = self._tokenizer(list(texts), padding=padding, truncation=True, max_length=self.model.max_length,
                                     return_tensors="np")
        feeds: dict[str, Any] = {"input_ids": np.asarray(tokens["input_ids"], np.int64)}
        if "attention_mask" in self._inputs:
            feeds["attention_mask"] = np.asarray(tokens["attention_mask"], np.int64)
        try:
            vectors = np.asarray(self._session.run([self.model.text_output], feeds)[0], np.float32)
        except Exception as exc:  # ONNX Runtime's own errors (a shape or type the tower does not take)
            raise CrossviewError(f"{self.model.name}: the text tower failed: {exc}") from exc
        if vectors.shape != (len(texts), self.dim):
            raise CrossviewError(f"{self.model.name}: the text tower gave shape {vectors.shape}, expected "
                                 f"({len(texts)}, {self.dim})")
        if not np.all(np.isfinite(vectors)):
            raise CrossviewError(f"{self.model.name}: the text tower gave NaN or infinite numbers")
        return l2_normalise(vectors)

    def __repr__(self) -> str:
        return f"TextImageEncoder({self.model.name!r}, fingerprint={self.fingerprint!r}, weight={self.weight})"
