"""AttributeProfile / TextQuery validation and their JSON round trips."""

from __future__ import annotations

import json

import pytest

from models.attributes.types import (
    ATTRIBUTE_NAMES,
    AttributeProfile,
    ColourReading,
    Constraint,
    Probabilities,
    TextQuery,
)
from models.errors import InvalidInputError

PROBS = {name: 0.1 * i for i, name in enumerate(ATTRIBUTE_NAMES)}


def _profile(**changes: object) -> AttributeProfile:
    fields = {"probabilities": PROBS, "upper": ColourReading("red", 0.8), "lower": None, "crops": 3}
    fields.update(changes)
    return AttributeProfile(**fields)  # type: ignore[arg-type]


def test_profile_round_trips_through_json_and_is_frozen_and_hashable() -> None:
    profile = _profile()
    again = AttributeProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile and hash(again) == hash(profile)
    assert isinstance(profile.probabilities, Probabilities)
    assert list(profile.probabilities) == list(ATTRIBUTE_NAMES)
    assert profile.colour("upper") == ColourReading("red", 0.8) and profile.colour("lower") is None
    with pytest.raises(AttributeError):
        profile.crops = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        profile.probabilities["male"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"probabilities": {**PROBS, "glasses": 0.5}}, "unknown ['glasses']"),
        ({"probabilities": {k: v for k, v in PROBS.items() if k != "hat"}}, "missing ['hat']"),
        ({"probabilities": {**PROBS, "male": 1.5}}, "expected a number in [0, 1], got 1.5"),
        ({"probabilities": {**PROBS, "male": float("nan")}}, "expected a number in [0, 1]"),
        ({"probabilities": {**PROBS, "male": True}}, "expected a number in [0, 1], got True"),
        ({"probabilities": [0.5] * 8}, "probabilities: expected a mapping, got list"),
        ({"upper": "red"}, "upper: expected a ColourReading or None, got str"),
        ({"crops": 0}, "crops: expected a positive integer, got 0"),
    ],
)
def test_profile_rejects_bad_fields(changes: dict, error: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as info:
        _profile(**changes)
    assert error in str(info.value)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("magenta", 0.5), "expected one of black"),
        (("red", -0.1), "expected a number in [0, 1], got -0.1"),
    ],
)
def test_colour_reading_rejects_bad_fields(args: tuple, error: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        ColourReading(*args)
    assert error in str(info.value)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("attribute", "glasses", None, True, "glasses"), "attribute: expected one of male"),
        (("attribute", "male", "upper", True, "man"), "expected part None, got 'upper'"),
        (("colour", "red", None, True, "red"), "expected part upper or lower, got None"),
        (("colour", "teal", "upper", True, "teal"), "colour: expected one of black"),
        (("shape", "red", "upper", True, "red"), "kind: expected attribute or colour"),
        (("attribute", "male", None, 1, "man"), "positive: expected a bool, got 1"),
    ],
)
def test_constraint_rejects_bad_fields(args: tuple, error: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        Constraint(*args)
    assert error in str(info.value)


def test_text_query_round_trips_and_rejects_bad_dicts() -> None:
    query = TextQuery("no backpack, red top", (Constraint("attribute", "backpack", None, False, "no backpack"),
                                               Constraint("colour", "red", "upper", True, "red top")), ("glasses",))
    assert TextQuery.from_dict(json.loads(json.dumps(query.to_dict()))) == query
    with pytest.raises(InvalidInputError, match="expected at least one constraint"):
        TextQuery("x", ())
    with pytest.raises(InvalidInputError, match="text query: expected keys"):
        TextQuery.from_dict({"text": "x", "constraints": [], "extra": 1})
    with pytest.raises(InvalidInputError, match="constraint: expected keys"):
        TextQuery.from_dict({"text": "x", "constraints": [{"kind": "attribute"}]})
    with pytest.raises(InvalidInputError, match="text query: expected a mapping, got str"):
        TextQuery.from_dict("red top")
