"""The one interface every judge implements: μ = P(different person) for (query, candidate) pairs.

A judge is stage two of docs/architecture.md §2. Given pairs of BGR uint8 person crops it returns one float per
pair, μ in [0, 1]: 0 means "certainly the same person", 1 "certainly different". μ is what
`models.verify.fusion` mixes into the distance matrix as ``d' = (1-α)·d + α·2μ``.

A backend implements `_score(pairs)` only. Validation, the empty case, optional swapped-order
averaging (both orders go to the backend in one call, so they share its batches) and clipping live
here once.

Text mode (search by description): a judge that can read (`supports_text`) also implements
`_score_text(description, images)`; `score_text` returns μ = P(the photo does not match the
description) per image. A judge that cannot read says why in `text_unsupported_reason`, and
`score_text` raises `TextNotSupportedError` with it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from models.errors import CrossviewError, InvalidInputError
from models.verify.prompt import description_sentence, validate_images, validate_pairs

Pair = tuple[np.ndarray, np.ndarray]


class JudgeError(CrossviewError):
    """A judge could not produce a score (the model or server failed, or answered nonsense)."""


class JudgeConfigError(JudgeError, ValueError):
    """A judge was built with an unknown name or an invalid option."""


class JudgeServerError(JudgeError):
    """A judge server answered with an error status or a body that is not the expected shape."""


class JudgeTimeoutError(JudgeError, TimeoutError):
    """A judge server did not answer within the timeout, after all retries."""


class TextNotSupportedError(JudgeError):
    """A judge was asked to score a description but cannot read text (e.g. the `reid` judge)."""


def mu_from_yes_no(yes: float | np.ndarray, no: float | np.ndarray) -> np.ndarray:
    """μ = softmax([no, yes])[no] = sigmoid(no - yes), from logits or log-probabilities of the two tokens.

    Log-probabilities give the same μ as logits: the normalising constant cancels.
    """
    diff = np.asarray(no, dtype=np.float64) - np.asarray(yes, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * diff))  # numerically stable sigmoid


@dataclass(frozen=True)
class JudgeResult:
    """The judge's answer for one short list: μ per candidate and a threshold for "same person".

    >>> r = JudgeResult(np.array([0.8, 0.1, 0.4], np.float32))
    >>> r.best, r.same.tolist()
    (1, [False, True, True])
    """

    mu: np.ndarray
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.mu, np.ndarray) or self.mu.ndim != 1:
            shape = getattr(self.mu, "shape", type(self.mu).__name__)
            raise InvalidInputError(f"mu: expected a 1-D numpy array, got {shape}")
        if not (0.0 <= float(self.threshold) <= 1.0):
            raise InvalidInputError(f"threshold: expected a number in [0, 1], got {self.threshold!r}")

    @property
    def same(self) -> np.ndarray:
        """Boolean per candidate: μ below the threshold, i.e. judged the same person."""
        return self.mu < self.threshold

    @property
    def best(self) -> int | None:
        """Index of the candidate with the lowest μ (first on ties), or None for an empty list."""
        return int(np.argmin(self.mu)) if len(self.mu) else None

    @property
    def best_mu(self) -> float:
        return float(self.mu[self.best]) if len(self.mu) else math.nan

    @property
    def confirmed(self) -> int | None:
        """Index of the best candidate when it is judged the same person, else None."""
        best = self.best
        return best if best is not None and self.mu[best] < self.threshold else None


class Judge(ABC):
    """Scores (query crop, candidate crop) pairs: μ = P(different) in [0, 1] per pair.

    >>> judge = create_judge("reid")                              # doctest: +SKIP
    >>> judge.score_shortlist(query_crop, [crop_a, crop_b])       # doctest: +SKIP
    array([0.12, 0.47], dtype=float32)
    """

    #: registry name in `models.verify.JUDGES`
    name: ClassVar[str] = ""
    #: whether `score_text` works: the judge reads a description against one photo
    supports_text: ClassVar[bool] = False
    #: why not, when it does not (shown to operators next to a text search's results)
    text_unsupported_reason: ClassVar[str] = "this judge compares photos only and cannot read a description"

    def __init__(self, *, swap: bool = False) -> None:
        if not isinstance(swap, bool):
            raise JudgeConfigError(f"swap: expected a bool, got {swap!r}")
        #: average μ(query, candidate) with μ(candidate, query) (the MLLM is not order-invariant)
        self.swap = swap

    @abstractmethod
    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        """μ for each of the (already validated, non-empty) pairs, shape (len(pairs),)."""

    def score_pairs(self, pairs: Sequence[Pair]) -> np.ndarray:
        """(N,) float32 μ in [0, 1] for N (query, candidate) BGR uint8 image pairs of any sizes."""
        validate_pairs(pairs)
        pairs = [(q, c) for q, c in pairs]
        if not pairs:
            return np.zeros((0,), np.float32)
        if self.swap:
            both = self._checked(self._score_both_orders(pairs), 2 * len(pairs))
            mu = 0.5 * (both[: len(pairs)] + both[len(pairs):])
        else:
            mu = self._checked(self._score(pairs), len(pairs))
        return np.clip(mu, 0.0, 1.0).astype(np.float32)

    def _score_both_orders(self, pairs: list[Pair]) -> np.ndarray:
        """μ of `pairs`, then of the same pairs swapped (`swap`); a judge that can share work between the
        two orders (e.g. which image is the gallery's) overrides it."""
        return self._score(pairs + [(c, q) for q, c in pairs])

    def _score_text(self, description: str, images: Sequence[np.ndarray]) -> np.ndarray:
        """μ per (already validated, non-empty) image against the checked description sentence."""
        raise TextNotSupportedError(f"judge {self.fingerprint!r}: {self.text_unsupported_reason}")

    def score_text(self, description: str, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) float32 μ = P(does not match) in [0, 1] of N BGR uint8 photos against one description.

        TextNotSupportedError for a judge that cannot read; InvalidInputError for an empty or too long
        description or a bad image."""
        if not self.supports_text:
            raise TextNotSupportedError(f"judge {self.fingerprint!r}: {self.text_unsupported_reason}")
        sentence = description_sentence(description)
        validate_images(images)
        images = list(images)
        if not images:
            return np.zeros((0,), np.float32)
        mu = self._checked(self._score_text(sentence, images), len(images))
        return np.clip(mu, 0.0, 1.0).astype(np.float32)

    def score_shortlist(self, query: np.ndarray, candidates: Sequence[np.ndarray]) -> np.ndarray:
        """(K,) float32 μ of one query crop against each of K candidate crops."""
        return self.score_pairs([(query, candidate) for candidate in candidates])

    @property
    def fingerprint(self) -> str:
        """Names what produces this judge's μ (its calibration is fitted per fingerprint)."""
        return self.name or type(self).__name__

    def candidate_mu(self, query_crops: Sequence[np.ndarray], references: Sequence[Sequence[np.ndarray]], *,
                     max_query_crops: int = 3, max_reference_crops: int = 4) -> list[float]:
        """μ per candidate of one short list, from one `score_pairs` call: every (query crop, reference
        crop) pair is scored and a candidate's μ is the smallest, over its reference crops, of the mean
        over the query crops (a person is confirmed by their best-matching reference photo). NaN for a
        candidate without reference crops (or no query crop)."""
        queries = list(query_crops[:max_query_crops])
        pairs: list[Pair] = []
        spans: list[tuple[int, int]] = []
        for refs in references:
            refs = list(refs[:max_reference_crops])
            spans.append((len(pairs), len(refs)))
            pairs += [(q, r) for r in refs for q in queries]
        mu = np.asarray(self.score_pairs(pairs), dtype=np.float64) if pairs else np.zeros(0)
        out = []
        for start, n_refs in spans:
            if n_refs == 0 or not queries:
                out.append(math.nan)
                continue
            block = mu[start:start + n_refs * len(queries)].reshape(n_refs, len(queries))
            out.append(float(block.mean(axis=1).min()))
        return out

    def judge_shortlist(self, query: np.ndarray, candidates: Sequence[np.ndarray],
                        threshold: float = 0.5) -> JudgeResult:
        """`score_shortlist` wrapped in a `JudgeResult` (best candidate, same-person flags)."""
        return JudgeResult(self.score_shortlist(query, candidates), threshold)

    def _checked(self, mu: Any, count: int) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64).reshape(-1)
        if mu.shape != (count,):
            raise JudgeError(f"{type(self).__name__} returned {mu.shape[0]} scores for {count} pairs")
        if not np.all(np.isfinite(mu)):
            raise JudgeError(f"{type(self).__name__} returned a NaN or infinite score")
        return mu

    def close(self) -> None:  # noqa: B027 - optional hook; judges holding threads or sockets override it
        """Release threads, connections or device memory held by the judge."""

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
