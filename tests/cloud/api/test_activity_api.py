"""Sightings, alerts (list and server-sent events), edges and search over the REST API, with a real gRPC edge."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from crossview_testing.hub_api import HubApi, start_hub_api

from cloud.hub import Hub
from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2


def enroll(api: HubApi, jpeg: bytes, **form: str) -> str:
    reply = api.client.post("/api/identities", files=[("photos", ("p.jpg", jpeg, "image/jpeg"))], data=form)
    assert reply.status_code == 201, reply.text
    return reply.json()["identity_id"]


def test_sightings_and_alerts(api: HubApi, kit: types.SimpleNamespace, edge_runner: Callable) -> None:
    red = enroll(api, kit.jpeg("red"), display_name="Red", watchlist_threshold="0.8")
    blue = enroll(api, kit.jpeg("blue"), display_name="Blue")
    asyncio.run(edge_runner(kit, api.running, [
        kit.short_list("k1", "red", [(red, 0.2)]),
        kit.short_list("k2", "blue", [(blue, 0.2)], camera_id="cam-2"),
        kit.short_list("k3", "red", [(red, 0.25)], camera_id="cam-2")]))
    sightings = api.client.get("/api/sightings").json()
    assert [(s["identity_id"], s["camera_id"]) for s in sightings] == [(red, "cam-2"), (blue, "cam-2"),
                                                                       (red, "cam-1")]  # newest first
    first = sightings[-1]
    assert (first["display_name"], first["edge_id"], first["site"], first["tracklet_id"]) == (
        "Red", "edge-a", "site-1", "t-k1")
    assert (first["start_s"], first["end_s"], first["wall_clock"], first["start_utc"]) == (100.0, 103.5, False, None)
    assert first["time_label"] == "video +100.0–103.5 s"  # a replay's offsets, labelled as such
    assert 0.8 <= first["p_same"] <= 1.0 and first["stage2_p_same"] is not None
    assert first["crop_url"] == f"/api/sightings/{first['sighting_id']}/crop"
    assert api.client.get(f"/api/sightings/{first['sighting_id']}").json() == first
    crop = api.client.get(first["crop_url"])
    assert crop.headers["content-type"] == "image/jpeg" and crop.content.startswith(b"\xff\xd8")
    assert len(api.client.get("/api/sightings", params={"identity_id": red}).json()) == 2
    assert len(api.client.get("/api/sightings", params={"camera_id": "cam-2"}).json()) == 2
    assert api.client.get("/api/sightings", params={"unknown": "maybe"}).status_code == 422
    assert len(api.client.get("/api/sightings", params={"edge_id": "edge-b"}).json()) == 0
    assert len(api.client.get("/api/sightings", params={"limit": 1}).json()) == 1
    assert api.client.get("/api/sightings", params={"limit": 0}).status_code == 422
    assert api.client.get("/api/sightings/999").json() == {"detail": "unknown sighting 999"}
    assert api.client.get("/api/sightings/abc").status_code == 422

    identity = api.client.get(f"/api/identities/{red}").json()
    assert (identity["sighting_count"], identity["last_seen_s"]) == (2, 103.5)

    alerts = api.client.get("/api/alerts").json()
    assert [(a["identity_id"], a["display_name"], a["camera_id"]) for a in alerts] == [(red, "Red", "cam-1"),
                                                                                       (red, "Red", "cam-2")]
    assert alerts[0]["crop_url"] == f"/api/sightings/{alerts[0]['sighting_id']}/crop"
    assert alerts[0]["p_same"] == first["p_same"] >= 0.8  # a confirmed sighting at or above the watch threshold
    assert (alerts[0]["start_s"], alerts[0]["time_label"]) == (100.0, "video +100.0–103.5 s")
    assert api.client.get("/api/alerts", params={"after_id": alerts[0]["alert_id"]}).json() == alerts[1:]


def test_unknown_sightings_are_listed_searched_and_promoted(make_hub: Callable[..., Hub], tmp_path: Path,
                                                            kit: types.SimpleNamespace, edge_runner: Callable) -> None:
    """A hub without automatic identities: a person nobody knew is an unknown sighting, not nothing."""
    with start_hub_api(tmp_path, hub=make_hub()) as api:
        red = enroll(api, kit.jpeg("red"), display_name="Red")
        (verdict,) = asyncio.run(edge_runner(kit, api.running, [
            kit.short_list("k1", "green", [(red, 0.4)], camera_id="cam-3")]))
        assert verdict.decision == hub_to_edge_pb2.DECISION_REJECTED
        unknown = api.client.get("/api/sightings", params={"unknown": "true"}).json()
        assert [(s["identity_id"], s["display_name"], s["camera_id"], s["p_same"]) for s in unknown] == [
            (None, "", "cam-3", None)]
        assert api.client.get(unknown[0]["crop_url"]).content.startswith(b"\xff\xd8")
        assert api.client.get(f"/api/identities/{red}").json()["sighting_count"] == 0
        # searchable: with no edge connected, the search by that sighting answers with it alone
        found = api.client.post("/api/search", data={"sighting_id": unknown[0]["sighting_id"], "deadline_s": "1"})
        assert found.status_code == 200 and found.json()["sightings"] == unknown and found.json()["edges_asked"] == []
        # promoted to an identity: the sighting becomes theirs
        promoted = api.client.post("/api/identities/from-sighting", json={
            "sighting_id": unknown[0]["sighting_id"], "display_name": "Green", "watchlist_threshold": 0.9})
        assert promoted.status_code == 201, promoted.text
        body = promoted.json()
        assert (body["display_name"], body["source"], body["sighting_count"], body["watchlist_threshold"]) == (
            "Green", "sighting", 1, 0.9)
        assert api.client.get("/api/sightings", params={"unknown": "true"}).json() == []
        (theirs,) = api.client.get(f"/api/identities/{body['identity_id']}/sightings").json()
        assert theirs["sighting_id"] == unknown[0]["sighting_id"]


def _sse_events(lines: Iterator[str]) -> Iterator[dict]:
    event: dict = {}
    for line in lines:
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif not line.startswith(":") and ":" in line:
            key, _, value = line.partition(":")
            event[key] = value.strip()


def test_alert_stream_delivers_new_alerts_and_resumes(api: HubApi, kit: types.SimpleNamespace,
                                                      edge_runner: Callable) -> None:
    red = enroll(api, kit.jpeg("red"), display_name="Red", watchlist_threshold="0.5")
    asyncio.run(edge_runner(kit, api.running, [kit.short_list("k0", "red", [(red, 0.2)])]))
    (old,) = api.client.get("/api/alerts").json()
    with api.client.stream("GET", "/api/alerts/stream", params={"after_id": old["alert_id"]},
                           timeout=httpx.Timeout(60.0)) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # connected: the alert below comes after this
        asyncio.run(edge_runner(kit, api.running, [kit.short_list("k1", "red", [(red, 0.2)], camera_id="cam-9")]))
        event = next(_sse_events(lines))
    assert event["event"] == "alert"
    alert = json.loads(event["data"])
    assert (alert["identity_id"], alert["display_name"], alert["camera_id"]) == (red, "Red", "cam-9")
    assert int(event["id"]) == alert["alert_id"] > old["alert_id"]

    # a reconnecting browser sends Last-Event-ID: it gets what came after, not what it has seen
    asyncio.run(edge_runner(kit, api.running, [kit.short_list("k2", "red", [(red, 0.2)], camera_id="cam-7")]))
    with api.client.stream("GET", "/api/alerts/stream", headers={"last-event-id": event["id"]},
                           timeout=httpx.Timeout(60.0)) as stream:
        resumed = json.loads(next(_sse_events(stream.iter_lines()))["data"])
    assert resumed["camera_id"] == "cam-7"

    # a new browser asks for the newest alert only (latest=1), not the whole history of three
    with api.client.stream("GET", "/api/alerts/stream", params={"latest": 1}, timeout=httpx.Timeout(60.0)) as stream:
        newest = json.loads(next(_sse_events(stream.iter_lines()))["data"])
    assert newest["alert_id"] == resumed["alert_id"] == api.running.hub.store.newest_alert_id()


def test_alert_stream_sends_keep_alives_and_ends_when_the_server_stops(make_hub: Callable[..., Hub],
                                                                       tmp_path: Path) -> None:
    with start_hub_api(tmp_path, hub=make_hub(), alert_keep_alive_s=0.2) as api:
        _keep_alives_then_stop(api)


def _keep_alives_then_stop(api: HubApi) -> None:
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        try:
            with api.client.stream("GET", "/api/alerts/stream", timeout=httpx.Timeout(60.0)) as stream:
                for line in stream.iter_lines():
                    seen.append(line)
        except httpx.HTTPError:
            pass
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for _ in range(600):
        if seen.count(": keep-alive") >= 2:
            break
        done.wait(0.1)
    assert seen.count(": keep-alive") >= 2, seen
    api.running.stop()
    assert done.wait(60), "the stream did not end when the server stopped"


def test_edges(api: HubApi, kit: types.SimpleNamespace, edge_runner: Callable) -> None:
    async def while_connected(edge: object) -> None:
        await edge.send(session_pb2.EdgeMessage(heartbeat=edge_to_hub_pb2.EdgeHeartbeat(  # type: ignore[attr-defined]
            outbox_depth=4, cameras=[edge_to_hub_pb2.CameraStats(camera_id="cam-1", fps=7.5)])))
        for _ in range(600):
            edges = (await asyncio.to_thread(api.client.get, "/api/edges")).json()
            if edges and edges[0]["outbox_depth"] == 4:
                break
            await asyncio.sleep(0.1)
        (edge_a,) = edges
        assert (edge_a["edge_id"], edge_a["site"], edge_a["connected"], edge_a["model_fingerprint"]) == (
            "edge-a", "site-1", True, kit.FP)
        assert edge_a["connected_hub_id"] == api.running.hub.hub_id and edge_a["last_seen_s"] is not None
        assert edge_a["cameras"] == [{"camera_id": "cam-1", "fps": 7.5, "status": "running", "since_s": None}]

    asyncio.run(edge_runner(kit, api.running, [], during=while_connected))
    api.running.create_edge_token("edge-new", site="north")  # registered, never connected
    for _ in range(600):  # the hub notices the closed stream on its own loop, a moment after the edge leaves
        edges = {e["edge_id"]: e for e in api.client.get("/api/edges").json()}
        if not edges["edge-a"]["connected"]:
            break
        time.sleep(0.05)
    assert edges["edge-a"]["connected"] is False
    assert edges["edge-a"]["cameras"] == [{"camera_id": "cam-1", "fps": 7.5, "status": "offline", "since_s": None}]
    assert (edges["edge-new"]["site"], edges["edge-new"]["cameras"], edges["edge-new"]["outbox_depth"]) == (
        "north", [], None)


def _hit(kit: types.SimpleNamespace, tracklet: str, colour: str, distance: float) -> edge_to_hub_pb2.SearchHit:
    return edge_to_hub_pb2.SearchHit(
        tracklet_id=tracklet, camera_id="cam-1", span=codec.time_range_to_proto(50.0, 52.0),
        stage1_distance=distance, crop=common_pb2.CropImage(jpeg=kit.jpeg(colour, seed=7)),
        vector=codec.vector_to_proto(kit.vector(colour), kit.FP))


def test_search(api: HubApi, kit: types.SimpleNamespace, edge_runner: Callable) -> None:
    red = enroll(api, kit.jpeg("red"), display_name="Red")

    async def answer_searches(edge: object) -> None:
        async def answer() -> None:
            message = await edge.recv_until(lambda m: m.WhichOneof("body") == "search_job")  # type: ignore[attr-defined]
            job = message.search_job
            await edge.send(session_pb2.EdgeMessage(search_result=edge_to_hub_pb2.SearchResult(  # type: ignore[attr-defined]
                job_id=job.job_id, edge_id="edge-a", batch_index=0, done=True, idempotency_key=f"{job.job_id}/0",
                hits=[_hit(kit, "t-k1", "red", 0.3), _hit(kit, "t-other", "blue", 0.2)])))

        task = asyncio.create_task(answer())
        photo = ("q.png", kit.jpeg("red", seed=5), "image/jpeg")
        reply = await asyncio.to_thread(api.client.post, "/api/search", files=[("photos", photo)],
                                        data={"top_k": "5", "deadline_s": "30"})
        await task
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["complete"], body["edges_asked"], body["edges_answered"]) == (True, ["edge-a"], ["edge-a"])
        assert (body["edges_failed"], body["edges_silent"], body["edges_partial"]) == ({}, [], [])
        top, second = body["hits"]
        assert (top["rank"], top["tracklet_id"], top["verdict"]) == (1, "t-k1", "same")  # the judge re-ranked
        assert second["rank"] == 2 and top["stage2_p_same"] > 0.9 > second["stage2_p_same"]
        assert top["p_same"] > second["p_same"] and 0 <= second["stage1_p_same"] <= 1
        same_above = api.running.hub.search.same_above  # the hub's decision line, a P(same)
        assert second["verdict"] == ("same" if second["p_same"] >= same_above else "different")
        assert (top["start_s"], top["wall_clock"], top["time_label"]) == (50.0, False, "video +50.0–52.0 s")
        assert body["sightings"] == []  # a photo: nothing stored to show first
        assert (top["identity_id"], top["display_name"], top["site"]) == (red, "Red", "site-1")
        assert top["sighting_id"] is not None and second["sighting_id"] is None and second["identity_id"] is None
        assert base64.b64decode(top["crop"].removeprefix("data:image/jpeg;base64,")).startswith(b"\xff\xd8")

        task = asyncio.create_task(answer())
        by_identity = await asyncio.to_thread(api.client.post, "/api/search", data={"identity_id": red})
        await task
        assert len(by_identity.json()["hits"]) == 2
        (stored,) = by_identity.json()["sightings"]  # the hub's own sighting of red comes with the edges' hits
        assert (stored["identity_id"], stored["tracklet_id"], stored["display_name"]) == (red, "t-k1", "Red")

    asyncio.run(edge_runner(kit, api.running, [kit.short_list("k1", "red", [(red, 0.2)])], during=answer_searches))
    store = api.running.hub.store  # the search asks every edge the store calls connected: wait for the disconnect
    deadline = time.monotonic() + 30
    while store.get_edge("edge-a").connected_hub_id is not None:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the edge's disconnect was never recorded"
        time.sleep(0.05)
    silent = api.client.post("/api/search", data={"identity_id": red, "deadline_s": "0.5"}).json()
    assert (silent["complete"], silent["edges_asked"], silent["hits"]) == (True, [], [])  # no edge connected ...
    assert [s["tracklet_id"] for s in silent["sightings"]] == ["t-k1"]  # ... but the hub's sightings are there
    by_sighting = api.client.post("/api/search", data={"sighting_id": stored_id(silent), "deadline_s": "0.5"})
    assert [s["tracklet_id"] for s in by_sighting.json()["sightings"]] == ["t-k1"]


def stored_id(search: dict) -> int:
    return search["sightings"][0]["sighting_id"]


def test_bad_searches(api: HubApi, kit: types.SimpleNamespace) -> None:
    red = enroll(api, kit.jpeg("red"))
    photo = [("photos", ("q.jpg", kit.jpeg("red"), "image/jpeg"))]
    for files, data, status, detail in [
        (None, {}, 400, "expected exactly one of photos, sighting_id or identity_id"),
        (photo, {"identity_id": red}, 400, "expected exactly one"),
        (None, {"sighting_id": "5"}, 404, "unknown sighting 5"),
        (None, {"identity_id": "id-nobody"}, 404, "unknown identity 'id-nobody'"),
        (None, {"identity_id": red, "deadline_s": "61"}, 422, "deadline_s"),
        (None, {"identity_id": red, "top_k": "0"}, 422, "top_k"),
        (None, {"identity_id": red, "top_k": "lots"}, 422, "top_k"),
        ([("photos", ("q.gif", b"GIF89a", "image/gif"))], {}, 415, "is not a JPEG or PNG image"),
    ]:
        reply = api.client.post("/api/search", files=files, data=data)
        assert reply.status_code == status and detail in reply.json()["detail"], (data, reply.text)
    assert api.client.post("/api/search", data={"identity_id": red, "deadline_s": "0.1"}).status_code == 200


def test_verdicts_follow_the_judge_s_line() -> None:
    from cloud.api.views import verdict_of

    assert [verdict_of(s) for s in (None, False, True)] == ["unjudged", "different", "same"]
