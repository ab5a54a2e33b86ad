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

import httpx
import pytest
from crossview_testing.colour_model import FP, JUDGE_CALIBRATION, ColourEmbedder, colour_factory, jpeg

from cloud.running import RunningHub
from cloud.sessions import SessionLimits
from cloud.verification import DecisionPolicy, JudgeVerifier
from crossview.api_client import http_client
from models.verify.reid_judge import ReidJudge

USERNAME, PASSWORD = "admin", "correct horse battery staple"
COLOUR_FP = FP


def colour_hub_kwargs(*, allow_new_identities: bool = False, **policy: Any) -> dict[str, Any]:
    """`Hub.create` arguments for a hub on the colour model with the `reid` judge (no weights needed).
    Edges talking to it must say model_fingerprint=COLOUR_FP and send 12-number vectors."""
    judge = ReidJudge(embedders=[ColourEmbedder()])
    verifier = JudgeVerifier(judge, DecisionPolicy(allow_new_identities=allow_new_identities, **policy), name="reid",
                             calibration=JUDGE_CALIBRATION)
    return {"verifier": verifier, "embedder_factory": colour_factory,
            "limits": SessionLimits(heartbeat_interval_ms=60_000, poll_interval_s=0.5)}


def colour_jpeg(colour: str, *, seed: int = 0, hw: tuple[int, int] = (128, 64)) -> bytes:
    """A JPEG "person" of one of the colour model's COLOURS (noise from `seed`)."""
    return jpeg(colour, seed=seed, hw=hw)


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
    client = http_client(url, timeout_s=timeout_s)
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
