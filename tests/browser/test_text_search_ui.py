"""Search by description in the web UI (issue 15), in Chromium against a real hub (gRPC + REST on 127.0.0.1).

The edge is a small gRPC client that answers every text job with two recorded tracklets and their attributes,
as an edge with attributes on does (the edge's own ranking is tested in tests/edge and tests/integration); the
hub's judge is the `openai` judge on the fake chat-completions server, which says Yes to the red photo.
No timing assertions: every wait is on a condition.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from crossview_testing.colour_model import DIM, FP, ColourEmbedder, crop, jpeg
from crossview_testing.fake_openai import fake_openai_server, text_answer
from crossview_testing.hub_api import HubApi, colour_hub_kwargs, start_hub_api
from crossview_testing.web_ui import wait_for_search

from cloud.verification import DecisionPolicy, JudgeVerifier
from models.attributes.types import ATTRIBUTE_NAMES, AttributeProfile, ColourReading
from models.verify import create_judge
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2, session_pb2_grpc

NOTE = "2 tracklets have no attributes yet (recorded before attributes were on) and were not searched"


def profile(upper: str, **probabilities: float) -> AttributeProfile:
    values = {name: 0.1 for name in ATTRIBUTE_NAMES} | probabilities
    return AttributeProfile(values, ColourReading(upper, 0.85), ColourReading("black", 0.6), crops=3)


def text_hit(tracklet: str, colour: str, score: float, attributes: AttributeProfile) -> edge_to_hub_pb2.SearchHit:
    return edge_to_hub_pb2.SearchHit(
        tracklet_id=tracklet, camera_id="cam-1", span=codec.time_range_to_proto(12.0, 15.0),
        stage1_distance=1.0 - score, crop=common_pb2.CropImage(jpeg=jpeg(colour, seed=3, hw=(128, 64))),
        vector=codec.vector_to_proto(ColourEmbedder(FP).embed([crop(colour)]).vectors[0], FP),
        text_score=score, attributes=codec.attributes_to_proto(attributes))


class TextEdge:
    """An edge session on its own thread: Hello, then one SearchResult (and an ack) per search job."""

    def __init__(self, address: str, token: str, edge_id: str = "edge-text") -> None:
        self.edge_id = edge_id
        self.jobs: list[Any] = []
        self._outgoing: queue.Queue[session_pb2.EdgeMessage | None] = queue.Queue()
        self._channel = grpc.insecure_channel(address)
        self._call = session_pb2_grpc.EdgeHubStub(self._channel).Session(
            self._requests(), metadata=(("authorization", f"Bearer {token}"),))
        self.welcomed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._outgoing.put(session_pb2.EdgeMessage(hello=edge_to_hub_pb2.Hello(
            edge_id=edge_id, site="site-1", model_fingerprint=FP, embedding_dim=DIM,
            cameras=[edge_to_hub_pb2.CameraInfo(camera_id="cam-1", name="Lobby", fps=10.0)])))
        self._thread.start()

    def _requests(self) -> Iterator[session_pb2.EdgeMessage]:
        while (message := self._outgoing.get()) is not None:
            yield message

    def _serve(self) -> None:
        try:
            for message in self._call:
                body = message.WhichOneof("body")
                if body == "welcome":
                    self.welcomed.set()
                elif body == "search_job":
                    self._answer(message)
        except grpc.RpcError:
            pass  # closed

    def _answer(self, message: session_pb2.HubMessage) -> None:
        job = message.search_job
        self.jobs.append(job)
        hits = [text_hit("t-blue", "blue", 0.7, profile("blue")),
                text_hit("t-red", "red", 0.55, profile("red", backpack=0.9))]
        self._outgoing.put(session_pb2.EdgeMessage(search_result=edge_to_hub_pb2.SearchResult(
            job_id=job.job_id, edge_id=self.edge_id, batch_index=0, done=True, idempotency_key=f"{job.job_id}/0",
            hits=hits, notes=[NOTE])))
        self._outgoing.put(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=message.sequence)))

    def close(self) -> None:
        self._outgoing.put(None)
        self._call.cancel()
        self._channel.close()
        self._thread.join(10)


def red_means_yes(description: str, image: np.ndarray) -> float:
    b, _, r = image.reshape(-1, 3).mean(axis=0)
    return 0.9 if ("red" in description) == (r > b) else 0.1


@pytest.fixture
def described_site(tmp_path: Path, ui: Any) -> Iterator[tuple[HubApi, TextEdge]]:
    with fake_openai_server() as (url, script):
        script.answer = text_answer(red_means_yes)
        judge = create_judge("openai", base_url=url, model="judge", timeout_s=60.0, max_retries=2)
        kwargs = colour_hub_kwargs() | {"verifier": JudgeVerifier(judge, DecisionPolicy(), name="openai")}
        with start_hub_api(tmp_path, username=ui.USERNAME, password=ui.PASSWORD, **kwargs) as api:
            edge = TextEdge(api.running.grpc_address, api.running.create_edge_token("edge-text"))
            try:
                assert edge.welcomed.wait(30), "the hub did not welcome the edge"
                yield api, edge
            finally:
                edge.close()


def test_search_by_description_shows_what_matched_and_the_colours_read(
        described_site: tuple[HubApi, TextEdge], page: Any, ui: Any, screenshot: Any) -> None:
    api, edge = described_site
    ui.log_in(page, api.url)
    page.get_by_test_id("describe-text").fill("woman in a red top with a backpack and sunglasses")
    page.get_by_test_id("filter-lower_colour").select_option("black")
    page.get_by_test_id("filter-hat").select_option("false")
    page.get_by_test_id("describe-submit").click()
    wait_for_search(page, "description: woman in a red top with a backpack and sunglasses; no hat; lower black")
    (job,) = edge.jobs
    assert job.HasField("text") and not job.queries
    results = page.get_by_test_id("result")
    assert results.count() == 2
    top = results.nth(0)
    assert top.get_attribute("data-edge-id") == "edge-text"
    assert top.get_by_test_id("result-colour-upper").get_attribute("data-colour") == "red"
    assert "top: red (0.85)" in top.get_by_test_id("result-colour-upper").inner_text()
    constraints = top.get_by_test_id("result-constraint")
    matched = {constraints.nth(i).get_attribute("data-constraint"): constraints.nth(i).get_attribute("data-matched")
               for i in range(constraints.count())}
    assert matched["upper red"] == "true" and matched["backpack"] == "true" and matched["not hat"] == "true"
    assert matched["lower black"] == "true"
    second = results.nth(1).get_by_test_id("result-constraint")
    second_matched = {second.nth(i).get_attribute("data-constraint"): second.nth(i).get_attribute("data-matched")
                      for i in range(second.count())}
    assert second_matched["upper red"] == "false" and second_matched["backpack"] == "false"
    assert top.get_by_test_id("result-text-score").inner_text() == "0.55"
    assert float(top.get_by_test_id("result-judge-score").inner_text()) > 0.9
    assert "(raw)" in top.get_by_test_id("result-score").inner_text()
    assert top.get_by_test_id("result-p-same").count() == 0  # no P(same) for a description
    assert 'Ignored (not searched): "sunglasses"' in page.get_by_test_id("search-ignored").inner_text()
    notes = page.get_by_test_id("search-note").all_inner_texts()
    assert f"edge-text: {NOTE}" in notes and any("not a P(same)" in n for n in notes)
    screenshot(page, "search-by-description")
    # a description that names nothing the parser knows: the API's one line, no results replaced
    page.get_by_test_id("describe-text").fill("sunglasses")
    page.get_by_test_id("filter-lower_colour").select_option("")
    page.get_by_test_id("filter-hat").select_option("")
    page.get_by_test_id("describe-submit").click()
    page.wait_for_selector("[data-testid=error]:visible")
    assert "no known word" in page.get_by_test_id("error").inner_text()
