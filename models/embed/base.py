"""The one base class every Re-ID embedding runtime implements.

A runtime subclass says which model formats it can open (`formats`), imports its library in
`_import_runtime` (through `models.errors.require`, so a missing library names its pip extra),
loads the model in `_load` and runs one preprocessed batch in `_infer`. Everything else —
input validation, preprocessing from the zoo spec, batching, padding for fixed-batch models,
L2 normalisation and the model fingerprint — lives here, once.

Choices worth knowing:

* `embed([])` returns an empty `(0, D)` float32 `Embeddings` without running the model, so a
  frame with no people needs no special case upstream.
* An embedder is safe to call from several threads at once (the hub's executor and the edge's
  workers do): ONNX Runtime sessions and torch modules in inference mode are, OpenVINO borrows one
  infer request per call from a pool, TensorRT's single execution context takes calls in turn.
  `tests/models/embed/test_thread_safety.py` checks each CPU runtime from 8 threads.
* The fingerprint is the zoo spec's fingerprint (the name plus the weights' checksum) for every
  runtime and precision. The torch FP16 and TensorRT FP16 variants run the same weights and agree
  with FP32 to cosine > 0.999 per crop (checked by the parity tests), so their vectors are meant to
  be compared with FP32 vectors; `precision` says which numeric variant made them, for diagnostics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.embed.preprocess import preprocess, validate_crops
from models.embed.registry import EmbedderConfigError, runtimes_for_format
from models.errors import CrossviewError
from models.types import Embeddings
from models.zoo import ModelSpec, get_spec, resolve_model
from models.zoo.spec import TEXT_IMAGE_TASK

_NORM_EPS = 1e-12


class Embedder(ABC):
    """Embeds BGR uint8 person crops into L2-normalised float32 vectors with one zoo model.

    >>> embedder = create_embedder("reid/intel-0288")            # doctest: +SKIP
    >>> embedder.embed([crop_a, crop_b]).vectors.shape             # doctest: +SKIP
    (2, 256)
    """

    #: registry name, e.g. "onnxruntime"
    name: ClassVar[str] = ""
    #: model formats (ModelSpec.format) this runtime can open
    formats: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: str, *, batch_size: int = 32, **runtime_kwargs: Any) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise EmbedderConfigError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.spec: ModelSpec = get_spec(model)
        self.fingerprint: str = self.spec.fingerprint
        self.batch_size = batch_size
        self.device: str = "cpu"
        self.precision: str = "fp32"
        # Set by `_load` when the loaded model only accepts one batch size: the last batch is padded.
        self.fixed_batch: int | None = None
        self._check_format()
        self._import_runtime()
        self.model_path = self._resolve_path()
        self._load(self.model_path, **runtime_kwargs)

    # -- what a runtime implements -------------------------------------------------------------

    def _import_runtime(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Import the runtime's library (via `require`) before any file is touched."""

    def _resolve_path(self) -> Path:
        return resolve_model(self.spec.name).path

    @abstractmethod
    def _load(self, path: Path, **runtime_kwargs: Any) -> None:
        """Open the model at `path`; set `device`, `precision` and, if needed, `fixed_batch`."""

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one preprocessed float32 (n, 3, H, W) batch; return raw (n, D) features."""

    # -- the public API --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.spec.output_dim

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
        """BGR uint8 (H, W, 3) crops of any size (N of them) → L2-normalised Embeddings (N, D).

        A crop that is empty, not uint8, or not 3-channel raises InvalidInputError naming its index;
        all crops are checked before the model runs.
        """
        validate_crops(images)
        if len(images) == 0:
            return Embeddings(np.zeros((0, self.dim), np.float32), self.fingerprint)
        step = self.fixed_batch or self.batch_size
        parts = [self._embed_chunk(images[start:start + step]) for start in range(0, len(images), step)]
        return Embeddings(np.ascontiguousarray(np.concatenate(parts), dtype=np.float32), self.fingerprint)

    def _features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw features of one chunk of validated crops: preprocess on the host, pad, `_infer`.

        A runtime that preprocesses elsewhere (the torch embedder on its device) overrides this.
        Rows beyond ``len(images)`` (padding) are dropped by the caller.
        """
        batch = preprocess(images, self.spec)
        count = len(batch)
        if self.fixed_batch is not None and count < self.fixed_batch:
            padding = np.zeros((self.fixed_batch - count, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, padding])
        return self._infer(batch)

    def _embed_chunk(self, images: Sequence[np.ndarray]) -> np.ndarray:
        count = len(images)
        features = np.asarray(self._features(images), dtype=np.float32)
        features = features.reshape(len(features), -1)[:count]
        if features.shape != (count, self.dim):
            raise CrossviewError(
                f"{self.name} runtime returned features of shape {features.shape} for {count} crops; "
                f"expected ({count}, {self.dim}) from the spec of {self.spec.name}"
            )
        return l2_normalise(features)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.spec.name!r}, device={self.device!r}, "
                f"precision={self.precision!r}, batch_size={self.batch_size})")

    # -- helpers ---------------------------------------------------------------------------------

    def _check_format(self) -> None:
        if self.spec.task not in ("reid", TEXT_IMAGE_TASK):  # a text-image model's image tower embeds crops too
            raise EmbedderConfigError(
                f"{self.spec.name!r} is a {self.spec.task} model, not a Re-ID model; embedders run "
                "Re-ID models (and text-image models' image towers) only"
            )
        if self.spec.task == TEXT_IMAGE_TASK and self.name != "onnxruntime":  # only it reads `output_name`
            raise EmbedderConfigError(f"{self.spec.name!r} is a text-image model: its image tower runs on "
                                      f"onnxruntime, not {self.name}")
        if self.spec.format in self.formats:
            return
        able = runtimes_for_format(self.spec.format)
        hint = (f"runtimes that can run it: {', '.join(able)}" if able
                else "no embedding runtime can run it")
        raise EmbedderConfigError(
            f"the {self.name} runtime cannot run {self.spec.name!r} (format {self.spec.format!r}; "
            f"{self.name} opens {', '.join(self.formats)}); {hint}"
        )


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of (N, D) float32; an all-zero row stays zero instead of NaN."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, _NORM_EPS)).astype(np.float32, copy=False)
