"""The embedding worker reads attributes (issue 15): the real attribute model on real Market-1501 crops
(skipped without $CROSSVIEW_MODELS / $CROSSVIEW_DATA), stored with the tracklet and sent in its short list;
a failing reader leaves the tracklet stored without attributes; the edge's `attributes.*` settings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from crossview.config import ConfigError, load_config
from crossview.edge_command import ReplayConfig, attribute_recognizer
from edge.embed_worker import EmbedWorker, short_list_key
from edge.gallery import MemoryGallery
from edge.settings import AttributeSettings
from edge.storage.store import TrackletStore
from edge.tracklets import ClosedTracklet
from edge.uplink.outbox import Outbox
from models.attributes.types import ATTRIBUTE_NAMES, AttributeProfile, ColourReading
from models.errors import InvalidInputError
from models.types import Crop, Embeddings
from protos.codec import attributes_from_proto
from protos.crossview.v1 import edge_to_hub_pb2

FP, DIM = "fake-embedder@1", 16


class TinyEmbedder:
    fingerprint, dim = FP, DIM

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
        rows = np.array([cv2.resize(i, (4, 4)).astype(np.float32)[..., 0].ravel() + 1.0 for i in images])
        return Embeddings(rows / np.linalg.norm(rows, axis=1, keepdims=True), FP)


def _tracklet(tid: str, images: Sequence[np.ndarray]) -> ClosedTracklet:
    return ClosedTracklet(tracklet_id=tid, camera_id="cam", track_id=1, start_s=1.0, end_s=2.0, frame_count=10,
                          crops=tuple(Crop(img, "cam", 1.0 + 0.1 * k, (0.0, 0.0, 64.0, 128.0), 0.9, 0.9)
                                      for k, img in enumerate(images)))


@pytest.fixture
def sinks(tmp_path: Path):
    with TrackletStore(tmp_path / "edge.db") as store, Outbox(tmp_path / "outbox.db") as outbox:
        store.add_camera("cam")
        yield store, outbox


def _worker(store: TrackletStore, outbox: Outbox, attributes: object) -> EmbedWorker:
    return EmbedWorker(edge_id="edge-t", embedder=TinyEmbedder(), store=store, outbox=outbox,
                       gallery=MemoryGallery(FP, DIM, rerank=False), send_unmatched=True, attributes=attributes)


@pytest.fixture(scope="module")
def recognizer(models_dir: Path):
    from models.attributes.recognizer import AttributeRecognizer
    return AttributeRecognizer("attributes/intel-0230")


def test_worker_stores_and_sends_the_real_model_s_attributes(sinks, recognizer, data_dir: Path) -> None:
    from models.attributes.recognizer import aggregate_profiles
    files = sorted((data_dir / "market1501_mini" / "bounding_box_test").glob("0004_*.jpg"))
    if len(files) < 2:
        pytest.skip("market1501_mini has fewer than two crops of identity 0004")
    images = [cv2.imread(str(f)) for f in files[:4]]
    store, outbox = sinks
    worker = _worker(store, outbox, recognizer)
    worker.submit(_tracklet("t-real", images))
    worker.submit(_tracklet("t-real-2", images[:1]))
    assert worker.drain(120) and worker.close()
    stored = store.attributes("t-real")
    assert stored is not None and stored.crops == len(images)
    want = aggregate_profiles(recognizer.recognize(images))  # the same crops, one call
    np.testing.assert_allclose(stored.probabilities.as_tuple(), want.probabilities.as_tuple(), atol=1e-6)
    assert (stored.upper, stored.lower) == (want.upper, want.lower)
    assert store.attributes("t-real-2").crops == 1 and worker.stats.attributes_read == 2
    message = edge_to_hub_pb2.ShortList.FromString(outbox.get(short_list_key("edge-t", "t-real", 0)).payload)
    sent = attributes_from_proto(message.attributes)
    np.testing.assert_allclose(sent.probabilities.as_tuple(), stored.probabilities.as_tuple(), atol=1e-6)


class ExplodingReader:
    def recognize(self, crops_bgr: Sequence[np.ndarray]) -> list[AttributeProfile]:
        raise RuntimeError("attribute model exploded")


class ConstantReader:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def recognize(self, crops_bgr: Sequence[np.ndarray]) -> list[AttributeProfile]:
        self.calls.append(len(crops_bgr))
        probs = dict.fromkeys(ATTRIBUTE_NAMES, 0.25)
        return [AttributeProfile(probs, ColourReading("red", 0.5), None) for _ in crops_bgr]


def _images(n: int, seed: int) -> list[np.ndarray]:
    return [np.random.default_rng(seed + k).integers(0, 256, (128, 64, 3), np.uint8) for k in range(n)]


def test_a_failing_reader_leaves_tracklets_stored_without_attributes(sinks, caplog) -> None:
    store, outbox = sinks
    worker = _worker(store, outbox, ExplodingReader())
    with caplog.at_level(logging.ERROR):
        worker.submit(_tracklet("t1", _images(2, 1)))
        assert worker.drain(30) and worker.close()
    assert store.attributes("t1") is None and store.get_tracklet("t1").closed
    assert worker.stats.failed == 0 and worker.stats.embedded == 1
    assert "stored without them" in caplog.text
    message = edge_to_hub_pb2.ShortList.FromString(outbox.get(short_list_key("edge-t", "t1", 0)).payload)
    assert not message.HasField("attributes")


def test_the_reader_runs_once_per_batch_and_reused_tracklets_send_their_stored_attributes(sinks,
                                                                                        tmp_path: Path) -> None:
    store, outbox = sinks
    reader = ConstantReader()
    worker = _worker(store, outbox, reader)
    worker.submit(_tracklet("t1", _images(3, 1)))
    worker.submit(_tracklet("t2", _images(2, 5)))
    assert worker.drain(30) and worker.close()
    assert sum(reader.calls) == 5 and store.attributes("t2").crops == 2
    with Outbox(tmp_path / "outbox-2.db") as fresh:  # a restart with the short list lost: t1 is found stored
        again = _worker(store, fresh, ConstantReader())
        again.submit(_tracklet("t1", _images(3, 1)))
        assert again.drain(30) and again.close()
        assert again.stats.reused == 1 and again.attributes.calls == []
        message = edge_to_hub_pb2.ShortList.FromString(fresh.get(short_list_key("edge-t", "t1", 0)).payload)
    assert attributes_from_proto(message.attributes).crops == 3


def test_worker_refuses_something_that_is_not_a_reader(sinks) -> None:
    store, outbox = sinks
    with pytest.raises(InvalidInputError, match="expected an attribute recognizer"):
        _worker(store, outbox, object())


def test_attribute_settings_in_the_edge_config(caplog) -> None:
    assert load_config(ReplayConfig).attributes == AttributeSettings()
    cfg = load_config(ReplayConfig, overrides=["attributes.enabled=false", "attributes.batch_size=4"])
    assert cfg.attributes == AttributeSettings(enabled=False, batch_size=4)
    with pytest.raises(ConfigError, match=r"attributes\.batch_size: expected an integer >= 1"):
        load_config(ReplayConfig, overrides=["attributes.batch_size=0"])
    with caplog.at_level(logging.INFO):
        assert attribute_recognizer(cfg.attributes) is None
    assert "attributes off (attributes.enabled=false)" in caplog.text
    with caplog.at_level(logging.WARNING):
        assert attribute_recognizer(AttributeSettings(model="attributes/no-such-model")) is None
    assert "attributes off: unknown model 'attributes/no-such-model'" in caplog.text
