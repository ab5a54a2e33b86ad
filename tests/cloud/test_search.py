"""Search fan-out to edges connected over real gRPC, each answering its own way."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable

import pytest

from cloud.hub import Hub
from cloud.search import SearchQuery
from cloud.sessions import SessionLimits
from cloud.wire import ShortListInput, decode_search_result, decode_short_list
from models.errors import InvalidInputError
from models.scores import DEFAULT_CONFIRM_P_SAME
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

OK, DUPLICATE = common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE


def hit(kit: types.SimpleNamespace, tracklet: str, colour: str, distance: float) -> edge_to_hub_pb2.SearchHit:
    return edge_to_hub_pb2.SearchHit(
        tracklet_id=tracklet, camera_id="cam-1", span=codec.time_range_to_proto(50.0, 52.0),
        stage1_distance=distance, crop=common_pb2.CropImage(jpeg=kit.jpeg(colour, seed=7)),
        vector=codec.vector_to_proto(kit.vector(colour), kit.FP))


def decode(kit: types.SimpleNamespace, key: str, colour: str, candidates: list[tuple[str, float]]) -> ShortListInput:
    return decode_short_list(kit.short_list(key, colour, candidates).short_list, edge_id="edge-a",
                             fingerprint=kit.FP, dim=kit.DIM)


def result(job_id: str, edge_id: str, batch: int, hits: list, *, done: bool,
           error: str = "") -> session_pb2.EdgeMessage:
    msg = edge_to_hub_pb2.SearchResult(job_id=job_id, edge_id=edge_id, hits=hits, batch_index=batch, done=done,
                                       idempotency_key=f"{job_id}/{batch}")
    if error:
        msg.error.CopyFrom(common_pb2.Error(code=common_pb2.ERROR_CODE_INTERNAL, message=error))
    return session_pb2.EdgeMessage(search_result=msg)


async def answer(kit: types.SimpleNamespace, edge: object, edge_id: str, behaviour: str,
                 seen: list[edge_to_hub_pb2.SearchJob]) -> None:
    """One edge's side: answer each SearchJob according to `behaviour`."""
    while True:
        message = await edge.recv_until(lambda m: m.WhichOneof("body") == "search_job")  # type: ignore[attr-defined]
        job = message.search_job
        seen.append(job)
        codec.vector_from_proto(job.queries[0], kit.DIM, kit.FP)  # its own model's vectors
        if behaviour == "full":
            first = result(job.job_id, edge_id, 0, [hit(kit, f"{edge_id}-red", "red", 0.30),
                                                   hit(kit, f"{edge_id}-blue", "blue", 0.25)], done=False)
            await edge.send(first)  # type: ignore[attr-defined]
            assert (await edge.ack_key(f"{job.job_id}/0")).ack.status == OK  # type: ignore[attr-defined]
            await edge.send(first)  # type: ignore[attr-defined]  # a retry: counted once
            assert (await edge.ack_key(f"{job.job_id}/0")).ack.status == DUPLICATE  # type: ignore[attr-defined]
            await edge.send(result(job.job_id, edge_id, 1, [hit(kit, f"{edge_id}-green", "green", 0.5)],  # type: ignore[attr-defined]
                                   done=True))
        elif behaviour == "partial":
            await edge.send(result(job.job_id, edge_id, 0, [hit(kit, f"{edge_id}-red", "red", 0.2)], done=False))  # type: ignore[attr-defined]
        elif behaviour == "failed":
            await edge.send(result(job.job_id, edge_id, 0, [], done=True, error="local store unreadable"))  # type: ignore[attr-defined]
        await edge.send(session_pb2.EdgeMessage(ack=edge_to_hub_pb2.EdgeAck(hub_sequence=message.sequence)))  # type: ignore[attr-defined]


async def connect(hub: Hub, kit: types.SimpleNamespace, port: int, edge_ids: list[str]) -> list:
    edges = []
    for edge_id in edge_ids:
        edge = kit.EdgeClient(port, hub.auth.create_token(edge_id).token)
        await edge.send(kit.hello(edge_id))
        assert (await edge.recv()).WhichOneof("body") == "welcome"
        edges.append(edge)
    return edges


def test_search_everywhere_ranks_by_judge(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()

    async def run() -> None:
        port = await hub.start()
        edges = await connect(hub, kit, port, ["edge-a", "edge-b"])
        seen: list = []
        tasks = [asyncio.create_task(answer(kit, e, i, "full", seen)) for e, i in zip(edges, ["edge-a", "edge-b"],
                                                                                          strict=True)]
        outcome = await hub.search.search(SearchQuery(photos=[kit.jpeg("red", seed=3)], top_k=5,
                                                      camera_ids=["cam-1"], time_range=(40.0, 60.0)), deadline_s=30)
        assert outcome.complete and outcome.edges_answered == ["edge-a", "edge-b"] and not outcome.edges_silent
        assert len(outcome.hits) == 6
        assert {h.tracklet_id for h in outcome.hits[:2]} == {"edge-a-red", "edge-b-red"}  # despite blue's d=0.25
        best, worst = outcome.hits[0], outcome.hits[-1]
        assert best.stage2_p_same > 0.9 > worst.stage2_p_same  # type: ignore[operator]
        assert all(0.0 <= p <= 1.0 for h in outcome.hits for p in (h.p_same, h.stage1_p_same, h.stage2_p_same))  # type: ignore[operator]
        assert [h.p_same for h in outcome.hits] == sorted((h.p_same for h in outcome.hits), reverse=True)  # type: ignore[type-var]
        assert best.same and outcome.sightings == []  # a photo has no stored sightings
        assert outcome.hits[0].jpeg == kit.jpeg("red", seed=7) and outcome.hits[0].start_s == 50.0
        job = seen[0]
        assert job.top_k == 5 and list(job.camera_ids) == ["cam-1"] and job.HasField("time_range")
        # by identity (its stored vectors) and by sighting (its crop): the same edges are asked
        red = hub.gallery.enroll([kit.jpeg("red", seed=8)]).identity_id
        by_identity = await hub.search.search(SearchQuery(identity_id=red), deadline_s=30)
        assert by_identity.complete and by_identity.hits[0].tracklet_id.endswith("-red")
        for task in tasks:
            task.cancel()
        for edge in edges:
            await edge.close()
        await hub.stop()

    asyncio.run(run())


def test_partial_failed_and_silent_edges(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()
    names = ["edge-a", "edge-b", "edge-c", "edge-d"]

    async def run() -> None:
        port = await hub.start()
        edges = await connect(hub, kit, port, names)
        seen: list = []
        tasks = [asyncio.create_task(answer(kit, e, i, b, seen))  # edge-d is silent: it reads nothing
                 for e, i, b in zip(edges[:3], names[:3], ["full", "partial", "failed"], strict=True)]
        # edge-d never answers, so the search waits out its deadline: long enough for the others on a loaded box
        outcome = await hub.search.search(SearchQuery(photos=[kit.jpeg("red")]), deadline_s=6)
        assert not outcome.complete
        assert (outcome.edges_answered, outcome.edges_partial, outcome.edges_silent) == (
            ["edge-a"], ["edge-b"], ["edge-d"])
        assert outcome.edges_failed == {"edge-c": "local store unreadable"}
        assert {h.edge_id for h in outcome.hits} == {"edge-a", "edge-b"}  # partial answers count
        # a late answer is acknowledged (and dropped), so the edge does not keep it forever
        late = result(outcome.job_id, "edge-d", 0, [hit(kit, "late", "red", 0.1)], done=True)
        await edges[3].send(late)
        assert (await edges[3].ack_key(f"{outcome.job_id}/0")).ack.status == OK
        unknown = result("job-unknown", "edge-d", 0, [], done=True)
        await edges[3].send(unknown)
        assert (await edges[3].ack_key("job-unknown/0")).ack.status == common_pb2.ACK_STATUS_REJECTED
        for task in tasks:
            task.cancel()
        for edge in edges:
            await edge.close()
        await hub.stop()

    asyncio.run(run())


def test_no_edges_and_bad_queries(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub()

    async def run() -> None:
        outcome = await hub.search.search(SearchQuery(photos=[kit.jpeg("red")]), deadline_s=5)
        assert outcome.hits == [] and outcome.edges_asked == [] and outcome.complete
        for fields in [{}, {"photos": [kit.jpeg("red")], "identity_id": "x"}, {"identity_id": ""},
                       {"photos": [kit.jpeg("red")], "top_k": 0}]:
            with pytest.raises(InvalidInputError):
                SearchQuery(**fields)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await hub.search.search(SearchQuery(photos=[b"not a jpeg"]))

    asyncio.run(run())


def test_search_reaches_edges_connected_to_another_replica(make_hub: Callable[..., Hub], kit: types.SimpleNamespace,
                                                           open_store: Callable[[], object]) -> None:
    """Two replicas on one database: a search started on replica a is answered by edge-a (on a) and edge-b
    (on b); b keeps edge-b's batches in the store (a retried batch once) and a collects them."""
    limits = SessionLimits(poll_interval_s=0.1, heartbeat_interval_ms=60_000)
    a = make_hub(store=open_store(), limits=limits, hub_id="replica-a")
    b = make_hub(store=open_store(), limits=limits, hub_id="replica-b")

    async def run() -> None:
        port_a, port_b = await a.start(), await b.start()
        (edge_a,) = await connect(a, kit, port_a, ["edge-a"])
        (edge_b,) = await connect(b, kit, port_b, ["edge-b"])
        seen: list[edge_to_hub_pb2.SearchJob] = []
        tasks = [asyncio.create_task(answer(kit, e, name, "full", seen))
                 for e, name in ((edge_a, "edge-a"), (edge_b, "edge-b"))]
        try:
            outcome = await a.search.search(SearchQuery(photos=[kit.jpeg("red", seed=3)], top_k=5), deadline_s=30)
        finally:
            for task in tasks:
                task.cancel()
        assert (outcome.edges_asked, outcome.edges_answered, outcome.complete) == (["edge-a", "edge-b"],
                                                                                   ["edge-a", "edge-b"], True)
        assert sorted(h.tracklet_id for h in outcome.hits) == sorted(
            f"{e}-{c}" for e in ("edge-a", "edge-b") for c in ("red", "blue", "green"))
        assert {h.tracklet_id for h in outcome.hits[:2]} == {"edge-a-red", "edge-b-red"}  # the judge ranks red first
        assert len({job.job_id for job in seen}) == 1
        # a batch for a job nobody started, or from an edge the job was not sent to, is refused by b
        stray = edge_to_hub_pb2.SearchResult(job_id="job-unknown", batch_index=0, done=True)
        assert b.search.jobs.on_result("edge-b", decode_search_result(stray))[0] == "rejected"
        for edge in (edge_a, edge_b):
            await edge.close()
        await a.stop()
        await b.stop()

    asyncio.run(run())


def test_search_verdicts_use_the_hub_s_decision_line(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    line = getattr(hub.shortlists.verifier.policy, "confirm_p_same", DEFAULT_CONFIRM_P_SAME)  # type: ignore[attr-defined]
    assert hub.search.same_above == line


def test_by_identity_or_sighting_the_stored_sightings_come_first(make_hub: Callable[..., Hub],
                                                                 kit: types.SimpleNamespace) -> None:
    """With no edge connected, a search by identity or by sighting still returns what the hub holds."""
    hub = make_hub()
    hub.auth.create_token("edge-a")
    hub.store.record_hello("edge-a", site="", model_fingerprint=kit.FP, embedding_dim=kit.DIM, cameras=[],
                           gallery_version=0, acked_sequence=0, hub_id="gone", now=0.0)
    hub.store.record_disconnect("edge-a", hub_id="gone", now=1.0)
    red = hub.gallery.enroll([kit.jpeg("red")]).identity_id
    seen = [hub.shortlists.process(decode(kit, f"k{i}", "red", [(red, 0.2)])).sighting_id for i in range(3)]
    stranger = hub.shortlists.process(decode(kit, "k9", "blue", [(red, 0.4)]))
    assert stranger.verdict.decision == "rejected"  # type: ignore[union-attr]

    async def run() -> None:
        by_identity = await hub.search.search(SearchQuery(identity_id=red), deadline_s=5)
        assert by_identity.edges_asked == [] and by_identity.hits == []  # no edge is connected
        assert [s.sighting_id for s in by_identity.sightings] == seen[::-1]  # newest first
        by_sighting = await hub.search.search(SearchQuery(sighting_id=seen[0]), deadline_s=5)
        assert [s.sighting_id for s in by_sighting.sightings] == seen[::-1]  # that person's
        by_unknown = await hub.search.search(SearchQuery(sighting_id=stranger.sighting_id), deadline_s=5)
        assert [s.sighting_id for s in by_unknown.sightings] == [stranger.sighting_id]

    asyncio.run(run())

