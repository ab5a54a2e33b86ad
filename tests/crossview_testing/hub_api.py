"""A whole hub (gRPC + REST API) in-process with a logged-in HTTP client, for API, web UI and demo tests.

    from crossview_testing.hub_api import start_hub_api, colour_hub_kwargs

    with start_hub_api(tmp_path, **colour_hub_kwargs()) as api:      # cheap stand-in model and judge
        api.client.get("/api/identities").json()                     # httpx.Client, already logged in
        api.running.create_edge_token("edge-a")                      # cloud.running.RunningHub
        api.url, api.username, api.password, api.token

Real models: ``start_hub_api(tmp_path, judge="reid")`` (the default Hub.create arguments; needs
CROSSVIEW_MODELS). Or use the `hub_api` fixture (colour model) after
``from crossview_testing.hub_api import hub_api  # noqa: F401`` in a conftest.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from cloud.running import RunningHub
from cloud.sessions import SessionLimits
from cloud.verification import DecisionPolicy, JudgeVerifier
from models.types import Embeddings
from models.verify.reid_judge import ReidJudge

COLOUR_FP = "test/colour@0123456789ab"
COLOURS = {"red": (0, 0, 230), "green": (0, 200, 0), "blue": (220, 0, 0), "yellow": (0, 210, 210)}
USERNAME, PASSWORD = "admin", "correct horse battery staple"


class ColourEmbedder:
    """A stand-in Re-ID model: mean colour of four horizontal bands, L2-normalised (12 numbers)."""

    dim = 12

    def __init__(self, fingerprint: str = COLOUR_FP) -> None:
        self.fingerprint = fingerprint

    def embed(self, images: list[np.ndarray]) -> Embeddings:
        rows = []
        for image in images:
            bands = np.array_split(image.astype(np.float32), 4, axis=0)
            v = np.concatenate([b.reshape(-1, 3).mean(axis=0) for b in bands]) + 1e-3
            rows.append(v / np.linalg.norm(v))
        return Embeddings(np.asarray(rows, np.float32).reshape(len(images), self.dim), self.fingerprint)


def colour_factory(fingerprint: str) -> ColourEmbedder:
    if fingerprint != COLOUR_FP:
        raise LookupError(f"no model {fingerprint}")
    return ColourEmbedder(fingerprint)


def colour_hub_kwargs(*, allow_new_identities: bool = False, **policy: Any) -> dict[str, Any]:
    """`Hub.create` arguments for a hub on the colour model with the `reid` judge (no weights needed).
    Edges talking to it must say model_fingerprint=COLOUR_FP and send 12-number vectors."""
    judge = ReidJudge(embedders=[ColourEmbedder()])
    verifier = JudgeVerifier(judge, DecisionPolicy.for_judge("reid", allow_new_identities=allow_new_identities,
                                                             **policy), name="reid")
    return {"verifier": verifier, "embedder_factory": colour_factory,
            "limits": SessionLimits(heartbeat_interval_ms=60_000, poll_interval_s=0.5)}


def colour_jpeg(colour: str, *, seed: int = 0, hw: tuple[int, int] = (128, 64)) -> bytes:
    """A JPEG "person" of one of COLOURS (noise from `seed`)."""
    rng = np.random.default_rng(seed)
    image = np.empty((*hw, 3), np.uint8)
    image[:] = COLOURS[colour]
    image = np.clip(image.astype(np.int16) + rng.integers(-12, 13, size=image.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


@dataclass
class HubApi:
    running: RunningHub
    client: httpx.Client  # base_url = url; sends the session cookie and a Bearer header
    url: str
    username: str
    password: str
    token: str


def login(url: str, username: str, password: str, *, timeout_s: float = 60.0) -> tuple[httpx.Client, str]:
    """A client logged in at `url` (cookie and Authorization header) and its session token."""
    client = httpx.Client(base_url=url, timeout=timeout_s)
    reply = client.post("/api/login", json={"username": username, "password": password})
    if reply.status_code != 200:
        client.close()
        raise AssertionError(f"log-in failed: {reply.status_code} {reply.text}")
    token = reply.json()["token"]
    client.headers["authorization"] = f"Bearer {token}"
    return client, token


@contextlib.contextmanager
def start_hub_api(tmp_path: Path, *, username: str = USERNAME, password: str = PASSWORD,
                  **running_kwargs: Any) -> Iterator[HubApi]:
    """A RunningHub on 127.0.0.1 (free ports, SQLite under tmp_path/hub) with one operator, logged in.
    `running_kwargs` go to RunningHub (and through it to Hub.create)."""
    if running_kwargs.get("hub") is None:
        running_kwargs.setdefault("data_dir", tmp_path / "hub")
    running_kwargs.setdefault("alert_poll_s", 0.2)
    operators = {username: password, **running_kwargs.pop("operators", {})}
    with RunningHub(operators=operators, **running_kwargs) as running:
        client, token = login(running.api_url, username, password)
        try:
            yield HubApi(running, client, running.api_url, username, password, token)
        finally:
            client.close()


@pytest.fixture
def hub_api(tmp_path: Path) -> Iterator[HubApi]:
    """A running hub on the colour model (`colour_hub_kwargs`) with a logged-in client."""
    with start_hub_api(tmp_path, **colour_hub_kwargs()) as api:
        yield api
