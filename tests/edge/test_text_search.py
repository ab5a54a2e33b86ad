"""edge.text_search: text jobs answered from the store (issue 15), the array ranking checked against
models.attributes.scoring.rank_by_description, the store's attribute column and its migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge import text_search
from edge.storage.store import TrackletStore
from edge.text_search import TextJob, find_text
from edge.uplink import messages as edge_wire
from models.attributes.scoring import rank_by_description
from models.attributes.types import (
    ATTRIBUTE_NAMES,
    COLOUR_NAMES,
    AttributeProfile,
    ColourReading,
    Constraint,
    TextQuery,
)
from models.types import Crop, Embeddings, Tracklet
from protos.crossview.v1 import common_pb2, session_pb2

FP, DIM = "text-test@1", 8


def profile(male: float = 0.5, backpack: float = 0.5, upper: str | None = None, lower: str | None = None,
            confidence: float = 0.9) -> AttributeProfile:
    probs = dict.fromkeys(ATTRIBUTE_NAMES, 0.5) | {"male": male, "backpack": backpack}
    return AttributeProfile(probs, ColourReading(upper, confidence) if upper else None,
                            ColourReading(lower, confidence) if lower else None)


def random_profiles(n: int, seed: int) -> list[AttributeProfile]:
    rng = np.random.default_rng(seed)

    def reading() -> ColourReading | None:
        return None if rng.random() < 0.2 else ColourReading(COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
                                                             float(rng.random()))
    return [AttributeProfile(dict(zip(ATTRIBUTE_NAMES, rng.random(len(ATTRIBUTE_NAMES)).tolist(), strict=True)),
                             reading(), reading()) for _ in range(n)]


WOMAN_RED_TOP = TextQuery("woman in a red top", (Constraint("attribute", "male", None, False, "woman"),
                                                 Constraint("colour", "red", "upper", True, "red top")))
NO_BACKPACK_BLACK_TROUSERS = TextQuery("no backpack, black trousers", (
    Constraint("attribute", "backpack", None, False, "no backpack"),
    Constraint("colour", "black", "lower", True, "black trousers"),
    Constraint("attribute", "long_trousers", None, True, "trousers")))


@pytest.mark.parametrize("query", [WOMAN_RED_TOP, NO_BACKPACK_BLACK_TROUSERS])
def test_answer_equals_rank_by_description_on_every_parsed_profile(tmp_path: Path, query: TextQuery) -> None:
    """The cached index against the brute-force reference: every profile parsed, rank_by_description."""
    n = 150
    profiles = random_profiles(n, seed=7)
    with TrackletStore(tmp_path / "edge.db") as s:
        for camera in ("gate", "lobby"):
            s.add_camera(camera)
        for i, p in enumerate(profiles):
            _add(s, f"t{i:03d}", ("gate", "lobby")[i % 2], float(i), p if i % 13 else None, i % 40)  # ties
        for job in (TextJob("j", query, top_k=20), TextJob("j", query, camera_ids=("lobby",), start_s=30.0,
                                                            end_s=120.0, top_k=300)):
            hits, _ = find_text(job, s, model_fingerprint=FP)
            keep = [i for i in range(n) if i % 13 and (not job.camera_ids or ("gate", "lobby")[i % 2] == "lobby")
                    and (job.start_s is None or i + 1.0 >= job.start_s) and (job.end_s is None or i <= job.end_s)]
            vectors = np.concatenate([s.vector(f"t{i:03d}", FP).vectors for i in keep])
            best, scores = rank_by_description(query, [profiles[i] for i in keep], vectors, top_k=job.top_k)
            assert [h.tracklet_id for h in hits] == [f"t{keep[b]:03d}" for b in best]
            np.testing.assert_allclose([h.text_score for h in hits], scores / 1.1, rtol=1e-6)


def _vector(seed: int) -> Embeddings:
    v = np.random.default_rng(seed).normal(size=(1, DIM)).astype(np.float32)
    return Embeddings(v / np.linalg.norm(v), FP)


def _add(store: TrackletStore, tid: str, camera: str, start: float, attributes: AttributeProfile | None,
         seed: int) -> None:
    image = np.full((64, 32, 3), 60, np.uint8)
    store.upsert_tracklet(Tracklet(tid, camera, seed, start, start + 1.0, (Crop(image, camera, start),),
                                   _vector(seed)), closed=True, attributes=attributes)


@pytest.fixture
def store(tmp_path: Path) -> TrackletStore:
    s = TrackletStore(tmp_path / "edge.db")
    for camera in ("gate", "lobby"):
        s.add_camera(camera)
    _add(s, "red-woman", "gate", 10.0, profile(male=0.1, upper="red", lower="black"), 1)
    _add(s, "red-man", "gate", 20.0, profile(male=0.9, upper="red", lower="blue"), 2)
    _add(s, "blue-woman", "lobby", 30.0, profile(male=0.2, upper="blue", lower="black"), 3)
    _add(s, "grey-woman", "lobby", 40.0, profile(male=0.3, upper="grey", lower="grey"), 4)
    _add(s, "old-1", "gate", 5.0, None, 5)  # stored before attributes were read
    _add(s, "old-2", "lobby", 6.0, None, 6)
    yield s
    s.close()


def test_hits_best_first_with_attributes_text_scores_and_notes(store: TrackletStore) -> None:
    hits, notes = find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    assert [h.tracklet_id for h in hits][:2] == ["red-woman", "red-man"]
    assert len(hits) == 4  # the two older tracklets are not searched ...
    assert notes == ["2 tracklets have no attributes yet (recorded before attributes were on) and were not searched"]
    assert hits[0].attributes == store.attributes("red-woman")
    scores = [h.text_score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert all(h.distance == pytest.approx(1.0 - h.text_score) for h in hits)
    assert hits[0].jpeg.startswith(b"\xff\xd8") and hits[0].vector.shape == (DIM,)


def test_camera_and_time_filters(store: TrackletStore) -> None:
    hits, notes = find_text(TextJob("j", WOMAN_RED_TOP, camera_ids=("lobby", "elsewhere"), top_k=1), store,
                            model_fingerprint=FP)
    assert [h.tracklet_id for h in hits] == ["blue-woman"]
    assert notes == ["cameras not on this edge, not searched: elsewhere",
                     "1 tracklets have no attributes yet (recorded before attributes were on) and were not searched"]
    hits, notes = find_text(TextJob("j", WOMAN_RED_TOP, start_s=15.0, end_s=35.0), store, model_fingerprint=FP)
    assert [h.tracklet_id for h in hits] == ["red-man", "blue-woman"] and notes == []


def test_empty_store_and_store_without_attributes(tmp_path: Path) -> None:
    with TrackletStore(tmp_path / "empty.db") as empty:
        assert find_text(TextJob("j", WOMAN_RED_TOP), empty, model_fingerprint=FP) == ([], [])
    with TrackletStore(tmp_path / "old.db") as old:
        old.add_camera("gate")
        for i in range(3):
            _add(old, f"t{i}", "gate", float(i), None, i)
        hits, notes = find_text(TextJob("j", WOMAN_RED_TOP), old, model_fingerprint=FP)
        assert hits == [] and notes[0].startswith("3 tracklets have no attributes yet")


def test_the_index_is_rebuilt_after_a_write_only(store: TrackletStore, monkeypatch: pytest.MonkeyPatch) -> None:
    find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    builds = []
    real_build = text_search.TextIndex.build
    monkeypatch.setattr(text_search.TextIndex, "build", lambda *a: builds.append(1) or real_build(*a))
    find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    assert builds == []
    store.put_attributes("old-1", profile(male=0.0, upper="red", lower="black", confidence=1.0))
    hits, notes = find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    assert builds == [1] and hits[0].tracklet_id == "old-1" and notes[0].startswith("1 tracklets")


def test_new_tracklets_extend_the_index_as_a_rebuild_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Appended closed tracklets are added to the cached index without a rebuild, and the result equals a
    fresh build (ids, profiles, vectors, the tracklets without attributes); any other write rebuilds."""
    profiles = random_profiles(40, seed=3)
    builds: list[int] = []
    real_build = text_search.TextIndex.build
    monkeypatch.setattr(text_search.TextIndex, "build", lambda *a: builds.append(1) or real_build(*a))
    with TrackletStore(tmp_path / "edge.db") as s:
        s.add_camera("gate")
        image = np.full((64, 32, 3), 60, np.uint8)
        for i, p in enumerate(profiles):
            vector = _vector(i) if i >= 5 else None  # the first ones have no vector of this model
            s.upsert_tracklet(Tracklet(f"t{i:02d}", "gate", i, float(i), i + 1.0, (Crop(image, "gate", i),), vector),
                              closed=True, attributes=None if i % 7 == 3 else p)
            if i in (2, 10, 11, 30):
                find_text(TextJob("j", WOMAN_RED_TOP), s, model_fingerprint=FP)
        cached = text_search.text_index(s, FP)
        assert builds == [1]  # the first query built it; every later change was an append
        fresh = real_build(s, FP)
        assert cached.ids == fresh.ids and cached.crops == fresh.crops and cached.profile_json == fresh.profile_json
        for a, b in ((cached.table.probabilities, fresh.table.probabilities), (cached.table.colour, fresh.table.colour),
                     (cached.table.confidence, fresh.table.confidence), (cached.vectors, fresh.vectors),
                     (cached.start_s, fresh.start_s), *zip(cached.older, fresh.older, strict=True)):
            np.testing.assert_array_equal(a, b)
        s.put_attributes("t03", profiles[3])  # a rewrite of an indexed row
        assert "t03" in text_search.text_index(s, FP).ids and builds == [1, 1]


def _job(**changes: object) -> session_pb2.HubMessage:
    from cloud import wire as hub_wire
    payload = hub_wire.search_job_payload("job-9", None, FP, top_k=3, camera_ids=changes.pop("cameras", []),
                                          deadline_s=1.0, text=WOMAN_RED_TOP)
    return session_pb2.HubMessage.FromString(payload).search_job


def test_text_job_through_the_edge_wire(store: TrackletStore) -> None:
    results = edge_wire.answer_search_job(_job(), store, edge_id="edge-1", model_fingerprint=FP, dim=DIM)
    assert len(results) == 1 and results[0].done and not results[0].HasField("error")
    assert [h.tracklet_id for h in results[0].hits] == ["red-woman", "red-man", "blue-woman"]
    assert results[0].hits[0].attributes.upper.name == "red" and results[0].hits[0].HasField("text_score")
    assert results[0].notes[0].startswith("2 tracklets have no attributes yet")


def test_bad_text_jobs_are_answered_with_an_error(store: TrackletStore) -> None:
    job = _job()
    job.text.constraints[1].name = "turquoise"
    unknown_colour = edge_wire.answer_search_job(job, store, edge_id="e", model_fingerprint=FP, dim=DIM)
    no_store = edge_wire.answer_search_job(_job(), None, edge_id="e", model_fingerprint=FP, dim=DIM)
    for (result,), message in ((unknown_colour, "got 'turquoise'"), (no_store, "no local store")):
        assert result.done and not result.hits and message in result.error.message
    assert unknown_colour[0].error.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT


def test_a_job_for_cameras_of_other_edges_is_answered_empty_with_a_note(store: TrackletStore) -> None:
    (result,) = edge_wire.answer_search_job(_job(cameras=["roof"]), store, edge_id="e", model_fingerprint=FP, dim=DIM)
    assert result.done and not result.hits and not result.HasField("error")
    assert list(result.notes) == ["none of the cameras asked for is on this edge (roof); this edge has gate, lobby"]


def test_attributes_round_trip_through_the_store(store: TrackletStore) -> None:
    assert store.attributes("red-woman") == profile(male=0.1, upper="red", lower="black")
    assert store.attributes("old-1") is None
    before = store.generation
    _add(store, "red-woman", "gate", 10.0, None, 1)  # attributes=None keeps the stored ones
    assert store.attributes("red-woman") is not None and store.generation > before


def test_migration_keeps_older_tracklets_with_null_attributes(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with TrackletStore(path) as s:
        s.add_camera("gate")
        _add(s, "before", "gate", 1.0, None, 1)
    with sqlite3.connect(path) as conn:  # back to the schema before issue 15
        conn.execute("ALTER TABLE tracklets DROP COLUMN attributes")
        conn.execute("UPDATE schema_version SET version = 1 WHERE component = 'store'")
    with TrackletStore(path) as s:
        assert s.attributes("before") is None and s.get_tracklet("before").closed
        assert s.vector("before", FP).vectors.shape == (1, DIM)
        _add(s, "after", "gate", 2.0, profile(upper="red"), 2)
        assert s.attributes("after") == profile(upper="red")


def test_a_hit_whose_crop_is_gone_is_left_out(store: TrackletStore) -> None:
    store.crop_paths("red-woman")[0].unlink()  # behind the store's back: no generation change
    hits, _ = find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    assert [h.tracklet_id for h in hits] == ["red-man", "blue-woman", "grey-woman"]


def test_a_rewrite_while_the_index_catches_up_gives_a_build_not_a_stale_index(
        store: TrackletStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread rewrites rows between `extended`'s check and its read of the store: the result must
    be what a build gives, or the cached index would keep the old rows for ever."""
    find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    _add(store, "late", "gate", 50.0, profile(male=0.1, upper="red"), 7)  # an append: the next query extends
    real = text_search.TextIndex._from_rows

    def rewrite_first(*args: object) -> text_search.TextIndex:
        store.put_attributes("old-1", profile(male=0.0, upper="red", lower="black", confidence=1.0))
        monkeypatch.setattr(text_search.TextIndex, "_from_rows", staticmethod(real))
        return real(*args)

    monkeypatch.setattr(text_search.TextIndex, "_from_rows", staticmethod(rewrite_first))
    cached = text_search.text_index(store, FP)
    fresh = text_search.TextIndex.build(store, FP)
    assert cached.ids == fresh.ids and "old-1" in cached.ids and cached.profile_json == fresh.profile_json


def test_a_retention_pass_that_removes_nothing_keeps_the_index(store: TrackletStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    builds = []
    real_build = text_search.TextIndex.build
    monkeypatch.setattr(text_search.TextIndex, "build", lambda *a: builds.append(1) or real_build(*a))
    assert store.apply_retention(max_age_s=1e9, now=100.0).tracklets_removed == 0
    find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)
    assert builds == []
    store.apply_retention(max_age_s=0.0, now=1e6)  # removes everything: the index is rebuilt
    assert find_text(TextJob("j", WOMAN_RED_TOP), store, model_fingerprint=FP)[0] == [] and builds == [1]
