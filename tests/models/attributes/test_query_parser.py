"""The description parser and the structured (UI / REST) form: input → constraints, ignored, error."""

from __future__ import annotations

import pytest

from models.attributes.query import QueryError, parse_description, query_from_fields
from models.errors import CrossviewError

A = "attribute"


def _short(text: str) -> tuple[set[str], tuple[str, ...]]:
    query = parse_description(text)
    return {c.describe() for c in query.constraints}, query.ignored


@pytest.mark.parametrize(
    ("text", "constraints", "ignored"),
    [
        ("red jacket", {"upper red", "coat_jacket"}, ()),
        ("blue jeans", {"lower blue", "long_trousers"}, ()),
        ("no backpack", {"not backpack"}, ()),
        ("without a bag", {"not bag"}, ()),
        ("without a bag or backpack", {"not bag", "not backpack"}, ()),
        ("woman", {"not male"}, ()),
        ("Female", {"not male"}, ()),
        ("a girl", {"not male"}, ()),
        ("lady", {"not male"}, ()),
        ("man", {"male"}, ()),
        ("long hair", {"long_hair"}, ()),
        ("short hair", {"not long_hair"}, ()),
        ("shorts", {"not long_trousers"}, ()),
        ("black skirt", {"lower black", "not long_trousers"}, ()),
        ("green dress", {"upper green", "lower green", "not long_trousers"}, ()),
        ("white t-shirt", {"upper white", "not long_sleeves"}, ()),
        ("short sleeves", {"not long_sleeves"}, ()),
        ("red long-sleeved top", {"upper red", "long_sleeves"}, ()),
        ("hat", {"hat"}, ()),
        ("baseball cap", {"hat"}, ()),
        ("gray hoodie, navy pants", {"upper grey", "lower blue", "long_trousers"}, ()),
        ("maroon sweater", {"upper red"}, ()),
        ("woman, red top, black trousers, backpack",
         {"not male", "upper red", "lower black", "long_trousers", "backpack"}, ()),
        ("a man wearing a light blue shirt and dark trousers with a backpack",
         {"male", "upper blue", "long_trousers", "backpack"}, ()),
        ("no red jacket", {"not upper red"}, ()),
        ("man in red", {"male"}, ("colour with no garment: 'red'",)),
        ("red backpack", {"backpack"}, ("colour with no garment: 'red'",)),
        ("woman with glasses", {"not male"}, ("glasses",)),
        ("tall man, glasses, hat", {"male", "hat"}, ("tall", "glasses")),
    ],
)
def test_parser_table(text: str, constraints: set[str], ignored: tuple[str, ...]) -> None:
    assert _short(text) == (constraints, ignored)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "expected some words, got empty text"),
        ("   ", "expected some words, got empty text"),
        ("glasses", "no known word in 'glasses' (ignored: glasses): understood words are man, woman"),
        ("red", "no known word in 'red' (ignored: colour with no garment: 'red')"),
        ("man " * 300, "expected at most 1000 characters, got 1200"),
        (None, "description: expected a string, got NoneType"),
    ],
)
def test_parser_errors(text: object, error: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_description(text)  # type: ignore[arg-type]
    assert error in str(info.value)
    assert isinstance(info.value, CrossviewError) and "\n" not in str(info.value)


def test_parser_is_deterministic_and_keeps_sources() -> None:
    text = "woman in a red jacket, no hat"
    first = parse_description(text)
    assert first == parse_description(text)
    sources = {c.describe(): c.source for c in first.constraints}
    assert sources == {"not male": "woman", "upper red": "red jacket", "coat_jacket": "red jacket",
                       "not hat": "no hat"}
    assert first.text == text


def test_structured_form() -> None:
    query = query_from_fields({"male": False, "backpack": True, "upper_colour": "red", "lower_colour": "Gray",
                               "long_hair": True, "hat": None})
    assert {c.describe() for c in query.constraints} == {"not male", "backpack", "long_hair", "upper red",
                                                         "lower grey"}
    assert query.ignored == ()
    assert all(c.kind == A or c.part in ("upper", "lower") for c in query.constraints)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"male": False, "glasses": True}, "unknown keys glasses"),
        ({"upper_colour": "teal"}, "unknown colour 'teal'"),
        ({"male": "yes"}, "expected true, false or null, got 'yes'"),
        ({"male": None}, "expected at least one attribute or colour"),
        ({}, "expected at least one attribute or colour"),
        (["male"], "expected a mapping, got list"),
    ],
)
def test_structured_form_errors(fields: object, error: str) -> None:
    with pytest.raises(QueryError) as info:
        query_from_fields(fields)  # type: ignore[arg-type]
    assert error in str(info.value)


def test_combining_a_description_with_filters() -> None:
    from models.attributes.query import combine_queries

    typed = parse_description("woman with glasses, red top")
    filters = query_from_fields({"male": False, "backpack": True})
    both = combine_queries(typed, filters)
    assert [c.describe() for c in both.constraints] == ["not male", "upper red", "backpack"]
    assert both.ignored == ("glasses",) and both.text == f"{typed.text}; {filters.text}"
    with pytest.raises(QueryError, match="expected at least one query"):
        combine_queries()
    with pytest.raises(QueryError, match="expected TextQuery items, got str"):
        combine_queries(typed, "hat")  # type: ignore[arg-type]
