"""Identities and the watchlist over the REST API: enrolment, edits, crops, timeline, and refused input."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
from crossview_testing.hub_api import HubApi

from cloud.gallery import Gallery
from models.scores import DEFAULT_WATCH_P_SAME
from protos.crossview.v1 import hub_to_edge_pb2


def png(kit: types.SimpleNamespace, colour: str) -> bytes:
    ok, buf = cv2.imencode(".png", kit.crop(colour, hw=(64, 32)))
    assert ok
    return buf.tobytes()


def enroll(api: HubApi, *photos: tuple[str, bytes], **form: str) -> dict:
    reply = api.client.post("/api/identities", files=[("photos", (name, data, "application/octet-stream"))
                                                      for name, data in photos], data=form)
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_enrol_edit_and_remove(api: HubApi, kit: types.SimpleNamespace) -> None:
    ann = enroll(api, ("a.jpg", kit.jpeg("red")), ("b.png", png(kit, "red")), display_name="Ann",
                 watchlist_threshold="0.4")
    assert (ann["display_name"], ann["source"], ann["watchlist_threshold"], ann["crop_count"]) == (
        "Ann", "photo", 0.4, 2)
    assert ann["crop_urls"] == [f"/api/identities/{ann['identity_id']}/crops/{i}" for i in range(2)]
    assert (ann["sighting_count"], ann["last_seen_s"]) == (0, None)
    bo = enroll(api, ("b.jpg", kit.jpeg("blue")))
    assert bo["display_name"] == "" and bo["watchlist_threshold"] is None
    listed = api.client.get("/api/identities").json()
    assert [i["identity_id"] for i in listed] == [ann["identity_id"], bo["identity_id"]]
    assert api.client.get(f"/api/identities/{ann['identity_id']}").json() == ann

    crop = api.client.get(ann["crop_urls"][1])
    assert crop.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR)  # the PNG, kept as JPEG
    assert image.shape == (64, 32, 3) and abs(float(image[..., 2].mean()) - 230) < 20
    assert api.client.get(f"/api/identities/{ann['identity_id']}/crops/2").status_code == 404

    renamed = api.client.patch(f"/api/identities/{bo['identity_id']}", json={"display_name": "Bo"})
    assert renamed.status_code == 200 and renamed.json()["display_name"] == "Bo"
    watched = api.client.put(f"/api/watchlist/{bo['identity_id']}", json={}).json()
    assert watched["watchlist_threshold"] == DEFAULT_WATCH_P_SAME  # a P(same); the default when none is given
    watched = api.client.put(f"/api/watchlist/{bo['identity_id']}", json={"threshold": 0.25}).json()
    assert watched["watchlist_threshold"] == 0.25
    assert {i["identity_id"] for i in api.client.get("/api/watchlist").json()} == {ann["identity_id"],
                                                                                  bo["identity_id"]}
    assert api.client.delete(f"/api/watchlist/{ann['identity_id']}").json()["watchlist_threshold"] is None
    assert [i["identity_id"] for i in api.client.get("/api/watchlist").json()] == [bo["identity_id"]]

    assert api.client.delete(f"/api/identities/{ann['identity_id']}").status_code == 204
    gone = api.client.get(f"/api/identities/{ann['identity_id']}")
    assert (gone.status_code, gone.json()) == (404, {"detail": f"unknown identity {ann['identity_id']!r}"})
    assert [i["identity_id"] for i in api.client.get("/api/identities").json()] == [bo["identity_id"]]


def test_timeline_png(api: HubApi, kit: types.SimpleNamespace, edge_runner: Callable) -> None:
    red = enroll(api, ("r.jpg", kit.jpeg("red")), display_name="Red")
    empty = api.client.get(f"/api/identities/{red['identity_id']}/timeline.png")
    assert empty.status_code == 200 and empty.headers["content-type"] == "image/png"
    assert empty.content.startswith(b"\x89PNG")
    asyncio.run(edge_runner(kit, api.running, [
        kit.short_list("k1", "red", [(red["identity_id"], 0.2)]),
        kit.short_list("k2", "red", [(red["identity_id"], 0.2)], camera_id="cam-2")]))
    reply = api.client.get(f"/api/identities/{red['identity_id']}/timeline.png")
    image = cv2.imdecode(np.frombuffer(reply.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] == 900 and image.shape[0] > 0
    assert len(reply.content) != len(empty.content)
    sightings = api.client.get(f"/api/identities/{red['identity_id']}/sightings").json()
    assert [s["camera_id"] for s in sightings] == ["cam-1", "cam-2"]  # oldest first


def test_enrol_from_a_sighting_promotes_an_automatic_identity(api: HubApi, kit: types.SimpleNamespace,
                                                              edge_runner: Callable) -> None:
    red = enroll(api, ("r.jpg", kit.jpeg("red")), display_name="Red")
    verdicts = asyncio.run(edge_runner(kit, api.running, [
        kit.short_list("k1", "green", []),  # nobody known: a new (automatic) identity
        kit.short_list("k2", "red", [(red["identity_id"], 0.2)])]))
    assert verdicts[0].decision == hub_to_edge_pb2.DECISION_NEW_IDENTITY
    auto_id = verdicts[0].identity_id
    auto_sighting, red_sighting = sorted(api.client.get("/api/sightings").json(), key=lambda s: s["sighting_id"])
    assert auto_sighting["identity_id"] == auto_id and red_sighting["identity_id"] == red["identity_id"]
    before = len(api.client.get("/api/identities").json())

    promoted = api.client.post("/api/identities/from-sighting", json={
        "sighting_id": auto_sighting["sighting_id"], "display_name": "Green coat", "watchlist_threshold": 0.3})
    assert promoted.status_code == 201, promoted.text
    body = promoted.json()
    assert (body["identity_id"], body["display_name"], body["source"], body["watchlist_threshold"]) == (
        auto_id, "Green coat", "auto", 0.3)
    assert body["sighting_count"] == 1
    assert len(api.client.get("/api/identities").json()) == before  # not duplicated
    assert api.client.get(f"/api/sightings/{auto_sighting['sighting_id']}").json()["display_name"] == "Green coat"

    new = api.client.post("/api/identities/from-sighting", json={"sighting_id": red_sighting["sighting_id"],
                                                                 "display_name": "Red again"}).json()
    assert new["identity_id"] != red["identity_id"] and new["source"] == "sighting" and new["crop_count"] == 1
    missing = api.client.post("/api/identities/from-sighting", json={"sighting_id": 9999})
    assert (missing.status_code, missing.json()) == (404, {"detail": "unknown sighting 9999"})


def test_gallery_promotes_without_changes_when_nothing_is_given(api: HubApi, kit: types.SimpleNamespace,
                                                                edge_runner: Callable) -> None:
    gallery: Gallery = api.running.hub.gallery
    verdicts = asyncio.run(edge_runner(kit, api.running, [kit.short_list("k1", "yellow", [])]))
    sighting = api.running.hub.store.sightings(identity_id=verdicts[0].identity_id)[0]
    version = gallery.version()
    record = gallery.enroll_from_sighting(sighting.sighting_id)
    assert record.identity_id == verdicts[0].identity_id and gallery.version() == version
    assert len(api.running.hub.store.list_identities()) == 1


BIG = b"\xff\xd8\xff" + bytes(8 * 1024 * 1024)


@pytest.mark.parametrize(("files", "form", "status", "detail"), [
    ([], {"display_name": "x"}, 400, "photos: expected at least one JPEG or PNG file, got none"),
    ([("notes.txt", b"hello")], {}, 415, "photo 'notes.txt' is not a JPEG or PNG image"),
    ([("empty.jpg", b"")], {}, 400, "photo 'empty.jpg' is empty"),
    ([("big.jpg", BIG)], {}, 413, "photo 'big.jpg' is larger than 8 MiB"),
    ([("broken.jpg", b"\xff\xd8\xff\xe0garbage")], {}, 400, "photo 'broken.jpg' is not a readable JPEG image"),
    ([("broken.png", b"\x89PNG\r\n\x1a\ngarbage")], {}, 400, "photo 'broken.png' is not a readable PNG image"),
    ([("a.jpg", None)], {"watchlist_threshold": "3"}, 422, "watchlist_threshold: expected a P(same) in [0, 1], got 3"),
    ([("a.jpg", None)], {"watchlist_threshold": "many"}, 422, "watchlist_threshold"),
    ([("a.jpg", None)] * 17, {}, 400, "at most 16"),
])
def test_bad_uploads_are_refused_and_the_server_keeps_serving(api: HubApi, kit: types.SimpleNamespace,
                                                              files: list, form: dict, status: int,
                                                              detail: str) -> None:
    parts = [("photos", (name, data if data is not None else kit.jpeg("red"), "image/jpeg")) for name, data in files]
    reply = api.client.post("/api/identities", files=parts or None, data=form)
    assert reply.status_code == status, reply.text
    text = reply.json()["detail"]
    assert detail in text and "\n" not in text
    assert api.client.get("/api/identities").json() == []
    assert enroll(api, ("ok.jpg", kit.jpeg("red")))["crop_count"] == 1


@pytest.mark.parametrize(("method", "path", "body", "status", "detail"), [
    ("PUT", "/api/watchlist/{id}", {"threshold": -0.1}, 422, "threshold: expected a P(same) in [0, 1], got -0.1"),
    ("PUT", "/api/watchlist/{id}", {"threshold": 2.5}, 422, "threshold: expected a P(same) in [0, 1], got 2.5"),
    ("PUT", "/api/watchlist/{id}", {"threshold": "high"}, 422, "threshold"),
    ("POST", "/api/identities/from-sighting", {"sighting_id": 1, "watchlist_threshold": 1.5}, 422,
     "watchlist_threshold: expected a P(same) in [0, 1], got 1.5"),
    ("PUT", "/api/watchlist/{id}", b"{not json", 400, "malformed JSON body"),
    ("PUT", "/api/watchlist/id-unknown", {"threshold": 0.5}, 404, "unknown identity 'id-unknown'"),
    ("PATCH", "/api/identities/{id}", {"display_name": 5}, 422, "display_name"),
    ("PATCH", "/api/identities/{id}", {"display_name": "x" * 201}, 422, "display_name"),
    ("PATCH", "/api/identities/id-unknown", {"display_name": "x"}, 404, "unknown identity"),
    ("DELETE", "/api/identities/id-unknown", None, 404, "unknown identity"),
    ("GET", "/api/identities/{id}/crops/x", None, 422, "index"),
    ("GET", "/api/identities/id-unknown/timeline.png", None, 404, "unknown identity"),
    ("POST", "/api/identities/from-sighting", {"sighting_id": "one"}, 422, "sighting_id"),
    ("POST", "/api/identities/from-sighting", [1, 2], 422, "body"),
])
def test_bad_edits_are_refused_and_the_server_keeps_serving(api: HubApi, kit: types.SimpleNamespace, method: str,
                                                            path: str, body: object, status: int,
                                                            detail: str) -> None:
    known = enroll(api, ("a.jpg", kit.jpeg("red")), display_name="Ann")
    url = path.replace("{id}", known["identity_id"])
    if isinstance(body, bytes):
        reply = api.client.request(method, url, content=body, headers={"content-type": "application/json"})
    else:
        reply = api.client.request(method, url, json=body)
    assert reply.status_code == status, reply.text
    text = reply.json()["detail"]
    assert detail in text and "\n" not in text
    after = api.client.get(f"/api/identities/{known['identity_id']}").json()
    assert (after["display_name"], after["watchlist_threshold"]) == ("Ann", None)


def test_an_oversized_request_body_is_refused(api: HubApi, kit: types.SimpleNamespace) -> None:
    reply = api.client.put("/api/watchlist/x", content=b"[" + b"1," * (600 * 1024) + b"1]",
                           headers={"content-type": "application/json"})
    assert reply.status_code == 413 and "larger than" in reply.json()["detail"]
    assert enroll(api, ("ok.jpg", kit.jpeg("red")))["crop_count"] == 1

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while counting
        yield b"["
        for _ in range(24):
            yield b"1," * (32 * 1024)
        yield b"1]"

    reply = api.client.put("/api/watchlist/x", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413 and "larger than" in reply.json()["detail"]
    assert enroll(api, ("ok.jpg", kit.jpeg("red")))["crop_count"] == 1
