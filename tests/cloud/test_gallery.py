"""The gallery: enrolment, per-model vectors, versions, and deltas checked against a replay oracle."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from cloud.crops import CropFiles
from cloud.gallery import Embedders, Gallery, UnknownFingerprintError
from cloud.store import HubStore, NewSighting, ShortListSummary, StoreError, VerdictRecord
from cloud.wire import gallery_delta_payload
from models.errors import InvalidInputError
from protos import codec
from protos.crossview.v1 import hub_to_edge_pb2, session_pb2

NOW = 1_700_000_000.0


@pytest.fixture
def gallery(store: HubStore, tmp_path: Path, kit: types.SimpleNamespace) -> Gallery:
    store.register_edge("edge-a", now=NOW)
    store.record_hello("edge-a", site="", model_fingerprint=kit.FP, embedding_dim=kit.DIM, cameras=[],
                       gallery_version=0, acked_sequence=0, hub_id="h", now=NOW)
    return Gallery(store, CropFiles(tmp_path / "crops"), Embedders(kit.colour_factory), max_delta_bytes=600,
                   page_size=3)


def apply(state: dict[str, hub_to_edge_pb2.IdentityUpsert], held: int,
          delta: hub_to_edge_pb2.GalleryDelta) -> int:
    """What an edge does with a delta; returns its new version."""
    if delta.full_snapshot:
        state.clear()
    else:
        assert delta.from_version == held, "a delta must start at the version the edge holds"
    assert delta.to_version > delta.from_version
    for upsert in delta.upserts:
        state[upsert.identity_id] = upsert
    for removed in delta.removals:
        state.pop(removed, None)
    return delta.to_version


def sync(gallery: Gallery, fp: str, state: dict, held: int, *, stop_after: int | None = None) -> int:
    for i, part in enumerate(gallery.delta_since(held, fp)):
        if stop_after is not None and i == stop_after:
            break  # the connection dropped here
        held = apply(state, held, session_pb2.HubMessage.FromString(gallery_delta_payload(part, fp)).gallery_delta)
    return held


def summarise(state: dict[str, hub_to_edge_pb2.IdentityUpsert], fp: str) -> dict[str, tuple]:
    return {i: (u.display_name, u.watchlist_threshold if u.HasField("watchlist_threshold") else None,
                tuple(tuple(codec.vector_from_proto(v, expected_fingerprint=fp).round(5).ravel()) for v in u.vectors))
            for i, u in state.items()}


def test_enrol_compute_vectors_and_edit(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    changes: list[int] = []
    gallery.add_listener(changes.append)
    red = gallery.enroll([kit.jpeg("red"), kit.crop("red", seed=3)], display_name="Red")
    assert red.version == 1 and changes == [1] and red.source == "photo"
    vectors = gallery.store.get_embeddings(red.identity_id, kit.FP)
    assert vectors is not None and vectors.shape == (2, kit.DIM)  # one per reference crop, the edge's model
    assert len(gallery.reference_images(red.identity_id)) == 2
    assert gallery.enroll([kit.jpeg("blue")], identity_id=red.identity_id) == red  # an existing id is kept

    gallery.set_watchlist(red.identity_id, 0.35)
    gallery.rename(red.identity_id, "Red jacket")
    gallery.add_photos(red.identity_id, [kit.jpeg("red", seed=9)])
    assert gallery.store.get_embeddings(red.identity_id, kit.FP).shape == (3, kit.DIM)  # type: ignore[union-attr]
    record = gallery.store.get_identity(red.identity_id)
    assert record is not None and (record.display_name, record.watchlist_threshold) == ("Red jacket", 0.35)

    # a new model in use: vectors of it are computed from the stored reference crops
    assert gallery.ensure_fingerprint(kit.OTHER_FP) == 1
    assert gallery.store.get_embeddings(red.identity_id, kit.OTHER_FP).shape == (3, kit.DIM)  # type: ignore[union-attr]
    assert gallery.ensure_fingerprint(kit.OTHER_FP) == 0
    with pytest.raises(UnknownFingerprintError):
        gallery.embedders.embed("nobody@000000000000", [kit.crop("red")])

    paths = [c.path for c in gallery.store.reference_crops(red.identity_id)]
    gallery.remove(red.identity_id)
    assert not any(gallery.crops.path(p).exists() for p in paths)
    with pytest.raises(StoreError):
        gallery.set_watchlist(red.identity_id, None)


@pytest.mark.parametrize(("photos", "error"), [
    ([], "at least one photo"),
    ([b""], "empty crop"),
    ([b"GIF89a...."], "expected a JPEG"),
    ([b"\xff\xd8\xff\xe0 truncated"], "truncated"),
    ([np.zeros((0, 4, 3), np.uint8)], "non-empty"),
])
def test_bad_photos_are_refused(gallery: Gallery, photos: list, error: str) -> None:
    with pytest.raises(InvalidInputError, match=error):
        gallery.enroll(photos)
    assert gallery.store.list_identities() == []


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -0.1, 1.01, 2.0, True, "0.3"])
def test_bad_watchlist_threshold(gallery: Gallery, kit: types.SimpleNamespace, threshold: object) -> None:
    """One rule for every way in (the REST API and CLI use it too): a P(same) in [0, 1]."""
    with pytest.raises(InvalidInputError, match=r"watchlist_threshold: expected a P\(same\) in \[0, 1\]"):
        gallery.enroll([kit.jpeg("red")], watchlist_threshold=threshold)  # type: ignore[arg-type]
    identity = gallery.enroll([kit.jpeg("red")], watchlist_threshold=1.0).identity_id
    gallery.set_watchlist(identity, 0.0)  # both ends are P(same) values
    with pytest.raises(InvalidInputError, match="watchlist_threshold"):
        gallery.set_watchlist(identity, threshold)  # type: ignore[arg-type]


def test_enrol_from_a_sighting(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    store = gallery.store
    path = gallery.crops.save("sightings", "s1", kit.jpeg("green"))
    store.claim_short_list(ShortListSummary("k1", "edge-a", "cam-1", "t1", 1, 0, 1, 1, (), kit.FP, 0, NOW),
                           now=NOW, lease_s=60)
    gallery.enroll([kit.jpeg("yellow")], identity_id="id-yellow")
    done = store.complete_short_list(
        VerdictRecord("k1", "confirmed", "id-yellow", 0.8, "reid", {}, NOW),
        NewSighting("id-yellow", "edge-a", "cam-1", "t1", 0, 1, path, 0.8, 0.6, 0.8, "k1"), edge_id="edge-a",
        verdict_payload=b"", alert=False, now=NOW)
    green = gallery.enroll_from_sighting(done.sighting_id, display_name="Seen on cam-1")  # type: ignore[arg-type]
    assert green.source == "sighting" and store.reference_crops(green.identity_id)[0].sighting_id == done.sighting_id
    gallery.enroll_from_sighting(done.sighting_id, identity_id="id-yellow")  # type: ignore[arg-type]
    assert len(store.reference_crops("id-yellow")) == 2
    with pytest.raises(StoreError, match="unknown sighting"):
        gallery.enroll_from_sighting(999)


def test_deltas_resume_from_any_part(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    """Oracle: an edge that syncs with interruptions at every possible part ends with the same
    gallery as a fresh full snapshot, for a history of adds, edits and removals."""
    fp = kit.FP
    assert gallery.delta_since(0, fp) == []  # empty gallery, empty edge: nothing to send
    ids = [gallery.enroll([kit.jpeg(c, seed=i)], display_name=f"{c}-{i}").identity_id
           for i, c in enumerate(["red", "green", "blue", "yellow", "red", "green", "blue"])]
    edges: list[tuple[dict, int]] = []
    for step, action in enumerate(["rename", "remove", "watch", "add", "remove", "rename"]):
        held_state: dict = {}
        held = sync(gallery, fp, held_state, 0, stop_after=step % 3 + 1)  # interrupted somewhere
        edges.append((held_state, held))
        target = ids[(step * 3) % len(ids)]
        if gallery.store.get_identity(target).deleted:  # type: ignore[union-attr]
            target = next(i for i in ids if not gallery.store.get_identity(i).deleted)  # type: ignore[union-attr]
        if action == "rename":
            gallery.rename(target, f"renamed-{step}")
        elif action == "remove":
            gallery.remove(target)
        elif action == "watch":
            gallery.set_watchlist(target, 0.25)
        else:
            ids.append(gallery.enroll([kit.jpeg("yellow", seed=50 + step)]).identity_id)
    fresh: dict = {}
    version = sync(gallery, fp, fresh, 0)
    assert version == gallery.version()
    assert len(gallery.delta_since(0, fp)) > 1  # max_delta_bytes=600 splits the snapshot
    expected = summarise(fresh, fp)
    assert set(expected) == {i.identity_id for i in gallery.store.list_identities()}
    for state, held in edges:
        assert sync(gallery, fp, state, held) == version
        assert summarise(state, fp) == expected
    assert gallery.delta_since(version, fp) == []


def test_unknown_or_pruned_versions_get_a_snapshot(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    first = gallery.enroll([kit.jpeg("red")]).identity_id
    gallery.enroll([kit.jpeg("blue")])
    gallery.remove(first)
    current = gallery.version()
    ahead = gallery.delta_since(current + 10, kit.FP)  # an edge ahead of the hub (a restored database)
    assert ahead[0].full_snapshot and ahead[0].from_version == 0 and ahead[-1].to_version == current
    incremental = gallery.delta_since(current - 1, kit.FP)
    assert not incremental[0].full_snapshot and incremental[0].removals == [first]
    gallery.store.prune_tombstones(current)  # removals before `current` are forgotten: older edges resync
    for held in (1, current - 1):
        old = gallery.delta_since(held, kit.FP)
        assert old[0].full_snapshot and first not in [u.identity.identity_id for d in old for u in d.upserts]
        assert not any(d.removals for d in old)
    assert gallery.delta_since(current, kit.FP) == []


def test_snapshot_of_an_empty_gallery_for_an_edge_that_holds_one(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    deltas = gallery.delta_since(5, kit.FP)  # hub database replaced; the edge must drop what it holds
    assert len(deltas) == 1 and deltas[0].full_snapshot and deltas[0].to_version >= 1 and not deltas[0].upserts


def test_matrix_follows_changes(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    assert gallery.matrix(kit.FP).identity_ids == ()
    red = gallery.enroll([kit.jpeg("red"), kit.jpeg("red", seed=2)]).identity_id
    blue = gallery.enroll([kit.jpeg("blue")]).identity_id
    matrix = gallery.matrix(kit.FP)
    assert matrix.identity_ids == (red, blue) and matrix.vectors.shape == (2, kit.DIM)
    assert np.allclose(np.linalg.norm(matrix.vectors, axis=1), 1.0, atol=1e-5)
    gallery.remove(red)
    assert gallery.matrix(kit.FP).identity_ids == (blue,)


def test_kept_matrix_equals_a_full_read(gallery: Gallery, store: HubStore, tmp_path: Path,
                                         kit: types.SimpleNamespace) -> None:
    """The matrix brought up to date change by change is the one a fresh gallery reads in full."""
    ids = [gallery.enroll([kit.jpeg(c)]).identity_id for c in ("red", "blue", "green", "yellow")]
    gallery.matrix(kit.FP)
    changes = [lambda: gallery.remove(ids[1]), lambda: gallery.add_photos(ids[0], [kit.jpeg("blue")]),
               lambda: gallery.rename(ids[2], "g"), lambda: gallery.enroll([kit.jpeg("red", seed=9)]),
               lambda: gallery.remove(ids[3])]
    for step, change in enumerate(changes):
        change()
        kept = gallery.matrix(kit.FP)
        fresh = Gallery(store, CropFiles(tmp_path / "crops"), Embedders(kit.colour_factory)).matrix(kit.FP)
        assert kept.identity_ids == fresh.identity_ids, step
        assert np.array_equal(kept.vectors, fresh.vectors), step


def test_reference_images_kept_per_identity_version(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    record = gallery.enroll([kit.jpeg("red")])
    first = gallery.reference_images(record.identity_id, version=record.version)
    assert gallery.reference_images(record.identity_id, version=record.version)[0] is first[0]  # decoded once
    with pytest.raises(ValueError):
        first[0][0, 0, 0] = 1  # shared: read-only
    gallery.add_photos(record.identity_id, [kit.jpeg("blue")])
    newer = gallery.store.get_identity(record.identity_id)
    assert newer is not None and len(gallery.reference_images(record.identity_id, version=newer.version)) == 2


def test_enrol_from_an_unknown_sighting(gallery: Gallery, kit: types.SimpleNamespace) -> None:
    """A person nobody knew (a rejected short list) is promoted: the sighting becomes theirs."""
    store = gallery.store
    path = gallery.crops.save("sightings", "s1", kit.jpeg("green"))
    store.claim_short_list(ShortListSummary("k1", "edge-a", "cam-1", "t1", 1, 0, 1, 1, (), kit.FP, 0, NOW),
                           now=NOW, lease_s=60)
    done = store.complete_short_list(
        VerdictRecord("k1", "rejected", None, 0.0, "reid", {}, NOW),
        NewSighting(None, "edge-a", "cam-1", "t1", 0, 1, path, None, None, None, "k1"), edge_id="edge-a",
        verdict_payload=b"", alert=False, now=NOW)
    assert done.sighting_id is not None
    green = gallery.enroll_from_sighting(done.sighting_id, display_name="Green", watchlist_threshold=0.9)
    assert (green.source, green.display_name, green.watchlist_threshold) == ("sighting", "Green", 0.9)
    assert store.get_sighting(done.sighting_id).identity_id == green.identity_id  # type: ignore[union-attr]
    assert store.sightings(unknown=True) == []
    assert gallery.crops.read(store.reference_crops(green.identity_id)[0].path) == kit.jpeg("green")
