"""The `transformers` judge's fast path: every distinct image through the vision tower once, no processor per batch.

`TransformersJudge` (the plain path, kept as the reference) runs the Python processor on every batch
and the whole model on every pair, so a short list of one query and ten candidates encodes the query
ten times and the gallery's reference crops again for every short list. `FastTransformersJudge` gives
the same μ (within float rounding) from the same model:

1. At construction the processor runs ONCE, on a patterned pair: the token ids of the rendered prompt
   (image placeholders already expanded), the positions of the query's and the candidate's image
   tokens, and the model's own M-RoPE position ids (``get_rope_index``) for that row; its pixel values
   must equal the fast path's (2.) or the judge is refused. Every pair of a batch has exactly this
   row, because both images are resized to `image_hw`, so a batch needs no padding and no tokenising.
2. Images are resized by the same `to_model_rgb` (OpenCV) as the plain path, then rescaled,
   normalised and patchified with torch tensor ops on the model's device (`pixel_values_of`), giving
   the processor's `pixel_values` / `image_grid_thw`.
3. Each distinct image of a call is encoded once with the model's ``get_image_features``: a query once
   for all its candidates; candidate crops go to a bounded LRU (`image_cache.ImageCache`) keyed by
   (content hash, model fingerprint, image size), so a reference crop is encoded once across short lists.
4. A batch is the prompt's token embeddings with the cached vision features written at the image-token
   positions (what the model's forward does with ``masked_scatter``), run through the model with
   ``inputs_embeds`` and the precomputed position ids; μ is read from the last position as in the plain path.
5. Shared prefix (`share_prefix`, on by default): everything before the candidate image (task text,
   the query image, "Candidate:") is the same for all of a query's pairs, so it runs once per distinct
   query (batched over queries) with ``use_cache=True``; each batch of pairs then runs only the candidate
   image and the closing text on a `DynamicCache` built from its queries' rows of that prefix KV
   (rows gathered per pair, so one batch can mix short lists).

`image_hw` must be a size the Qwen2-VL processor keeps as it is (both sides multiples of
patch_size × merge_size = 28, pixels within its min/max); the default 280×140 is. Text mode
(`score_text`) stays on the plain path.

Not done here (issue 13): resizing on the GPU (OpenCV's resize is kept so that μ matches the plain
path), and choosing the vision tower's attention (it runs as the model was loaded; with ``sdpa``,
transformers 5 already attends within each image).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.errors import require
from models.verify.base import JudgeConfigError, JudgeError, Pair, mu_from_yes_no
from models.verify.image_cache import CacheStats, ImageCache, pair_keys
from models.verify.prompt import to_model_rgb
from models.verify.transformers_judge import TransformersJudge, _forward_parameters

#: candidate images kept by default: 280×140 on Qwen2-VL-2B is 50 tokens × 1536 × 2 bytes = 150 KiB each
DEFAULT_CACHE_IMAGES = 2048


class FastTransformersJudge(TransformersJudge):
    """`TransformersJudge` with cached vision features and no per-batch processor (see the module docstring).

    Takes every option of `TransformersJudge`, plus:
        cache_images: candidate images whose vision features are kept (LRU); 0 disables the cache.
        feature_cache: an `ImageCache` to share between judges (its keys carry the model
            fingerprint); `cache_images` is ignored when given.
        share_prefix: run the prompt up to the candidate image once per distinct query and each pair
            on a copy of its KV cache (False: every pair runs the whole prompt).
    """

    name: ClassVar[str] = "transformers-fast"

    def __init__(self, model: str | Path | Any, *, cache_images: int = DEFAULT_CACHE_IMAGES,
                 feature_cache: ImageCache | None = None, share_prefix: bool = True,
                 **kwargs: Any) -> None:
        try:  # the plain judge's options are taken through **kwargs: refuse unknown ones by name
            inspect.signature(TransformersJudge).bind(model, **kwargs)
        except TypeError as exc:
            raise JudgeConfigError(f"judge {self.name!r}: {exc}") from None
        super().__init__(model, **kwargs)
        if not isinstance(share_prefix, bool):
            raise JudgeConfigError(f"share_prefix: expected a bool, got {share_prefix!r}")
        if self.image_hw is None:
            raise JudgeConfigError("image_hw: the fast path needs one fixed (height, width); got None")
        self._shared_cache = feature_cache is not None
        self.feature_cache = feature_cache if feature_cache is not None else ImageCache(cache_images)
        # a model loaded by name is named by it; one handed in built has no name to share: a key of its own
        # (not id(), which a later model can reuse), so a shared cache never serves one model another's features
        built = "" if isinstance(model, str | Path) else uuid.uuid4().hex
        self._model_key = f"{self.model_name}|{self.adapter}|{self.dtype}|{self.device}|{built}"
        self._image_processing = _image_processing(self.processor, self.image_hw)
        self._layout = self._prompt_layout()
        self._cache_arg = next((n for n in ("cache", "past_key_values") if n in _forward_parameters(self.model)),
                               None)
        if share_prefix and self._cache_arg is None:
            raise JudgeConfigError(f"{self.model_name}: its forward takes no KV cache; pass share_prefix=False")
        self.share_prefix = share_prefix

    @property
    def fingerprint(self) -> str:
        return TransformersJudge.name  # the plain path's μ, so its calibration

    @property
    def cache_stats(self) -> CacheStats:
        return self.feature_cache.stats

    # -- built once per judge --------------------------------------------------------------------

    def _prompt_layout(self) -> PromptLayout:
        """The processor's one row for a pair, checked against the fast path's own pixel values."""
        torch = self._torch
        rope_index = getattr(getattr(self.model, "model", None), "get_rope_index", None)
        image_token_id = getattr(self.model.config, "image_token_id", None)
        if rope_index is None or image_token_id is None:
            raise JudgeConfigError(f"{self.model_name}: the fast path needs a Qwen2-VL-style model "
                                   "(get_rope_index, image_token_id); use the `transformers` judge")
        height, width = self.image_hw
        pattern = (np.arange(height * width * 3) % 251).astype(np.uint8).reshape(height, width, 3)
        images = (pattern, pattern[::-1].copy())
        # on the CPU and in float32 (model_inputs would cast to the model's dtype), to compare exactly
        inputs = self.processor(text=[self.prompt], images=[[self.model_image(image) for image in images]],
                                return_tensors="pt")
        input_ids = inputs["input_ids"]
        runs = _runs(input_ids[0] == image_token_id)
        if len(runs) != 2:
            raise JudgeConfigError(f"{self.model_name}: expected 2 image-token runs in the prompt, got {len(runs)}")
        rgb = np.stack([to_model_rgb(image, self.image_hw) for image in images])
        mine = pixel_values_of(torch.from_numpy(rgb), self._image_processing)
        theirs = inputs["pixel_values"]
        if (not torch.equal(mine.grid_thw, inputs["image_grid_thw"]) or mine.values.shape != theirs.shape
                or float((mine.values - theirs).abs().max()) > 1e-4):
            raise JudgeConfigError(f"{self.model_name}: the processor's pixel values differ from the fast path's "
                                   "(another resize or normalisation); use the `transformers` judge")
        rope_kwargs = {name: inputs[name] for name in ("mm_token_type_ids", "attention_mask") if name in inputs}
        position_ids, _ = rope_index(input_ids, image_grid_thw=inputs["image_grid_thw"], **rope_kwargs)
        return PromptLayout(input_ids=input_ids.to(self.device), position_ids=position_ids.to(self.device),
                            query=runs[0], candidate=runs[1])

    # -- scoring ---------------------------------------------------------------------------------

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self._score_keyed(pairs, both_orders=False)

    def _score_both_orders(self, pairs: list[Pair]) -> np.ndarray:
        """Features once for both orders, and only the original candidates (the gallery's) cached."""
        return self._score_keyed(pairs, both_orders=True)

    def _score_keyed(self, pairs: Sequence[Pair], *, both_orders: bool) -> np.ndarray:
        torch = self._torch
        keys = pair_keys(pairs)  # hashing needs no model: outside the lock
        try:
            with self._lock, torch.inference_mode():
                self._check_open()
                features = self._features_of(pairs, keys)
                if both_orders:
                    keys = keys + [(candidate, query) for query, candidate in keys]
                if self.share_prefix:
                    return self._score_on_shared_prefixes(keys, features)
                parts = []
                for start in range(0, len(keys), self.batch_size):
                    rows = keys[start:start + self.batch_size]
                    parts.append(self._score_rows([features[q] for q, _ in rows], [features[c] for _, c in rows]))
            return np.concatenate(parts)
        except torch.OutOfMemoryError as exc:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()  # give the failed batch's blocks back before the next request
            rows = len(pairs) * (2 if both_orders else 1)
            raise JudgeError(f"{self.model_name} ran out of device memory scoring {rows} rows ({len(pairs)} pairs"
                             f"{', both orders' if both_orders else ''}; batch_size {self.batch_size}); lower "
                             "batch_size or cache_images") from exc

    def _score_on_shared_prefixes(self, pair_keys: list[tuple[str, str]], features: dict[str, Any]) -> np.ndarray:
        """The prompt up to the candidate image runs once per distinct query (batched over queries); each
        pair then runs only the candidate image and the closing text on its query's KV cache."""
        torch = self._torch
        queries = list(dict.fromkeys(query for query, _ in pair_keys))
        row_of_query = {query: row for row, query in enumerate(queries)}
        chunks = [self._prefix_kv([features[q] for q in queries[start:start + self.batch_size]])
                  for start in range(0, len(queries), self.batch_size)]
        prefix_kv = chunks[0] if len(chunks) == 1 else [  # one chunk (the usual case): no copy
            tuple(torch.cat([chunk[layer][part] for chunk in chunks]) for part in (0, 1))
            for layer in range(len(chunks[0]))]
        parts = []
        for start in range(0, len(pair_keys), self.batch_size):
            rows = pair_keys[start:start + self.batch_size]
            index = torch.tensor([row_of_query[query] for query, _ in rows], device=prefix_kv[0][0].device)
            rows_kv = [(layer_keys.index_select(0, index), layer_values.index_select(0, index))
                       for layer_keys, layer_values in prefix_kv]
            parts.append(self._score_suffix(rows_kv, [features[candidate] for _, candidate in rows]))
        return np.concatenate(parts)

    def _features_of(self, pairs: Sequence[Pair], keys: list[tuple[str, str]]) -> dict[str, Any]:
        """Vision features of every distinct image of the call: candidates from/into the LRU, the others
        (queries) encoded once for this call only, so one-off queries never evict the gallery."""
        images = {}
        candidates = set()
        for (query, candidate), (query_key, candidate_key) in zip(pairs, keys, strict=True):
            images.setdefault(query_key, query)
            images.setdefault(candidate_key, candidate)
            candidates.add(candidate_key)
        features: dict[str, Any] = {}
        for key in candidates:
            cached = self.feature_cache.get(self._cache_key(key))
            if cached is not None:
                features[key] = cached
        missing = [key for key in images if key not in features]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            for key, encoded in zip(chunk, self._encode([images[key] for key in chunk]), strict=True):
                features[key] = encoded
                if key in candidates:  # a copy: a slice would keep its whole chunk's storage alive in the cache
                    self.feature_cache.put(self._cache_key(key), encoded.clone())
        return features

    def _cache_key(self, content_key: str) -> tuple[str, str, tuple[int, int]]:
        return content_key, self._model_key, self.image_hw

    def _encode(self, images: Sequence[np.ndarray]) -> list[Any]:
        """One vision-tower pass over `images`: a (tokens, hidden) feature tensor per image."""
        torch = self._torch
        rgb = torch.from_numpy(np.stack([to_model_rgb(image, self.image_hw) for image in images])).to(self.device)
        pixels = pixel_values_of(rgb, self._image_processing)
        output = self.model.get_image_features(pixels.values.to(self.dtype), pixels.grid_thw)
        per_image = getattr(output, "pooler_output", output)  # transformers 5: a ModelOutput; 4.x: the split tuple
        self.feature_cache.count_encoded(len(images))
        return list(per_image)

    def _row_embeds(self, count: int, query_features: list[Any] | None, candidate_features: list[Any] | None,
                    tokens: slice) -> Any:
        """(count, tokens, hidden) prompt embeddings with the given image features at their token positions."""
        torch = self._torch
        layout = self._layout
        embeds = self.model.get_input_embeddings()(layout.input_ids[:, tokens])
        embeds = embeds.expand(count, -1, -1).clone()
        for run, images in ((layout.query, query_features), (layout.candidate, candidate_features)):
            if images is not None:
                embeds[:, run.start - tokens.start:run.stop - tokens.start] = torch.stack(images).to(embeds.dtype)
        return embeds

    def _positions(self, count: int, tokens: slice) -> Any:
        return self._layout.position_ids[:, :, tokens].expand(-1, count, -1)

    def _score_rows(self, query_features: list[Any], candidate_features: list[Any]) -> np.ndarray:
        count, whole = len(query_features), slice(0, self._layout.input_ids.shape[1])
        embeds = self._row_embeds(count, query_features, candidate_features, whole)
        kwargs = {self._keep_arg: 1} if self._keep_arg else {}
        logits = self.model(inputs_embeds=embeds, position_ids=self._positions(count, whole), use_cache=False,
                            **kwargs).logits
        return self._mu_of(logits)

    def _prefix_kv(self, query_features: list[Any]) -> list[tuple[Any, Any]]:
        """Per decoder layer, (keys, values) of the prompt up to the candidate image, one row per query."""
        count, prefix = len(query_features), slice(0, self._layout.candidate.start)
        embeds = self._row_embeds(count, query_features, None, prefix)
        kwargs = {self._keep_arg: 1} if self._keep_arg else {}
        output = self.model(inputs_embeds=embeds, position_ids=self._positions(count, prefix), use_cache=True, **kwargs)
        cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
        if hasattr(cache, "layers"):  # transformers 5
            return [(layer.keys, layer.values) for layer in cache.layers]
        if hasattr(cache, "key_cache"):  # transformers 4.x DynamicCache
            return list(zip(cache.key_cache, cache.value_cache, strict=True))
        raise JudgeError(f"{self.model_name}: no per-layer KV cache to share ({type(cache).__name__}); "
                         "pass share_prefix=False")

    def _score_suffix(self, prefix_kv: list[tuple[Any, Any]], candidate_features: list[Any]) -> np.ndarray:
        count, suffix = len(candidate_features), slice(self._layout.candidate.start, self._layout.input_ids.shape[1])
        # a fresh cache per batch: the forward appends the suffix's keys to it, the prefix tensors stay as they are
        cache = self._transformers.DynamicCache(prefix_kv)
        embeds = self._row_embeds(count, None, candidate_features, suffix)
        kwargs = {self._keep_arg: 1} if self._keep_arg else {}
        logits = self.model(inputs_embeds=embeds, position_ids=self._positions(count, suffix), use_cache=True,
                            **{self._cache_arg: cache}, **kwargs).logits
        return self._mu_of(logits)

    def _mu_of(self, logits: Any) -> np.ndarray:
        yes_no = logits[:, -1, [self.yes_id, self.no_id]].float().cpu().numpy()
        if not np.all(np.isfinite(yes_no)):
            raise JudgeError(f"{self.model_name} produced NaN or infinite logits")
        return mu_from_yes_no(yes_no[:, 0], yes_no[:, 1])

    def _release(self) -> None:
        if not self._shared_cache:
            self.feature_cache.clear()
        super()._release()

    def __repr__(self) -> str:
        return super().__repr__().replace("TransformersJudge(", "FastTransformersJudge(", 1)[:-1] + (
            f", cache_images={self.feature_cache.max_images})")


@dataclass(frozen=True)
class PromptLayout:
    """The one token row every pair shares, on the model's device: ids (1, L), M-RoPE positions (3, 1, L),
    and the query's and candidate's image-token slices."""

    input_ids: Any
    position_ids: Any
    query: slice
    candidate: slice


@dataclass(frozen=True)
class ImageProcessing:
    """What the Qwen2-VL image processor does to an image that already has its final size."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class PixelValues:
    values: Any  # (sum of patches, channels × temporal × patch × patch) float32
    grid_thw: Any  # (images, 3) long: 1, patch rows, patch columns


def pixel_values_of(rgb: Any, processing: ImageProcessing) -> PixelValues:
    """Qwen2-VL `pixel_values` / `image_grid_thw` of a (N, H, W, 3) uint8 RGB tensor, with tensor ops only.

    Rescale and normalise in float32, then the processor's patch order: (merge row, merge column,
    row in merge, column in merge) patches, each flattened as (channel, time, y, x) with the still
    image repeated over `temporal_patch_size`.
    """
    torch = require("torch")
    if rgb.dtype != torch.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise JudgeError(f"pixel_values_of: expected (N, H, W, 3) uint8 RGB, got {tuple(rgb.shape)} {rgb.dtype}")
    count, height, width, channels = rgb.shape
    patch, merge, temporal = processing.patch_size, processing.merge_size, processing.temporal_patch_size
    mean = torch.tensor(processing.mean, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(processing.std, device=rgb.device).view(1, 3, 1, 1)
    images = (rgb.permute(0, 3, 1, 2).float() * processing.rescale_factor - mean) / std
    rows, columns = height // patch, width // patch
    patches = images.reshape(count, channels, rows // merge, merge, patch, columns // merge, merge, patch)
    patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7).unsqueeze(6)
    patches = patches.expand(-1, -1, -1, -1, -1, -1, temporal, -1, -1)
    values = patches.reshape(count * rows * columns, channels * temporal * patch * patch)
    grid = torch.tensor([[1, rows, columns]] * count, dtype=torch.long, device=rgb.device)
    return PixelValues(values, grid)


def _image_processing(processor: Any, image_hw: tuple[int, int]) -> ImageProcessing:
    """The image processor's settings, after checking it would keep `image_hw` as it is (no resampling)."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not hasattr(image_processor, "merge_size"):
        raise JudgeConfigError(f"the fast path needs a Qwen2-VL-style image processor, got {type(image_processor)}")
    settings = ImageProcessing(
        patch_size=int(image_processor.patch_size), merge_size=int(image_processor.merge_size),
        temporal_patch_size=int(image_processor.temporal_patch_size),
        rescale_factor=float(image_processor.rescale_factor) if image_processor.do_rescale else 1.0,
        mean=tuple(image_processor.image_mean) if image_processor.do_normalize else (0.0, 0.0, 0.0),
        std=tuple(image_processor.image_std) if image_processor.do_normalize else (1.0, 1.0, 1.0),
    )
    size = image_processor.size
    min_pixels = getattr(image_processor, "min_pixels", None) or size["shortest_edge"]
    max_pixels = getattr(image_processor, "max_pixels", None) or size["longest_edge"]
    factor = settings.patch_size * settings.merge_size
    height, width = image_hw
    if height % factor or width % factor or not (min_pixels <= height * width <= max_pixels):
        raise JudgeConfigError(
            f"image_hw {image_hw}: the fast path needs sides that are multiples of {factor} and "
            f"{min_pixels}..{max_pixels} pixels, so the processor would not resample "
            f"(e.g. ({max(factor, round(height / factor) * factor)}, {max(factor, round(width / factor) * factor)}))"
        )
    return settings


def _runs(mask: Any) -> list[slice]:
    """Slices of the contiguous True runs of a 1-D bool tensor."""
    flags = mask.tolist()
    runs, start = [], None
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append(slice(start, index))
            start = None
    return runs
