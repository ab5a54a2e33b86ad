"""Stage two at the hub: μ per candidate (checked against brute force), fusion and the decision."""

from __future__ import annotations

import math
import types
from collections.abc import Sequence

import numpy as np
import pytest

from cloud.verification import CandidateEvidence, DecisionPolicy, GalleryMatrix, JudgeVerifier, VerifyRequest
from models.verify.reid_judge import ReidJudge


class MeanJudge:
    """μ = |mean(query) - mean(candidate)| / 255: deterministic, order-dependent on nothing."""

    name = "mean"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score_pairs(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        self.calls.append(len(pairs))
        return np.array([abs(float(q.mean()) - float(c.mean())) / 255 for q, c in pairs], np.float32)


def grey(level: int) -> np.ndarray:
    return np.full((8, 4, 3), level, np.uint8)


def test_candidate_mu_matches_brute_force() -> None:
    judge = MeanJudge()
    verifier = JudgeVerifier(judge, DecisionPolicy(max_query_crops=2, max_reference_crops=3))
    queries = [grey(100), grey(110), grey(250)]  # the third is past max_query_crops
    candidates = [CandidateEvidence("a", 0.1, [grey(90), grey(105), grey(200), grey(104)]),
                  CandidateEvidence("b", 0.2, []),
                  CandidateEvidence("c", 0.3, [grey(0)])]
    got = verifier.candidate_mu(queries, candidates)
    assert judge.calls == [2 * 3 + 2 * 1]  # every pair in one call
    for candidate, mu in zip(candidates, got, strict=True):
        refs = candidate.reference_crops[:3]
        if not refs:
            assert math.isnan(mu)
            continue
        expected = min(np.mean([abs(float(q.mean()) - float(r.mean())) / 255 for q in queries[:2]]) for r in refs)
        assert mu == pytest.approx(expected, abs=1e-6)


def _request(kit: types.SimpleNamespace, query: str, gallery: dict[str, str], candidates: list[str]) -> VerifyRequest:
    refs = {identity: [kit.crop(colour, seed=20 + i) for i in range(2)] for identity, colour in gallery.items()}
    matrix = GalleryMatrix(tuple(gallery), np.stack([kit.vector(c) for c in gallery.values()])) if gallery \
        else GalleryMatrix.empty(kit.DIM)
    return VerifyRequest([kit.crop(query, seed=1), kit.crop(query, seed=2)], kit.vector(query),
                         [CandidateEvidence(i, 0.2 + 0.1 * r, refs[i]) for r, i in enumerate(candidates)], matrix)


GALLERY = {"id-red": "red", "id-blue": "blue", "id-green": "green"}
TWO = {"id-red": "red", "id-green": "green"}


@pytest.mark.parametrize(("query", "gallery", "candidates", "allow_new", "outcome", "identity"), [
    ("red", GALLERY, ["id-red", "id-blue"], False, "confirmed", "id-red"),
    ("red", GALLERY, ["id-blue", "id-red"], False, "confirmed", "id-red"),  # the edge's order is not trusted
    ("blue", TWO, ["id-green", "id-red"], False, "rejected", None),  # blue is nobody here
    ("blue", TWO, ["id-green", "id-red"], True, "new_identity", None),
    ("red", GALLERY, ["id-blue"], False, "rejected", "id-blue"),  # the right one was not short-listed
    ("red", {}, [], True, "new_identity", None),
    ("red", {}, [], False, "rejected", None),
    ("red", {"id-red": "red"}, ["id-red"], True, "confirmed", "id-red"),
])
def test_decisions_with_the_reid_judge(kit: types.SimpleNamespace, query: str, gallery: dict, candidates: list,
                                       allow_new: bool, outcome: str, identity: str | None) -> None:
    verifier = JudgeVerifier(ReidJudge(embedders=[kit.ColourEmbedder()]),
                             DecisionPolicy.for_judge("reid", allow_new_identities=allow_new))
    result = verifier.verify(_request(kit, query, gallery, candidates))
    assert result.outcome == outcome
    if identity is not None:
        assert result.identity_id == identity
    assert set(result.scores) == set(candidates)
    assert all(0.0 <= s <= 1.0 for s in result.scores.values())
    if outcome == "confirmed":
        assert result.stage2_score == result.scores[identity] > 0.9  # type: ignore[index]


def test_rerank_pool_bounds_the_work(kit: types.SimpleNamespace) -> None:
    rng = np.random.default_rng(0)
    others = rng.normal(size=(500, kit.DIM)).astype(np.float32)
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    vectors = np.concatenate([kit.vector("red")[None], others])
    matrix = GalleryMatrix(("id-red", *[f"id-{i}" for i in range(500)]), vectors)
    request = VerifyRequest([kit.crop("red")], kit.vector("red"),
                            [CandidateEvidence("id-red", 0.1, [kit.crop("red", seed=4)])], matrix)
    verifier = JudgeVerifier(ReidJudge(embedders=[kit.ColourEmbedder()]), DecisionPolicy.for_judge("reid",
                                                                                                     rerank_pool=30))
    ids, q_g, g_g = verifier._pool(request, {"id-red": 0.0})
    assert len(ids) == 30 and "id-red" in ids and q_g.shape == (1, 30) and g_g.shape == (30, 30)
    assert verifier.verify(request).outcome == "confirmed"


def test_policy_presets() -> None:
    assert DecisionPolicy.for_judge("reid").mu_confirm < 0.5
    assert DecisionPolicy.for_judge("transformers").mu_confirm == 0.5
    assert DecisionPolicy.for_judge("reid", mu_confirm=0.2).mu_confirm == 0.2
