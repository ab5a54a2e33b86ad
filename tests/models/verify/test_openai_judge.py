"""The `openai` judge against a real HTTP server on 127.0.0.1 that answers like vLLM's chat API."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import pytest

from models.verify import JudgeConfigError, JudgeServerError, JudgeTimeoutError, create_judge
from models.verify.openai_judge import OpenAIJudge, first_token_logprobs, mu_from_top_logprobs


def completion(top: dict[str, float]) -> dict[str, Any]:
    """A chat.completion body in the exact shape OpenAI / vLLM return with logprobs=true."""
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    chosen = max(top, key=top.__getitem__)
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000, "model": "judge",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": chosen},
            "logprobs": {"content": [{**entry(chosen, top[chosen]),
                                      "top_logprobs": [entry(t, lp) for t, lp in top.items()]}]},
            "finish_reason": "length",
        }],
        "usage": {"prompt_tokens": 170, "completion_tokens": 1, "total_tokens": 171},
    }


def same_images_answer(body: dict[str, Any]) -> dict[str, Any]:
    """Yes (p=0.9) when the two images are identical, else No (p=0.8): an answer tests can predict."""
    urls = [c["image_url"]["url"] for c in body["messages"][0]["content"] if c["type"] == "image_url"]
    if urls[0] == urls[1]:
        return completion({"Yes": math.log(0.9), "No": math.log(0.05), "The": math.log(0.01)})
    return completion({"No": math.log(0.8), "Yes": math.log(0.1), "I": math.log(0.02)})


@dataclass
class Script:
    """What the fake server does: queued one-off actions first, then `default` for every request."""

    queue: list[Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def reply_json(handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> None:
    data = raw if raw is not None else json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


def status(code: int, message: str = "boom", headers: dict[str, str] | None = None) -> Callable:
    return lambda h, body: reply_json(h, code, {"error": {"message": message, "type": "invalid_request_error",
                                                          "code": code}}, headers)


def raw(data: bytes) -> Callable:
    return lambda h, body: reply_json(h, 200, None, raw=data)


def sleep_then_answer(seconds: float) -> Callable:
    def action(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        time.sleep(seconds)
        with contextlib.suppress(OSError):  # the client may have given up
            reply_json(h, 200, same_images_answer(body))
    return action


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests.append((self.path, dict(self.headers), body))
                action = script.queue.pop(0) if script.queue else None
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
            try:
                if action is not None:
                    action(self, body)
                else:
                    time.sleep(script.delay_s)
                    reply_json(self, 200, same_images_answer(body))
            finally:
                with script.lock:
                    script.in_flight -= 1

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()


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
    start = time.monotonic()
    with make(url, timeout_s=0.2, max_retries=1) as judge, pytest.raises(JudgeTimeoutError, match=r"within 0\.2 s"):
        judge.score_pairs([(A, B)])
    assert time.monotonic() - start < 1.4
    assert len(script.requests) == 2


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
