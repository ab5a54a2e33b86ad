"""MLLM judge behind any OpenAI-compatible chat-completions server (vLLM, SGLang, ...).

This is how the hub scales past one GPU: run ``vllm serve Qwen/Qwen2-VL-7B-Instruct`` on as many
machines as needed behind one URL, and point this judge at it. Each pair is one request::

    POST {base_url}/chat/completions
    {"model": ..., "messages": [{"role": "user", "content": [text, image_url, text, image_url, text]}],
     "max_tokens": 1, "temperature": 0, "logprobs": true, "top_logprobs": 20}

with both images as ``data:image/jpeg;base64,...`` URLs, resized to the same small size (the prompt of
`models.verify.prompt`). Text mode (`score_text`) sends one image per request with the
description question of `models.verify.prompt.text_prompt_parts`, same body otherwise.
μ is read from the first token's ``top_logprobs``: the probabilities of the
"Yes" and "No" tokens (case and surrounding spaces ignored, variants such as " Yes" and "yes"
summed), normalised over the two, μ = P(No) / (P(No) + P(Yes)).

When only one of the two is in the top list, the other's probability is bounded by the smallest
listed probability (and by the mass left over), so that bound is used: a confident answer stays
confident instead of becoming exactly 0 or 1. When neither is present (the model answered something
else), μ is `fallback_mu` (default 0.5, "no information") and `missing_answers` counts it; with
``fallback_mu=None`` a `JudgeServerError` is raised instead.

Requests run concurrently on a thread pool (`concurrency`). Connection errors, timeouts, 429 and 5xx
are retried with exponential backoff (honouring ``Retry-After`` up to `max_backoff_s`); other 4xx
and malformed bodies fail at once with the server's message. Standard library only (``urllib``).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import cv2
import numpy as np

from models.verify.base import (
    Judge,
    JudgeConfigError,
    JudgeServerError,
    JudgeTimeoutError,
    Pair,
    mu_from_yes_no,
)
from models.verify.prompt import (
    DEFAULT_IMAGE_HW,
    NO,
    YES,
    chat_content,
    check_image_hw,
    resize_bgr,
    text_prompt_parts,
)

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIJudge(Judge):
    """Scores pairs through an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        base_url: the API root, e.g. "http://gpu-1:8000/v1" (a trailing "/chat/completions" is accepted).
        model: the served model name, as the server lists it in ``/v1/models``.
        api_key: sent as ``Authorization: Bearer ...`` when given (vLLM's ``--api-key``).
        timeout_s: per-request timeout (connect and read).
        max_retries: retries after the first attempt for connection errors, timeouts, 429 and 5xx.
        backoff_s: first retry delay; doubled each retry, with jitter, capped at `max_backoff_s`.
        concurrency: requests in flight at once.
        top_logprobs: how many alternatives the server returns for the first token (≤ 20 in OpenAI's API).
        swap: also score (candidate, query) and average the two μ.
        image_hw: (height, width) both images are resized to, or None to send them as they are.
        jpeg_quality: quality of the JPEG data URLs.
        fallback_mu: μ when neither "Yes" nor "No" is among the top tokens; None raises instead.
        extra_body: extra JSON fields merged into every request (e.g. {"seed": 0}).
    """

    name: ClassVar[str] = "openai"
    supports_text: ClassVar[bool] = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        concurrency: int = 8,
        top_logprobs: int = 20,
        swap: bool = False,
        image_hw: tuple[int, int] | None = DEFAULT_IMAGE_HW,
        jpeg_quality: int = 90,
        fallback_mu: float | None = 0.5,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(swap=swap)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise JudgeConfigError(f"base_url: expected an http(s) URL, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise JudgeConfigError(f"model: expected the served model's name, got {model!r}")
        for key, value, low in (("timeout_s", timeout_s, 1e-3), ("backoff_s", backoff_s, 0.0),
                                ("max_backoff_s", max_backoff_s, 0.0)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise JudgeConfigError(f"{key}: expected a number >= {low}, got {value!r}")
        for key, value, low in (("max_retries", max_retries, 0), ("concurrency", concurrency, 1),
                                ("top_logprobs", top_logprobs, 2), ("jpeg_quality", jpeg_quality, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise JudgeConfigError(f"{key}: expected an int >= {low}, got {value!r}")
        if fallback_mu is not None and not 0.0 <= fallback_mu <= 1.0:
            raise JudgeConfigError(f"fallback_mu: expected a number in [0, 1] or None, got {fallback_mu!r}")
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.top_logprobs = top_logprobs
        self.image_hw = check_image_hw(image_hw, JudgeConfigError)
        self.jpeg_quality = jpeg_quality
        self.fallback_mu = fallback_mu
        self.extra_body = dict(extra_body or {})
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai-judge")
        self._lock = threading.Lock()
        #: answers where neither Yes nor No was among the top tokens (scored as `fallback_mu`)
        self.missing_answers = 0
        #: retried attempts so far (errors that were retried, not failures)
        self.retries = 0

    # -- scoring ---------------------------------------------------------------------------------

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        cache: dict[int, str] = {}  # id(image) -> data URL: a shared query is encoded once
        bodies = [self._body(self._data_url(q, cache), self._data_url(c, cache)) for q, c in pairs]
        return np.array(list(self._pool.map(self._score_one, bodies)), dtype=np.float64)

    def _score_text(self, description: str, images: Sequence[np.ndarray]) -> np.ndarray:
        parts = text_prompt_parts(description)
        cache: dict[int, str] = {}
        bodies = []
        for image in images:
            url = self._data_url(image, cache)
            bodies.append(self._request(chat_content(lambda slot, url=url: {"type": "image_url",
                                                                            "image_url": {"url": url}}, parts)))
        return np.array(list(self._pool.map(self._score_one, bodies)), dtype=np.float64)

    def _data_url(self, image: np.ndarray, cache: dict[int, str]) -> str:
        key = id(image)
        if key not in cache:
            ok, jpeg = cv2.imencode(".jpg", resize_bgr(image, self.image_hw),
                                    [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise JudgeServerError("could not JPEG-encode an image for the judge request")
            cache[key] = "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")
        return cache[key]

    def _body(self, query_url: str, candidate_url: str) -> bytes:
        urls = {"query": query_url, "candidate": candidate_url}
        return self._request(chat_content(lambda slot: {"type": "image_url", "image_url": {"url": urls[slot]}}))

    def _request(self, content: list[dict]) -> bytes:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
            **self.extra_body,
        }
        return json.dumps(body).encode("utf-8")

    def _score_one(self, body: bytes) -> float:
        reply = self._post(body)
        top = first_token_logprobs(reply)
        mu = mu_from_top_logprobs(top)
        if mu is None:
            if self.fallback_mu is None:
                shown = ", ".join(repr(token) for token in list(top)[:5])
                raise JudgeServerError(f"judge answered neither Yes nor No (top tokens: {shown})")
            with self._lock:
                self.missing_answers += 1
            return self.fallback_mu
        return mu

    # -- HTTP ------------------------------------------------------------------------------------

    def _post(self, body: bytes) -> dict[str, Any]:
        attempt = 0
        while True:
            delay: float | None = None
            try:
                return self._post_once(body)
            except _Retryable as exc:
                if attempt >= self.max_retries:
                    raise exc.final(self.url, attempt + 1) from exc
                delay = exc.retry_after
            attempt += 1
            with self._lock:
                self.retries += 1
            backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            backoff *= 0.5 + random.random() / 2  # jitter, so many workers do not retry in step
            time.sleep(min(self.max_backoff_s, delay) if delay is not None else backoff)

    def _post_once(self, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {detail}", _retry_after(exc)) from exc
            raise JudgeServerError(f"judge server {self.url} refused the request: HTTP {exc.code}: {detail}") from exc
        except TimeoutError as exc:
            raise _Retryable(f"no answer within {self.timeout_s:g} s", timeout=True) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Retryable(f"no answer within {self.timeout_s:g} s", timeout=True) from exc
            raise _Retryable(f"cannot connect: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection failed: {exc}") from exc
        try:
            reply = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise JudgeServerError(
                f"judge server {self.url} answered with a body that is not JSON: {raw[:200]!r}"
            ) from exc
        if not isinstance(reply, dict):
            raise JudgeServerError(f"judge server {self.url} answered JSON that is not an object: {raw[:200]!r}")
        return reply

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return (f"OpenAIJudge(url={self.url!r}, model={self.model!r}, timeout_s={self.timeout_s:g}, "
                f"max_retries={self.max_retries}, swap={self.swap})")


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.timeout = timeout

    def final(self, url: str, attempts: int) -> Exception:
        error = JudgeTimeoutError if self.timeout else JudgeServerError
        return error(f"judge server {url} failed after {attempts} attempt(s): {self}")


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()
    except OSError:
        return exc.reason or ""
    try:
        payload = json.loads(raw)
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:300]
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw[:300].decode("utf-8", "replace") or str(exc.reason)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def first_token_logprobs(reply: dict[str, Any]) -> dict[str, float]:
    """{token: logprob} of the first answer token's alternatives in a chat-completions reply.

    Reads ``choices[0].logprobs.content[0].top_logprobs`` (the chat shape: a list of
    ``{"token", "logprob"}``), with the sampled token itself included; also accepts the legacy
    completions shape ``choices[0].logprobs.top_logprobs[0]`` (a {token: logprob} object).
    """
    try:
        logprobs = reply["choices"][0]["logprobs"]
        if not isinstance(logprobs, dict):
            raise TypeError("logprobs is not an object")
        if logprobs.get("content"):
            first = logprobs["content"][0]
            entries = [first, *first.get("top_logprobs", [])]
            top = {str(e["token"]): float(e["logprob"]) for e in entries}
        else:
            top = {str(token): float(lp) for token, lp in logprobs["top_logprobs"][0].items()}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise JudgeServerError(
            "judge server reply lacks choices[0].logprobs for the first token (does the server support "
            f"logprobs, and was it started with enough max-logprobs?): {exc!r}"
        ) from exc
    return top


def mu_from_top_logprobs(top: dict[str, float], yes: str = YES, no: str = NO) -> float | None:
    """μ = P(No) / (P(No) + P(Yes)) from one token's top alternatives, or None if neither is there.

    Tokens are matched ignoring case and surrounding whitespace (" Yes", "yes", "YES" are all Yes)
    and their probabilities summed. A token missing from the list is given the largest probability
    it can have: min(smallest listed probability, 1 - total listed probability).
    """
    probs = {key: 0.0 for key in (yes.lower(), no.lower())}
    for token, logprob in top.items():
        key = token.strip().lower()
        if key in probs and math.isfinite(logprob):
            probs[key] += math.exp(logprob)
    p_yes, p_no = probs[yes.lower()], probs[no.lower()]
    if p_yes == 0.0 and p_no == 0.0:
        return None
    if p_yes == 0.0 or p_no == 0.0:
        listed = [math.exp(lp) for lp in top.values() if math.isfinite(lp)]
        bound = max(0.0, min(min(listed), 1.0 - sum(listed)))
        p_yes, p_no = p_yes or bound, p_no or bound
    return float(mu_from_yes_no(math.log(max(p_yes, 1e-300)), math.log(max(p_no, 1e-300))))
