"""Issue 15 on the wire: text jobs, attributes, text scores and notes, through the edge's and the hub's
wire modules (edge/uplink/messages.py builds, cloud/wire.py reads, and the other way for jobs)."""

from __future__ import annotations

import numpy as np
import pytest

from cloud import wire as hub_wire
from edge.footage_search import FootageHit
from edge.uplink import messages as edge_wire
from models.attributes.types import ATTRIBUTE_NAMES, AttributeProfile, ColourReading, Constraint, TextQuery
from models.errors import InvalidInputError
from models.types import Crop, Embeddings, Tracklet
from protos import codec
from protos.crossview.v1 import edge_to_hub_pb2, session_pb2

FP = "osnet_x0_25:sha256:0123abcd"


def _profile(upper: str | None = "red", lower: str | None = "black", crops: int = 3) -> AttributeProfile:
    # probabilities exactly representable in float32, so the wire round trip is exact
    probs = {name: (i + 1) / 16 for i, name in enumerate(ATTRIBUTE_NAMES)}
    return AttributeProfile(probs, ColourReading(upper, 0.75) if upper else None,
                            ColourReading(lower, 0.5) if lower else None, crops=crops)


def _query() -> TextQuery:
    return TextQuery("woman, red top, no backpack", (
        Constraint("attribute", "male", None, False, "woman"),
        Constraint("colour", "red", "upper", True, "red top"),
        Constraint("attribute", "backpack", None, False, "no backpack")))


def _jpeg() -> bytes:
    return codec.crop_to_jpeg(np.full((64, 32, 3), 128, np.uint8))


@pytest.mark.parametrize("profile", [_profile(), _profile(None, None, 1), _profile("white", None)])
def test_attributes_round_trip(profile: AttributeProfile) -> None:
    assert codec.attributes_from_proto(codec.attributes_to_proto(profile)) == profile


def test_attributes_bad_input_is_one_line_error() -> None:
    msg = codec.attributes_to_proto(_profile())
    msg.upper.name = "turquoise"
    with pytest.raises(InvalidInputError, match=r"expected one of black.*got 'turquoise'"):
        codec.attributes_from_proto(msg)
    msg = codec.attributes_to_proto(_profile())
    msg.probabilities["glasses"] = 0.5
    with pytest.raises(InvalidInputError, match="unknown \\['glasses'\\]"):
        codec.attributes_from_proto(msg)
    msg = codec.attributes_to_proto(_profile())
    msg.probabilities["hat"] = 1.5
    with pytest.raises(InvalidInputError, match="in \\[0, 1\\]"):
        codec.attributes_from_proto(msg)
    with pytest.raises(InvalidInputError, match="expected an AttributeProfile"):
        codec.attributes_to_proto({"probabilities": {}})  # type: ignore[arg-type]


def test_text_job_from_the_hub_reads_back_at_the_edge() -> None:
    payload = hub_wire.search_job_payload("job-1", None, FP, top_k=7, camera_ids=["gate"], deadline_s=100.0,
                                          time_range=(10.0, 20.0), text=_query())
    job = session_pb2.HubMessage.FromString(payload).search_job
    assert not job.queries and job.HasField("text")
    read = edge_wire.text_job(job)
    assert read.query == TextQuery(_query().text, _query().constraints)  # ignored words stay at the hub
    assert (read.job_id, read.camera_ids, read.start_s, read.end_s, read.top_k) == ("job-1", ("gate",), 10.0, 20.0, 7)


def test_search_job_needs_vectors_or_text_not_both() -> None:
    with pytest.raises(InvalidInputError, match="got neither"):
        hub_wire.search_job_payload("j", None, FP, top_k=1, camera_ids=[], deadline_s=1.0)
    with pytest.raises(InvalidInputError, match="got both"):
        hub_wire.search_job_payload("j", np.ones((1, 4), np.float32), FP, top_k=1, camera_ids=[], deadline_s=1.0,
                                    text=_query())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "turquoise", "expected one of black"),
    ("kind", "smell", "expected attribute or colour"),
    ("part", "feet", "expected part upper or lower"),
])
def test_text_job_with_an_unknown_name_is_refused(field: str, value: str, message: str) -> None:
    job = session_pb2.HubMessage.FromString(hub_wire.search_job_payload(
        "job-2", None, FP, top_k=5, camera_ids=[], deadline_s=1.0, text=_query())).search_job
    setattr(job.text.constraints[1], field, value)
    with pytest.raises(edge_wire.SearchJobError, match=message) as caught:
        edge_wire.text_job(job)
    assert caught.value.reason == edge_wire.INVALID_ARGUMENT


def test_text_job_without_constraints_is_refused() -> None:
    job = session_pb2.HubMessage.FromString(hub_wire.search_job_payload(
        "job-3", None, FP, top_k=5, camera_ids=[], deadline_s=1.0, text=_query())).search_job
    del job.text.constraints[:]
    with pytest.raises(edge_wire.SearchJobError, match="at least one constraint"):
        edge_wire.text_job(job)


def test_text_hits_attributes_and_notes_reach_the_hub() -> None:
    vector = np.arange(4, dtype=np.float32) + 1
    hits = [FootageHit("t1", "gate", 1.0, 2.0, 0.25, vector, _jpeg(), 32, 64, _profile(), 0.75),
            FootageHit("t2", "gate", 3.0, 4.0, 0.5, vector, _jpeg(), 32, 64)]
    notes = ["340 tracklets have no attributes yet (recorded before attributes were on) and were not searched"]
    results = edge_wire.search_results("job-4", "edge-1", hits, model_fingerprint=FP, notes=notes)
    assert len(results) == 1 and results[0].done
    read = hub_wire.decode_search_result(results[0].SerializeToString(), dim=4, fingerprint=FP)
    assert read.notes == tuple(notes)
    first, second = read.hits
    assert (first.attributes, first.text_score, first.stage1_distance) == (_profile(), 0.75, 0.25)
    assert (second.attributes, second.text_score) == (None, None)


def test_notes_go_on_the_last_batch_only() -> None:
    vector = np.ones(4, np.float32)
    hits = [FootageHit(f"t{i}", "gate", 1.0, 2.0, 0.1, vector, _jpeg(), 32, 64, _profile(), 0.9) for i in range(6)]
    results = edge_wire.search_results("job-5", "edge-1", hits, model_fingerprint=FP, max_bytes=2500,
                                       notes=["a note"])
    assert len(results) > 1
    assert [list(r.notes) for r in results] == [[]] * (len(results) - 1) + [["a note"]]


def test_bad_text_score_or_notes_are_refused_by_the_hub() -> None:
    hit = edge_wire.search_hit(FootageHit("t1", "gate", 1.0, 2.0, 0.1, np.ones(4, np.float32), _jpeg(), 32, 64,
                                          _profile(), 0.5), FP)
    hit.text_score = 1.5
    msg = edge_to_hub_pb2.SearchResult(job_id="j", hits=[hit], done=True)
    with pytest.raises(InvalidInputError, match="text score in \\[0, 1\\]"):
        hub_wire.decode_search_result(msg, dim=4, fingerprint=FP)
    msg.hits[0].text_score = 0.5
    msg.hits[0].attributes.lower.name = "beige"
    with pytest.raises(InvalidInputError, match="hit 0: attributes: colour"):
        hub_wire.decode_search_result(msg, dim=4, fingerprint=FP)
    msg = edge_to_hub_pb2.SearchResult(job_id="j", done=True, notes=["x" * 5000])
    with pytest.raises(InvalidInputError, match="notes"):
        hub_wire.decode_search_result(msg, dim=4, fingerprint=FP)


def test_short_list_carries_attributes() -> None:
    image = np.full((64, 32, 3), 100, np.uint8)
    tracklet = Tracklet("t1", "gate", 3, 1.0, 2.0, (Crop(image, "gate", 1.0, (0, 0, 32, 64), 0.9, 0.8),),
                        Embeddings(np.ones((1, 4), np.float32), FP))
    for attributes in (_profile(), None):
        msg = edge_wire.build_short_list(tracklet, [("alice", 0.2)], edge_id="edge-1", model_fingerprint=FP,
                                         gallery_version=1, attributes=attributes)
        read = hub_wire.decode_short_list(msg, edge_id="edge-1", fingerprint=FP, dim=4)
        assert read.attributes == attributes


def test_a_short_list_with_attributes_is_the_same_bytes_in_every_process() -> None:
    """Map fields serialize in an order that varies between processes (the protobuf runtime picks its map
    hashing per process); the outbox payload of a short list rebuilt after a restart must be byte-identical,
    so it is serialized deterministically. Four processes, each its own map order."""
    import subprocess
    import sys
    from pathlib import Path

    program = (
        "import sys, numpy as np\n"
        "from edge.uplink import messages\n"
        "from models.attributes.types import ATTRIBUTE_NAMES, AttributeProfile\n"
        "from models.types import Crop, Embeddings, Tracklet\n"
        "probs = {name: (i + 1) / 16 for i, name in enumerate(ATTRIBUTE_NAMES)}\n"
        "crop = Crop(np.full((64, 32, 3), 128, np.uint8), 'cam', 1.0)\n"
        "t = Tracklet('t1', 'cam', 1, 0.0, 1.0, (crop,), Embeddings(np.ones((1, 4), np.float32), 'fp'))\n"
        "_, payload = messages.short_list_payload(t, [('alice', 0.2)], edge_id='e', model_fingerprint='fp',\n"
        "                                         gallery_version=1, attributes=AttributeProfile(probs, None, None))\n"
        "sys.stdout.write(payload.hex())\n")
    root = Path(__file__).resolve().parents[2]
    payloads = {subprocess.run([sys.executable, "-c", program], cwd=root, capture_output=True, text=True,
                               check=True).stdout for _ in range(4)}
    assert len(payloads) == 1 and payloads != {""}
