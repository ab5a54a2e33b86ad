"""Stage two at the hub: μ per candidate (`Judge.candidate_mu`, checked against brute force), both stages
through their calibrations to P(same), fused, and the decision on the fused P(same)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from crossview_testing.colour_model import DIM, FP, JUDGE_CALIBRATION, JUDGE_FP, ColourEmbedder, crop

from cloud.verification import (
    CandidateEvidence,
    DecisionPolicy,
    GalleryMatrix,
    JudgeVerifier,
    VerifyRequest,
    VerifyResult,
)
from models import calibration as calibration_module
from models.calibration import Calibration, file_name, fuse_p_same, save_calibration
from models.errors import InvalidInputError
from models.verify.base import Judge, Pair
from models.verify.reid_judge import ReidJudge

#: the colour model's cosine distance: one colour → 0.99, two of red/green/blue → 0.001
EDGE_CALIBRATION = Calibration(FP, "cosine_distance", "logistic", 5.0, -12.0, "test")


@pytest.fixture(autouse=True)
def no_installed_calibrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only the calibrations a test passes or installs itself: an empty zoo folder, no env folder."""
    packaged = tmp_path / "zoo-calibrations"
    packaged.mkdir()
    monkeypatch.setattr(calibration_module, "PACKAGED_DIR", packaged)
    monkeypatch.delenv(calibration_module.ENV_DIR, raising=False)
    return packaged


def vector(colour: str) -> np.ndarray:
    return ColourEmbedder().embed([crop(colour)]).vectors[0]


# ---------------------------------------------------------------- Judge.candidate_mu

class MeanJudge(Judge):
    """μ = |mean(query) - mean(candidate)| / 255; records the size of each backend call."""

    name = "mean"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        self.calls.append(len(pairs))
        return np.array([abs(float(q.mean()) - float(c.mean())) / 255 for q, c in pairs])


def grey(level: int) -> np.ndarray:
    return np.full((8, 4, 3), level, np.uint8)


def _brute_force_mu(queries: list[np.ndarray], refs: list[np.ndarray]) -> float:
    """min over the references of the mean over the queries, spelled out."""
    if not refs or not queries:
        return math.nan
    best = math.inf
    for r in refs:
        total = 0.0
        for q in queries:
            total += abs(float(q.mean()) - float(r.mean())) / 255
        best = min(best, total / len(queries))
    return best


def test_candidate_mu_matches_brute_force() -> None:
    judge = MeanJudge()
    queries = [grey(100), grey(110), grey(250)]  # the third is past max_query_crops
    references = [[grey(90), grey(105), grey(200), grey(104)], [], [grey(0)]]  # grey(104) is past the max
    got = judge.candidate_mu(queries, references, max_query_crops=2, max_reference_crops=3)
    assert judge.calls == [2 * 3 + 2 * 1]  # every pair in one call
    want = [_brute_force_mu(queries[:2], refs[:3]) for refs in references]
    assert math.isnan(got[1]) and math.isnan(want[1])
    assert [got[0], got[2]] == pytest.approx([want[0], want[2]], abs=1e-6)


def test_candidate_mu_random_against_brute_force() -> None:
    rng = np.random.default_rng(2)
    for _ in range(40):
        judge = MeanJudge()
        queries = [grey(int(x)) for x in rng.integers(0, 256, int(rng.integers(0, 5)))]
        references = [[grey(int(x)) for x in rng.integers(0, 256, int(rng.integers(0, 6)))]
                      for _ in range(int(rng.integers(0, 6)))]
        mq, mr = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        got = judge.candidate_mu(queries, references, max_query_crops=mq, max_reference_crops=mr)
        want = [_brute_force_mu(queries[:mq], refs[:mr]) for refs in references]
        assert len(got) == len(references) and len(judge.calls) <= 1
        for g, w in zip(got, want, strict=True):
            assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w, abs=1e-6)


def test_candidate_mu_without_pairs_calls_nothing() -> None:
    judge = MeanJudge()
    assert judge.candidate_mu([grey(1)], []) == []
    assert all(math.isnan(m) for m in judge.candidate_mu([], [[grey(1)], [grey(2)]]))
    assert judge.calls == []


# ---------------------------------------------------------------- the decision, on scripted scores

class ScriptedJudge:
    """A `PairJudge` that answers fixed μ (by candidate position) and records what it was asked."""

    name = "scripted"
    fingerprint = "scripted@1"

    def __init__(self, mu: Sequence[float]) -> None:
        self.mu = list(mu)
        self.asked: list[dict] = []

    def candidate_mu(self, query_crops: Sequence[np.ndarray], references: Sequence[Sequence[np.ndarray]], *,
                     max_query_crops: int = 3, max_reference_crops: int = 4) -> list[float]:
        self.asked.append({"queries": len(query_crops), "candidates": len(references),
                           "max_query_crops": max_query_crops, "max_reference_crops": max_reference_crops})
        return self.mu[:len(references)]


PLAIN_JUDGE = Calibration.uncalibrated("scripted@1", "judge_mu")  # stage 2 P(same) = 1 - μ


def plain_model(fingerprint: str, score: str) -> Calibration:
    return Calibration.uncalibrated(fingerprint, score)  # stage 1 P(same) = 1 - cosine distance


def scripted(mu: Sequence[float], cosine: Sequence[float | None] | None = None, **policy: object
             ) -> tuple[JudgeVerifier, VerifyRequest]:
    """A verifier and request where stage 2 reads 1 - μ and stage 1 reads 1 - cosine (None: no stage 1)."""
    cosine = list(cosine) if cosine is not None else [None] * len(mu)
    ids = [f"id-{i}" for i in range(len(mu))]
    candidates = [CandidateEvidence(i, 0.1 * r, [grey(10)], c) for r, (i, c) in enumerate(zip(ids, cosine,
                                                                                          strict=True))]
    verifier = JudgeVerifier(ScriptedJudge(mu), DecisionPolicy(**policy), calibration=PLAIN_JUDGE,
                             model_calibrations=plain_model)
    return verifier, VerifyRequest([grey(10)], np.ones(DIM, np.float32), candidates, GalleryMatrix.empty(DIM), "m@1")


@pytest.mark.parametrize(("mu", "cosine", "policy", "outcome", "identity"), [
    ([0.4, 0.1], None, {}, "confirmed", "id-1"),  # the most likely, not the edge's first
    ([0.5], None, {}, "confirmed", "id-0"),  # P(same) 0.5 reaches confirm_p_same 0.5: inclusive
    ([0.50001], None, {}, "rejected", "id-0"),
    ([0.85, 0.9], None, {"allow_new_identities": True}, "new_identity", None),  # every P(same) < 0.2
    ([0.75, 0.9], None, {"allow_new_identities": True, "new_below_p_same": 0.25}, "rejected", "id-0"),  # not below
    ([0.85, 0.9], None, {}, "rejected", "id-0"),  # new identities not allowed
    ([0.7], None, {"allow_new_identities": True}, "rejected", "id-0"),  # between the lines: unknown
    ([0.3, 0.3], None, {}, "confirmed", "id-0"),  # a tie: the edge's order
    ([0.6], None, {"confirm_p_same": 0.4}, "confirmed", "id-0"),
    ([0.1], None, {"confirm_p_same": 0.95}, "rejected", "id-0"),
    ([0.95], None, {"allow_new_identities": True, "new_below_p_same": 0.0}, "rejected", "id-0"),
    ([0.05], None, {"allow_new_identities": True, "confirm_p_same": 1.0}, "rejected", "id-0"),
    ([], None, {"allow_new_identities": True}, "new_identity", None),  # nobody short-listed
    ([], None, {}, "rejected", None),
    ([math.nan], None, {}, "rejected", None),  # nothing to judge (no reference crops): never confirmed
    ([math.nan], [0.0], {}, "rejected", None),  # ... however sure stage 1 is
    ([math.nan], [1.0], {"allow_new_identities": True}, "new_identity", None),
    ([math.nan], [0.1], {"allow_new_identities": True}, "rejected", None),  # a strong unjudged candidate
    ([math.nan, 0.1], [0.0, 0.9], {}, "confirmed", "id-1"),
    # stage 1 moves the fused P(same): the judge's 0.45 alone would confirm, a stranger at stage 1 does not
    ([0.45], [0.95], {}, "rejected", "id-0"),
    ([0.45], [0.95], {"stage1_weight": 0.0}, "confirmed", "id-0"),
    ([0.55, 0.45], [0.05, 0.95], {}, "confirmed", "id-0"),
])
def test_decision_table(mu: list, cosine: list | None, policy: dict, outcome: str, identity: str | None) -> None:
    verifier, request = scripted(mu, cosine, **policy)
    result = verifier.verify(request)
    assert (result.outcome, result.identity_id) == (outcome, identity)
    _check_consistent(result, mu, cosine, verifier.policy)


def _check_consistent(result: VerifyResult, mu: list, cosine: list | None, policy: DecisionPolicy) -> None:
    """The result's numbers are the calibrated stages of its identity, fused; scores are the judged ones."""
    cosine = cosine or [None] * len(mu)
    rows = {}
    for i, (m, c) in enumerate(zip(mu, cosine, strict=True)):
        s1 = None if c is None else 1.0 - c
        s2 = None if math.isnan(m) else 1.0 - m
        rows[f"id-{i}"] = (fuse_p_same(s1, s2, policy.stage1_weight), s1, s2)
    assert result.scores == pytest.approx({i: r[0] for i, r in rows.items() if r[2] is not None})
    if result.identity_id is None:
        assert (result.p_same, result.stage1_p_same, result.stage2_p_same) == (None, None, None)
    else:
        assert (result.p_same, result.stage1_p_same, result.stage2_p_same) == pytest.approx(rows[result.identity_id])
        assert result.p_same == pytest.approx(max(result.scores.values()))
    if result.outcome == "confirmed":
        assert result.p_same >= policy.confirm_p_same


def _reference_decision(mu: list, cosine: list, policy: DecisionPolicy) -> tuple[str, str | None]:
    """The rule in the module docstring, spelled out."""
    rows = []
    for i, (m, c) in enumerate(zip(mu, cosine, strict=True)):
        s1 = None if c is None else 1.0 - c
        s2 = None if math.isnan(m) else 1.0 - m
        rows.append((fuse_p_same(s1, s2, policy.stage1_weight), s2 is not None, f"id-{i}"))
    best = None
    for fused, judged, identity in rows:
        if judged and (best is None or fused > best[0]):
            best = (fused, identity)
    if best is not None and best[0] >= policy.confirm_p_same:
        return "confirmed", best[1]
    if policy.allow_new_identities and all((f if f is not None else 0.0) < policy.new_below_p_same
                                           for f, _, _ in rows):
        return "new_identity", None
    return "rejected", None if best is None else best[1]


def test_random_short_lists_match_the_rule() -> None:
    rng = np.random.default_rng(8)
    for trial in range(400):
        n = int(rng.integers(0, 6))
        mu = [math.nan if rng.uniform() < 0.2 else float(np.round(rng.uniform(0, 1), 2)) for _ in range(n)]
        cosine = [None if rng.uniform() < 0.3 else float(np.round(rng.uniform(0, 1), 2)) for _ in range(n)]
        confirm = float(np.round(rng.uniform(0.3, 0.9), 1))
        policy = {"confirm_p_same": confirm, "new_below_p_same": float(np.round(rng.uniform(0, confirm), 1)),
                  "stage1_weight": float(np.round(rng.uniform(0, 1), 1)), "allow_new_identities": trial % 2 == 0}
        verifier, request = scripted(mu, cosine, **policy)
        result = verifier.verify(request)
        assert (result.outcome, result.identity_id) == _reference_decision(mu, cosine, verifier.policy), trial
        _check_consistent(result, mu, cosine, verifier.policy)


def test_the_policy_s_crop_limits_reach_the_judge() -> None:
    verifier, request = scripted([0.1, 0.2], max_query_crops=2, max_reference_crops=5)
    verifier.verify(request)
    assert verifier.judge.asked == [{"queries": 1, "candidates": 2, "max_query_crops": 2, "max_reference_crops": 5}]
    verifier, request = scripted([])
    verifier.verify(request)
    assert verifier.judge.asked == []  # no candidates: the judge is not called


# ---------------------------------------------------------------- stage 1: where the cosine distance comes from

def colour_request(query: str, gallery: dict[str, str], candidates: list[str], *,
                   edge_cosine: dict[str, float] | None = None, fingerprint: str = FP) -> VerifyRequest:
    """A `query` person; the hub's gallery vectors `gallery` (identity → colour); candidates "id-<colour>"
    with two reference crops each of their colour (the hub holds them whether or not it holds a vector)."""
    refs = {identity: [crop(identity.removeprefix("id-"), seed=20 + i) for i in range(2)] for identity in candidates}
    matrix = GalleryMatrix(tuple(gallery), np.stack([vector(c) for c in gallery.values()])) if gallery \
        else GalleryMatrix.empty(DIM)
    edge_cosine = edge_cosine or {}
    return VerifyRequest([crop(query, seed=1), crop(query, seed=2)], vector(query),
                         [CandidateEvidence(i, 0.2 + 0.1 * r, refs[i], edge_cosine.get(i))
                          for r, i in enumerate(candidates)], matrix, fingerprint)


def colour_verifier(calibrations: dict[str, Calibration] | None = None, **policy: object) -> JudgeVerifier:
    calibrations = calibrations if calibrations is not None else {FP: EDGE_CALIBRATION}

    def model(fingerprint: str, score: str) -> Calibration:
        assert score == "cosine_distance"
        return calibrations.get(fingerprint) or Calibration.uncalibrated(fingerprint, score)

    return JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()]), DecisionPolicy(**policy),
                         calibration=JUDGE_CALIBRATION, model_calibrations=model)


def test_stage_one_reads_the_edge_s_cosine_distance_else_the_gallery_s() -> None:
    verifier = colour_verifier()
    gallery = {"id-red": "red", "id-blue": "blue"}
    measured = verifier.verify(colour_request("red", gallery, ["id-red", "id-blue"]))
    assert measured.stage1_p_same == pytest.approx(float(EDGE_CALIBRATION.p_same(0.0)), abs=1e-4)
    sent = verifier.verify(colour_request("red", gallery, ["id-red", "id-blue"], edge_cosine={"id-red": 0.6}))
    assert sent.stage1_p_same == pytest.approx(float(EDGE_CALIBRATION.p_same(0.6)))  # the edge's number wins
    assert sent.stage2_p_same == measured.stage2_p_same
    assert sent.p_same == pytest.approx(fuse_p_same(sent.stage1_p_same, sent.stage2_p_same, 0.2))
    assert sent.p_same < measured.p_same
    # neither: an identity the hub holds no vector for, and a gallery of another dimension
    for request in (colour_request("red", {}, ["id-red"]),
                    VerifyRequest([crop("red")], np.ones(DIM + 1, np.float32),
                                  [CandidateEvidence("id-red", 0.1, [crop("red", seed=4)])],
                                  GalleryMatrix(("id-red",), vector("red")[None]), FP)):
        result = verifier.verify(request)
        assert result.stage1_p_same is None and result.p_same == result.stage2_p_same
        assert result.outcome == "confirmed"


def test_without_a_model_fingerprint_there_is_no_stage_one() -> None:
    # no model, no calibration to read its cosine distance with: the judge decides alone
    request = colour_request("red", {"id-red": "red"}, ["id-red"], fingerprint="")
    result = colour_verifier().verify(request)
    assert result.outcome == "confirmed" and result.stage1_p_same is None
    assert result.p_same == result.stage2_p_same == pytest.approx(float(JUDGE_CALIBRATION.p_same(0.0)), abs=1e-3)


def test_model_calibrations_are_asked_once_per_fingerprint() -> None:
    asked = []

    def model(fingerprint: str, score: str) -> Calibration:
        asked.append((fingerprint, score))
        return EDGE_CALIBRATION if fingerprint == FP else Calibration.uncalibrated(fingerprint, score)

    verifier = JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()]), calibration=JUDGE_CALIBRATION,
                             model_calibrations=model)
    for _ in range(3):
        verifier.verify(colour_request("red", {"id-red": "red"}, ["id-red"]))
    verifier.verify(colour_request("red", {"id-red": "red"}, ["id-red"], fingerprint="other@1"))
    assert asked == [(FP, "cosine_distance"), ("other@1", "cosine_distance")]
    assert verifier.model_calibration(FP) is EDGE_CALIBRATION


# ---------------------------------------------------------------- the reid judge on the colour model

GALLERY = {"id-red": "red", "id-blue": "blue", "id-green": "green"}
TWO = {"id-red": "red", "id-green": "green"}


@pytest.mark.parametrize(("query", "gallery", "candidates", "allow_new", "outcome", "identity"), [
    ("red", GALLERY, ["id-red", "id-blue"], False, "confirmed", "id-red"),
    ("red", GALLERY, ["id-blue", "id-red"], False, "confirmed", "id-red"),  # the edge's order is not trusted
    ("blue", TWO, ["id-green", "id-red"], False, "rejected", None),  # blue is nobody here
    ("blue", TWO, ["id-green", "id-red"], True, "new_identity", None),
    ("red", GALLERY, ["id-blue"], False, "rejected", "id-blue"),  # the right one was not short-listed
    ("red", GALLERY, ["id-blue"], True, "new_identity", None),
    ("red", {}, [], True, "new_identity", None),
    ("red", {}, [], False, "rejected", None),
    ("red", {"id-red": "red"}, ["id-red"], True, "confirmed", "id-red"),  # one identity: still confirmed
    ("blue", {"id-red": "red"}, ["id-red"], True, "new_identity", None),  # ... and a stranger still is not
])
def test_decisions_with_the_reid_judge(query: str, gallery: dict, candidates: list, allow_new: bool, outcome: str,
                                       identity: str | None) -> None:
    result = colour_verifier(allow_new_identities=allow_new).verify(colour_request(query, gallery, candidates))
    assert result.outcome == outcome
    if identity is not None:
        assert result.identity_id == identity
    assert set(result.scores) == set(candidates)
    assert all(0.0 <= s <= 1.0 for s in result.scores.values())
    if outcome == "confirmed":
        assert result.p_same == result.scores[identity] > 0.95  # type: ignore[index]
        assert result.stage1_p_same > 0.95 and result.stage2_p_same > 0.95  # type: ignore[operator]
    else:
        assert all(s < 0.01 for s in result.scores.values())  # strangers, on both stages
    if outcome == "rejected" and candidates:
        assert result.identity_id in candidates and result.p_same == max(result.scores.values())


def test_uncalibrated_reid_judge_reads_one_minus_mu() -> None:
    judge = ReidJudge(embedders=[ColourEmbedder()])
    assert judge.fingerprint == JUDGE_FP == "reid:" + FP
    verifier = JudgeVerifier(judge, DecisionPolicy())
    assert verifier.calibration == Calibration.uncalibrated(JUDGE_FP, "judge_mu") and not verifier.calibration.fitted
    request = colour_request("red", GALLERY, ["id-red", "id-blue"])
    mu = judge.candidate_mu(request.query_crops, [c.reference_crops for c in request.candidates])
    result = verifier.verify(request)
    assert result.outcome == "confirmed" and result.identity_id == "id-red"
    assert result.stage2_p_same == pytest.approx(1.0 - mu[0])
    assert result.stage1_p_same == pytest.approx(1.0, abs=1e-5)  # the colour model is not calibrated either
    # the reason calibration matters: uncalibrated, two different colours read P(same) ≈ 0.51 at stage 2
    blue = verifier.verify(colour_request("red", GALLERY, ["id-blue"], edge_cosine={}))
    assert blue.stage2_p_same == pytest.approx(1.0 - mu[1]) and 0.45 < blue.stage2_p_same < 0.55
    assert blue.outcome == "rejected"  # stage 1 (cosine ≈ 0.97) pulls the fused P(same) down


def test_the_judge_s_calibration_comes_from_its_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            no_installed_calibrations: Path) -> None:
    save_calibration(JUDGE_CALIBRATION, no_installed_calibrations)
    assert (no_installed_calibrations / file_name(JUDGE_FP)).is_file()
    assert JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()])).calibration == JUDGE_CALIBRATION
    site = tmp_path / "site"
    site.mkdir()
    refit = Calibration(JUDGE_FP, "judge_mu", "logistic", 3.0, -10.0, "site")
    save_calibration(refit, site)
    monkeypatch.setenv(calibration_module.ENV_DIR, str(site))
    assert JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()])).calibration == refit


@pytest.mark.parametrize("calibration", [
    Calibration("reid:some/other@1", "judge_mu", "logistic", 6.0, -30.0),  # another judge's
    Calibration(JUDGE_FP, "cosine_distance", "logistic", 6.0, -30.0),  # an edge model's kind of score
], ids=["another fingerprint", "another score"])
def test_a_calibration_for_another_judge_is_refused(calibration: Calibration) -> None:
    with pytest.raises(ValueError, match=r"judge calibration: it maps a .* this judge is 'reid:test/colour"):
        JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()]), calibration=calibration)


def test_an_installed_calibration_of_another_judge_is_refused(no_installed_calibrations: Path) -> None:
    (no_installed_calibrations / file_name(JUDGE_FP)).write_text(
        '{"model_fingerprint": "reid:someone/else@1", "score": "judge_mu", "intercept": 1.0, "slope": -2.0}')
    with pytest.raises(ValueError, match="is for model 'reid:someone/else@1'"):
        JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()]))


# ---------------------------------------------------------------- the policy

def test_policy_defaults() -> None:
    p = DecisionPolicy()
    assert (p.confirm_p_same, p.new_below_p_same, p.stage1_weight, p.allow_new_identities, p.max_query_crops,
            p.max_reference_crops) == (0.5, 0.2, 0.2, False, 3, 4)
    assert not hasattr(DecisionPolicy, "for_judge")


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"confirm_p_same": 1.5}, InvalidInputError, r"confirm_p_same: expected a P\(same\) in \[0, 1\]"),
    ({"confirm_p_same": -0.1}, InvalidInputError, "confirm_p_same"),
    ({"confirm_p_same": math.nan}, InvalidInputError, "confirm_p_same"),
    ({"new_below_p_same": -0.01}, InvalidInputError, "new_below_p_same"),
    ({"new_below_p_same": 2.0}, InvalidInputError, "new_below_p_same"),
    ({"stage1_weight": 1.2}, InvalidInputError, "stage1_weight"),
    ({"stage1_weight": "0.2"}, InvalidInputError, "stage1_weight"),
    ({"confirm_p_same": 0.3, "new_below_p_same": 0.4}, ValueError, r"at most confirm_p_same \(0.3\)"),
])
def test_policy_refuses(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        DecisionPolicy(**kwargs)
    assert issubclass(InvalidInputError, ValueError)


@pytest.mark.parametrize("make", [lambda: DecisionPolicy(confirm_p_same=0.0, new_below_p_same=0.0),
                                  lambda: DecisionPolicy(confirm_p_same=1.0, new_below_p_same=1.0, stage1_weight=1.0)])
def test_policy_accepts_the_ends(make: Callable[[], DecisionPolicy]) -> None:
    make()
