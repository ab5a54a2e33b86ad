"""Fit and check P(same) calibrations on a labelled folder (`crossview calibrate`, `tools/calibrate.py`).

The edge model's score is the cosine distance of a tracklet to a gallery identity; the judge's is its
μ for the same short-list pairs, computed as the hub computes it (`Judge.candidate_mu`: up to 3 query
crops against up to 4 reference crops). Pairs come from `models.evaluation.pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.calibration import Calibration, expected_calibration_error, fit_calibration, reliability
from models.errors import InvalidInputError
from models.evaluation.cache import EmbeddingCache
from models.evaluation.datasets import DatasetError, load_dataset
from models.evaluation.pairs import Episode, embed_episode, episodes, identity_distances, shortlist_pairs
from models.evaluation.report import finish_figure
from models.evaluation.run import _default_factory, _slot, embed_paths
from models.images import read_bgr


@dataclass(frozen=True)
class ScoredPairs:
    """Short-list pairs of a folder: the edge model's cosine distance, the judge's μ (when asked), labels."""

    dataset: str
    distance: np.ndarray  # (N,) float64
    same: np.ndarray  # (N,) bool
    mu: np.ndarray | None = None  # (N,) float64



def _judge_mu(episode: Episode, identities: np.ndarray, rows: np.ndarray, cols: np.ndarray, judge: Any,
              progress: bool) -> np.ndarray:
    refs_of = {int(pid): [p for p, g in zip(episode.gallery, episode.gallery_pids, strict=True) if g == pid]
               for pid in identities}
    images: dict[Path, np.ndarray] = {}

    def crops(paths: Sequence[Path]) -> list[np.ndarray]:
        return [images.setdefault(p, read_bgr(p, DatasetError)) for p in paths]

    mu = np.full(len(rows), np.nan)
    for q in tqdm(np.unique(rows), desc="judge", unit="query", disable=not progress, leave=False):
        at = np.flatnonzero(rows == q)
        references = [crops(refs_of[int(identities[c])][:4]) for c in cols[at]]
        mu[at] = judge.candidate_mu(crops(episode.queries[q][:3]), references)
    return mu


def score_pairs(root: Path, fmt: str, model: str, *, judge: Any = None, top_k: int = 10,
                cache: EmbeddingCache | None = None, runtime: str | None = None, batch_size: int = 32,
                progress: bool = True) -> ScoredPairs:
    """The short-list pairs of a labelled folder, scored by `model` (and by `judge`, a `models.verify.Judge`)."""
    split = load_dataset(Path(root), fmt)
    if split.is_video:
        raise InvalidInputError("calibration: expected an image dataset (market1501 or cuhk03), got tracklets")
    cache = cache or EmbeddingCache()
    factory = _default_factory(runtime, batch_size)
    slot = _slot(model, runtime)

    def embed(paths: Sequence[Path]) -> np.ndarray:
        return embed_paths(list(paths), model, cache, factory, slot=slot, progress=progress)

    distance, same, mu = [], [], []
    for episode in episodes(split):
        q_vectors, g_vectors = embed_episode(episode, embed)
        identities, d = identity_distances(episode, q_vectors, g_vectors)
        rows, cols, labels = shortlist_pairs(d, episode.query_pids, identities, top_k)
        distance.append(d[rows, cols])
        same.append(labels)
        if judge is not None:
            mu.append(_judge_mu(episode, identities, rows, cols, judge, progress))
    return ScoredPairs(split.name, np.concatenate(distance), np.concatenate(same),
                       np.concatenate(mu) if judge is not None else None)


def fit_from_pairs(pairs: ScoredPairs, fingerprint: str, score: str) -> Calibration:
    """The calibration of the model (score ``cosine_distance``) or of the judge (``judge_mu``)."""
    values = pairs.distance if score == "cosine_distance" else pairs.mu
    if values is None:
        raise InvalidInputError("judge_mu: these pairs were scored without a judge")
    return fit_calibration(values, pairs.same, model_fingerprint=fingerprint, score=score,
                           fitted_on=f"{pairs.dataset}: short-list pairs (top 10 + true identity), cross-camera")


def calibration_table(rows: Sequence[tuple[str, Calibration, ScoredPairs]]) -> list[dict[str, Any]]:
    """Per (label, calibration, pairs): how well it is calibrated on those pairs."""
    out = []
    for label, calibration, pairs in rows:
        values = pairs.distance if calibration.score == "cosine_distance" else pairs.mu
        assert values is not None
        p = calibration.p_same(values)
        out.append({"label": label, "model": calibration.model_fingerprint, "score": calibration.score,
                    "pairs": len(p), "same": int(pairs.same.sum()),
                    "ece": round(expected_calibration_error(p, pairs.same), 4),
                    "mean_p_same_same": round(float(p[pairs.same].mean()), 4),
                    "mean_p_same_different": round(float(p[~pairs.same].mean()), 4)})
    return out


def plot_reliability(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, *, title: str = "") -> Path:
    """The calibration curve (predicted vs observed P(same), 10 bins) of each (label, p_same, same) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.0, 6.0), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
        for label, p, same in curves:
            pts = reliability(p, same)
            ece = expected_calibration_error(p, same)
            ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], marker="o", markersize=4,
                    label=f"{label}: ECE {ece:.3f}, {len(p)} pairs")
        ax.set_xlabel("predicted P(same)")
        ax.set_ylabel("observed fraction of same-person pairs")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(title or "P(same) calibration")
    except BaseException:
        plt.close(fig)
        raise
    finish_figure(fig, ax, path)
    return path
