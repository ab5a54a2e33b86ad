"""Evaluate a Re-ID model (optionally re-ranked, optionally two-stage) on a dataset folder.

    >>> result = evaluate(Path("cuhk03_labeled/val"), "cuhk03", "reid/intel-0288",
    ...                   rerank=True, stage2=["reid/intel-0277"], shortlist=20)   # doctest: +SKIP
    >>> result.rank1, result.mAP, result.recall_at_k                               # doctest: +SKIP

Distances are cosine distances of unit vectors (half their squared Euclidean distance, so the
ranking is the same). Metrics follow the Market-1501 protocol (a gallery item of the query's
identity on the query's camera is ignored). All figures are fractions in [0, 1].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from models.errors import InvalidInputError, ModelNotFoundError
from models.evaluation.cache import EmbeddingCache, file_key
from models.evaluation.datasets import DatasetError, ReIdSplit, Unit, load_dataset
from models.evaluation.ranking import (
    cosine_distance,
    fuse_shortlist,
    junk_mask,
    match_mask,
    mean_distance,
    pool_units,
    recall_at_k,
    shortlist_mask,
)
from models.images import read_bgr
from models.metrics import RankMetrics, evaluate_rank
from models.types import Embeddings

RERANK_MODES = ("exact", "incremental")
_READ_CHUNK = 256  # images held in memory at once while embedding


class _Embedder(Protocol):
    def embed(self, images: Sequence[np.ndarray]) -> Embeddings: ...


EmbedderFactory = Callable[[str], _Embedder]


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` measured. Two-stage runs also carry stage 1's figures and recall@K."""

    dataset: str
    fmt: str
    model: str
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mINP: float
    cmc: np.ndarray = field(repr=False)
    n_query: int
    n_gallery: int
    n_valid_query: int
    rerank: bool = False
    rerank_mode: str | None = None
    stage2: tuple[str, ...] | None = None
    shortlist: int | None = None
    recall_at_k: float | None = None
    stage1: RankMetrics | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> RankMetrics:
        return RankMetrics(cmc=self.cmc, rank1=self.rank1, rank5=self.rank5, rank10=self.rank10,
                           mAP=self.mAP, mINP=self.mINP, n_valid_query=self.n_valid_query,
                           n_skipped_query=self.n_query - self.n_valid_query)


# --- embedding ----------------------------------------------------------------------------------

def _default_factory(runtime: str | None, batch_size: int) -> EmbedderFactory:
    def make(model: str) -> _Embedder:
        from models.embed import create_embedder  # imports a runtime only when asked

        return create_embedder(model, runtime, batch_size=batch_size)

    return make



def embed_paths(
    paths: Sequence[Path],
    model: str,
    cache: EmbeddingCache,
    factory: EmbedderFactory,
    *,
    slot: str,
    progress: bool = True,
) -> np.ndarray:
    """(N, D) vectors of the images at `paths`, embedding only those `cache` lacks."""
    keys = [file_key(p) for p in paths]
    todo_unique = list({keys[i]: i for i in cache.missing(slot, keys)}.values())  # one per file
    if todo_unique:
        embedder = factory(model)
        bar = tqdm(total=len(todo_unique), desc=f"embed {model}", unit="img", disable=not progress,
                   leave=False)
        try:
            for start in range(0, len(todo_unique), _READ_CHUNK):
                chunk = todo_unique[start:start + _READ_CHUNK]
                images = [read_bgr(paths[i], DatasetError) for i in chunk]
                vectors = embedder.embed(images).vectors
                cache.put(slot, [keys[i] for i in chunk], vectors)
                bar.update(len(chunk))
        finally:
            bar.close()
            cache.save()
    return cache.get(slot, keys)


def _slot(model: str, runtime: str | None) -> str:
    """Cache slot: the zoo fingerprint (name + weights checksum) and the runtime."""
    from models.zoo import get_spec

    try:
        fingerprint = get_spec(model).fingerprint
    except ModelNotFoundError:  # not a zoo name: a custom embedder factory's model
        fingerprint = model
    return f"{fingerprint}-{runtime or 'default'}"


def _unit_vectors(split: ReIdSplit, side: str, units: Sequence[Unit], model: str, cache: EmbeddingCache,
                  factory: EmbedderFactory, runtime: str | None, progress: bool) -> np.ndarray:
    """One unit vector per ranked item (an image, or a tracklet's mean frame embedding)."""
    samples = getattr(split, side)
    rows = sorted({i for u in units for i in u.frames})
    position = {r: n for n, r in enumerate(rows)}
    frames = embed_paths([samples[r].path for r in rows], model, cache, factory,
                         slot=_slot(model, runtime), progress=progress)
    return pool_units(frames, [[position[i] for i in u.frames] for u in units])


# --- metrics and re-ranking -----------------------------------------------------------------------

def rank_metrics(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                 g_camids: np.ndarray, max_rank: int = 50) -> RankMetrics:
    """CMC, mAP and mINP of `distmat` under the Market-1501 protocol (`models.metrics.evaluate_rank`)."""
    return evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)


def rerank_distances(query: np.ndarray, gallery: np.ndarray, mode: str = "exact", *, k1: int = 20,
                     k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranked (Q, G) distances over query ∪ gallery.

    "exact" re-ranks the whole set at once (queries are each other's neighbours too); "incremental"
    builds the edge's `GalleryIndex` from the gallery alone and re-ranks each query on its own
    against it, as a deployment does.
    """
    from models.rerank import GalleryIndex, k_reciprocal_exact

    if mode == "exact":
        return k_reciprocal_exact(cosine_distance(query, gallery), cosine_distance(query, query),
                                   cosine_distance(gallery, gallery), k1=k1, k2=k2,
                                   lambda_value=lambda_value)
    if mode == "incremental":
        index = GalleryIndex(k1=k1, k2=k2, lambda_value=lambda_value)
        index.add(np.arange(len(gallery)), gallery)
        out = np.empty((len(query), len(gallery)), np.float64)
        out[:, index.ids] = index.query(query)  # columns come in the order of index.ids
        return out
    raise InvalidInputError(f"rerank_mode: expected one of {', '.join(RERANK_MODES)}, got {mode!r}")


# --- evaluation ---------------------------------------------------------------------------------

def _labels(units: Sequence[Unit]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([u.pid for u in units], np.int64), np.array([u.camid for u in units], np.int64))


def _check_args(model: str, stage2: Sequence[str] | None, shortlist: int, rerank_mode: str) -> None:
    if not model:
        raise InvalidInputError("model: expected a model name, got an empty string")
    if stage2 is not None and (isinstance(stage2, str) or not stage2 or not all(stage2)):
        raise InvalidInputError(f"stage2: expected a non-empty list of model names, got {stage2!r}")
    if isinstance(shortlist, bool) or not isinstance(shortlist, int) or shortlist < 1:
        raise InvalidInputError(f"shortlist: expected an integer >= 1, got {shortlist!r}")
    if rerank_mode not in RERANK_MODES:
        raise InvalidInputError(f"rerank_mode: expected one of {', '.join(RERANK_MODES)}, got {rerank_mode!r}")


def evaluate(
    data_dir: Path,
    fmt: str,
    model: str,
    rerank: bool = False,
    stage2: Sequence[str] | None = None,
    shortlist: int = 10,
    batch_size: int = 32,
    progress: bool = True,
    *,
    rerank_mode: str = "exact",
    runtime: str | None = None,
    cache: EmbeddingCache | None = None,
    split: ReIdSplit | None = None,
    embedder_factory: EmbedderFactory | None = None,
) -> EvalResult:
    """Rank the query set of `data_dir` against its gallery with `model` and score the ranking.

    Args:
        data_dir: dataset folder (see `models.evaluation.datasets`).
        fmt: "auto", "market1501", "cuhk03" or "mars".
        model: zoo name of the stage-1 (edge) model.
        rerank: k-reciprocal re-ranking (k1=20, k2=6, λ=0.3) of stage 1 over query ∪ gallery.
        stage2: zoo names of the stage-2 (hub) model(s); several are an ensemble (mean cosine distance).
        shortlist: K, the number of stage-1 candidates stage 2 re-scores per query.
        batch_size: images per inference call.
        progress: show a progress bar while embedding.
        rerank_mode: "exact" or "incremental" (the edge's GalleryIndex).
        runtime: embedding runtime (default: the model format's default).
        cache: embeddings kept across calls (pass one to evaluate several settings cheaply).
        split: an already loaded split (then `data_dir` only names it).
        embedder_factory: model name → object with `embed(images) -> Embeddings` (tests).
    """
    _check_args(model, stage2, shortlist, rerank_mode)
    cache = cache if cache is not None else EmbeddingCache()
    factory = embedder_factory or _default_factory(runtime, batch_size)
    split = split if split is not None else load_dataset(Path(data_dir), fmt)
    seconds: dict[str, float] = {}

    q_units, g_units = split.units("query"), split.units("gallery")
    q_pids, q_camids = _labels(q_units)
    g_pids, g_camids = _labels(g_units)
    if not match_mask(q_pids, g_pids, q_camids, g_camids).any():
        raise DatasetError(f"{data_dir}: no query has a cross-camera match in the gallery")

    def vectors(name: str, side: str, units: Sequence[Unit]) -> np.ndarray:
        start = time.perf_counter()
        out = _unit_vectors(split, side, units, name, cache, factory, runtime, progress)
        seconds[f"embed {name}"] = seconds.get(f"embed {name}", 0.0) + time.perf_counter() - start
        return out

    qf, gf = vectors(model, "query", q_units), vectors(model, "gallery", g_units)
    start = time.perf_counter()
    stage1 = rerank_distances(qf, gf, rerank_mode) if rerank else cosine_distance(qf, gf)
    seconds["rank"] = time.perf_counter() - start
    first = rank_metrics(stage1, q_pids, g_pids, q_camids, g_camids)

    final, recall, stage1_metrics = first, None, None
    if stage2:
        junk = junk_mask(q_pids, g_pids, q_camids, g_camids)
        short = shortlist_mask(stage1, shortlist, exclude=junk)
        recall = recall_at_k(short, match_mask(q_pids, g_pids, q_camids, g_camids))
        needed = np.flatnonzero(short.any(axis=0))  # gallery items on some short list
        rescored = np.full(stage1.shape, np.inf)
        per_model = []
        for name in stage2:
            q2 = vectors(name, "query", q_units)
            g2 = vectors(name, "gallery", [g_units[j] for j in needed])
            per_model.append(cosine_distance(q2, g2))
        rescored[:, needed] = mean_distance(per_model)
        final = rank_metrics(fuse_shortlist(stage1, rescored, short), q_pids, g_pids, q_camids, g_camids)
        stage1_metrics = first

    return EvalResult(
        dataset=split.name or Path(data_dir).name, fmt=split.fmt or fmt, model=model,
        rank1=final.rank1, rank5=final.rank5, rank10=final.rank10, mAP=final.mAP, mINP=final.mINP,
        cmc=final.cmc, n_query=len(q_units), n_gallery=len(g_units), n_valid_query=final.n_valid_query,
        rerank=rerank, rerank_mode=rerank_mode if rerank else None,
        stage2=tuple(stage2) if stage2 else None, shortlist=shortlist if stage2 else None,
        recall_at_k=recall, stage1=stage1_metrics, seconds=seconds,
    )


def evaluate_many(data_dir: Path, fmt: str, models: Sequence[str], **kwargs: Any) -> list[EvalResult]:
    """`evaluate` each stage-1 model in turn on one loaded split, sharing one embedding cache."""
    kwargs.setdefault("cache", EmbeddingCache())
    split = kwargs.pop("split", None) or load_dataset(Path(data_dir), fmt)
    return [evaluate(data_dir, fmt, m, split=split, **kwargs) for m in models]
