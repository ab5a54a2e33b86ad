"""`evaluate` end to end on a synthetic Market-1501 folder with a fake embedder of known vectors.

Two queries, four gallery items, 2-D vectors given as angles, so every figure is checked by hand:

    stage 1 (model "A"): q0 → g0 g1 g2* g3   (true match g2 at rank 3)   q1 → g0* ...
    stage 2 (model "B"): q0 → g3 g2* g0 g1   (g3 is nearest, but never on q0's short list at K <= 3)
    model "C":           q0 → g0 g2* g1 g3 ; averaged with "B" the order is g0 g2* g1
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.evaluation import EmbeddingCache, evaluate, plot_cmc, to_json_dict
from models.evaluation.report import format_table
from models.types import Embeddings

QUERY = {"q0": "0001_c1s1_000001_00.png", "q1": "0002_c1s1_000002_00.png"}
GALLERY = {"g0": "0002_c2s1_000010_01.png", "g1": "0003_c2s1_000011_01.png",
           "g2": "0001_c2s1_000012_01.png", "g3": "0004_c2s1_000013_01.png"}
ANGLES = {  # degrees, per model and image
    "A": {"q0": 0, "q1": 12, "g0": 10, "g1": 20, "g2": 30, "g3": 40},
    "B": {"q0": 0, "q1": 50, "g0": 50, "g1": 60, "g2": 5, "g3": 1},
    "C": {"q0": 0, "q1": 0, "g0": 0, "g1": 100, "g2": 90, "g3": 120},
}


class FakeEmbedder:
    """Looks each image up by its pixels; counts how often every image is embedded."""

    def __init__(self, model: str, table: dict[str, str], calls: Counter) -> None:
        self.model, self.table, self.calls = model, table, calls

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
        vectors = []
        for image in images:
            name = self.table[hashlib.sha1(image.tobytes()).hexdigest()]
            self.calls[(self.model, name)] += 1
            theta = np.deg2rad(ANGLES[self.model][name])
            vectors.append([np.cos(theta), np.sin(theta)])
        return Embeddings(np.asarray(vectors, np.float32), f"fake/{self.model}@0")


@pytest.fixture
def market(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    table = {}
    for n, (name, filename) in enumerate({**QUERY, **GALLERY}.items()):
        folder = tmp_path / ("query" if name in QUERY else "bounding_box_test")
        folder.mkdir(exist_ok=True)
        image = np.full((8, 4, 3), 10 * n, np.uint8)
        cv2.imwrite(str(folder / filename), image)
        table[hashlib.sha1(image.tobytes()).hexdigest()] = name
    return tmp_path, table


def run(market: tuple[Path, dict[str, str]], calls: Counter, cache: EmbeddingCache | None = None, **kwargs):
    folder, table = market
    return evaluate(folder, "market1501", "A", progress=False, cache=cache,
                    embedder_factory=lambda m: FakeEmbedder(m, table, calls), **kwargs)


def test_single_stage(market: tuple[Path, dict[str, str]]) -> None:
    result = run(market, Counter())
    assert (result.n_query, result.n_gallery, result.n_valid_query) == (2, 4, 2)
    assert result.rank1 == pytest.approx(0.5)
    assert result.mAP == pytest.approx((1 / 3 + 1) / 2)
    assert result.recall_at_k is None and result.stage1 is None


@pytest.mark.parametrize(
    ("k", "recall", "rank1", "mAP"),
    [
        (1, 0.5, 0.5, (1 / 3 + 1) / 2),   # q0's short list {g0}: no match, order unchanged
        (2, 0.5, 0.5, (1 / 3 + 1) / 2),   # {g0, g1}: stage 2 keeps g0 g1, then g2 at rank 3
        (3, 1.0, 1.0, 1.0),               # {g0, g1, g2}: stage 2 lifts g2 to rank 1, g3 stays out
        (4, 1.0, 0.5, (1 / 2 + 1) / 2),   # g3 enters the short list and takes rank 1
    ],
)
def test_two_stage_by_hand(market: tuple[Path, dict[str, str]], k: int, recall: float, rank1: float,
                           mAP: float) -> None:
    result = run(market, Counter(), stage2=["B"], shortlist=k)
    assert result.recall_at_k == pytest.approx(recall)
    assert result.rank1 == pytest.approx(rank1)
    assert result.mAP == pytest.approx(mAP)
    assert result.stage1 is not None
    assert result.stage1.rank1 == pytest.approx(0.5)
    assert result.stage1.mAP == pytest.approx((1 / 3 + 1) / 2)


def test_ensemble_averages_distances(market: tuple[Path, dict[str, str]]) -> None:
    result = run(market, Counter(), stage2=["B", "C"], shortlist=3)
    # q0: mean distances g0 0.18 < g2 0.50 < g1 0.84 → match at rank 2; q1: g0 first in both
    assert result.rank1 == pytest.approx(0.5)
    assert result.mAP == pytest.approx((1 / 2 + 1) / 2)
    assert result.stage2 == ("B", "C")


def test_each_image_embedded_once_per_model(market: tuple[Path, dict[str, str]]) -> None:
    calls: Counter = Counter()
    cache = EmbeddingCache()
    run(market, calls, cache, stage2=["B"], shortlist=1)
    # K=1: short lists are {g0} for both queries, so stage 2 embeds the queries and g0 only
    assert {name for model, name in calls if model == "B"} == {"q0", "q1", "g0"}
    run(market, calls, cache, stage2=["B"], shortlist=3)
    run(market, calls, cache, rerank=False)
    assert max(calls.values()) == 1
    assert sum(1 for model, _ in calls if model == "A") == 6


def test_disk_cache_is_reused(market: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    calls: Counter = Counter()
    first = run(market, calls, EmbeddingCache(tmp_path / "emb"))
    again = run(market, calls, EmbeddingCache(tmp_path / "emb"))
    assert max(calls.values()) == 1
    assert again.mAP == first.mAP


def test_json_table_and_png(market: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    single = run(market, Counter())
    two = run(market, Counter(), stage2=["B"], shortlist=3)
    payload = json.loads(json.dumps(to_json_dict(two)))
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "recall_at_k", "n_query", "n_gallery"):
        assert key in payload
    assert payload["stage1"]["rank1"] == pytest.approx(0.5)
    assert "recall_at_k" not in to_json_dict(single)
    table = format_table([single, two])
    assert "A → B @3" in table and "recall@K" in table
    png = plot_cmc([single, two], tmp_path / "img" / "cmc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("mode", ["exact", "incremental"])
def test_rerank_modes(market: tuple[Path, dict[str, str]], mode: str) -> None:
    result = run(market, Counter(), rerank=True, rerank_mode=mode, stage2=["B"], shortlist=2)
    assert result.rerank and result.rerank_mode == mode
    assert result.stage1 is not None and 0.0 <= result.stage1.mAP <= 1.0
    assert 0.0 <= result.mAP <= 1.0 and result.recall_at_k is not None


def test_bad_arguments(market: tuple[Path, dict[str, str]]) -> None:
    from models.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="shortlist"):
        run(market, Counter(), stage2=["B"], shortlist=0)
    with pytest.raises(InvalidInputError, match="stage2"):
        run(market, Counter(), stage2="B")
    with pytest.raises(InvalidInputError, match="rerank_mode"):
        run(market, Counter(), rerank=True, rerank_mode="approx")
