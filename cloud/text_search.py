"""Search by description at the hub (issue 15): the query, stage two in the judge's text mode, the ranking.

A text search goes out to the edges like a photo search (`cloud.search.SearchService`); each edge
answers its best tracklets with `text_score` in [0, 1], its stage-one score (the description's
likelihood under the tracklet's attributes and colours, mixed with a text-image model's cosine on an
edge that has one, re-ranked with the cross-modal neighbours, `models.attributes.scoring`). Stage two
asks the judge, for each hit's crop, "Does the person in the photo match this description: ...?"
(`models.verify.Judge.score_text`): ``judge_score = 1 - μ``.

Neither score has a calibration (no labelled description-photo pairs exist to fit one), so text hits
carry no P(same): `score` fuses the two raw scores exactly as photo search fuses P(same) (a weighted
mean of log-odds, `models.calibration.fuse_p_same`, same stage-one weight) and is labelled a raw match
score. A judge that cannot read (the `reid` judge) or that fails leaves `judge_score` empty: the
hits keep the edges' stage-one order, and the outcome's notes say so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.attributes.query import parse_description, query_from_fields
from models.attributes.scoring import matched_constraints
from models.attributes.types import AttributeProfile, Constraint, TextQuery
from models.calibration import fuse_p_same
from models.errors import CrossviewError, InvalidInputError
from protos import codec

log = logging.getLogger(__name__)

SCORE_KIND = "raw match score in [0, 1] (not calibrated, not a P(same))"
# the one explanation of a text search's scores, in every answer's notes (the CLI and the UI show them)
UNCALIBRATED_NOTE = ("text search: raw match scores in [0, 1], not a P(same) (no calibration exists for descriptions). "
                     "text score: the edge's attribute match, mixed with its text-image model's where it has one "
                     "(stage one); judge: 1 - the judge's 'No' probability for the description (stage two); "
                     "score: both fused")


# how a structured filter reads in the sentence the judge is asked about: attribute -> (true, false)
_FILTER_PHRASES = {
    "male": ("a man", "a woman"), "bag": ("carrying a bag", "no bag"), "backpack": ("a backpack", "no backpack"),
    "hat": ("a hat", "no hat"), "long_sleeves": ("long sleeves", "short sleeves"),
    "long_trousers": ("long trousers", "shorts or a skirt"), "long_hair": ("long hair", "short hair"),
    "coat_jacket": ("a coat or jacket", "no coat or jacket"),
}


def filter_phrase(constraint: Constraint) -> str:
    """A structured filter as words, e.g. "a woman", "no backpack", "red upper clothing"."""
    if constraint.kind == "colour":
        return f"{'' if constraint.positive else 'no '}{constraint.name} {constraint.part} clothing"
    yes, no = _FILTER_PHRASES[constraint.name]
    return yes if constraint.positive else no


def text_query(text: str | None = None, filters: Mapping[str, object] | None = None) -> TextQuery:
    """The TextQuery of free `text` (parse_description), structured attribute `filters` (query_from_fields,
    e.g. {"male": False, "upper_colour": "red"}), or both: their constraints together, the text's ignored
    words kept. The query's text is the sentence the judge is asked about: the free text, then the filters
    in words. QueryError (an InvalidInputError) says what is wrong with either."""
    filters = {k: v for k, v in (filters or {}).items() if v is not None}
    if text is None and not filters:
        raise InvalidInputError("text search: expected a description or at least one attribute filter, got neither")
    free = parse_description(text) if text is not None else None
    if not filters:
        assert free is not None
        return free
    structured = query_from_fields(filters)
    words = ", ".join(filter_phrase(c) for c in structured.constraints)
    if free is None:
        return TextQuery(text=words, constraints=structured.constraints, ignored=())
    return TextQuery(text=f"{free.text.strip()}; {words}", constraints=free.constraints + structured.constraints,
                     ignored=free.ignored)


@dataclass(frozen=True)
class TextScores:
    """Stage two of one text search: per hit the judge's raw score (None: not judged) and the fused score."""

    judge_scores: list[float | None]
    scores: list[float | None]
    notes: list[str]


def judge_descriptions(judge: object | None, query: TextQuery, jpegs: Sequence[bytes],
                       text_scores: Sequence[float | None], stage1_weight: float) -> TextScores:
    """(worker thread) The judge's text mode on each hit's crop (`jpegs`), fused with the edges' `text_scores`;
    unjudged hits keep their stage-one score."""
    notes = [UNCALIBRATED_NOTE]
    judged: list[float | None] = [None] * len(jpegs)
    if judge is None:
        notes.append("no judge at this hub: hits are in the edges' stage-one order")
    elif not getattr(judge, "supports_text", False):
        reason = getattr(judge, "text_unsupported_reason", "it cannot read a description")
        notes.append(f"the {getattr(judge, 'name', 'hub') or 'hub'} judge cannot confirm a description ({reason}): "
                     "hits keep the edges' stage-one order")
    elif jpegs:
        try:
            images = [codec.jpeg_to_image(jpeg) for jpeg in jpegs]
            mu = np.asarray(judge.score_text(query.text, images), np.float64)  # type: ignore[attr-defined]
            judged = [float(1.0 - m) for m in mu]
        except CrossviewError as exc:
            log.warning("text search: the judge failed: %s", exc)
            notes.append(f"the judge failed ({exc}): hits keep the edges' stage-one order")
    scores = [fuse_p_same(s1, s2, stage1_weight) for s1, s2 in zip(text_scores, judged, strict=True)]
    return TextScores(judged, scores, notes)


def matched_view(query: TextQuery, profile: AttributeProfile | None) -> tuple[tuple[Constraint, float], ...]:
    """Each constraint with its probability under the hit's attributes (empty when it has none)."""
    return () if profile is None else tuple(matched_constraints(query, profile))


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
