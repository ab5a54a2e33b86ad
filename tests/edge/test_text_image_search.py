"""Text search with a text-image model at the edge (issue 15, item 4), on a tiny random CLIP exported to ONNX:
the embedding worker stores each tracklet's image-tower vector beside its Re-ID vector; the text index
carries them (built and appended); a text job mixes the query text's cosine into the attribute score exactly
as `rank_by_description` does on vectors read back by hand; failures and older tracklets are labelled."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from crossview.config import load_config
from crossview.edge_command import ReplayConfig, text_image_encoder
from edge import text_search
from edge.embed_worker import EmbedWorker
from edge.gallery import MemoryGallery
from edge.settings import TextImageSettings
from edge.storage.store import TrackletStore
from edge.text_search import TextJob, find_text
from edge.tracklets import ClosedTracklet, aggregate
from edge.uplink import messages as edge_wire
from edge.uplink.outbox import Outbox
from models.attributes.query import parse_description
from models.attributes.scoring import rank_by_description
from models.attributes.text_image import TextImageEncoder
from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, ColourReading
from models.errors import InvalidInputError, ModelNotFoundError
from models.types import Crop, Embeddings, Tracklet

FP, DIM = "reid-test@1", 8
QUERY = parse_description("woman in a red jacket with a backpack")
MIXED = ("stage one: attributes mixed with text-image model {} (weight 0.5, its cosines 0.15..0.35 read as 0..1, "
         "no vector as 0.5)")


class TinyReid:
    fingerprint, dim = FP, DIM

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
        rows = np.array([[float(i.mean()) + k for k in range(DIM)] for i in images], np.float32)
        return Embeddings(rows / np.linalg.norm(rows, axis=1, keepdims=True), FP)


def _crops(seed: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 48, 3), np.uint8) for _ in range(n)]


def _profile(seed: int) -> AttributeProfile:
    rng = np.random.default_rng(1000 + seed)
    return AttributeProfile(dict(zip(ATTRIBUTE_NAMES, rng.random(len(ATTRIBUTE_NAMES)).tolist(), strict=True)),
                            ColourReading(COLOUR_NAMES[seed % len(COLOUR_NAMES)], 0.8), None)


@pytest.fixture
def encoder(tiny_clip_model: str) -> TextImageEncoder:
    return TextImageEncoder(tiny_clip_model, weight=0.5)


def _add(store: TrackletStore, encoder: TextImageEncoder | None, i: int) -> None:
    """Tracklet t<i> as the worker stores it: Re-ID vector, attributes and (with `encoder`) image-tower vector."""
    crops = _crops(i)
    extra = () if encoder is None else (aggregate(encoder.image.embed(crops)),)
    store.upsert_tracklet(Tracklet(f"t{i:02d}", "cam", i, float(i), i + 1.0,
                                   tuple(Crop(c, "cam", float(i)) for c in crops), aggregate(TinyReid().embed(crops))),
                          closed=True, attributes=_profile(i), extra_vectors=extra)


def _expected(store: TrackletStore, encoder: TextImageEncoder, ids: list[str], top_k: int) -> list[str]:
    """rank_by_description on profiles and vectors read back one by one, the text's cosine computed here."""
    text = encoder.encode_text([QUERY.text])[0]
    cosine = np.array([float(store.vector(t, encoder.fingerprint).vectors[0] @ text)
                       if encoder.fingerprint in store.get_tracklet(t).fingerprints else np.nan for t in ids])
    vectors = np.concatenate([store.vector(t, FP).vectors for t in ids])
    best, _ = rank_by_description(QUERY, [store.attributes(t) for t in ids], vectors, top_k=top_k, weight=0.1,
                                  text_image_cosine=cosine, text_image_weight=encoder.weight,
                                  text_image_range=encoder.cosine_range)
    return [ids[b] for b in best]


@pytest.fixture(scope="module")
def recognizer(models_dir: Path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from models.attributes.recognizer import AttributeRecognizer
    return AttributeRecognizer("attributes/intel-0230")


def test_the_worker_stores_image_tower_vectors_beside_the_reid_vector(tmp_path: Path, tiny_clip_model: str,
                                                                      recognizer) -> None:
    encoder = TextImageEncoder(tiny_clip_model, crops=2)  # a tracklet's best two of its three crops
    with TrackletStore(tmp_path / "edge.db") as store, Outbox(tmp_path / "outbox.db") as outbox:
        store.add_camera("cam")
        worker = EmbedWorker(edge_id="e", embedder=TinyReid(), store=store, outbox=outbox,
                             gallery=MemoryGallery(FP, DIM, rerank=False), attributes=recognizer, text_image=encoder)
        closed = [ClosedTracklet(f"w{i}", "cam", i, 1.0, 2.0, 5, tuple(Crop(c, "cam", 1.0, quality=0.2 + 0.3 * k)
                                                                       for k, c in enumerate(_crops(i))))
                  for i in range(4)]
        for t in closed:
            worker.submit(t)
        assert worker.drain(120) and worker.close(30)
        assert worker.stats.text_image_read == 4 and worker.stats.embedded == 4
        for t in closed:
            assert set(store.get_tracklet(t.tracklet_id).fingerprints) == {FP, encoder.fingerprint}
            expected = aggregate(encoder.image.embed([c.image for c in t.crops[:2]]), t.qualities[:2]).vectors
            np.testing.assert_allclose(store.vector(t.tracklet_id, encoder.fingerprint).vectors, expected, atol=1e-6)


def test_a_failing_image_tower_leaves_tracklets_stored_without_its_vector(tmp_path: Path, tiny_clip_model: str,
                                                                          recognizer) -> None:
    class Broken:
        fingerprint, dim = "text/broken@0", 16

        def embed(self, images: Sequence[np.ndarray]) -> Embeddings:
            raise RuntimeError("tower down")

    class BrokenModel:
        image, crops = Broken(), 1

    class NoAttributes:  # the attribute model fails: the tracklet is never searched by text
        def recognize(self, crops_bgr: Sequence[np.ndarray]) -> list:
            raise RuntimeError("attribute model down")

    tracklet = ClosedTracklet("w0", "cam", 0, 1.0, 2.0, 5, tuple(Crop(c, "cam", 1.0, quality=0.5) for c in _crops(0)))
    for folder, attributes, text_image in (("broken", recognizer, BrokenModel()),
                                           ("no-attributes", NoAttributes(), TextImageEncoder(tiny_clip_model))):
        with (TrackletStore(tmp_path / folder / "edge.db") as store,
              Outbox(tmp_path / folder / "outbox.db") as outbox):
            store.add_camera("cam")
            worker = EmbedWorker(edge_id="e", embedder=TinyReid(), store=store, outbox=outbox,
                                 gallery=MemoryGallery(FP, DIM, rerank=False), attributes=attributes,
                                 text_image=text_image)
            worker.submit(tracklet)
            assert worker.drain(60) and worker.close(30)
            assert worker.stats.embedded == 1 and worker.stats.text_image_read == 0, folder
            assert store.get_tracklet("w0").fingerprints == (FP,)
    with TrackletStore(tmp_path / "edge.db") as store, Outbox(tmp_path / "outbox.db") as outbox:
        with pytest.raises(InvalidInputError, match="text-image model"):
            EmbedWorker(edge_id="e", embedder=TinyReid(), store=store, outbox=outbox,
                        gallery=MemoryGallery(FP, DIM, rerank=False), attributes=recognizer,
                        text_image=object())  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="ranks tracklets by their attributes first"):
            EmbedWorker(edge_id="e", embedder=TinyReid(), store=store, outbox=outbox,
                        gallery=MemoryGallery(FP, DIM, rerank=False), text_image=TextImageEncoder(tiny_clip_model))


def test_text_jobs_mix_the_text_image_cosine_into_the_attribute_score(tmp_path: Path, encoder,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with TrackletStore(tmp_path / "edge.db") as store:
        store.add_camera("cam")
        for i in range(12):
            _add(store, encoder if i != 4 else None, i)  # t04 was stored before the text-image model was on
        ids = [f"t{i:02d}" for i in range(12)]
        hits, notes = find_text(TextJob("j", QUERY, top_k=12), store, model_fingerprint=FP, text_image=encoder)
        assert [h.tracklet_id for h in hits] == _expected(store, encoder, ids, 12)
        assert notes == [MIXED.format(encoder.fingerprint),
                         "1 tracklets have no text-image vector (recorded before the model was on, or its image "
                         "tower failed on them)"]
        # new tracklets are appended to the cached index with their image vectors, as a rebuild would hold them
        builds: list[int] = []
        real_build = text_search.TextIndex.build
        monkeypatch.setattr(text_search.TextIndex, "build", lambda *a: builds.append(1) or real_build(*a))
        for i in range(12, 20):
            _add(store, encoder, i)
        hits, _ = find_text(TextJob("j", QUERY, top_k=20), store, model_fingerprint=FP, text_image=encoder)
        assert builds == []
        ids += [f"t{i:02d}" for i in range(12, 20)]
        assert [h.tracklet_id for h in hits] == _expected(store, encoder, ids, 20)
        cached = text_search.text_index(store, FP, encoder.fingerprint)
        np.testing.assert_array_equal(cached.text_image_vectors, real_build(store, FP, encoder.fingerprint)
                                      .text_image_vectors)
        alone, _ = find_text(TextJob("j", QUERY, top_k=20), store, model_fingerprint=FP)
        assert [h.tracklet_id for h in alone] != [h.tracklet_id for h in hits]  # the cosine changed the order


def test_a_failing_text_tower_answers_by_attributes_with_a_note(tmp_path: Path, encoder) -> None:
    class Failing:
        fingerprint, weight, cosine_range = encoder.fingerprint, 0.5, (0.15, 0.35)

        def encode_text(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("text tower down")

    with TrackletStore(tmp_path / "edge.db") as store:
        store.add_camera("cam")
        for i in range(6):
            _add(store, encoder, i)
        hits, notes = find_text(TextJob("j", QUERY), store, model_fingerprint=FP, text_image=Failing())
        ids = [f"t{i:02d}" for i in range(6)]
        best, _ = rank_by_description(QUERY, [store.attributes(t) for t in ids],
                                      np.concatenate([store.vector(t, FP).vectors for t in ids]), top_k=6,
                                      weight=0.1, text_image_cosine=np.full(6, np.nan))  # every vector neutral
        assert [h.tracklet_id for h in hits] == [ids[b] for b in best]
        assert notes == [MIXED.format(encoder.fingerprint),
                         "the text-image model failed (RuntimeError): its part of every score is 0.5"]
    with TrackletStore(tmp_path / "plain.db") as plain:  # nothing stored with a text-image vector yet
        plain.add_camera("cam")
        _add(plain, None, 0)
        hits, notes = find_text(TextJob("j", QUERY), plain, model_fingerprint=FP, text_image=encoder)
        assert len(hits) == 1 and notes == [MIXED.format(encoder.fingerprint),
                                            "no tracklet has a text-image vector yet: its part of every score is 0.5"]


def test_the_edge_wire_answers_with_the_text_image_model(tmp_path: Path, encoder) -> None:
    from cloud import wire as hub_wire
    from protos.crossview.v1 import session_pb2

    payload = hub_wire.search_job_payload("job-1", None, FP, top_k=3, camera_ids=[], deadline_s=1.0, text=QUERY)
    job = session_pb2.HubMessage.FromString(payload).search_job
    with TrackletStore(tmp_path / "edge.db") as store:
        store.add_camera("cam")
        for i in range(8):
            _add(store, encoder, i)
        (result,) = edge_wire.answer_search_job(job, store, edge_id="e", model_fingerprint=FP, dim=DIM,
                                                text_image=encoder)
        assert not result.HasField("error")
        assert [h.tracklet_id for h in result.hits] == _expected(store, encoder, [f"t{i:02d}" for i in range(8)], 3)


def test_edge_settings_name_the_model(tmp_path: Path, tiny_clip_model: str) -> None:
    assert text_image_encoder(TextImageSettings()) is None
    cfg = load_config(ReplayConfig, None, [f"text_image.model={tiny_clip_model}", "text_image.weight=0.25"])
    encoder = text_image_encoder(cfg.text_image)
    assert encoder.weight == 0.25 and encoder.fingerprint.startswith("text/tiny@")
    with pytest.raises(ModelNotFoundError):
        text_image_encoder(TextImageSettings(model="text/none"))
    with pytest.raises(InvalidInputError, match="weight"):
        TextImageSettings(model="x", weight=2)
    with pytest.raises(InvalidInputError, match="crops"):
        TextImageSettings(model="x", crops=0)
    assert load_config(ReplayConfig, None, ["text_image.crops=3"]).text_image.crops == 3


def test_an_edge_node_hands_the_model_to_its_worker_and_its_hub_link(tmp_path: Path, encoder, recognizer) -> None:
    from crossview_testing.edge_fakes import BlobTracker, ColourEmbedder, write_video

    from edge.node import EdgeNode
    from edge.pipeline import TrackletSettings
    from edge.uplink.settings import HubLinkSettings

    options = {"tracker": BlobTracker(), "embedder": ColourEmbedder(), "embed_nice": None, "text_image": encoder,
               "attributes": recognizer,
               "tracklets": TrackletSettings(close_after_s=0.5, min_quality=0.0)}
    with EdgeNode(tmp_path / "linked", "edge-n", ["cam"], hub=HubLinkSettings("127.0.0.1:9", "token"),
                  **options) as node:  # never started: only the wiring is looked at
        assert node.link is not None and node.link.text_image is encoder
    video = write_video(tmp_path / "a.mp4", [(40, 40, 230), (40, 230, 40)])
    with EdgeNode(tmp_path / "w", "edge-n", ["cam"], **options) as node:
        assert node.replay([video], ["cam"], progress=False).ok
        stored = node.store.attribute_rows()
        assert len(stored) == 2
        for tid, *_ in stored:
            assert encoder.fingerprint in node.store.get_tracklet(tid).fingerprints
        assert node.stats().pipeline.worker.text_image_read == 2
