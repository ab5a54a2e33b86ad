"""Short list → verdict → sighting (→ alert), exactly once per idempotency key; no network here."""

from __future__ import annotations

import asyncio
import threading
import types
from collections.abc import Callable

import pytest

from cloud.alerts import Alert
from cloud.hub import Hub
from cloud.wire import ShortListInput, decode_short_list
from models.errors import InvalidInputError
from protos.crossview.v1 import hub_to_edge_pb2, session_pb2


def item(kit: types.SimpleNamespace, key: str, colour: str, candidates: list[tuple[str, float]],
         **kwargs: object) -> ShortListInput:
    msg = kit.short_list(key, colour, candidates, **kwargs).short_list
    return decode_short_list(msg, edge_id="edge-a", fingerprint=kit.FP, dim=kit.DIM)


@pytest.fixture
def hub(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> Hub:
    hub = make_hub()
    hub.auth.create_token("edge-a")
    hub.store.record_hello("edge-a", site="", model_fingerprint=kit.FP, embedding_dim=kit.DIM, cameras=[],
                           gallery_version=0, acked_sequence=0, hub_id="h", now=0.0)
    return hub


def queued_verdicts(hub: Hub) -> list[hub_to_edge_pb2.Verdict]:
    rows = hub.store.outgoing_after("edge-a", 0, limit=100)
    return [session_pb2.HubMessage.FromString(r.payload).verdict for r in rows if r.kind == "verdict"]


def test_confirmed_once_per_key(hub: Hub, kit: types.SimpleNamespace) -> None:
    red = hub.gallery.enroll([kit.jpeg("red", seed=30)], display_name="Red").identity_id
    blue = hub.gallery.enroll([kit.jpeg("blue", seed=30)]).identity_id
    first = hub.shortlists.process(item(kit, "k1", "red", [(blue, 0.3), (red, 0.35)]))
    assert first.status == "ok" and first.verdict is not None
    assert (first.verdict.decision, first.verdict.identity_id) == ("confirmed", red)
    assert first.verdict.scores[red] > 0.9 > first.verdict.scores[blue]
    for _ in range(3):  # re-sent after a lost ack: counted once
        assert hub.shortlists.process(item(kit, "k1", "red", [(red, 0.35)])).status == "duplicate"
    assert hub.store.count_short_lists() == 1
    sightings = hub.store.sightings(identity_id=red)
    assert len(sightings) == 1 and sightings[0].camera_id == "cam-1"
    assert sightings[0].p_same == pytest.approx(first.verdict.scores[red]) and sightings[0].p_same > 0.9
    assert sightings[0].stage2_p_same is not None and not sightings[0].unknown
    assert hub.crops.read(sightings[0].crop_path) == kit.jpeg("red", seed=0)  # the best crop, as sent
    (verdict,) = queued_verdicts(hub)
    assert (verdict.idempotency_key, verdict.decision, verdict.identity_id, verdict.tracklet_id) == (
        "k1", hub_to_edge_pb2.DECISION_CONFIRMED, red, "t-k1")
    assert hub.store.alerts() == []  # not on the watchlist


def test_rejected_is_an_unknown_sighting(hub: Hub, kit: types.SimpleNamespace) -> None:
    red = hub.gallery.enroll([kit.jpeg("red")]).identity_id
    outcome = hub.shortlists.process(item(kit, "k1", "blue", [(red, 0.4), ("id-unknown-to-the-hub", 0.5)]))
    assert outcome.status == "ok" and outcome.verdict.decision == "rejected"  # type: ignore[union-attr]
    assert outcome.verdict.identity_id is None  # type: ignore[union-attr]
    assert set(outcome.verdict.scores) == {red}  # type: ignore[union-attr]
    # nobody vanishes: the person is kept as an unknown sighting, with the crop the edge sent
    assert outcome.sighting_id is not None
    (unknown,) = hub.store.sightings(unknown=True)
    assert unknown.sighting_id == outcome.sighting_id and unknown.identity_id is None
    assert (unknown.p_same, unknown.stage1_p_same, unknown.stage2_p_same) == (None, None, None)
    assert (unknown.camera_id, unknown.start_s, unknown.end_s) == ("cam-1", 100.0, 103.5)
    assert hub.crops.read(unknown.crop_path) == kit.jpeg("blue", seed=0)
    assert hub.store.sightings(identity_id=red) == [] and hub.store.alerts() == []
    (verdict,) = queued_verdicts(hub)
    assert verdict.decision == hub_to_edge_pb2.DECISION_REJECTED and verdict.identity_id == ""
    # a re-sent short list is not counted twice
    assert hub.shortlists.process(item(kit, "k1", "blue", [(red, 0.4)])).status == "duplicate"
    assert len(hub.store.sightings(unknown=True)) == 1


def test_an_unknown_sighting_is_promoted_to_an_identity(hub: Hub, kit: types.SimpleNamespace) -> None:
    hub.gallery.enroll([kit.jpeg("red")])
    outcome = hub.shortlists.process(item(kit, "k1", "blue", []))
    assert outcome.verdict.decision == "rejected" and outcome.sighting_id is not None  # type: ignore[union-attr]
    person = hub.gallery.enroll_from_sighting(outcome.sighting_id, display_name="Blue")
    assert (person.display_name, person.source) == ("Blue", "sighting")
    assert [s.sighting_id for s in hub.store.sightings(identity_id=person.identity_id)] == [outcome.sighting_id]
    assert hub.store.sightings(unknown=True) == []
    assert [r.sighting_id for r in hub.store.reference_crops(person.identity_id)] == [outcome.sighting_id]
    # the promoted person is now in the gallery: the next tracklet of them is confirmed
    again = hub.shortlists.process(item(kit, "k2", "blue", [(person.identity_id, 0.1)]))
    assert (again.verdict.decision, again.verdict.identity_id) == ("confirmed", person.identity_id)  # type: ignore[union-attr]


def test_new_identities_give_global_ids(make_hub: Callable[..., Hub], kit: types.SimpleNamespace) -> None:
    hub = make_hub(allow_new=True)
    hub.auth.create_token("edge-a")
    hub.store.record_hello("edge-a", site="", model_fingerprint=kit.FP, embedding_dim=kit.DIM, cameras=[],
                           gallery_version=0, acked_sequence=0, hub_id="h", now=0.0)
    first = hub.shortlists.process(item(kit, "k1", "green", []))
    assert first.verdict.decision == "new_identity"  # type: ignore[union-attr]
    new_id = first.verdict.identity_id  # type: ignore[union-attr]
    assert new_id and new_id.startswith("auto-") and hub.store.get_identity(new_id).source == "auto"  # type: ignore[union-attr]
    assert hub.store.get_embeddings(new_id, kit.FP).shape == (2, kit.DIM)  # type: ignore[union-attr]
    # the same person on another camera, short-listed against the new identity: confirmed
    second = hub.shortlists.process(item(kit, "k2", "green", [(new_id, 0.1)], camera_id="cam-2"))
    assert (second.verdict.decision, second.verdict.identity_id) == ("confirmed", new_id)  # type: ignore[union-attr]
    assert [s.camera_id for s in hub.store.sightings(identity_id=new_id)] == ["cam-2", "cam-1"]


def test_watchlist_alerts(hub: Hub, kit: types.SimpleNamespace) -> None:
    red = hub.gallery.enroll([kit.jpeg("red")], display_name="Watched", watchlist_threshold=0.8).identity_id
    heard: list[Alert] = []
    unsubscribe = hub.alerts.subscribe(heard.append)

    async def stream_one() -> Alert:
        stream = hub.alerts.stream()
        waiter = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # subscribed
        outcome = await asyncio.to_thread(hub.shortlists.process, item(kit, "k1", "red", [(red, 0.2)]))
        assert outcome.alert_id is not None
        alert = await asyncio.wait_for(waiter, 10)
        await stream.aclose()
        return alert

    streamed = asyncio.run(stream_one())
    assert streamed == heard[0] and streamed.identity_id == red and streamed.display_name == "Watched"
    assert streamed.sighting.camera_id == "cam-1" and streamed.watchlist_threshold == 0.8
    assert streamed.sighting.p_same is not None and streamed.sighting.p_same >= 0.8
    (stored,) = hub.store.alerts()
    assert (stored.alert_id, stored.p_same, stored.start_s) == (streamed.alert_id, streamed.sighting.p_same, 100.0)
    unsubscribe()
    hub.shortlists.process(item(kit, "k2", "red", [(red, 0.2)]))
    assert len(heard) == 1 and len(hub.store.alerts()) == 2


def test_no_alert_below_the_watch_threshold(hub: Hub, kit: types.SimpleNamespace) -> None:
    """The watch threshold is a P(same): a sighting confirmed with a lower P(same) raises no alert."""
    red = hub.gallery.enroll([kit.jpeg("red")], watchlist_threshold=1.0).identity_id
    outcome = hub.shortlists.process(item(kit, "k1", "red", [(red, 0.2)], n_crops=1))
    assert outcome.verdict.decision == "confirmed" and outcome.verdict.identity_id == red  # type: ignore[union-attr]
    (seen,) = hub.store.sightings(identity_id=red)
    assert seen.p_same is not None and seen.p_same < 1.0 and outcome.alert_id is None and hub.store.alerts() == []
    hub.gallery.set_watchlist(red, seen.p_same)  # at exactly the threshold: an alert
    assert hub.shortlists.process(item(kit, "k2", "red", [(red, 0.2)], n_crops=1)).alert_id is not None
    assert len(hub.store.alerts()) == 1


class Gate:
    """A verifier wrapper that blocks until opened, or fails on demand."""

    def __init__(self, inner: object) -> None:
        self.inner, self.name = inner, "gated"
        self.open = threading.Event()
        self.entered = threading.Event()
        self.fail = False

    def verify(self, request: object) -> object:
        self.entered.set()
        assert self.open.wait(30)
        if self.fail:
            raise RuntimeError("judge crashed")
        return self.inner.verify(request)  # type: ignore[attr-defined]


def test_in_progress_and_failures(hub: Hub, kit: types.SimpleNamespace) -> None:
    red = hub.gallery.enroll([kit.jpeg("red")]).identity_id
    gate = Gate(hub.shortlists.verifier)
    hub.shortlists.verifier = gate  # type: ignore[assignment]
    first = threading.Thread(target=hub.shortlists.process, args=(item(kit, "k1", "red", [(red, 0.2)]),))
    first.start()
    assert gate.entered.wait(10)
    assert hub.shortlists.process(item(kit, "k1", "red", [(red, 0.2)])).status == "retry"  # being processed
    gate.open.set()
    first.join(10)
    assert hub.shortlists.process(item(kit, "k1", "red", [(red, 0.2)])).status == "duplicate"

    gate.fail = True
    with pytest.raises(RuntimeError, match="judge crashed"):
        hub.shortlists.process(item(kit, "k2", "red", [(red, 0.2)]))
    assert hub.store.get_short_list("k2") is None  # released: the edge's retry is processed afresh
    gate.fail = False
    assert hub.shortlists.process(item(kit, "k2", "red", [(red, 0.2)])).status == "ok"


# ---------------------------------------------------------------- the edge's cosine distance on the wire

def _with_cosine(kit: types.SimpleNamespace, cosine: dict[str, float], candidates: list[tuple[str, float]],
                 colour: str = "red", key: str = "k1") -> object:
    msg = kit.short_list(key, colour, candidates).short_list
    for candidate in msg.candidates:
        if candidate.identity_id in cosine:
            candidate.cosine_distance = cosine[candidate.identity_id]
    return msg


def test_decode_short_list_reads_each_candidate_s_cosine_distance(kit: types.SimpleNamespace) -> None:
    msg = _with_cosine(kit, {"a": 0.25, "c": 2.0, "d": 0.0}, [("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.4)])
    decoded = decode_short_list(msg, edge_id="edge-a", fingerprint=kit.FP, dim=kit.DIM)
    assert decoded.cosine_distances == {"a": 0.25, "c": 2.0, "d": 0.0}  # "b" was sent without one
    assert [c for c, _ in decoded.candidates] == ["a", "b", "c", "d"]
    assert item(kit, "k2", "red", [("a", 0.1)]).cosine_distances == {}  # an edge from before the field


def test_decode_short_list_decodes_only_the_crops_the_hub_looks_at(kit: types.SimpleNamespace) -> None:
    msg = kit.short_list("k", "red", [("a", 0.1)], n_crops=6).short_list
    decoded = decode_short_list(msg, edge_id="edge-a", fingerprint=kit.FP, dim=kit.DIM, decoded_crops=4)
    assert (len(decoded.crops), len(decoded.jpegs)) == (4, 6)
    assert decoded.jpegs == tuple(c.jpeg for c in msg.query_crops)  # every crop kept as sent
    for bad, error in [(b"GIF89a", "query crop 5: crop: expected a JPEG"), (msg.query_crops[0].jpeg[:-2], "truncated")]:
        msg.query_crops[5].jpeg = bad  # not decoded, still checked
        with pytest.raises(InvalidInputError, match=error):
            decode_short_list(msg, edge_id="edge-a", fingerprint=kit.FP, dim=kit.DIM, decoded_crops=4)


@pytest.mark.parametrize("bad", [-0.01, 2.01, float("nan"), float("inf"), -float("inf")])
def test_decode_short_list_refuses_a_cosine_distance_outside_0_2(kit: types.SimpleNamespace, bad: float) -> None:
    msg = _with_cosine(kit, {"b": bad}, [("a", 0.1), ("b", 0.2)])
    with pytest.raises(InvalidInputError, match=r"candidate 'b': expected a cosine distance in \[0, 2\]"):
        decode_short_list(msg, edge_id="edge-a", fingerprint=kit.FP, dim=kit.DIM)


def test_the_edge_s_cosine_distance_is_what_stage_one_reads(hub: Hub, kit: types.SimpleNamespace) -> None:
    red = hub.gallery.enroll([kit.jpeg("red", seed=30)]).identity_id
    measured = hub.shortlists.process(item(kit, "k1", "red", [(red, 0.2)]))
    msg = _with_cosine(kit, {red: 0.5}, [(red, 0.2)], key="k2")
    sent = hub.shortlists.process(decode_short_list(msg, edge_id="edge-a", fingerprint=kit.FP, dim=kit.DIM))
    assert measured.verdict.decision == sent.verdict.decision == "confirmed"  # type: ignore[union-attr]
    by_key = {s.idempotency_key: s for s in hub.store.sightings(identity_id=red)}
    fp_calibration = hub.shortlists.verifier.model_calibration(kit.FP)  # type: ignore[attr-defined]
    assert by_key["k1"].stage1_p_same == pytest.approx(float(fp_calibration.p_same(0.0)), abs=1e-4)  # hub's own
    assert by_key["k2"].stage1_p_same == pytest.approx(float(fp_calibration.p_same(0.5)), abs=1e-6)  # the edge's
    assert by_key["k2"].stage2_p_same == pytest.approx(by_key["k1"].stage2_p_same)
    assert by_key["k2"].p_same < by_key["k1"].p_same
