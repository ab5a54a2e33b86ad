"""Stage two: judges that confirm (query crop, candidate crop) pairs, and μ-distance fusion.

    >>> from models.verify import create_judge, fuse_and_rerank, decide
    >>> judge = create_judge("reid")                                         # doctest: +SKIP
    >>> judge = create_judge("transformers", model="Qwen/Qwen2-VL-2B-Instruct")  # doctest: +SKIP
    >>> judge = create_judge("openai", base_url="http://gpu:8000/v1", model="Qwen2-VL-7B")  # doctest: +SKIP
    >>> mu = judge.score_shortlist(query_crop, candidate_crops)   # (K,) μ = P(different)  # doctest: +SKIP

Every judge returns μ in [0, 1] per pair; `fusion` mixes μ into the distance matrix and re-ranks.
A judge module (and its library: transformers/torch, openvino, ...) is imported only when that
judge is asked for.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from models.verify.base import (
    Judge,
    JudgeConfigError,
    JudgeError,
    JudgeResult,
    JudgeServerError,
    JudgeTimeoutError,
    TextNotSupportedError,
    mu_from_yes_no,
)
from models.verify.fusion import (
    CONFIRMED,
    NEW_IDENTITY,
    REJECTED,
    Decision,
    Outcome,
    decide,
    fuse_and_rerank,
    fuse_mu,
    shortlist_indices,
)

#: judge name -> "module:Class", imported on first use
JUDGES: dict[str, str] = {
    "transformers": "models.verify.transformers_judge:TransformersJudge",
    "transformers-fast": "models.verify.fast_judge:FastTransformersJudge",
    "openai": "models.verify.openai_judge:OpenAIJudge",
    "reid": "models.verify.reid_judge:ReidJudge",
}


def judge_class(name: str) -> type[Judge]:
    """The Judge subclass registered as `name` (imports its module, not its heavy library)."""
    try:
        target = JUDGES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), JUDGES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise JudgeConfigError(f"unknown judge {name!r}; valid judges: {', '.join(JUDGES)}{hint}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_judge(name: str, **kwargs: Any) -> Judge:
    """Build judge `name` with its keyword arguments (see each class for them).

    - "transformers": ``model`` (folder or hub id), ``device``, ``dtype``, ``batch_size``, ``swap``, ...
      ``adapter`` (a LoRA folder written by ``crossview train judge``)
    - "transformers-fast": the same options and μ, each image encoded once, candidates' vision features
      cached, the prompt prefix's KV shared (``cache_images``, ``share_prefix``; issue 13)
    - "openai": ``base_url``, ``model``, ``api_key``, ``timeout_s``, ``max_retries``, ``concurrency``, ...
    - "reid": ``models`` (default Intel 0277 + 0286), ``runtime``, ``batch_size``, ...
    """
    cls = judge_class(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:  # a missing or unknown option: say which, before anything is loaded
        raise JudgeConfigError(f"judge {name!r}: {exc}") from None
    return cls(**kwargs)


__all__ = [
    "CONFIRMED", "JUDGES", "NEW_IDENTITY", "REJECTED", "Decision", "Judge", "JudgeConfigError", "JudgeError",
    "JudgeResult", "JudgeServerError", "JudgeTimeoutError", "Outcome", "TextNotSupportedError", "create_judge",
    "decide", "fuse_and_rerank", "fuse_mu", "judge_class", "mu_from_yes_no", "shortlist_indices",
]
