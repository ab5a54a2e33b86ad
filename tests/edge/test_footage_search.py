"""edge.footage_search: a search job answered from the store, reading each hit's crop size from its header."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.footage_search import FINGERPRINT_MISMATCH, UNAVAILABLE, FootageQuery, SearchJobError, find
from edge.storage.store import TrackletStore
from models.types import Crop, Embeddings, Tracklet

FP, DIM = "search-test@1", 8


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(1, DIM)).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def store(tmp_path: Path) -> TrackletStore:
    s = TrackletStore(tmp_path / "edge.db")
    s.add_camera("cam")
    for i in range(4):
        image = np.full((60 + i, 30, 3), 40 * i, np.uint8)
        s.upsert_tracklet(Tracklet(f"t{i}", "cam", i, float(i), i + 1.0, (Crop(image, "cam", float(i)),),
                                   Embeddings(unit(i), FP)), closed=True)
    yield s
    s.close()


def test_hits_closest_first_with_their_crop_size_and_no_decoding(store: TrackletStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object) -> None:
        raise AssertionError("a search must not decode the stored crops")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    hits = find(FootageQuery("job", FP, unit(2)), store, model_fingerprint=FP, dim=DIM)
    assert hits[0].tracklet_id == "t2" and hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert sorted((h.tracklet_id, h.height, h.width) for h in hits) == [(f"t{i}", 60 + i, 30) for i in range(4)]
    assert all(h.jpeg.startswith(b"\xff\xd8") for h in hits)


def test_a_hit_with_an_unreadable_crop_is_left_out(store: TrackletStore) -> None:
    store.crop_paths("t1")[0].write_bytes(b"not a jpeg")
    hits = find(FootageQuery("job", FP, unit(1)), store, model_fingerprint=FP, dim=DIM)
    assert "t1" not in [h.tracklet_id for h in hits] and len(hits) == 3


def test_filters_and_refusals(store: TrackletStore) -> None:
    query = FootageQuery("job", FP, unit(0), camera_ids=("cam", "elsewhere"), start_s=1.5, end_s=10.0, top_k=2)
    ids = [h.tracklet_id for h in find(query, store, model_fingerprint=FP, dim=DIM)]
    assert len(ids) == 2 and "t0" not in ids  # top_k, the time range, a camera of another edge skipped
    with pytest.raises(SearchJobError) as refused:
        find(FootageQuery("job", FP, unit(0)), None, model_fingerprint=FP, dim=DIM)
    assert refused.value.reason == UNAVAILABLE
    with pytest.raises(SearchJobError) as refused:
        find(FootageQuery("job", "other@1", unit(0)), store, model_fingerprint=FP, dim=DIM)
    assert refused.value.reason == FINGERPRINT_MISMATCH
