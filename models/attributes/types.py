"""Validated, frozen dataclasses for person attributes and text descriptions (issue 15).

An `AttributeProfile` is what the attribute model and the colour reader say about one crop (or a
tracklet's aggregated crops); a `TextQuery` is an operator's description parsed into `Constraint`s.
Both travel between edge, hub and UI, so they round-trip through JSON-safe dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from models.errors import InvalidInputError

ATTRIBUTE_NAMES = ("male", "bag", "backpack", "hat", "long_sleeves", "long_trousers", "long_hair", "coat_jacket")
COLOUR_NAMES = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
PARTS = ("upper", "lower")
CONSTRAINT_KINDS = ("attribute", "colour")


def _check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name}: expected a number in [0, 1], got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidInputError(f"{name}: expected a number in [0, 1], got {value!r}")
    return number


def _check_mapping(name: str, value: object) -> Mapping:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{name}: expected a mapping, got {type(value).__name__}")
    return value


class Probabilities(Mapping[str, float]):
    """An immutable, hashable mapping holding exactly ATTRIBUTE_NAMES → probability, in that order."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, float]) -> None:
        values = _check_mapping("probabilities", values)
        unknown = sorted(set(values) - set(ATTRIBUTE_NAMES))
        missing = [name for name in ATTRIBUTE_NAMES if name not in values]
        if unknown or missing:
            raise InvalidInputError(f"probabilities: expected exactly {', '.join(ATTRIBUTE_NAMES)}, "
                                    f"got unknown {unknown} and missing {missing}")
        self._values = tuple(_check_probability(f"probabilities[{name!r}]", values[name])
                             for name in ATTRIBUTE_NAMES)

    def __getitem__(self, key: str) -> float:
        try:
            return self._values[ATTRIBUTE_NAMES.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(ATTRIBUTE_NAMES)

    def __len__(self) -> int:
        return len(ATTRIBUTE_NAMES)

    def __hash__(self) -> int:
        return hash(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Probabilities):
            return self._values == other._values
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return f"Probabilities({dict(self)!r})"

    def as_tuple(self) -> tuple[float, ...]:
        """The probabilities in ATTRIBUTE_NAMES order."""
        return self._values


@dataclass(frozen=True)
class ColourReading:
    """A named colour read from a clothing region, with how much the region agreed on it."""

    name: str
    confidence: float

    def __post_init__(self) -> None:
        if self.name not in COLOUR_NAMES:
            raise InvalidInputError(f"colour: expected one of {', '.join(COLOUR_NAMES)}, got {self.name!r}")
        object.__setattr__(self, "confidence", _check_probability("colour confidence", self.confidence))

    def to_dict(self) -> dict:
        return {"name": self.name, "confidence": self.confidence}

    @classmethod
    def from_dict(cls, data: object) -> ColourReading:
        data = _check_mapping("colour", data)
        unknown = sorted(set(data) - {"name", "confidence"})
        if unknown or "name" not in data or "confidence" not in data:
            raise InvalidInputError(f"colour: expected keys name, confidence, got {sorted(data)}")
        return cls(name=data["name"], confidence=data["confidence"])


@dataclass(frozen=True)
class AttributeProfile:
    """One tracklet's (or crop's) attributes: a probability per ATTRIBUTE_NAMES entry, and the
    upper and lower clothing colours (None where no colour could be read)."""

    probabilities: Mapping[str, float]
    upper: ColourReading | None
    lower: ColourReading | None
    crops: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.probabilities, Probabilities):
            object.__setattr__(self, "probabilities", Probabilities(self.probabilities))
        for part in PARTS:
            value = getattr(self, part)
            if value is not None and not isinstance(value, ColourReading):
                raise InvalidInputError(f"{part}: expected a ColourReading or None, got {type(value).__name__}")
        if isinstance(self.crops, bool) or not isinstance(self.crops, int) or self.crops < 1:
            raise InvalidInputError(f"crops: expected a positive integer, got {self.crops!r}")

    def colour(self, part: str) -> ColourReading | None:
        if part not in PARTS:
            raise InvalidInputError(f"part: expected one of {', '.join(PARTS)}, got {part!r}")
        return self.upper if part == "upper" else self.lower

    def to_dict(self) -> dict:
        return {"probabilities": dict(self.probabilities),
                "upper": None if self.upper is None else self.upper.to_dict(),
                "lower": None if self.lower is None else self.lower.to_dict(),
                "crops": self.crops}

    @classmethod
    def from_dict(cls, data: object) -> AttributeProfile:
        data = _check_mapping("attribute profile", data)
        expected = {"probabilities", "upper", "lower", "crops"}
        unknown = sorted(set(data) - expected)
        if unknown or "probabilities" not in data:
            raise InvalidInputError(f"attribute profile: expected keys {sorted(expected)} "
                                    f"(crops, upper, lower optional), got {sorted(data)}")
        colours = {part: None if data.get(part) is None else ColourReading.from_dict(data[part]) for part in PARTS}
        return cls(probabilities=data["probabilities"], upper=colours["upper"], lower=colours["lower"],
                   crops=data.get("crops", 1))


@dataclass(frozen=True)
class Constraint:
    """One thing a description asks for: an attribute (part None) or a colour on a body part."""

    kind: str
    name: str
    part: str | None
    positive: bool
    source: str

    def __post_init__(self) -> None:
        if self.kind == "attribute":
            if self.name not in ATTRIBUTE_NAMES:
                raise InvalidInputError(f"attribute: expected one of {', '.join(ATTRIBUTE_NAMES)}, got {self.name!r}")
            if self.part is not None:
                raise InvalidInputError(f"attribute {self.name!r}: expected part None, got {self.part!r}")
        elif self.kind == "colour":
            if self.name not in COLOUR_NAMES:
                raise InvalidInputError(f"colour: expected one of {', '.join(COLOUR_NAMES)}, got {self.name!r}")
            if self.part not in PARTS:
                raise InvalidInputError(f"colour {self.name!r}: expected part upper or lower, got {self.part!r}")
        else:
            raise InvalidInputError(f"constraint kind: expected attribute or colour, got {self.kind!r}")
        if not isinstance(self.positive, bool):
            raise InvalidInputError(f"positive: expected a bool, got {self.positive!r}")
        if not isinstance(self.source, str):
            raise InvalidInputError(f"source: expected a string, got {type(self.source).__name__}")

    def describe(self) -> str:
        """A short human form, e.g. 'no backpack' or 'upper red'."""
        words = f"{self.part} {self.name}" if self.kind == "colour" else self.name
        return words if self.positive else f"not {words}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "part": self.part, "positive": self.positive,
                "source": self.source}

    @classmethod
    def from_dict(cls, data: object) -> Constraint:
        data = _check_mapping("constraint", data)
        keys = {"kind", "name", "part", "positive", "source"}
        if set(data) != keys:
            raise InvalidInputError(f"constraint: expected keys {sorted(keys)}, got {sorted(data)}")
        return cls(**{key: data[key] for key in keys})


@dataclass(frozen=True)
class TextQuery:
    """An operator's description: the text, the constraints understood, and the words ignored."""

    text: str
    constraints: tuple[Constraint, ...]
    ignored: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InvalidInputError(f"text: expected a string, got {type(self.text).__name__}")
        object.__setattr__(self, "constraints", tuple(self.constraints))
        object.__setattr__(self, "ignored", tuple(self.ignored))
        if not self.constraints:
            raise InvalidInputError("text query: expected at least one constraint, got none")
        for constraint in self.constraints:
            if not isinstance(constraint, Constraint):
                raise InvalidInputError(f"constraints: expected Constraint items, got {type(constraint).__name__}")
        for word in self.ignored:
            if not isinstance(word, str):
                raise InvalidInputError(f"ignored: expected strings, got {type(word).__name__}")

    def to_dict(self) -> dict:
        return {"text": self.text, "constraints": [c.to_dict() for c in self.constraints],
                "ignored": list(self.ignored)}

    @classmethod
    def from_dict(cls, data: object) -> TextQuery:
        data = _check_mapping("text query", data)
        keys = {"text", "constraints", "ignored"}
        unknown = sorted(set(data) - keys)
        if unknown or "text" not in data or "constraints" not in data:
            raise InvalidInputError(f"text query: expected keys {sorted(keys)} (ignored optional), got {sorted(data)}")
        constraints = data["constraints"]
        if not isinstance(constraints, list | tuple):
            raise InvalidInputError(f"constraints: expected a list, got {type(constraints).__name__}")
        ignored = data.get("ignored", ())
        if not isinstance(ignored, list | tuple):
            raise InvalidInputError(f"ignored: expected a list, got {type(ignored).__name__}")
        return cls(text=data["text"], constraints=tuple(Constraint.from_dict(c) for c in constraints),
                   ignored=tuple(ignored))
