"""Search by description at the hub (issue 15): the query, the text job to real gRPC edges, stage two in the
judge's text mode (the `openai` judge on the fake server; the `reid` judge, which cannot read), and the REST
contract with its refusals."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from crossview_testing.fake_openai import Script, fake_openai_server, text_answer
from crossview_testing.hub_api import colour_hub_kwargs, colour_jpeg, start_hub_api
from typer.testing import CliRunner

from cloud.api.schemas import SearchResponse
from cloud.api.views import search_view
from cloud.hub import Hub
from cloud.search import SearchOutcome, SearchQuery
from cloud.text_search import UNCALIBRATED_NOTE, text_query
from cloud.verification import DecisionPolicy, JudgeVerifier
from crossview.api_client import HubApiError
from crossview.operator_commands import print_text_search, register
from models.attributes.types import ATTRIBUTE_NAMES, AttributeProfile, ColourReading
from models.errors import InvalidInputError
from models.verify import create_judge
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

NOTE = "3 tracklets have no attributes yet (recorded before attributes were on) and were not searched"


# -- the query ---------------------------------------------------------------------------------------

def described(query: Any) -> list[str]:
    return [c.describe() for c in query.constraints]


def test_free_text_filters_or_both_make_one_query() -> None:
    free = text_query("woman in a red top with glasses")
    assert "upper red" in described(free) and "not male" in described(free) and "glasses" in free.ignored
    filters = text_query(None, {"male": False, "backpack": True, "upper_colour": "red", "lower_colour": None})
    assert described(filters) == ["not male", "backpack", "upper red"]
    assert filters.text == "a woman, a backpack, red upper clothing"  # the sentence the judge is asked about
    both = text_query("red top, glasses", {"backpack": False, "lower_colour": "black"})
    assert described(both)[-2:] == ["not backpack", "lower black"] and "upper red" in described(both)
    assert both.text == "red top, glasses; no backpack, black lower clothing" and both.ignored == ("glasses",)


@pytest.mark.parametrize(
    ("text", "filters", "message"),
    [
        (None, None, "expected a description or at least one attribute filter"),
        ("", None, "empty"),
        ("glasses and a wristwatch", None, "no known word"),
        ("red " * 2500, None, "at most 1000 characters"),  # a 10 kB text
        (None, {"upper_colour": "mauve"}, "unknown colour 'mauve'"),
        (None, {"wings": True}, "unknown keys wings"),
        ("red top", {"hat": "yes"}, "expected true, false or null"),
    ],
)
def test_bad_descriptions_say_what_is_wrong(text: str | None, filters: dict | None, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        text_query(text, filters)


def test_a_search_is_by_exactly_one_thing(kit: types.SimpleNamespace) -> None:
    query = text_query("red top")
    with pytest.raises(InvalidInputError, match="expected exactly one"):
        SearchQuery(photos=[kit.jpeg("red")], text=query)
    with pytest.raises(InvalidInputError, match="start <= end"):
        SearchQuery(text=query, time_range=(10.0, 5.0))


# -- the text job over gRPC ----------------------------------------------------------------------------

def profile(upper: str, lower: str, **probabilities: float) -> AttributeProfile:
    values = {name: 0.2 for name in ATTRIBUTE_NAMES} | probabilities
    return AttributeProfile(values, ColourReading(upper, 0.8), ColourReading(lower, 0.7), crops=4)


def text_hit(kit: types.SimpleNamespace, tracklet: str, colour: str, score: float,
             attributes: AttributeProfile | None) -> edge_to_hub_pb2.SearchHit:
    hit = edge_to_hub_pb2.SearchHit(
        tracklet_id=tracklet, camera_id="cam-1", span=codec.time_range_to_proto(50.0, 52.0),
        stage1_distance=1.0 - score, crop=common_pb2.CropImage(jpeg=kit.jpeg(colour, seed=7)),
        vector=codec.vector_to_proto(kit.vector(colour), kit.FP), text_score=score)
    if attributes is not None:
        hit.attributes.CopyFrom(codec.attributes_to_proto(attributes))
    return hit


async def answer_text_jobs(kit: types.SimpleNamespace, edge: Any, edge_id: str, seen: list) -> None:
    """An edge whose best stage-one hit is the blue person; the red one (the description) comes second."""
    while True:
        message = await edge.recv_until(lambda m: m.WhichOneof("body") == "search_job", timeout=120)
        job = message.search_job
        seen.append(job)
        hits = [text_hit(kit, f"{edge_id}-blue", "blue", 0.7, profile("blue", "black")),
                text_hit(kit, f"{edge_id}-red", "red", 0.6, profile("red", "black", backpack=0.9)),
                text_hit(kit, f"{edge_id}-old", "green", 0.1, None)]
        await edge.send(session_pb2.EdgeMessage(search_result=edge_to_hub_pb2.SearchResult(
            job_id=job.job_id, edge_id=edge_id, batch_index=0, done=True, idempotency_key=f"{job.job_id}/0",
            hits=hits, notes=[NOTE])))
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=message.sequence)))


def red_means_yes(description: str, image: np.ndarray) -> float:
    """The fake judge: Yes for a red photo when the description says red (BGR: red is channel 2)."""
    b, _, r = image.reshape(-1, 3).mean(axis=0)
    return 0.9 if ("red" in description) == (r > b) else 0.1


async def run_text_search(hub: Hub, kit: types.SimpleNamespace,
                          query: SearchQuery) -> tuple[SearchOutcome, list, dict[str, Any]]:
    """One edge answering; the outcome, the jobs the edge saw, and the REST view (read before the hub stops)."""
    port = await hub.start()
    edge = kit.EdgeClient(port, hub.auth.create_token("edge-a").token)
    await edge.send(kit.hello("edge-a"))
    assert (await edge.recv()).WhichOneof("body") == "welcome"
    seen: list = []
    task = asyncio.create_task(answer_text_jobs(kit, edge, "edge-a", seen))
    try:
        outcome = await hub.search.search(query, deadline_s=60)
        view = SearchResponse.model_validate(search_view(outcome, hub.store)).model_dump()
    finally:
        task.cancel()
        await edge.close()
        await hub.stop()
    return outcome, seen, view


@pytest.fixture
def judge_server() -> Iterator[tuple[str, Script]]:
    with fake_openai_server() as (url, script):
        script.answer = text_answer(red_means_yes)
        yield url, script


def test_text_search_is_confirmed_by_the_openai_judge(make_hub: Callable[..., Hub], kit: types.SimpleNamespace,
                                                      judge_server: tuple[str, Script],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url, script = judge_server
    judge = create_judge("openai", base_url=url, model="judge", timeout_s=60.0, max_retries=2)
    hub = make_hub(verifier=JudgeVerifier(judge, DecisionPolicy(), name="openai"))
    query = SearchQuery(text=text_query("woman, red top, backpack, sunglasses"), top_k=5, camera_ids=["cam-1"],
                        time_range=(40.0, 60.0))
    outcome, seen, view = asyncio.run(run_text_search(hub, kit, query))
    (job,) = seen
    assert job.HasField("text") and len(job.queries) == 0 and job.top_k == 5 and list(job.camera_ids) == ["cam-1"]
    assert job.HasField("time_range") and "upper" in {c.part for c in job.text.constraints}
    assert outcome.complete and [h.tracklet_id for h in outcome.hits] == ["edge-a-red", "edge-a-blue",
                                                                          "edge-a-old"], outcome.notes
    red, blue, old = outcome.hits
    assert red.text_score == pytest.approx(0.6) and blue.text_score == pytest.approx(0.7)  # stage one: blue first
    assert red.judge_score == pytest.approx(0.9 / 0.99, abs=1e-3) and blue.judge_score < 0.2  # stage two: red
    assert red.score > blue.score > old.score  # type: ignore[operator]
    assert (red.p_same, red.stage1_p_same, red.stage2_p_same, red.same) == (None, None, None, None)  # not P(same)
    matched = {c.describe(): p for c, p in red.matched}
    assert matched["upper red"] == pytest.approx(0.8) and matched["backpack"] == pytest.approx(0.9, abs=1e-6)
    assert old.attributes is None and old.matched == ()
    assert red.attributes is not None and red.attributes.upper.name == "red"  # type: ignore[union-attr]
    assert red.attributes.upper.confidence == pytest.approx(0.8)  # type: ignore[union-attr]  # float32 on the wire
    assert outcome.text is not None and outcome.text.ignored == ("sunglasses",)
    assert UNCALIBRATED_NOTE in outcome.notes and f"edge-a: {NOTE}" in outcome.notes
    texts = [body for _, _, body in script.requests]
    assert len(texts) == 3 and all(len([c for c in b["messages"][0]["content"] if c["type"] == "image_url"]) == 1
                                   for b in texts)
    # the REST view: both stages' fields, what matched, the colours read, the ignored words, the notes
    top = view["hits"][0]
    assert (top["tracklet_id"], top["verdict"], top["p_same"]) == ("edge-a-red", "unjudged", None)
    assert top["text_score"] == pytest.approx(0.6) and top["judge_score"] > 0.9 and "not a P(same)" in top["score_kind"]
    assert top["attributes"]["upper"] == {"name": "red", "confidence": pytest.approx(0.8)}
    upper = next(m for m in top["matched"] if m["constraint"] == "upper red")
    assert upper["matched"] is True and upper["source"] and upper["probability"] == pytest.approx(0.8)
    assert view["text"]["ignored"] == ["sunglasses"] and f"edge-a: {NOTE}" in view["notes"]
    # the CLI's table of it (`crossview search --text`)
    assert print_text_search(view)
    out = capsys.readouterr().out
    assert "ignored (not searched): 'sunglasses'" in out and f"note: edge-a: {NOTE}" in out
    first = next(line for line in out.splitlines() if line.startswith("1 "))
    assert first.split()[:4] == ["1", "edge-a", "cam-1", "video"] and "upper-red" in first and "backpack" in first
    assert "0.60" in first and "upper red, lower black" in first and "not-male" in first
    second = next(line for line in out.splitlines() if line.startswith("2 "))
    assert "!upper-red" in second and "!backpack" in second and "upper blue" in second  # what did not match
    assert "(no attributes)" in out and "not a P(same)" in out


def test_the_reid_judge_cannot_read_so_stage_one_order_stands(make_hub: Callable[..., Hub],
                                                              kit: types.SimpleNamespace) -> None:
    hub = make_hub()  # the colour model's reid judge
    outcome, _, view = asyncio.run(run_text_search(hub, kit, SearchQuery(text=text_query("red top"))))
    assert [h.tracklet_id for h in outcome.hits] == ["edge-a-blue", "edge-a-red", "edge-a-old"]
    assert all(h.judge_score is None for h in outcome.hits)
    assert [h.score for h in outcome.hits] == pytest.approx([0.7, 0.6, 0.1])
    assert any("reid judge cannot confirm a description" in n and "stage-one order" in n for n in view["notes"])
    assert [h["judge_score"] for h in view["hits"]] == [None, None, None]


# -- REST ----------------------------------------------------------------------------------------------

def test_rest_text_search_and_its_refusals(tmp_path: Path) -> None:
    with start_hub_api(tmp_path, **colour_hub_kwargs()) as api:
        ok = api.client.post("/api/search", data={"text": "man with a hat and glasses", "deadline_s": "0.5"})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["hits"] == [] and body["edges_asked"] == [] and body["text"]["ignored"] == ["glasses"]
        assert "male" in body["text"]["constraints"] and "hat" in body["text"]["constraints"]
        filters = api.client.post("/api/search", data={"male": "false", "upper_colour": "red", "deadline_s": "0.5"})
        assert filters.status_code == 200 and filters.json()["text"]["constraints"] == ["not male", "upper red"]
        photo = [("photos", ("q.jpg", colour_jpeg("red"), "image/jpeg"))]
        for files, data, status, detail in [
            (None, {"text": ""}, 422, "empty"),
            (None, {"text": "sunglasses"}, 422, "no known word"),
            (None, {"text": "x" * 10_000}, 422, "at most 1000 characters"),
            (None, {"upper_colour": "mauve"}, 422, "unknown colour 'mauve'"),
            (None, {"text": "red top", "camera_ids": ["cam-9"]}, 422, "unknown camera 'cam-9'"),
            (None, {"text": "red top", "sites": ["mars"]}, 422, "unknown site 'mars'"),
            (None, {"text": "red top", "start_s": "5"}, 422, "start_s, end_s"),
            (photo, {"text": "red top"}, 400, "expected exactly one"),
        ]:
            reply = api.client.post("/api/search", files=files, data=data)
            assert reply.status_code == status and detail in reply.json()["detail"], (data, reply.text)


def test_cli_search_by_description(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    with start_hub_api(tmp_path, **colour_hub_kwargs()) as api:
        login = ["--hub", api.url, "--user", api.username, "--password", api.password]
        result = CliRunner().invoke(app, ["search", "--text", "woman with a backpack and glasses", "--upper-colour",
                                          "red", "--no-hat", "--deadline", "0.5", *login])
        assert result.exit_code == 1 and "no edge is connected" in result.output  # nothing was searched
        assert "understood: not male, backpack, not hat, upper red" in result.output
        assert "ignored (not searched): 'glasses'" in result.output
        bad = CliRunner().invoke(app, ["search", "--text", "red top", "--lower-colour", "mauve", *login])
        assert isinstance(bad.exception, HubApiError) and "unknown colour 'mauve'" in str(bad.exception)
        both = CliRunner().invoke(app, ["search", "--text", "red top", "--identity", "id-1", *login])
        assert isinstance(both.exception, HubApiError) and "exactly one of them" in str(both.exception)
