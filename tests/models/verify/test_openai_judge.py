"""The `openai` judge against a real HTTP server on 127.0.0.1 that answers like vLLM's chat API."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from crossview_testing.fake_openai import Script, completion, fake_openai_server, raw, sleep_then_answer, status

from models.verify import JudgeConfigError, JudgeServerError, JudgeTimeoutError, create_judge
from models.verify.openai_judge import OpenAIJudge, first_token_logprobs, mu_from_top_logprobs


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    with fake_openai_server() as served:
        yield served


def make(url: str, **kwargs: Any) -> OpenAIJudge:
    options = {"model": "judge", "timeout_s": 5.0, "max_retries": 2, "backoff_s": 0.01, "max_backoff_s": 0.05,
               **kwargs}
    return create_judge("openai", base_url=url, **options)


RNG = np.random.default_rng(0)
A = RNG.integers(0, 256, (160, 64, 3), dtype=np.uint8)
B = RNG.integers(0, 256, (200, 90, 3), dtype=np.uint8)


def test_request_has_the_prompt_two_data_url_images_and_logprobs(server: tuple[str, Script]) -> None:
    url, script = server
    with make(url, api_key="secret-token") as judge:
        mu = judge.score_pairs([(A, B)])
    path, headers, body = script.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer secret-token"
    assert body["model"] == "judge" and body["max_tokens"] == 1 and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    (message,) = body["messages"]
    assert message["role"] == "user"
    kinds = [c["type"] for c in message["content"]]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    texts = "".join(c["text"] for c in message["content"] if c["type"] == "text")
    assert "Query:" in texts and "Candidate:" in texts and texts.endswith("Answer Yes or No.")
    for part in (c for c in message["content"] if c["type"] == "image_url"):
        prefix = "data:image/jpeg;base64,"
        assert part["image_url"]["url"].startswith(prefix)
        jpeg = base64.b64decode(part["image_url"]["url"][len(prefix):])
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (280, 140, 3)
    assert mu[0] == pytest.approx(0.8 / 0.9, abs=1e-6)


def test_many_pairs_run_concurrently_and_come_back_in_order(server: tuple[str, Script]) -> None:
    url, script = server
    script.delay_s = 0.05
    pairs = [(A, A), (A, B), (B, B), (B, A)] * 4
    with make(url, concurrency=4) as judge:
        mu = judge.score_pairs(pairs)
    expected = [0.05 / 0.95, 0.8 / 0.9, 0.05 / 0.95, 0.8 / 0.9] * 4
    np.testing.assert_allclose(mu, expected, rtol=1e-5)
    assert len(script.requests) == 16
    assert script.max_in_flight > 1


def test_swap_sends_both_orders(server: tuple[str, Script]) -> None:
    url, script = server
    with make(url, swap=True) as judge:
        assert judge.score_pairs([(A, B)]).shape == (1,)
    assert len(script.requests) == 2


def test_a_500_is_retried_then_succeeds(server: tuple[str, Script]) -> None:
    url, script = server
    script.queue = [status(500, "overloaded")]
    with make(url) as judge:
        mu = judge.score_pairs([(A, A)])
        assert judge.retries == 1
    assert mu[0] == pytest.approx(0.05 / 0.95, abs=1e-6)
    assert len(script.requests) == 2


def test_a_429_honours_retry_after(server: tuple[str, Script]) -> None:
    url, script = server
    script.queue = [status(429, "slow down", {"Retry-After": "0"})]
    with make(url) as judge:
        assert judge.score_pairs([(A, B)])[0] == pytest.approx(0.8 / 0.9, abs=1e-6)
    assert len(script.requests) == 2


def test_persistent_5xx_fails_after_the_retries(server: tuple[str, Script]) -> None:
    url, script = server
    script.queue = [status(503, "down")] * 3
    with make(url, max_retries=2) as judge, pytest.raises(JudgeServerError, match=r"after 3 attempt.*HTTP 503: down"):
        judge.score_pairs([(A, B)])
    assert len(script.requests) == 3


def test_a_400_is_a_clear_error_without_retry(server: tuple[str, Script]) -> None:
    url, script = server
    script.queue = [status(400, "model 'judge' does not support image input")]
    with make(url) as judge, pytest.raises(JudgeServerError, match="HTTP 400: model 'judge' does not support"):
        judge.score_pairs([(A, B)])
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (json.dumps({"choices": [{"message": {"content": "Yes"}}]}).encode(), "lacks choices"),
        (json.dumps({"choices": []}).encode(), "lacks choices"),
    ],
)
def test_malformed_replies_are_clear_errors(server: tuple[str, Script], body: bytes, message: str) -> None:
    url, script = server
    script.queue = [raw(body)]
    with make(url) as judge, pytest.raises(JudgeServerError, match=message):
        judge.score_pairs([(A, B)])
    assert len(script.requests) == 1


def test_a_slow_server_times_out(server: tuple[str, Script]) -> None:
    url, script = server
    script.queue = [sleep_then_answer(1.5), sleep_then_answer(1.5)]
    with make(url, timeout_s=0.2, max_retries=1) as judge, pytest.raises(JudgeTimeoutError, match=r"within 0\.2 s"):
        judge.score_pairs([(A, B)])
    assert len(script.requests) == 2  # the first try and one retry, each given up on


def test_a_slow_first_answer_is_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.queue = [sleep_then_answer(1.0)]
    with make(url, timeout_s=0.2, max_retries=1) as judge:
        assert judge.score_pairs([(A, A)])[0] == pytest.approx(0.05 / 0.95, abs=1e-6)


def test_no_server_is_a_connection_error() -> None:
    with make("http://127.0.0.1:9/v1", max_retries=1) as judge, pytest.raises(JudgeServerError,
                                                                               match="cannot connect"):
        judge.score_pairs([(A, B)])


def test_an_answer_without_yes_or_no_uses_the_fallback(server: tuple[str, Script]) -> None:
    url, script = server
    other = completion({"The": math.log(0.5), "I": math.log(0.3)})
    script.queue = [raw(json.dumps(other).encode())]
    with make(url) as judge:
        assert judge.score_pairs([(A, B)])[0] == pytest.approx(0.5)
        assert judge.missing_answers == 1
    script.queue = [raw(json.dumps(other).encode())]
    with make(url, fallback_mu=None) as judge, pytest.raises(JudgeServerError, match="neither Yes nor No"):
        judge.score_pairs([(A, B)])


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ({"Yes": math.log(0.6), "No": math.log(0.2)}, 0.25),
        ({"Yes": math.log(0.3), " yes": math.log(0.3), "NO": math.log(0.2)}, 0.25),  # variants summed
        ({"Yes": math.log(0.99), "The": math.log(0.005)}, 0.005 / 0.995),  # No bounded by the smallest listed
        ({"No": math.log(0.7), "Yes": -math.inf}, 0.7),  # -inf is absent: Yes ≤ min(0.7, 1 - 0.7)
        ({"Sure": -0.1}, None),
    ],
)
def test_mu_from_top_logprobs(top: dict[str, float], expected: float | None) -> None:
    mu = mu_from_top_logprobs(top)
    if expected is None:
        assert mu is None
    else:
        assert mu == pytest.approx(expected, rel=1e-6)


def test_first_token_logprobs_reads_the_chat_and_legacy_shapes() -> None:
    chat = completion({"Yes": -0.2, "No": -1.8})
    assert first_token_logprobs(chat) == {"Yes": -0.2, "No": -1.8}
    legacy = {"choices": [{"text": "No", "logprobs": {"tokens": ["No"], "top_logprobs": [{"No": -0.1, "Yes": -2.4}]}}]}
    assert first_token_logprobs(legacy) == {"No": -0.1, "Yes": -2.4}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "gpu:8000"}, "base_url"),
        ({"model": ""}, "model"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"concurrency": 0}, "concurrency"),
        ({"fallback_mu": 2.0}, "fallback_mu"),
        ({"image_hw": (280,)}, "image_hw"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    options = {"base_url": "http://127.0.0.1:1/v1", "model": "judge", **kwargs}
    with pytest.raises(JudgeConfigError, match=message):
        OpenAIJudge(**options)


def test_base_url_may_name_the_endpoint() -> None:
    judge = OpenAIJudge("http://127.0.0.1:1/v1/chat/completions/", "judge")
    assert judge.url == "http://127.0.0.1:1/v1/chat/completions"
    judge.close()
