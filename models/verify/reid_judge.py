"""Judge without an MLLM: re-score pairs with a larger Re-ID model, or an ensemble of them.

This keeps every machine two-stage (docs/architecture.md §2): where no MLLM is available the hub re-scores the
edge's short list with stronger Re-ID models than the edge runs (default Intel 0277 + 0286, against
0288 at the edge).

Mapping: for each model, the cosine distance of the two L2-normalised embeddings is
``d = 1 - cos ∈ [0, 2]``; μ = d / 2 ∈ [0, 1] (equivalently ``‖a - b‖² / 4``), averaged over the models
and clipped to [0, 1]. μ = 0 for identical embeddings, 0.5 for orthogonal ones. It is a monotone
distance, not a calibrated probability: on CUHK03 val crops (top-10 short lists of the edge model
0288) same-identity pairs had μ ≈ 0.25 (5–95%: 0.18–0.33) and different identities μ ≈ 0.39
(0.31–0.45), so μ = 0.5 is not the same/different line; decide on the fused, re-ranked distance
(`models.verify.fusion.decide`). Note that ``2μ`` in the fusion formula is exactly the
ensemble's mean cosine distance, on the same scale as the edge's cosine distance ``d``.

Each distinct image (by content) is embedded once per call, so a query shared by ten candidates,
or the swapped order, costs no extra inference; and the vectors of the last `cache_size` images are
kept, so a gallery's reference crops, judged again in every short list that names them, are embedded
once (3 query crops x 5 candidates x 4 references: 428 ms -> 70 ms per short list on 2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from models.verify.base import Judge, JudgeConfigError, Pair
from models.verify.image_cache import ImageCache, pair_keys

DEFAULT_MODELS: tuple[str, ...] = ("reid/intel-0277", "reid/intel-0286")


class ReidJudge(Judge):
    """μ = mean over Re-ID models of (cosine distance / 2), clipped to [0, 1].

    Args:
        models: zoo names of the Re-ID models in the ensemble (one is fine).
        runtime: embedding runtime for every model (None: each model's default, e.g. openvino for IR).
        batch_size: crops per inference batch.
        embedders: already opened `models.embed.Embedder` objects to use instead of `models`.
        runtime_kwargs: passed to every embedder (e.g. device="GPU", num_threads=4).
        cache_size: how many images' vectors to keep between calls (0: none), least recently used out.
    """

    name: ClassVar[str] = "reid"
    supports_text: ClassVar[bool] = False
    text_unsupported_reason: ClassVar[str] = (
        "the reid judge compares Re-ID embeddings of two photos and cannot read a description"
    )

    def __init__(
        self,
        models: Sequence[str] = DEFAULT_MODELS,
        *,
        runtime: str | None = None,
        batch_size: int = 32,
        swap: bool = False,
        embedders: Sequence[Any] | None = None,
        cache_size: int = 4096,
        **runtime_kwargs: Any,
    ) -> None:
        super().__init__(swap=swap)
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise JudgeConfigError(f"cache_size: expected an integer >= 0, got {cache_size!r}")
        self.cache_size = cache_size
        self._cache = ImageCache(cache_size)  # content key -> one vector per model
        if embedders is None:
            if isinstance(models, str):
                models = (models,)
            if not models:
                raise JudgeConfigError("models: expected at least one Re-ID model name")
            from models.embed import create_embedder

            embedders = [create_embedder(name, runtime=runtime, batch_size=batch_size, **runtime_kwargs)
                         for name in models]
        if not embedders:
            raise JudgeConfigError("embedders: expected at least one embedder")
        self.embedders = list(embedders)
        self.models = tuple(getattr(e, "fingerprint", type(e).__name__) for e in self.embedders)

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        keys: dict[str, int] = {}
        images: list[np.ndarray] = []
        index = np.empty((len(pairs), 2), dtype=np.int64)
        for row, (pair, pair_key) in enumerate(zip(pairs, pair_keys(pairs), strict=True)):
            for side, (image, key) in enumerate(zip(pair, pair_key, strict=True)):
                if key not in keys:
                    keys[key] = len(images)
                    images.append(image)
                index[row, side] = keys[key]
        per_model = self._vectors(list(keys), images)
        total = np.zeros(len(pairs), dtype=np.float64)
        for vectors in per_model:
            cosine = np.einsum("nd,nd->n", vectors[index[:, 0]], vectors[index[:, 1]])
            total += (1.0 - cosine) / 2.0
        return np.clip(total / len(self.embedders), 0.0, 1.0)

    def _vectors(self, keys: list[str], images: list[np.ndarray]) -> list[np.ndarray]:
        """Per model, an (N, D) float64 matrix of the images' vectors: cached ones reused, the rest embedded."""
        known = {k: v for k in keys if (v := self._cache.get(k)) is not None}
        missing = [i for i, key in enumerate(keys) if key not in known]
        fresh = [e.embed([images[i] for i in missing]).vectors.astype(np.float64) if missing else None
                 for e in self.embedders]
        out = []
        for m, embedder_fresh in enumerate(fresh):
            rows = [None] * len(keys)
            for i, key in enumerate(keys):
                if key in known:
                    rows[i] = known[key][m]
            for j, i in enumerate(missing):
                assert embedder_fresh is not None
                rows[i] = embedder_fresh[j]
            out.append(np.stack(rows) if rows else np.zeros((0, 1)))
        for j, i in enumerate(missing):
            self._cache.put(keys[i], tuple(f[j] for f in fresh if f is not None))
        return out

    @property
    def fingerprint(self) -> str:
        return "reid:" + "+".join(self.models)

    def __repr__(self) -> str:
        return f"ReidJudge(models={list(self.models)!r})"

