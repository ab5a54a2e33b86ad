"""HubLink against a real gRPC test hub on 127.0.0.1 (tests/crossview_testing/hub_fixture.py).

No timing assertions: every wait is on a condition, with a generous timeout.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from crossview_testing import hub_fixture

from edge.embed_worker import SHORT_LIST_KIND, UplinkSettings, short_list_entry
from edge.gallery import EdgeGallery
from edge.privacy import FaceBlurrer, FaceDetectorUnavailableError
from edge.storage.store import TrackletStore
from edge.uplink.hub_channel import MAX_RETRY_HINT_S, reconnect_delay, retry_hint_s
from edge.uplink.hub_link import CameraLoad, HubLink, HubLinkError
from edge.uplink.messages import blur_message_crops
from edge.uplink.outbox import Outbox
from edge.uplink.settings import HubLinkSettings
from models.errors import InvalidInputError
from models.types import Crop, Embeddings, Tracklet
from protos.codec import (
    jpeg_to_image,
    seconds_to_timestamp,
    short_list_from_proto,
    short_list_to_proto,
    vector_from_proto,
    vector_to_proto,
)
from protos.crossview.v1 import common_pb2, hub_to_edge_pb2, session_pb2

FP, DIM, TOKEN = "edge-test-model@1", 8, "test-token"
OK, DUP, REJ = common_pb2.ACK_STATUS_OK, common_pb2.ACK_STATUS_DUPLICATE, common_pb2.ACK_STATUS_REJECTED


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def vec(seed: int, n: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def tracklet(i: int, camera: str = "cam-a", start: float = 1000.0) -> Tracklet:
    image = np.full((64, 32, 3), 40 + 10 * i, np.uint8)
    image[::4] = 255  # some texture, so a blur shows
    crops = (Crop(image, camera, start + 0.5), Crop(image[:, ::-1].copy(), camera, start + 1.0))
    return Tracklet(f"t{i}", camera, i, start, start + 2.0, crops, Embeddings(vec(i), FP))


ALL_CROPS = UplinkSettings(crops=8, max_height=1024, jpeg_quality=90)  # every crop, as it is


def enqueue(link: HubLink, t: Tracklet, candidates: list, *, gallery_version: int | None = None,
            max_bytes: int | None = None) -> str:
    """Queue a tracklet's short list as the embedding worker does (its builder), wake the link; the key."""
    key, payload = short_list_entry(
        t, candidates, edge_id=link.edge_id, model_fingerprint=FP,
        gallery_version=link.gallery.version if gallery_version is None else gallery_version, uplink=ALL_CROPS,
        max_bytes=link.outbox.max_payload_bytes if max_bytes is None else max_bytes)
    link.outbox.put(SHORT_LIST_KIND, payload, key)
    link.notify()
    return key


@pytest.fixture
def hub() -> Iterator:
    h = hub_fixture.make_hub(token=TOKEN)
    yield h
    h.stop()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[dict]:
    parts = {"gallery": EdgeGallery(tmp_path / "gallery.db", FP, DIM, k1=4, k2=2),
             "outbox": Outbox(tmp_path / "outbox.db"), "store": TrackletStore(tmp_path / "edge.db")}
    yield parts
    for part in parts.values():
        part.close()


@pytest.fixture
def make_link(hub, edge: dict) -> Iterator[Callable[..., HubLink]]:
    links: list[HubLink] = []

    def make(token: str = TOKEN, start: bool = True, **kwargs: object) -> HubLink:
        options = {"heartbeat_s": 0.2, "initial_backoff_s": 0.05, "max_backoff_s": 0.3, **kwargs}
        hooks = {name: options.pop(name) for name in ("camera_stats", "on_verdict", "rng") if name in options}
        link = HubLink(HubLinkSettings(hub.address, token, **options), "edge-1", ["cam-a", "cam-b"], FP,
                       edge["gallery"], edge["outbox"], edge["store"], **hooks)
        links.append(link)
        if start:
            link.start()
        return link

    yield make
    for link in links:
        link.stop()


def test_hello_welcome_and_heartbeats(hub, edge: dict, make_link) -> None:
    link = make_link(camera_stats=lambda: [CameraLoad("cam-a", 9.5, active_tracks=2)])
    assert link.wait_connected(20)
    hello = hub.hellos[0]
    assert (hello.edge_id, hello.model_fingerprint, hello.embedding_dim, hello.gallery_version,
            hello.last_acked_hub_sequence) == ("edge-1", FP, DIM, 0, 0)
    assert [c.camera_id for c in hello.cameras] == ["cam-a", "cam-b"]
    hub.wait_for(lambda h: len(h.heartbeats) >= 2, what="heartbeats")
    beat = hub.heartbeats[-1]
    assert beat.outbox_depth == 0 and [(c.camera_id, c.fps, c.active_tracks) for c in beat.cameras] == [
        ("cam-a", 9.5, 2)]
    stats = link.stats()
    assert stats.connected and stats.hub_id == "test-hub" and stats.sessions == 1


def test_short_lists_arrive_are_acked_and_leave_the_outbox(hub, edge: dict, make_link) -> None:
    link = make_link()
    keys = [enqueue(link, tracklet(i), [("alice", 0.1 * i), ("bob", 0.5)]) for i in range(10)]
    assert keys[3] == "shortlist/edge-1/t3/g0"
    hub.wait_for(lambda h: len(h.short_lists) == 10, what="10 short lists")
    wait_until(lambda: edge["outbox"].depth() == 0, what="an empty outbox")
    decoded, candidates = short_list_from_proto(hub.short_lists[keys[3]], expected_fingerprint=FP)
    assert decoded.tracklet_id == "t3" and len(decoded.crops) == 2 and candidates == [
        ("alice", pytest.approx(0.3)), ("bob", 0.5)]
    np.testing.assert_allclose(decoded.embedding.vectors, vec(3))
    assert enqueue(link, tracklet(3), [("alice", 0.3)]) == keys[3]  # a replay: nothing new
    wait_until(lambda: link.stats().acked == 10)
    assert edge["outbox"].depth() == 0 and hub.deliveries[keys[3]] == 1


def test_hub_down_and_back_every_short_list_exactly_once(hub, edge: dict, make_link) -> None:
    link = make_link()
    assert link.wait_connected(20)
    expected = [enqueue(link, tracklet(i), [("alice", 0.2)]) for i in range(5)]
    hub.wait_for(lambda h: len(h.accepted) == 5)
    wait_until(lambda: edge["outbox"].depth() == 0)
    hub.hold_acks = True  # the hub stores the next ones but goes down before acking them
    expected += [enqueue(link, tracklet(i), [("alice", 0.2)]) for i in range(5, 10)]
    hub.wait_for(lambda h: len(h.accepted) == 10)
    assert edge["outbox"].depth() == 5
    hub.stop()
    wait_until(lambda: not link.stats().connected, what="the link to notice")
    expected += [enqueue(link, tracklet(i), [("alice", 0.2)]) for i in range(10, 15)]
    wait_until(lambda: link.stats().reconnects >= 2, what="failed reconnects while the hub is down")
    hub.hold_acks = False
    hub.start()
    wait_until(lambda: edge["outbox"].depth() == 0, what="every entry acked after the hub is back")
    assert sorted(hub.accepted) == sorted(expected)  # each processed exactly once
    assert all(hub.deliveries[k] == 2 for k in expected[5:10])  # resent, answered DUPLICATE
    assert all(hub.deliveries[k] == 1 for k in expected[:5] + expected[10:])
    wait_until(lambda: link.stats().acked == 15)
    assert link.stats().sessions == 2 and link.stats().dead_letters == 0


def test_wrong_token_is_fatal(hub, edge: dict, make_link) -> None:
    link = make_link(token="not-the-token")
    with pytest.raises(HubLinkError, match=r"UNAUTHENTICATED.*check the edge token"):
        link.wait_connected(20)
    wait_until(lambda: not link.running, what="the link thread to end")
    assert "UNAUTHENTICATED" in str(link.error) and hub.auth_failures == 1 and hub.hellos == []
    assert link.stats().reconnects == 0


def test_model_refused_by_the_hub_is_fatal(tmp_path: Path, edge: dict) -> None:
    other = hub_fixture.make_hub(token=TOKEN, fingerprint="another-model")
    link = HubLink(HubLinkSettings(other.address, TOKEN, initial_backoff_s=0.05), "edge-1", ["cam-a"], FP,
                   edge["gallery"], edge["outbox"])
    try:
        link.start()
        with pytest.raises(HubLinkError, match="FINGERPRINT_MISMATCH"):
            link.wait_connected(20)
    finally:
        link.stop()
        other.stop()


def delta(frm: int, to: int, *identities: tuple[str, int], removals: tuple[str, ...] = (),
          full: bool = False) -> hub_to_edge_pb2.GalleryDelta:
    return hub_to_edge_pb2.GalleryDelta(
        from_version=frm, to_version=to, removals=list(removals), full_snapshot=full,
        upserts=[hub_to_edge_pb2.IdentityUpsert(identity_id=name, vectors=[vector_to_proto(vec(seed, 2), FP)])
                 for name, seed in identities])


def test_gallery_deltas_applied_acked_refused_and_resumed(hub, edge: dict, make_link) -> None:
    gallery = edge["gallery"]
    link = make_link()
    s1 = hub.push(gallery_delta=delta(0, 1, ("alice", 1), ("bob", 2)))
    hub.wait_for(lambda h: h.acks_for(s1), what="the delta's ack")
    (ack,) = hub.acks_for(s1)
    assert (ack.status, ack.gallery_version) == (OK, 1) and gallery.version == 1
    assert [i.identity_id for i in gallery.identities()] == ["alice", "bob"]

    s2 = hub.push(gallery_delta=delta(5, 6, ("carol", 3)))  # does not start at the edge's version
    hub.wait_for(lambda h: h.acks_for(s2))
    (ack,) = hub.acks_for(s2)
    assert ack.status == REJ and ack.gallery_version == 1 and "does not apply" in ack.error_message
    s3 = hub.push(gallery_delta=delta(0, 6, ("carol", 3), full=True))  # the hub resyncs
    hub.wait_for(lambda h: h.acks_for(s3))
    assert hub.acks_for(s3)[0].gallery_version == 6 and [i.identity_id for i in gallery.identities()] == ["carol"]

    hub.send_raw(session_pb2.HubMessage(sequence=s1, gallery_delta=delta(0, 1, ("alice", 1))))  # a stale resend
    hub.wait_for(lambda h: len(h.acks_for(s3)) == 2, what="the stale message re-acked")
    assert gallery.version == 6 and link.stats().last_hub_sequence == s3

    link.stop()  # a new process: the link resumes from its persisted sequence and the gallery version
    s4 = hub.push(gallery_delta=delta(6, 7, removals=("carol",)))
    make_link()
    hub.wait_for(lambda h: h.acks_for(s4))
    assert (hub.hellos[-1].last_acked_hub_sequence, hub.hellos[-1].gallery_version) == (s3, 6)
    assert gallery.version == 7 and gallery.size == 0
    assert [len(hub.acks_for(s)) for s in (s1, s2)] == [1, 1]  # nothing before s4 was sent again


def fill_store(store: TrackletStore) -> None:
    store.add_camera("cam-a")
    store.add_camera("cam-b")
    for i in range(6):
        store.upsert_tracklet(tracklet(i, "cam-a" if i < 4 else "cam-b", start=1000.0 + 10 * i), closed=True)


def search_job(job_id: str, query: np.ndarray, fp: str = FP, **fields: object) -> hub_to_edge_pb2.SearchJob:
    return hub_to_edge_pb2.SearchJob(job_id=job_id, queries=[vector_to_proto(query, fp)], **fields)


def results_of(hub, job_id: str) -> list:
    return sorted((r for r in hub.search_results.values() if r.job_id == job_id), key=lambda r: r.batch_index)


def test_search_job_answered_from_the_store(hub, edge: dict, make_link) -> None:
    fill_store(edge["store"])
    make_link()
    query = vec(2)[0] + 0.05
    seq = hub.push(search_job=search_job("job-1", query, top_k=3))
    hub.wait_for(lambda h: results_of(h, "job-1"), what="the search result")
    (result,) = results_of(hub, "job-1")
    assert result.done and not result.HasField("error") and result.idempotency_key == "search/edge-1/job-1/0"
    assert result.hits[0].tracklet_id == "t2" and len(result.hits) == 3
    assert [h.stage1_distance for h in result.hits] == sorted(h.stage1_distance for h in result.hits)
    best = result.hits[0]
    assert best.camera_id == "cam-a" and jpeg_to_image(best.crop.jpeg).shape == (64, 32, 3)
    np.testing.assert_allclose(vector_from_proto(best.vector, DIM, FP), vec(2)[0], atol=1e-6)
    hub.wait_for(lambda h: h.acks_for(seq), what="the job's ack")
    assert hub.acks_for(seq)[0].status == OK
    wait_until(lambda: edge["outbox"].depth() == 0)

    in_window = hub_to_edge_pb2.SearchJob(  # camera and time filters
        job_id="job-2", queries=[vector_to_proto(query, FP)], camera_ids=["cam-b", "cam-of-another-edge"],
        time_range=common_pb2.TimeRange(start=seconds_to_timestamp(1045.0), end=seconds_to_timestamp(1100.0)))
    hub.push(search_job=in_window)
    hub.push(search_job=search_job("job-3", query, max_distance=0.0))
    hub.wait_for(lambda h: results_of(h, "job-2") and results_of(h, "job-3"))
    assert [h.tracklet_id for h in results_of(hub, "job-2")[0].hits] == ["t5"]
    assert list(results_of(hub, "job-3")[0].hits) == []


@pytest.mark.parametrize(("job", "code"), [
    (search_job("bad-model", vec(1)[0], fp="another-model"), common_pb2.ERROR_CODE_FINGERPRINT_MISMATCH),
    (hub_to_edge_pb2.SearchJob(job_id="no-query"), common_pb2.ERROR_CODE_INVALID_ARGUMENT),
    (hub_to_edge_pb2.SearchJob(job_id="wrong-dim", queries=[vector_to_proto(np.ones(4, np.float32), FP)]),
     common_pb2.ERROR_CODE_INVALID_ARGUMENT),
])
def test_search_job_that_cannot_be_answered(hub, edge: dict, make_link, job, code: int) -> None:
    fill_store(edge["store"])
    make_link()
    hub.push(search_job=job)
    hub.wait_for(lambda h: results_of(h, job.job_id))
    (result,) = results_of(hub, job.job_id)
    assert result.done and result.error.code == code and list(result.hits) == []


def test_large_search_answer_is_split_and_crops_are_blurred(hub, edge: dict, make_link) -> None:
    fill_store(edge["store"])
    make_link(max_message_bytes=4000, blur_faces=FaceBlurrer(detector=None, method="fill"))
    hub.push(search_job=search_job("job-big", vec(0)[0], top_k=6))
    hub.wait_for(lambda h: any(r.done for r in results_of(h, "job-big")), what="the last batch")
    batches = results_of(hub, "job-big")
    assert len(batches) > 1 and [b.batch_index for b in batches] == list(range(len(batches)))
    assert [b.done for b in batches] == [False] * (len(batches) - 1) + [True]
    assert sum(len(b.hits) for b in batches) == 6
    crop = jpeg_to_image(batches[0].hits[0].crop.jpeg)
    assert crop[:13].std(axis=(0, 1)).max() < 3 and crop[13:].std() > 30  # the head band is flat, the rest not
    # a short list another producer put in the outbox directly is blurred on its way out too
    direct = short_list_to_proto(tracklet(3), [("alice", 0.1)], idempotency_key="direct", edge_id="edge-1",
                                 created_s=0.0)
    edge["outbox"].put("short_list", direct.SerializeToString(), "direct")
    hub.wait_for(lambda h: "direct" in h.short_lists)
    sent = jpeg_to_image(hub.short_lists["direct"].query_crops[0].jpeg)
    assert sent[:13].std(axis=(0, 1)).max() < 3 and sent[13:].std() > 30
    assert jpeg_to_image(direct.query_crops[0].jpeg)[:13].std() > 30  # the outbox keeps the original


def test_blurred_crops_are_re_encoded_at_the_uplink_quality() -> None:
    blurrer = FaceBlurrer(detector=None, method="fill")
    msg = session_pb2.EdgeMessage(short_list=short_list_to_proto(
        tracklet(3), [("alice", 0.1)], idempotency_key="q", edge_id="edge-1", created_s=0.0))
    original = msg.short_list.query_crops[0].jpeg
    blur_message_crops(msg, blurrer, quality=40)
    assert msg.short_list.query_crops[0].jpeg == blurrer.blur_jpeg(original, quality=40)
    assert len(msg.short_list.query_crops[0].jpeg) < len(blurrer.blur_jpeg(original, quality=95))


def test_verdict_recorded_once_and_acked(hub, edge: dict, make_link) -> None:
    fill_store(edge["store"])
    seen = []
    make_link(on_verdict=seen.append)
    verdict = hub_to_edge_pb2.Verdict(idempotency_key="shortlist/edge-1/t1/g0", tracklet_id="t1",
                                      decision=hub_to_edge_pb2.DECISION_CONFIRMED, identity_id="alice",
                                      stage2_score=0.9)
    s1 = hub.push(verdict=verdict)
    s2 = hub.push(verdict=verdict)  # the same verdict under a new sequence: still one sighting
    s3 = hub.push(verdict=hub_to_edge_pb2.Verdict(idempotency_key="k", tracklet_id="gone", identity_id="bob",
                                                  decision=hub_to_edge_pb2.DECISION_NEW_IDENTITY))
    hub.wait_for(lambda h: h.acks_for(s3))
    assert [hub.acks_for(s)[0].idempotency_key for s in (s1, s2)] == ["shortlist/edge-1/t1/g0"] * 2
    assert hub.acks_for(s3)[0].status == REJ and "unknown tracklet" in hub.acks_for(s3)[0].error_message
    (sighting,) = edge["store"].sightings(tracklet_id="t1")
    assert (sighting.identity_id, sighting.source) == ("alice", "verdict:shortlist/edge-1/t1/g0")
    assert sighting.distance == pytest.approx(0.1)
    assert [v.identity_id for v in seen] == ["alice"]  # told once


def test_rejected_entries_are_dead_lettered_and_retries_resent(hub, edge: dict, make_link) -> None:
    hub.reject_keys.add("shortlist/edge-1/t1/g0")
    hub.retry_once_keys.add("shortlist/edge-1/t2/g0")
    link = make_link()
    keys = [enqueue(link, tracklet(i), [("alice", 0.2)]) for i in range(3)]
    wait_until(lambda: edge["outbox"].depth() == 0)
    (dead,) = link.dead_letters()
    assert dead.key == keys[1] and "rejected by test" in dead.reason and dead.kind == "short_list"
    assert sorted(hub.accepted) == [keys[0], keys[2]] and hub.deliveries[keys[2]] == 2
    wait_until(lambda: link.stats().dead_letters == 1)


def make_certificates(folder: Path) -> dict[str, bytes]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=crossview test CA")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".pem", ".key")}


def test_mutual_tls(tmp_path: Path, edge: dict) -> None:
    certs = make_certificates(tmp_path)
    credentials = grpc.ssl_server_credentials([(certs["server.key"], certs["server.pem"])],
                                              root_certificates=certs["ca.pem"], require_client_auth=True)
    hub = hub_fixture.make_hub(token=TOKEN, server_credentials=credentials)
    common = {"initial_backoff_s": 0.05, "max_backoff_s": 0.2, "root_certificates": tmp_path / "ca.pem"}
    anonymous = HubLink(HubLinkSettings(hub.address, TOKEN, state_path=tmp_path / "anonymous.link.db", **common),
                        "edge-1", ["cam-a"], FP, edge["gallery"], edge["outbox"])
    link = HubLink(HubLinkSettings(hub.address, TOKEN, certificate_chain=certs["client.pem"],
                                   private_key=certs["client.key"], **common),
                   "edge-1", ["cam-a"], FP, edge["gallery"], edge["outbox"])
    try:
        anonymous.start()  # no client certificate: the handshake fails, and fails again
        wait_until(lambda: anonymous.stats().reconnects >= 2, what="refused handshakes")
        assert anonymous.stats().sessions == 0 and hub.hellos == []
        anonymous.stop()
        link.start()
        assert link.wait_connected(20)
        key = enqueue(link, tracklet(1), [("alice", 0.1)])
        hub.wait_for(lambda h: key in h.short_lists)
    finally:
        anonymous.stop()
        link.stop()
        hub.stop()
    with pytest.raises(InvalidInputError, match="both"):
        HubLinkSettings(hub.address, TOKEN, private_key=b"x")  # the pair is checked there, once


def test_blur_faces_true_needs_a_face_detector(hub, edge: dict) -> None:
    try:
        FaceBlurrer()
    except FaceDetectorUnavailableError:
        with pytest.raises(FaceDetectorUnavailableError, match="detector=None"):
            HubLink(HubLinkSettings(hub.address, TOKEN, blur_faces=True), "edge-1", [], FP, edge["gallery"],
                    edge["outbox"])
        return
    link = HubLink(HubLinkSettings(hub.address, TOKEN, blur_faces=True), "edge-1", [], FP, edge["gallery"],
                   edge["outbox"])
    link.start()
    try:
        key = enqueue(link, tracklet(4), [("alice", 0.1)])
        hub.wait_for(lambda h: key in h.short_lists)
        sent = jpeg_to_image(hub.short_lists[key].query_crops[0].jpeg)
        original = tracklet(4).crops[0].image
        assert sent.shape == original.shape and np.abs(sent[:13].astype(int) - original[:13]).mean() > 10
    finally:
        link.stop()


def test_worker_short_list_limits_and_refusals(edge: dict, make_link) -> None:
    link = make_link(start=False)
    noisy = np.random.default_rng(0).integers(0, 256, size=(64, 32, 3), dtype=np.uint8)  # ~4 KB as JPEG
    big = Tracklet("t9", "cam-a", 9, 5.0, 6.0, tuple(Crop(noisy, "cam-a", 5.0 + i) for i in range(4)),
                   Embeddings(vec(9), FP))
    key = enqueue(link, big, [("alice", 0.1)], gallery_version=7, max_bytes=6000)
    assert key == "shortlist/edge-1/t9/g7"
    (entry,) = edge["outbox"].pending()
    sent = short_list_from_proto(hub_fixture.edge_to_hub_pb2.ShortList.FromString(entry.payload))[0]
    assert 1 <= len(sent.crops) < 4 and len(entry.payload) <= 6000 and sent.end_s == 6.0
    other_model = Tracklet("t8", "cam-a", 8, 0.0, 1.0, (), Embeddings(vec(8), "another-model"))
    with pytest.raises(InvalidInputError, match="expected a tracklet embedding of model"):
        enqueue(link, other_model, [])


def test_an_overloaded_hub_s_retry_hint_is_honoured(hub, edge: dict, make_link) -> None:
    hub.overloaded_ms = 400
    link = make_link()
    hub.wait_for(lambda h: h.overload_refusals >= 2, what="two refused attempts")
    stats = link.stats()
    assert stats.retry_hint_s == pytest.approx(0.4) and not stats.connected
    assert "RESOURCE_EXHAUSTED" in (stats.last_error or "")
    with hub.cond:
        hub.overloaded_ms = None
    assert link.wait_connected(20)


def test_reconnect_delay_backs_off_with_jitter_and_respects_the_hub_s_hint() -> None:
    rng = random.Random(7)
    for attempt in range(8):
        delay = reconnect_delay(attempt, initial_s=0.5, max_s=30.0, rng=rng)
        expected = min(30.0, 0.5 * 2 ** attempt)
        assert expected * 0.5 <= delay <= expected
    assert reconnect_delay(0, initial_s=0.5, max_s=30.0, rng=rng, hint_s=5.0) == 5.0  # the hint is a floor
    assert reconnect_delay(6, initial_s=0.5, max_s=30.0, rng=rng, hint_s=0.01) >= 0.5 * 30.0  # not a ceiling
    assert reconnect_delay(0, initial_s=0.5, max_s=30.0, rng=rng, hint_s=1e9) == MAX_RETRY_HINT_S
    for bad in (float("nan"), -1.0, 0.0, float("inf")):
        assert reconnect_delay(0, initial_s=0.5, max_s=30.0, rng=rng, hint_s=bad) <= 0.5


class _Trailed(grpc.RpcError):
    def __init__(self, trailers: object) -> None:
        self._trailers = trailers

    def trailing_metadata(self) -> object:
        return self._trailers


@pytest.mark.parametrize(("trailers", "expected"), [
    ((("retry-after-ms", "250"),), 0.25), ((("retry-after-ms", b"1000"),), 1.0), ((("other", "1"),), None),
    ((("retry-after-ms", "soon"),), None), ((("retry-after-ms", "-5"),), None), ((), None), (None, None)])
def test_retry_hint_is_read_from_the_trailer(trailers: object, expected: float | None) -> None:
    assert retry_hint_s(_Trailed(trailers)) == expected
