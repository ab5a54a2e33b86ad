"""Issue 15: a person described in words is found on an edge's recorded footage, through both stages.

A real hub in this process (REST + gRPC, SQLite) with the `openai` judge on the local fake chat-completions
server, and a real edge process (``crossview edge replay --serve``, the real detector, intel-0288 and the
intel-0230 attribute model, attributes on) on the first seconds of people-detection.264:

1. the edge replays the video and keeps serving; its SQLite store holds each tracklet's attribute profile;
2. the test writes a description the way a witness would ("man, black top, blue trousers, no backpack") from
   what the edge recorded for one tracklet: the tracklet whose own description singles it out best among
   the recorded ones;
3. the description, typed as free text, goes to ``POST /api/search`` and to ``crossview search --text``:
   the edge answers a text job (stage one: attribute likelihood + cross-modal re-ranking), the hub asks the
   fake judge "Does the person in the photo match this description: ...?" for each hit (stage two), and the
   tracklet comes back at rank <= 3 with both stages' fields filled.

The fake judge answers text-vs-image requests in the API's exact shape (one image and the question,
max_tokens=1, logprobs): P(Yes) is the geometric mean, over the description's constraints, of their
probability under the intel-0230 attributes of the photo it was sent, so it reads the photo, not the test.

Skipped without $CROSSVIEW_MODELS / $CROSSVIEW_DATA. No timing assertions.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from crossview_testing.fake_openai import Script, fake_openai_server, request_description, request_images, yes_no
from crossview_testing.hub_api import HubApi, start_hub_api
from typer.testing import CliRunner

from crossview.demo_edges import EdgeProcess
from crossview.operator_commands import register
from models.attributes.query import parse_description
from models.attributes.scoring import description_scores, matched_constraints
from models.attributes.types import AttributeProfile

VIDEO = "people-detection.264"
EDGE_SETTINGS = ("stride=2", "max_frames=200", "tracklets.close_after_s=1.0", "hub.connect_timeout_s=120",
                 "attributes.enabled=true")


@pytest.fixture(scope="module")
def video(models_dir: Path, data_dir: Path) -> Path:
    path = data_dir / "video" / VIDEO
    if not path.is_file():
        pytest.skip(f"sample video {path} is absent")
    return path


@pytest.fixture(scope="module")
def attribute_judge_server(models_dir: Path) -> Iterator[tuple[str, Script]]:
    """A fake OpenAI-compatible judge that reads the photo with intel-0230 and the description with the parser."""
    from models.attributes.recognizer import AttributeRecognizer

    recognizer = AttributeRecognizer()
    lock = threading.Lock()

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        description = request_description(body)
        assert description is not None, "a text search sends only text-vs-image requests"
        (image,) = request_images(body)
        with lock:
            (profile,) = recognizer.recognize([image])
        probabilities = [p for _, p in matched_constraints(parse_description(description), profile)]
        return yes_no(math.exp(float(np.mean(np.log(np.clip(probabilities, 1e-3, 1.0))))))

    with fake_openai_server(Script(answer=answer)) as served:
        yield served


def describe(profile: AttributeProfile) -> str:
    """A witness's words for a profile: gender, the colours read, trousers or shorts, what is carried."""
    p = profile.probabilities
    words = ["man" if p["male"] >= 0.5 else "woman"]
    if profile.upper is not None:
        words.append(f"{profile.upper.name} top")
    if profile.lower is not None:
        words.append(f"{profile.lower.name} {'trousers' if p['long_trousers'] >= 0.5 else 'shorts'}")
    words += [word if p[name] >= 0.5 else f"no {word}" for name, word in (("backpack", "backpack"), ("hat", "hat"))]
    return ", ".join(words)


def recorded_profiles(database: Path) -> dict[str, AttributeProfile]:
    """Tracklet id -> attribute profile, read-only from the edge's own SQLite store."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT id, attributes FROM tracklets WHERE closed = 1 AND attributes IS NOT NULL")
        return {tracklet: AttributeProfile.from_dict(json.loads(text)) for tracklet, text in rows}


def pick_person(profiles: dict[str, AttributeProfile]) -> tuple[str, str]:
    """(tracklet id, description) of the tracklet its own description ranks first by the widest margin."""
    ids = sorted(profiles)
    table = [profiles[i] for i in ids]
    best: tuple[float, str, str] | None = None
    for index, tracklet in enumerate(ids):
        description = describe(profiles[tracklet])
        scores = description_scores(parse_description(description), table)
        others = np.delete(scores, index)
        margin = float(scores[index] - (others.max() if len(others) else -np.inf))
        if best is None or margin > best[0]:
            best = (margin, tracklet, description)
    assert best is not None
    return best[1], best[2]


def test_a_described_person_is_found_through_both_stages(video: Path, attribute_judge_server: tuple[str, Script],
                                                         tmp_path: Path) -> None:
    url, script = attribute_judge_server
    judge = {"judge": "openai", "judge_kwargs": {"base_url": url, "model": "judge", "timeout_s": 60.0}}
    with start_hub_api(tmp_path, **judge) as api:
        edge = EdgeProcess(video, "cam-b", edge_id="edge-t", workdir=tmp_path / "edge",
                           hub_address=api.running.grpc_address, token=api.running.create_edge_token("edge-t"),
                           settings=EDGE_SETTINGS, serve=True).start()
        try:
            summary = edge.wait_replayed(900)
            assert "ok" in summary, summary
            profiles = recorded_profiles(tmp_path / "edge" / "edge.db")
            assert len(profiles) >= 2, f"the edge recorded too few tracklets with attributes: {profiles}"
            tracklet, description = pick_person(profiles)

            reply = api.client.post("/api/search", data={"text": description, "top_k": "10", "deadline_s": "60"},
                                    timeout=300)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            check_answer(body, tracklet, description)
            assert script.requests and all(len(request_images(b)) == 1 and b["max_tokens"] == 1 and b["logprobs"]
                                           for _, _, b in script.requests)
            check_cli(api, description, tracklet)
            assert edge.running
        finally:
            code = edge.stop()
        assert code == 0


def check_answer(body: dict[str, Any], tracklet: str, description: str) -> None:
    assert body["edges_asked"] == ["edge-t"] and body["edges_answered"] == ["edge-t"], body
    assert body["text"]["ignored"] == [], body["text"]  # every word of the description was understood
    ranks = {hit["tracklet_id"]: hit["rank"] for hit in body["hits"]}
    assert tracklet in ranks and ranks[tracklet] <= 3, (description, tracklet, ranks)
    hit = next(h for h in body["hits"] if h["tracklet_id"] == tracklet)
    assert 0.0 <= hit["text_score"] <= 1.0 and 0.0 <= hit["judge_score"] <= 1.0  # both stages
    assert 0.0 <= hit["score"] <= 1.0 and hit["p_same"] is None and "not a P(same)" in hit["score_kind"]
    assert hit["attributes"] is not None and hit["matched"] and hit["camera_id"] == "cam-b"
    assert all(h["judge_score"] is not None for h in body["hits"])
    assert [h["score"] for h in body["hits"]] == sorted((h["score"] for h in body["hits"]), reverse=True)


def check_cli(api: HubApi, description: str, tracklet: str) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["search", "--text", description, "--top-k", "10", "--deadline", "60",
                                      "--hub", api.url, "--user", api.username, "--password", api.password])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line[:1].isdigit() and "hit(s)" not in line]
    assert rows and all(row[1] == "edge-t" and row[2] == "cam-b" for row in rows), result.output
    assert "text score" in result.output and "judge" in result.output and "not a P(same)" in result.output
