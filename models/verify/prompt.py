"""The MUSE-style "same person?" prompt every judge backend renders (docs/architecture.md §2, stage two).

One chat turn made of five parts, in this order:

1. a short task statement (an expert comparing two photos of people),
2. ``"Query:"`` and the query image,
3. ``"Candidate:"`` and the candidate image (both resized to the same small size, 280×140 h×w),
4. the rule: judge by body shape, clothing and carried objects, never by background, pose,
   lighting or camera angle,
5. ``"Answer Yes or No."``

The wording lives here once; ``transformers_judge`` turns the parts into a chat template's
``{"type": "image"}`` entries and ``openai_judge`` into ``image_url`` data URLs, so both backends ask
exactly the same question. The answer read back is the first token: "Yes" (same person) or "No".

Text mode (a search by description, issue 15) asks about one photo against a sentence:
`text_prompt_parts(description)` is a task statement, ``"Photo:"`` and the image (slot "photo"), the
same rule, and "Does the person in the photo match this description: <description>? Answer Yes or
No." Yes means "matches", so μ = P(No) reads as P(does not match).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from models.errors import InvalidInputError
from models.types import check_bgr_image

#: (height, width) every image is resized to before it reaches the model
DEFAULT_IMAGE_HW: tuple[int, int] = (280, 140)

TASK = (
    "You are an expert in person re-identification. You are shown two photos of people, "
    "possibly taken by different cameras at different times. Decide whether they show the same person."
)
QUERY_LABEL = "Query:"
CANDIDATE_LABEL = "Candidate:"
RULE = (
    "Judge only by body shape, clothing and carried objects. "
    "Never judge by background, pose, lighting or camera angle."
)
QUESTION = "Are the query and the candidate the same person? Answer Yes or No."
TEXT_TASK = (
    "You are an expert in person re-identification. You are shown one photo of a person "
    "and a witness's description of someone."
)
PHOTO_LABEL = "Photo:"
TEXT_QUESTION = "Does the person in the photo match this description: {description}? Answer Yes or No."
#: longest description sentence put into a prompt (the hub's parser refuses longer texts before this)
MAX_DESCRIPTION_CHARS = 1000

YES = "Yes"
NO = "No"


@dataclass(frozen=True)
class Part:
    """One piece of the user turn: a text, or a slot for the query or candidate image."""

    kind: Literal["text", "image"]
    text: str = ""
    image: Literal["query", "candidate", "photo", ""] = ""


#: the user turn, in order; renderers substitute the two image slots
PROMPT_PARTS: tuple[Part, ...] = (
    Part("text", TASK),
    Part("text", QUERY_LABEL),
    Part("image", image="query"),
    Part("text", CANDIDATE_LABEL),
    Part("image", image="candidate"),
    Part("text", RULE),
    Part("text", QUESTION),
)


def description_sentence(text: str) -> str:
    """A description as it goes into the text question: whitespace collapsed, trailing punctuation
    dropped (the question adds its own "?"); InvalidInputError when empty or over MAX_DESCRIPTION_CHARS."""
    if not isinstance(text, str):
        raise InvalidInputError(f"description: expected a string, got {type(text).__name__}")
    sentence = " ".join(text.split()).rstrip(" .?!;,")
    if not sentence:
        raise InvalidInputError("description: expected some words, got an empty text")
    if len(sentence) > MAX_DESCRIPTION_CHARS:
        raise InvalidInputError(f"description: expected at most {MAX_DESCRIPTION_CHARS} characters, "
                                f"got {len(sentence)}")
    return sentence


def text_prompt_parts(description: str) -> tuple[Part, ...]:
    """The text-vs-image turn for one description (see the module docstring)."""
    question = TEXT_QUESTION.format(description=description_sentence(description))
    return (Part("text", TEXT_TASK), Part("text", PHOTO_LABEL), Part("image", image="photo"),
            Part("text", RULE), Part("text", question))


def prompt_text(image_marker: str = "<image>", parts: Sequence[Part] = PROMPT_PARTS) -> str:
    """The whole turn as one string with `image_marker` where each image goes (for logs and docs)."""
    return "\n".join(p.text if p.kind == "text" else image_marker for p in parts)


def chat_content(image_entry: Callable[[str], dict], parts: Sequence[Part] = PROMPT_PARTS) -> list[dict]:
    """The user turn as chat-message content: text entries and one `image_entry(slot)` per image.

    Adjacent texts are joined by newlines and every image sits on its own line, so templates that
    concatenate content entries (Qwen's do) still read "...person.\\nQuery:<image>\\nCandidate:...".
    `slot` is "query" or "candidate" (or "photo" in `text_prompt_parts`).
    """
    content: list[dict] = []
    pending: list[str] = []
    for part in parts:
        if part.kind == "text":
            pending.append(part.text)
            continue
        text = "\n".join(pending)
        lead = "\n" if content else ""
        content.append({"type": "text", "text": lead + text})
        content.append(image_entry(part.image))
        pending = []
    content.append({"type": "text", "text": "\n" + "\n".join(pending)})
    return content


def check_image_hw(image_hw: tuple[int, int] | None,
                   error: type[Exception] = InvalidInputError) -> tuple[int, int] | None:
    """Validate a (height, width) resize target; ``None`` means "keep each image's own size"."""
    if image_hw is None:
        return None
    if (not isinstance(image_hw, Sequence) or len(image_hw) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 14 for v in image_hw)):
        raise error(f"image_hw: expected (height, width) ints >= 14 or None, got {image_hw!r}")
    return int(image_hw[0]), int(image_hw[1])


def resize_bgr(image: np.ndarray, image_hw: tuple[int, int] | None) -> np.ndarray:
    """A BGR uint8 crop resized to `image_hw` (area filter when shrinking), or unchanged for None."""
    if image_hw is None:
        return image
    height, width = image_hw
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] * image.shape[1] > height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def to_model_rgb(image: np.ndarray, image_hw: tuple[int, int] | None = DEFAULT_IMAGE_HW) -> np.ndarray:
    """A BGR uint8 crop as the contiguous RGB uint8 (H, W, 3) image a multimodal model is shown."""
    return np.ascontiguousarray(cv2.cvtColor(resize_bgr(image, image_hw), cv2.COLOR_BGR2RGB))


def validate_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Check every (query, candidate) pair up front; the error names the pair and the side."""
    if isinstance(pairs, np.ndarray):
        raise InvalidInputError(
            f"pairs: expected a sequence of (query, candidate) image tuples, got an array of shape {pairs.shape}"
        )
    for index, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidInputError(f"pair {index}: expected a (query, candidate) tuple, got {type(pair).__name__}")
        for side, image in zip(("query", "candidate"), pair, strict=True):
            _validate_image(f"pair {index} {side}", image)


def validate_images(images: Sequence[np.ndarray]) -> None:
    """Check every photo of a text-mode call up front; the error names the photo."""
    if isinstance(images, np.ndarray):
        raise InvalidInputError(f"images: expected a sequence of BGR images, got an array of shape {images.shape}")
    for index, image in enumerate(images):
        _validate_image(f"image {index}", image)


def _validate_image(where: str, image: object) -> None:
    check_bgr_image(where, image)
    if image.dtype != np.uint8:
        raise InvalidInputError(f"{where}: expected dtype uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"{where}: expected a non-empty image, got shape {image.shape}")
