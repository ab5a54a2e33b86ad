"""A deterministic parser from an operator's English description to attribute constraints.

    parse_description("woman, red top, black trousers, no backpack")
      -> male (negative), upper red, lower black + long_trousers, backpack (negative)

Rules, in the order the words come:
- A colour waits for the next garment word; the garment names the body part ("top", "shirt",
  "jacket", "coat", "sweater", "hoodie" → upper; "trousers", "pants", "jeans", "shorts", "skirt" →
  lower; "dress" → both, since a dress covers both). A colour that meets no garment (end of text,
  or another kind of word first, as in "red backpack") is not guessed onto a part: it is reported
  in `ignored` as "colour with no garment: 'red'", so the operator sees it was not used.
- "no", "not", "without" negate the next thing named; "or"/"nor" right after carry the negation on
  ("without a bag or backpack"). A negated colour-and-garment ("no red jacket") negates the colour
  only: "not (red and jacket)" cannot be written as a conjunction of constraints, and "not red on
  top" is the part an operator can act on.
- "skirt" and "dress" mean long_trousers negative: the attribute model's long_trousers means long
  trousers, and a skirt or a dress is not that (Market-1501's labels also count them as not pants).
- Stop-words ("a", "the", "with", "wearing", ",", ...), shade words ("light", "dark") and a garment
  that asserts nothing by itself ("top" in "long-sleeved top") are silently fine; any other
  unknown word is reported in `ignored`, never dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, Constraint, TextQuery
from models.errors import InvalidInputError

MAX_TEXT_CHARS = 1000


class QueryError(InvalidInputError):
    """A description or a structured query that cannot be searched for; the message says why."""


@dataclass(frozen=True)
class _Word:
    attributes: tuple[tuple[str, bool], ...] = ()  # (attribute, positive) this word asserts
    parts: tuple[str, ...] = ()  # body parts a colour before this word applies to (a garment)


_UPPER, _LOWER = ("upper",), ("lower",)
_LEXICON: dict[tuple[str, ...], _Word] = {}


def _add(words: str, attributes: tuple[tuple[str, bool], ...] = (), parts: tuple[str, ...] = ()) -> None:
    for phrase in words.split(","):
        _LEXICON[tuple(phrase.split())] = _Word(attributes, parts)


_add("man,men,male,boy,guy,gentleman", (("male", True),))
_add("woman,women,female,girl,lady,ladies", (("male", False),))
_add("bag,bags,handbag,purse,shoulder bag,hand bag,tote", (("bag", True),))
_add("backpack,backpacks,rucksack,knapsack", (("backpack", True),))
_add("hat,hats,cap,caps,beanie,baseball cap", (("hat", True),))
_add("long hair,long haired", (("long_hair", True),))
_add("short hair,short haired,bald", (("long_hair", False),))
_add("long sleeves,long sleeve,long sleeved", (("long_sleeves", True),), _UPPER)
_add("short sleeves,short sleeve,short sleeved,sleeveless,t shirt,tshirt,tee,tee shirt,tank top,"
     "polo", (("long_sleeves", False),), _UPPER)
_add("jacket,jackets,coat,coats,blazer,parka,anorak,windbreaker", (("coat_jacket", True),), _UPPER)
_add("top,tops,shirt,shirts,blouse,sweater,jumper,hoodie,sweatshirt,pullover,cardigan,vest", (), _UPPER)
_add("trousers,pants,jeans,slacks,leggings,chinos,long trousers,long pants,denim",
     (("long_trousers", True),), _LOWER)
_add("shorts,short pants,short trousers,skirt,skirts,miniskirt", (("long_trousers", False),), _LOWER)
_add("dress,dresses", (("long_trousers", False),), ("upper", "lower"))

_COLOURS: dict[str, str] = {name: name for name in COLOUR_NAMES}
_COLOURS.update({
    "gray": "grey", "silver": "grey", "charcoal": "grey",
    "navy": "blue", "cyan": "blue", "turquoise": "blue", "denim-blue": "blue",
    "maroon": "red", "burgundy": "red", "crimson": "red", "scarlet": "red",
    "beige": "brown", "tan": "brown", "khaki": "brown", "camel": "brown",
    "violet": "purple", "lilac": "purple", "lavender": "purple",
    "magenta": "pink", "gold": "yellow", "golden": "yellow", "cream": "white", "olive": "green",
})
_NEGATORS = frozenset({"no", "not", "without", "non", "never", "nothing"})
_CONTINUE_NEGATION = frozenset({"or", "nor"})
_STOP_WORDS = frozenset({
    "a", "an", "the", "with", "and", "in", "on", "of", "or", "nor", "wearing", "wears", "wear", "worn",
    "dressed", "carrying", "carries", "carry", "having", "has", "have", "is", "are", "was", "who",
    "person", "people", "someone", "somebody", "pedestrian", "her", "his", "their", "its", "some", "pair",
    "light", "dark", "bright", "pale", "deep", "coloured", "colored", "clothes", "clothing", "also",
    "plus", "but", "walking", "standing"
})
_MAX_PHRASE = max(len(phrase) for phrase in _LEXICON)

UNDERSTOOD = ("man, woman, bag, backpack, hat/cap, long/short hair, long/short sleeves, t-shirt, "
              "jacket, coat, top, shirt, sweater, hoodie, trousers, pants, jeans, shorts, skirt, dress, "
              f"no/without, and the colours {', '.join(COLOUR_NAMES)}")


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))


def _key(constraint: Constraint) -> tuple[str, str, str | None, bool]:
    return constraint.kind, constraint.name, constraint.part, constraint.positive


def parse_description(text: str) -> TextQuery:
    """Parse free English into a TextQuery; raises QueryError when nothing searchable is found."""
    if not isinstance(text, str):
        raise QueryError(f"description: expected a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise QueryError(f"description: expected at most {MAX_TEXT_CHARS} characters, got {len(text)}")
    if not text.strip():
        raise QueryError("description: expected some words, got empty text")
    tokens = _tokens(text)
    constraints: list[Constraint] = []
    ignored: list[str] = []
    pending: list[tuple[str, str]] = []  # (colour, word as written) waiting for a garment
    negate: str | None = None  # the negating word, until the next thing named
    negated_last = False
    i = 0

    def drop_pending() -> None:
        for _, word in pending:
            ignored.append(f"colour with no garment: {word!r}")
        pending.clear()

    def add(constraint: Constraint) -> None:
        if _key(constraint) not in {_key(c) for c in constraints}:
            constraints.append(constraint)

    while i < len(tokens):
        token = tokens[i]
        phrase = next((tuple(tokens[i:i + n]) for n in range(_MAX_PHRASE, 0, -1)
                       if tuple(tokens[i:i + n]) in _LEXICON), None)
        if phrase is not None:
            word = _LEXICON[phrase]
            words = " ".join(phrase)
            source = " ".join(([negate] if negate else []) + [w for _, w in pending] + [words])
            if word.parts and pending:
                for colour, _ in pending:
                    for part in word.parts:
                        add(Constraint("colour", colour, part, negate is None, source))
                if negate is None:
                    for name, positive in word.attributes:
                        add(Constraint("attribute", name, None, positive, source))
                pending.clear()
            else:
                drop_pending()
                for name, positive in word.attributes:
                    add(Constraint("attribute", name, None, positive if negate is None else not positive, source))
            negated_last, negate = negate is not None, None
            i += len(phrase)
            continue
        i += 1
        if token in _COLOURS:
            pending.append((_COLOURS[token], token))
        elif token in _NEGATORS or (token in _CONTINUE_NEGATION and negated_last):
            negate = token
        elif token in _STOP_WORDS or token.isdigit():
            continue
        else:
            ignored.append(token)
        negated_last = False
    drop_pending()
    if not constraints:
        reason = f" (ignored: {', '.join(ignored)})" if ignored else ""
        raise QueryError(f"no known word in {text.strip()!r}{reason}: understood words are {UNDERSTOOD}")
    return TextQuery(text=text, constraints=tuple(constraints), ignored=tuple(ignored))


_COLOUR_FIELDS = {"upper_colour": "upper", "lower_colour": "lower", "upper_color": "upper", "lower_color": "lower"}


def query_from_fields(fields: Mapping[str, object]) -> TextQuery:
    """The structured form the UI's filters and REST send, e.g.
    {"male": False, "backpack": True, "upper_colour": "red", "lower_colour": "black"}.

    Attribute keys take true/false (null: no constraint); colour keys take a colour name or a synonym
    ("gray", "navy"), or null. Unknown keys or colours raise QueryError naming them."""
    if not isinstance(fields, Mapping):
        raise QueryError(f"attribute filters: expected a mapping, got {type(fields).__name__}")
    unknown = sorted(str(key) for key in fields if key not in ATTRIBUTE_NAMES and key not in _COLOUR_FIELDS)
    if unknown:
        raise QueryError(f"attribute filters: unknown keys {', '.join(unknown)}; expected "
                         f"{', '.join(ATTRIBUTE_NAMES)}, upper_colour, lower_colour")
    constraints: list[Constraint] = []
    for name in ATTRIBUTE_NAMES:
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise QueryError(f"attribute filter {name!r}: expected true, false or null, got {value!r}")
        constraints.append(Constraint("attribute", name, None, value, name if value else f"no {name}"))
    for key, part in _COLOUR_FIELDS.items():
        value = fields.get(key)
        if value is None:
            continue
        colour = _COLOURS.get(value.strip().lower()) if isinstance(value, str) else None
        if colour is None:
            raise QueryError(f"attribute filter {key!r}: unknown colour {value!r}; expected one of "
                             f"{', '.join(COLOUR_NAMES)}")
        constraints.append(Constraint("colour", colour, part, True, f"{part} {value}"))
    if not constraints:
        raise QueryError("attribute filters: expected at least one attribute or colour, got none")
    text = ", ".join(c.source for c in constraints)
    return TextQuery(text=text, constraints=tuple(constraints), ignored=())


def combine_queries(*queries: TextQuery) -> TextQuery:
    """One query from several (e.g. a typed description and the UI's filters): constraints in order,
    a repeat (same kind, name, part, polarity) kept once, with its first source; texts joined with
    "; "; ignored words kept."""
    if not queries:
        raise QueryError("combine_queries: expected at least one query, got none")
    for query in queries:
        if not isinstance(query, TextQuery):
            raise QueryError(f"combine_queries: expected TextQuery items, got {type(query).__name__}")
    constraints: list[Constraint] = []
    for query in queries:
        for constraint in query.constraints:
            if _key(constraint) not in {_key(c) for c in constraints}:
                constraints.append(constraint)
    return TextQuery(text="; ".join(q.text for q in queries), constraints=tuple(constraints),
                     ignored=tuple(word for q in queries for word in q.ignored))
