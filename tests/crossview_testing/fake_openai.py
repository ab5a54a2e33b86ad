"""A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible (vLLM) chat-completions API,
for the `openai` judge's tests (tests/models/verify/test_openai_judge.py) and the cross-camera
integration test (tests/integration/test_cross_camera.py).

    with fake_openai_server() as (url, script):       # url: "http://127.0.0.1:PORT/v1"
        script.queue = [status(500, "overloaded")]    # one-off actions first, then script.answer(body)
        ...
    script.requests                                   # (path, headers, JSON body) of every request

`script.answer` (default `same_images_answer`) turns a request body into the completion returned.
A text-vs-image request (one image and "Does the person in the photo match this description: ...?")
is answered by `text_answer(p_yes)`: `p_yes(description, image)` is the probability of "Yes";
`same_images_answer` gives such requests a fixed Yes 0.7.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

Action = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


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


def image_urls(body: dict[str, Any]) -> list[str]:
    return [c["image_url"]["url"] for c in body["messages"][0]["content"] if c["type"] == "image_url"]


def request_images(body: dict[str, Any]) -> list[np.ndarray]:
    """The request's images (data URLs), decoded to BGR."""
    images = []
    for url in image_urls(body):
        jpeg = base64.b64decode(url.split(",", 1)[1])
        images.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    return images


_DESCRIPTION = re.compile(r"Does the person in the photo match this description: (.*)\? Answer Yes or No\.",
                          re.DOTALL)


def request_description(body: dict[str, Any]) -> str | None:
    """The description of a text-vs-image request, or None for any other request."""
    for entry in body["messages"][0]["content"]:
        if entry["type"] == "text" and (found := _DESCRIPTION.search(entry["text"])):
            return found.group(1)
    return None


def yes_no(p_yes: float) -> dict[str, Any]:
    """A completion whose first token is Yes with probability `p_yes` (No gets the rest but 1 %)."""
    p_yes = min(max(p_yes, 1e-4), 0.98)
    return completion({"Yes": math.log(p_yes), "No": math.log(0.99 - p_yes), "The": math.log(0.01)})


def text_answer(p_yes: Callable[[str, np.ndarray], float],
                pairs: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Callable[[dict[str, Any]],
                                                                                           dict[str, Any]]:
    """An `answer` for text-vs-image requests from `p_yes(description, BGR image)`; pair requests go to
    `pairs` (default `same_images_answer`)."""
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        description = request_description(body)
        if description is None:
            return (pairs or same_images_answer)(body)
        (image,) = request_images(body)
        return yes_no(p_yes(description, image))
    return answer


def same_images_answer(body: dict[str, Any]) -> dict[str, Any]:
    """Yes (p=0.9) when the two images are identical, else No (p=0.8): an answer tests can predict.
    A text-vs-image request (one image) gets Yes p=0.7."""
    urls = image_urls(body)
    if len(urls) == 1:
        return yes_no(0.7)
    if urls[0] == urls[1]:
        return completion({"Yes": math.log(0.9), "No": math.log(0.05), "The": math.log(0.01)})
    return completion({"No": math.log(0.8), "Yes": math.log(0.1), "I": math.log(0.02)})


@dataclass
class Script:
    """What the fake server does: queued one-off actions first, then `answer` for every request."""

    queue: list[Action] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay_s: float = 0.0
    answer: Callable[[dict[str, Any]], dict[str, Any]] = same_images_answer
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


def status(code: int, message: str = "boom", headers: dict[str, str] | None = None) -> Action:
    return lambda h, body: reply_json(h, code, {"error": {"message": message, "type": "invalid_request_error",
                                                          "code": code}}, headers)


def raw(data: bytes) -> Action:
    return lambda h, body: reply_json(h, 200, None, raw=data)


def sleep_then_answer(seconds: float) -> Action:
    def action(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        time.sleep(seconds)
        with contextlib.suppress(OSError):  # the client may have given up
            reply_json(h, 200, same_images_answer(body))
    return action


@contextlib.contextmanager
def fake_openai_server(script: Script | None = None) -> Iterator[tuple[str, Script]]:
    """Serve `script` on a free port of 127.0.0.1; yields (base URL ending in /v1, script)."""
    script = script or Script()

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
                    reply_json(self, 200, script.answer(body))
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
