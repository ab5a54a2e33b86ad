"""TrackletBuilder and aggregate on synthetic frames: replay, memory bound, closing, dropping, weights."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.quality import CropQuality
from edge.tracklets import ClosedTracklet, TrackletBuilder, aggregate, make_tracklet_id
from models.errors import InvalidInputError
from models.types import Detections, Embeddings, Tracklet

FRAME_H, FRAME_W = 240, 320
FPS = 10.0


@dataclass(frozen=True)
class Walker:
    """A synthetic person: a textured 40×100 box walking right from frame `first` to `last` inclusive."""

    track_id: int
    first: int
    last: int
    x0: float = 20.0
    y0: float = 60.0
    speed: float = 2.0
    seed: int = 0

    def box(self, frame: int) -> tuple[float, float, float, float]:
        x = self.x0 + self.speed * (frame - self.first)
        return (x, self.y0, x + 40.0, self.y0 + 100.0)


def _scene(walkers: list[Walker], n_frames: int, *, blur_every: int = 0) -> Iterator[
    tuple[float, np.ndarray, Detections]
]:
    """Frames (noise background, walkers pasted in) with their tracked detections; deterministic."""
    rng = np.random.default_rng(123)
    background = rng.integers(90, 110, size=(FRAME_H, FRAME_W, 3), dtype=np.uint8)
    textures = {w.track_id: np.random.default_rng(w.seed + w.track_id).integers(
        0, 256, size=(100, 40, 3), dtype=np.uint8) for w in walkers}
    for f in range(n_frames):
        frame = background.copy()
        boxes, confs, ids = [], [], []
        for w in walkers:
            if not w.first <= f <= w.last:
                continue
            x1, y1, x2, y2 = w.box(f)
            patch = textures[w.track_id]
            if blur_every and f % blur_every:
                patch = cv2.GaussianBlur(patch, (0, 0), 3.0)
            xi, yi = round(x1), round(y1)
            visible = patch[: FRAME_H - yi, : FRAME_W - xi]
            frame[yi:yi + visible.shape[0], xi:xi + visible.shape[1]] = visible
            boxes.append((x1, y1, x2, y2))
            confs.append(0.5 + 0.4 * ((f * 7 + w.track_id) % 5) / 4)
            ids.append(w.track_id)
        detections = Detections(
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(confs, np.float32),
            np.array(ids, np.int64),
        )
        yield f / FPS, frame, detections


def _run(builder: TrackletBuilder, frames) -> list[ClosedTracklet]:
    closed: list[ClosedTracklet] = []
    for timestamp, frame, detections in frames:
        closed += builder.update(timestamp, frame, detections)
    return closed + builder.flush()


WALKERS = [Walker(1, 0, 29), Walker(2, 5, 14, y0=20, seed=4), Walker(7, 10, 11, x0=200), Walker(3, 40, 59)]


def test_replay_gives_identical_tracklets() -> None:
    a = _run(TrackletBuilder("cam-a"), _scene(WALKERS, 70))
    b = _run(TrackletBuilder("cam-a"), _scene(WALKERS, 70))
    assert [t.tracklet_id for t in a] == [t.tracklet_id for t in b]
    assert len(a) == 3  # track 7 (2 frames) is dropped
    assert len({t.tracklet_id for t in a}) == 3
    for ta, tb in zip(a, b, strict=True):
        assert (ta.start_s, ta.end_s, ta.frame_count) == (tb.start_s, tb.end_s, tb.frame_count)
        assert [c.timestamp_s for c in ta.crops] == [c.timestamp_s for c in tb.crops]
        for ca, cb in zip(ta.crops, tb.crops, strict=True):
            np.testing.assert_array_equal(ca.image, cb.image)
            assert ca.quality == cb.quality


def test_ids_depend_on_camera_track_start_and_namespace() -> None:
    base = make_tracklet_id("cam", 1, 0.5)
    assert base == make_tracklet_id("cam", 1, 0.5) and len(base) == 24
    others = {make_tracklet_id("cam2", 1, 0.5), make_tracklet_id("cam", 2, 0.5),
              make_tracklet_id("cam", 1, 0.6), make_tracklet_id("cam", 1, 0.5, "edge-7")}
    assert base not in others and len(others) == 4
    closed = _run(TrackletBuilder("cam-b", id_namespace="edge-1"), _scene(WALKERS[:1], 30))
    assert closed[0].tracklet_id == make_tracklet_id("cam-b", 1, 0.0, "edge-1")


def test_memory_bound_and_best_k_by_quality() -> None:
    scorer = CropQuality()
    builder = TrackletBuilder("cam", best_k=3, min_quality=0.0, scorer=scorer)
    every: list[tuple[float, float]] = []  # (quality, timestamp) of every crop offered
    walker = Walker(1, 0, 99, speed=1.0)
    for timestamp, frame, detections in _scene([walker], 100, blur_every=3):
        x1, y1, x2, y2 = detections.xyxy[0]
        crop = frame[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
        every.append((scorer(crop, tuple(map(float, detections.xyxy[0])), frame.shape[:2],
                             float(detections.confidence[0])), timestamp))
        assert builder.update(timestamp, frame, detections) == []
        assert builder.crops_held(1) <= 3
    (tracklet,) = builder.flush()
    assert tracklet.frame_count == 100 and len(tracklet.crops) == 3
    best = sorted(every, key=lambda qt: (-qt[0], qt[1]))[:3]
    assert [(c.quality, c.timestamp_s) for c in tracklet.crops] == best
    assert all(round(c.timestamp_s * FPS) % 3 == 0 for c in tracklet.crops)  # only unblurred frames
    assert list(tracklet.qualities) == sorted(tracklet.qualities, reverse=True)


def test_crops_are_copies_not_views_of_the_frame() -> None:
    builder = TrackletBuilder("cam", min_frames=1)
    frames = list(_scene([Walker(1, 0, 2)], 3))
    for timestamp, frame, detections in frames:
        builder.update(timestamp, frame, detections)
        frame[:] = 0  # the caller reuses its frame buffer
    (tracklet,) = builder.flush()
    assert all(c.image.any() for c in tracklet.crops)
    assert all(not np.shares_memory(c.image, f) for c in tracklet.crops for _, f, _ in frames)


def test_closes_after_the_gap_and_not_before() -> None:
    builder = TrackletBuilder("cam", close_after_s=0.5)
    closed_at: dict[int, float] = {}
    for timestamp, frame, detections in _scene([Walker(1, 0, 9), Walker(2, 0, 30, y0=20)], 40):
        for t in builder.update(timestamp, frame, detections):
            closed_at[t.track_id] = timestamp
            assert t.end_s == pytest.approx(0.9 if t.track_id == 1 else 3.0)
    assert closed_at[1] == pytest.approx(1.4)  # last seen 0.9, unseen for 0.5 s
    assert closed_at[2] == pytest.approx(3.5)
    assert builder.flush() == [] and builder.stats.open_tracks == 0


def test_empty_frames_advance_time_and_close() -> None:
    builder = TrackletBuilder("cam", close_after_s=1.0)
    for timestamp, frame, detections in _scene([Walker(1, 0, 4)], 5):
        builder.update(timestamp, frame, detections)
    blank = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    assert builder.update(1.0, blank, Detections.empty()) == []
    (tracklet,) = builder.update(1.4, blank, Detections.empty())
    assert (tracklet.start_s, tracklet.end_s, tracklet.frame_count) == (0.0, 0.4, 5)


def test_flush_closes_everything_oldest_first_and_restarts_the_clock() -> None:
    builder = TrackletBuilder("cam")
    closed = []
    for timestamp, frame, detections in _scene([Walker(5, 3, 20), Walker(2, 6, 20, y0=10)], 21):
        closed += builder.update(timestamp, frame, detections)
    assert closed == []
    flushed = builder.flush()
    assert [t.track_id for t in flushed] == [5, 2]
    assert builder.stats.tracklets_closed == 2
    builder.update(0.0, np.zeros((FRAME_H, FRAME_W, 3), np.uint8), Detections.empty())  # a new stream


def test_min_frames_and_min_quality_drop_and_count() -> None:
    builder = TrackletBuilder("cam", min_frames=3)
    closed = _run(builder, _scene([Walker(1, 0, 1), Walker(2, 0, 2, y0=10)], 3))
    assert [t.track_id for t in closed] == [2]
    assert builder.stats.dropped_short == 1 and builder.stats.tracklets_closed == 1

    picky = TrackletBuilder("cam", min_quality=0.999)
    assert _run(picky, _scene([Walker(1, 0, 9)], 10)) == []
    stats = picky.stats
    assert stats.dropped_no_crops == 1 and stats.crops_below_min_quality == 10
    assert (stats.frames, stats.detections) == (10, 10)


def test_track_id_reused_after_close_is_a_new_tracklet() -> None:
    builder = TrackletBuilder("cam", close_after_s=0.5)
    closed = _run(builder, _scene([Walker(1, 0, 9), Walker(1, 30, 39, seed=9)], 40))
    assert [t.track_id for t in closed] == [1, 1]
    assert closed[0].tracklet_id != closed[1].tracklet_id
    assert (closed[1].start_s, closed[1].frame_count) == (3.0, 10)


def test_boxes_without_a_track_belong_to_no_tracklet() -> None:
    builder = TrackletBuilder("cam", min_frames=1, min_quality=0.0)
    frame = np.random.default_rng(1).integers(0, 256, size=(FRAME_H, FRAME_W, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 150], [200, 10, 250, 150], [300, 10, 350, 150]], np.float32)
    for i in range(5):  # two different people the tracker could not track (-1), and track 4
        builder.update(i * 0.1, frame, Detections(boxes, np.full(3, 0.9, np.float32), np.array([-1, -1, 4])))
    assert builder.stats.untracked == 10
    assert [t.track_id for t in builder.flush()] == [4]


def test_boxes_off_frame_are_clipped_or_skipped() -> None:
    builder = TrackletBuilder("cam", min_frames=1, min_quality=0.0)
    frame = np.random.default_rng(0).integers(0, 256, size=(FRAME_H, FRAME_W, 3), dtype=np.uint8)
    detections = Detections(
        np.array([[-20, 100, 30, 230], [400, 10, 450, 100]], np.float32),
        np.array([0.9, 0.9], np.float32), np.array([1, 2], np.int64),
    )
    builder.update(0.0, frame, detections)
    assert builder.stats.crops_empty == 1
    closed = builder.flush()
    assert [t.track_id for t in closed] == [1]  # track 2 never had a pixel
    crop = closed[0].crops[0]
    assert crop.image.shape == (130, 30, 3) and crop.xyxy == (-20.0, 100.0, 30.0, 230.0)
    assert builder.stats.dropped_no_crops == 1


def test_to_tracklet_carries_span_crops_and_embedding() -> None:
    (closed,) = _run(TrackletBuilder("cam"), _scene([Walker(1, 0, 9)], 10))
    emb = Embeddings(np.ones((1, 4), np.float32) / 2, "fp")
    tracklet = closed.to_tracklet(emb)
    assert isinstance(tracklet, Tracklet)
    assert (tracklet.tracklet_id, tracklet.start_s, tracklet.end_s) == (closed.tracklet_id, 0.0, 0.9)
    assert tracklet.crops == closed.crops and tracklet.embedding is emb


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.update(0.0, np.zeros((4, 4), np.uint8), Detections.empty()), "shape"),
        (lambda b: b.update(0.0, np.zeros((4, 4, 3), np.float32), Detections.empty()), "uint8"),
        (lambda b: b.update(float("nan"), np.zeros((4, 4, 3), np.uint8), Detections.empty()), "finite"),
        (lambda b: b.update("soon", np.zeros((4, 4, 3), np.uint8), Detections.empty()), "number"),
        (lambda b: b.update(0.0, np.zeros((4, 4, 3), np.uint8), []), "Detections"),
        (lambda b: b.update(0.0, np.zeros((4, 4, 3), np.uint8),
                            Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32))), "track ids"),
        (lambda b: (b.update(1.0, np.zeros((4, 4, 3), np.uint8), Detections.empty()),
                    b.update(0.5, np.zeros((4, 4, 3), np.uint8), Detections.empty())), "previous"),
    ],
)
def test_update_errors(call, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call(TrackletBuilder("cam"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"camera_id": ""}, "camera_id"),
        ({"best_k": 0}, "best_k"),
        ({"close_after_s": 0}, "close_after_s"),
        ({"close_after_s": float("inf")}, "close_after_s"),
        ({"min_frames": 0}, "min_frames"),
        ({"min_quality": 1.5}, "min_quality"),
    ],
)
def test_constructor_errors(kwargs: dict, message: str) -> None:
    kwargs = {"camera_id": "cam", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        TrackletBuilder(kwargs.pop("camera_id"), **kwargs)


# --- aggregate ----------------------------------------------------------------------------------

def _emb(rows: list[list[float]], fp: str = "fp") -> Embeddings:
    return Embeddings(np.array(rows, np.float32).reshape(len(rows), -1), fp)


@pytest.mark.parametrize(
    ("rows", "weights", "expected"),
    [
        ([[1, 0], [0, 1]], None, [2**-0.5, 2**-0.5]),
        ([[1, 0], [0, 1]], [3.0, 1.0], [3 / 10**0.5, 1 / 10**0.5]),
        ([[1, 0], [0, 1]], [30.0, 10.0], [3 / 10**0.5, 1 / 10**0.5]),  # only ratios matter
        ([[1, 0], [0, 1]], [1.0, 0.0], [1, 0]),  # zero weight: ignored
        ([[2, 0], [0, 1]], None, [2**-0.5, 2**-0.5]),  # rows re-normalised first
        ([[0.6, 0.8]], [0.4], [0.6, 0.8]),
    ],
)
def test_aggregate_weights(rows: list, weights: list | None, expected: list) -> None:
    out = aggregate(_emb(rows), weights)
    assert out.vectors.shape == (1, 2) and out.vectors.dtype == np.float32
    assert out.model_fingerprint == "fp"
    np.testing.assert_allclose(out.vectors[0], expected, atol=1e-6)


def test_aggregate_matches_brute_force_and_accepts_parts() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(5, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    w = rng.uniform(0.2, 1.0, size=5)
    want = sum(w[i] * v[i].astype(np.float64) for i in range(5))
    want /= np.linalg.norm(want)
    got = aggregate([Embeddings(v[:2], "m"), Embeddings(v[2:], "m")], w)
    np.testing.assert_allclose(got.vectors[0], want, atol=1e-6)
    assert np.linalg.norm(got.vectors[0]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("embeddings", "weights", "message"),
    [
        (Embeddings(np.zeros((0, 4), np.float32), "fp"), None, "at least one vector"),
        ([], None, "at least one Embeddings"),
        ([_emb([[1, 0]], "a"), _emb([[0, 1]], "b")], None, "mixed model fingerprints"),
        ([_emb([[1, 0]]), _emb([[0, 1, 0]])], None, "dimension"),
        ([_emb([[1, 0]]), "x"], None, "expected Embeddings"),
        (_emb([[1, 0], [0, 1]]), [1.0], "shape"),
        (_emb([[1, 0], [0, 1]]), [1.0, -1.0], "non-negative"),
        (_emb([[1, 0], [0, 1]]), [1.0, float("nan")], "finite"),
        (_emb([[1, 0], [0, 1]]), [0.0, 0.0], "positive sum"),
        (_emb([[1, 0], [-1, 0]]), None, "cancel"),
        (_emb([[0, 0], [1, 0]]), None, "zero norm"),
    ],
)
def test_aggregate_errors(embeddings, weights, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        aggregate(embeddings, weights)


def test_real_tracklet_keeps_sharp_frames(data_dir: Path) -> None:
    """A MARS tracklet pasted into frames, every other frame blurred: the kept crops are the sharp ones."""
    folder = data_dir / "mars_mini" / "bbox_test"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*/*.jpg")):
        groups[path.name[:11]].append(path)
    _, paths = max(sorted(groups.items()), key=lambda item: len(item[1]))
    builder = TrackletBuilder("mars", best_k=4)
    closed: list[ClosedTracklet] = []
    sharp_times = set()
    for index, path in enumerate(paths[:24]):
        crop = cv2.imread(str(path))
        assert crop is not None, path
        if index % 2:
            crop = cv2.GaussianBlur(crop, (0, 0), 2.0)
        else:
            sharp_times.add(index / FPS)
        frame = np.full((480, 640, 3), 100, np.uint8)
        h, w = crop.shape[:2]
        frame[100:100 + h, 200:200 + w] = crop
        detections = Detections(np.array([[200, 100, 200 + w, 100 + h]], np.float32),
                                np.array([0.8], np.float32), np.array([1], np.int64))
        closed += builder.update(index / FPS, frame, detections)
    closed += builder.flush()
    (tracklet,) = closed
    assert len(tracklet.crops) == 4
    assert {c.timestamp_s for c in tracklet.crops} <= sharp_times


def test_rejected_input_changes_nothing() -> None:
    builder = TrackletBuilder("cam")
    with pytest.raises(InvalidInputError):
        builder.update(5.0, np.zeros((4, 4), np.uint8), Detections.empty())
    builder.update(1.0, np.zeros((4, 4, 3), np.uint8), Detections.empty())  # the clock did not move to 5.0
    assert builder.stats.frames == 1


@pytest.mark.parametrize("min_quality", [0.0, 0.45, 0.6])
def test_scoring_the_box_first_keeps_the_same_crops_and_counts(min_quality: float) -> None:
    """A crop that cannot be kept skips the sharpness term (`CropQuality.bounds`): nothing else changes."""
    quality = CropQuality()
    calls = {"bounded": 0, "plain": 0}

    def counted(name: str):
        def score(*args):
            calls[name] += 1
            return quality(*args)
        return score

    class Bounded:  # CropQuality with its bounds, counting the full scores
        bounds = staticmethod(quality.bounds)
        __call__ = staticmethod(counted("bounded"))

    runs = {}
    for name, scorer in (("bounded", Bounded()), ("plain", counted("plain"))):
        builder = TrackletBuilder("cam", best_k=2, min_quality=min_quality, scorer=scorer)
        closed = _run(builder, _scene(WALKERS, 70, blur_every=3))
        runs[name] = ([(t.tracklet_id, [(c.timestamp_s, c.quality) for c in t.crops]) for t in closed],
                      builder.stats)
    assert runs["bounded"] == runs["plain"]
    assert calls["bounded"] < calls["plain"] if min_quality < 0.5 else calls["bounded"] <= calls["plain"]
