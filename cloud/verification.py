"""Stage two at the hub: judge a short list's candidates, calibrate, fuse and decide.

`Verifier` is the one thing the short-list service needs; `JudgeVerifier` is the real one:

1. μ per candidate from a `models.verify` judge (`Judge.candidate_mu`: up to 3 query crops against
   up to 4 reference crops, in one `score_pairs` call).
2. Both stages on one scale, P(same) (`models.scores`): the edge's cosine distance to the candidate
   through the edge model's calibration (``stage1_p_same``), the judge's μ through the judge's
   (``stage2_p_same``), fused by `models.calibration.fuse_p_same` (``p_same``).
3. Decide on ``p_same`` alone — an absolute number, so the decision does not drift with the gallery's
   size (re-ranked distances, relative to the gallery, only ordered the edge's candidates): the most
   likely judged candidate is CONFIRMED when its ``p_same`` reaches `DecisionPolicy.confirm_p_same`;
   with new identities allowed, a short list whose candidates all fall below `new_below_p_same`
   (or that has none) is a NEW_IDENTITY; anything else is REJECTED (an unknown sighting).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from models.calibration import Calibration, calibration_for, fuse_p_same
from models.scores import DEFAULT_CONFIRM_P_SAME, check_p_same

Outcome = Literal["confirmed", "rejected", "new_identity"]


@dataclass(frozen=True)
class CandidateEvidence:
    """A short-list candidate the hub knows: its stage-1 distance and reference crops (BGR)."""

    identity_id: str
    stage1_distance: float  # the edge's ordering distance
    reference_crops: Sequence[np.ndarray]
    cosine_distance: float | None = None  # as the edge measured it; None: the hub measures it on the gallery


@dataclass(frozen=True)
class GalleryMatrix:
    """One vector per identity (the L2-normalised mean of its vectors) for one model fingerprint."""

    identity_ids: tuple[str, ...]
    vectors: np.ndarray  # (G, D) float32

    @classmethod
    def empty(cls, dim: int = 1) -> GalleryMatrix:
        return cls((), np.zeros((0, dim), np.float32))


@dataclass(frozen=True)
class VerifyRequest:
    query_crops: Sequence[np.ndarray]  # BGR uint8, best first
    query_vector: np.ndarray  # (D,) of the edge's model
    candidates: Sequence[CandidateEvidence]  # those the hub knows, best first
    gallery: GalleryMatrix  # of the edge's model
    model_fingerprint: str = ""  # the edge's model (its calibration reads the cosine distances; "": no stage 1)


@dataclass(frozen=True)
class VerifyResult:
    outcome: Outcome
    identity_id: str | None  # the confirmed identity, or the most likely unconfirmed candidate
    p_same: float | None = None  # of identity_id, both stages fused: what the decision read
    stage1_p_same: float | None = None  # of identity_id, the edge model's
    stage2_p_same: float | None = None  # of identity_id, the judge's
    scores: dict[str, float] = field(default_factory=dict)  # fused P(same) per judged candidate


class Verifier(Protocol):
    """Decides a short list. Called from a worker thread; may block."""

    name: str

    def verify(self, request: VerifyRequest) -> VerifyResult: ...


class PairJudge(Protocol):
    """What `JudgeVerifier` needs of a `models.verify.Judge`."""

    def candidate_mu(self, query_crops: Sequence[np.ndarray], references: Sequence[Sequence[np.ndarray]], *,
                     max_query_crops: int = 3, max_reference_crops: int = 4) -> list[float]: ...


@dataclass(frozen=True)
class DecisionPolicy:
    """The hub's decision line and fusion (P(same) thresholds in [0, 1], `models.scores`)."""

    confirm_p_same: float = DEFAULT_CONFIRM_P_SAME
    new_below_p_same: float = 0.2
    stage1_weight: float = 0.2
    allow_new_identities: bool = False
    max_query_crops: int = 3
    max_reference_crops: int = 4

    def __post_init__(self) -> None:
        for name in ("confirm_p_same", "new_below_p_same", "stage1_weight"):
            check_p_same(name, getattr(self, name))
        if self.new_below_p_same > self.confirm_p_same:
            raise ValueError(f"new_below_p_same: expected at most confirm_p_same ({self.confirm_p_same}), "
                             f"got {self.new_below_p_same}")


class JudgeVerifier:
    """`Verifier` from a `models.verify` judge plus calibration, fusion and decision.

    Args:
        calibration: the judge's μ → P(same) (default: the zoo's for `judge.fingerprint`, else uncalibrated).
        model_calibrations: an edge model fingerprint → its cosine-distance calibration (default `calibration_for`).
    """

    def __init__(self, judge: PairJudge, policy: DecisionPolicy | None = None, *, name: str | None = None,
                 calibration: Calibration | None = None,
                 model_calibrations: Any = None) -> None:
        self.judge = judge
        self.name = name or getattr(judge, "name", "") or type(judge).__name__
        self.policy = policy or DecisionPolicy()
        fingerprint = getattr(judge, "fingerprint", self.name)
        self.calibration = calibration or calibration_for(fingerprint, "judge_mu")
        if self.calibration.model_fingerprint != fingerprint or self.calibration.score != "judge_mu":
            raise ValueError(f"judge calibration: it maps a {self.calibration.score} of "
                             f"{self.calibration.model_fingerprint!r}, this judge is {fingerprint!r}")
        self._model_calibrations = model_calibrations or calibration_for
        self._cache: dict[str, Calibration] = {}

    def model_calibration(self, fingerprint: str) -> Calibration:
        if fingerprint not in self._cache:
            self._cache[fingerprint] = self._model_calibrations(fingerprint, "cosine_distance")
        return self._cache[fingerprint]

    def verify(self, request: VerifyRequest) -> VerifyResult:
        p = self.policy
        candidates = list(request.candidates)
        mus = self.judge.candidate_mu(request.query_crops, [c.reference_crops for c in candidates],
                                      max_query_crops=p.max_query_crops, max_reference_crops=p.max_reference_crops) \
            if candidates else []
        cosine = self._cosine(request)
        rows = []  # (fused, stage1, stage2, identity)
        for candidate, mu in zip(candidates, mus, strict=True):
            d = candidate.cosine_distance
            d = cosine.get(candidate.identity_id) if d is None else d
            s1 = None if d is None or not request.model_fingerprint \
                else float(self.model_calibration(request.model_fingerprint).p_same(d))
            s2 = None if math.isnan(mu) else float(self.calibration.p_same(mu))
            rows.append((fuse_p_same(s1, s2, p.stage1_weight), s1, s2, candidate.identity_id))
        scores = {r[3]: r[0] for r in rows if r[2] is not None and r[0] is not None}
        judged = [r for r in rows if r[2] is not None]
        best = max(judged, key=lambda r: r[0], default=None)  # first on ties: the edge's order
        if best is not None and best[0] >= p.confirm_p_same:
            return VerifyResult("confirmed", best[3], *best[:3], scores)
        nobody = all((r[0] if r[0] is not None else 0.0) < p.new_below_p_same for r in rows)
        if p.allow_new_identities and nobody:
            return VerifyResult("new_identity", None, scores=scores)
        if best is None:
            return VerifyResult("rejected", None, scores=scores)
        return VerifyResult("rejected", best[3], *best[:3], scores)

    @staticmethod
    def _cosine(request: VerifyRequest) -> dict[str, float]:
        """Cosine distances to the gallery's identity vectors, for candidates the edge sent none for."""
        gallery = request.gallery
        missing = {c.identity_id for c in request.candidates if c.cosine_distance is None}
        query = np.asarray(request.query_vector, np.float64).reshape(-1)
        if not missing or not gallery.identity_ids or gallery.vectors.shape[1] != query.shape[0]:
            return {}
        norm = max(float(np.linalg.norm(query)), 1e-12)
        return {identity: float(np.clip(1.0 - gallery.vectors[i] @ query / norm, 0.0, 2.0))
                for i, identity in enumerate(gallery.identity_ids) if identity in missing}


def create_verifier(judge: str = "reid", *, policy: DecisionPolicy | None = None,
                    calibration: Calibration | None = None, judge_batching: Mapping[str, Any] | None = None,
                    **judge_kwargs: Any) -> JudgeVerifier:
    """A `JudgeVerifier` around `models.verify.create_judge(judge, **judge_kwargs)`.

    `judge_batching` (None or empty: off) are `models.verify.batcher.JudgeBatcher`'s keyword arguments
    (e.g. ``{"max_batch_pairs": 64, "max_wait_ms": 3}``): the judge is wrapped in that micro-batcher,
    so concurrent short lists share judge calls. The batcher is then the verifier's `judge` and owns the
    judge it wraps: closing it closes both (`JudgeBatcher.close`). A bad option is a `JudgeConfigError`
    naming ``judge_batching``.
    """
    from models.verify import create_judge

    scorer = create_judge(judge, **judge_kwargs)
    if judge_batching:
        try:
            scorer = batched_judge(scorer, judge_batching)
        except BaseException:
            scorer.close()
            raise
    return JudgeVerifier(scorer, policy, name=judge, calibration=calibration)


def batched_judge(judge: Any, options: Mapping[str, Any]) -> Any:
    """`judge` wrapped in a `JudgeBatcher` with `options`; unknown or bad options: `JudgeConfigError`."""
    from models.verify import JudgeConfigError
    from models.verify.batcher import JudgeBatcher

    valid = [name for name in inspect.signature(JudgeBatcher).parameters if name not in ("judge", "owns_judge")]
    try:  # as create_judge checks a judge's options: by the signature, one line naming the culprit
        inspect.signature(JudgeBatcher).bind(judge, **options)
        if "owns_judge" in options:
            raise TypeError("owns_judge is not an option here (the hub's batcher owns its judge)")
    except TypeError as exc:
        raise JudgeConfigError(f"judge_batching: {exc}; valid: {', '.join(valid)}") from None
    try:
        return JudgeBatcher(judge, owns_judge=True, **options)
    except JudgeConfigError as exc:
        raise JudgeConfigError(f"judge_batching: {exc}") from None
