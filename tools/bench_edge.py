"""Benchmark the edge: detector + tracker alone versus the full edge pipeline, on one video, in one run.

    python tools/bench_edge.py                       # the whole sample video, stride 1
    python tools/bench_edge.py --json --frames 600 --stride 2

(a) "detector": decode → `PersonTracker.update`. (b) "pipeline": decode → `EdgePipeline.process`
(detection, tracking, crop quality, tracklets) with its embedding worker (intel-0288, one thread)
storing tracklets, crops and vectors in a `TrackletStore`, recalling them against a gallery and putting
short lists in an `Outbox`. The gallery holds a few hundred distractor identities (CUHK03 people, or
random vectors without $CROSSVIEW_DATA) plus `--identities` people of this video, taken from a first
pass at 4x the stride (their crops, embedded one by one), so some tracklets do match.

Measurement: the frames are decoded once, in chunks; each chunk is run through (a) and (b) back to
back, each path keeping its own tracker state (two camera ids), alternating which goes first, and (b)
waits for its worker to finish the chunk's tracklets before its clock stops. Paired chunks make the
ratio robust to other load on the machine. Decoding is timed once per chunk and counted in both
paths (as decode → detector would); `fps_ratio_no_decode` leaves it out (stricter). Model loading
and warm-up are excluded. `source_bytes` is the video file size, prorated when `--frames` covers
only part of the video; `uplink_bytes` is the size of the short-list payloads in the outbox.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from edge.detect_track import PersonTracker  # noqa: E402
from edge.embed_worker import UplinkSettings  # noqa: E402
from edge.gallery import MemoryGallery  # noqa: E402
from edge.pipeline import EdgePipeline  # noqa: E402
from edge.shortlist import ShortListPolicy  # noqa: E402
from edge.sources.files import VideoFileSource  # noqa: E402
from edge.sources.frames import Frame  # noqa: E402
from edge.storage.store import TrackletStore  # noqa: E402
from edge.uplink.outbox import Outbox  # noqa: E402
from models.embed import create_embedder  # noqa: E402

DEFAULT_VIDEO = "one-by-one-person-detection.mp4"
from models.scores import DEFAULT_RECALL_P_SAME  # noqa: E402  the replay command's default P(same) floor


def find_video(name: str) -> Path:
    if Path(name).is_file():
        return Path(name)
    data = Path(os.environ.get("CROSSVIEW_DATA", "/nonexistent")) / "video" / name
    if data.is_file():
        return data
    from models.zoo import resolve_sample

    return resolve_sample(name)


def distractors(embedder: Any, count: int, seed: int = 0) -> tuple[list[str], list[np.ndarray], str]:
    """`count` identities that are not in the video: CUHK03 people (2 crops each) or random vectors."""
    import cv2

    root = Path(os.environ.get("CROSSVIEW_DATA", "/nonexistent")) / "cuhk03_labeled"
    by_person: dict[str, list[Path]] = {}
    for split in ("train", "val"):
        for f in sorted((root / split).glob("*.jpg")) if (root / split).is_dir() else []:
            by_person.setdefault(f"{split}-{f.stem.split('_')[0]}", []).append(f)
    if len(by_person) >= count:
        ids, vectors = [], []
        for person, files in list(by_person.items())[:count]:
            crops = [c for c in (cv2.imread(str(f)) for f in files[:2]) if c is not None]
            ids.append(f"cuhk03-{person}")
            vectors.append(embedder.embed(crops).vectors)
        return ids, vectors, f"{count} CUHK03 identities (2 crops each)"
    rng = np.random.default_rng(seed)
    vectors = [v[None] for v in rng.standard_normal((count, embedder.dim)).astype(np.float32)]
    return [f"random-{i}" for i in range(count)], vectors, f"{count} random vectors (no CUHK03 data)"


def decode_chunks(video: Path, stride: int, frames: int | None,
                  chunk: int) -> Iterator[tuple[float, list[Frame], bool]]:
    """Yield (decode seconds, frames, is the last chunk) for the video, `chunk` frames at a time."""
    iterator = iter(VideoFileSource(video, "decode", stride=stride, max_frames=frames))

    def read() -> tuple[float, list[Frame]]:
        start = time.perf_counter()
        batch = [f for _, f in zip(range(chunk), iterator, strict=False)]
        return time.perf_counter() - start, batch

    current = read()
    while current[1]:
        following = read()
        yield current[0], current[1], not following[1]
        current = following


def as_camera(frame: Frame, camera_id: str) -> Frame:
    return Frame(camera_id, frame.index, frame.timestamp_s, frame.image)


def make_pipeline(workdir: Path, tracker: PersonTracker, embedder: Any, gallery: MemoryGallery,
                  min_p_same: float, uplink: UplinkSettings | None = None
                  ) -> tuple[EdgePipeline, TrackletStore, Outbox]:
    store = TrackletStore(workdir / "edge.db")
    outbox = Outbox(workdir / "outbox.db")
    pipeline = EdgePipeline("bench-edge", tracker=tracker, embedder=embedder, store=store, outbox=outbox,
                            gallery=gallery, policy=ShortListPolicy(top_k=5, min_p_same=min_p_same),
                            uplink=uplink)
    return pipeline, store, outbox


def harvest_identities(video: Path, args: argparse.Namespace, tracker: PersonTracker, embedder: Any,
                       workdir: Path) -> tuple[list[str], list[np.ndarray]]:
    """People of this video: the longest tracklets of a pass at 4x the stride, their crops embedded."""
    import cv2

    pipeline, store, outbox = make_pipeline(workdir, tracker, embedder, MemoryGallery(embedder.fingerprint,
                                                                                       embedder.dim), 0.0)
    stride = args.stride * 4
    frames = None if args.frames is None else math.ceil(args.frames / 4)
    pipeline.begin_stream("harvest")
    for frame in VideoFileSource(video, "harvest", stride=stride, max_frames=frames):
        pipeline.process(frame)
    pipeline.close()
    records = [store.get_tracklet(t) for t in store.vectors(embedder.fingerprint)[0]]
    records.sort(key=lambda r: (-(r.end_s - r.start_s), r.tracklet_id))
    ids, vectors = [], []
    for n, record in enumerate(records[: args.identities]):
        crops = [cv2.imread(str(p)) for p in record.crop_paths]
        ids.append(f"video-person-{n}")
        vectors.append(embedder.embed([c for c in crops if c is not None]).vectors)
    store.close()
    outbox.close()
    return ids, vectors


def run(args: argparse.Namespace) -> dict[str, Any]:
    video = find_video(args.video)
    load_start = time.perf_counter()
    tracker = PersonTracker()
    embedder = create_embedder("reid/intel-0288", num_threads=1)
    embedder.embed([np.zeros((256, 128, 3), np.uint8)] * 4)  # warm up
    load_s = time.perf_counter() - load_start

    tmp = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    real_ids, real_vectors = harvest_identities(video, args, tracker, embedder, tmp / "harvest")
    gallery = MemoryGallery(embedder.fingerprint, embedder.dim)
    d_ids, d_vectors, distractor_note = distractors(embedder, args.distractors)
    for identity, vectors in zip(d_ids + real_ids, d_vectors + real_vectors, strict=True):
        gallery.add(identity, vectors)
    gallery.recall(np.ones(embedder.dim, np.float32))  # gallery-only work, done once per gallery version

    uplink = UplinkSettings(args.uplink_crops, args.uplink_max_height, args.uplink_jpeg_quality)
    pipeline, store, outbox = make_pipeline(tmp / "pipeline", tracker, embedder, gallery, args.min_p_same, uplink)
    tracker.reset("detector")
    pipeline.begin_stream("pipeline")
    warm = VideoFileSource(video, "warm", stride=args.stride, max_frames=10)
    for frame in warm:  # warm both paths on frames that are not measured; state reset below
        tracker.update(as_camera(frame, "detector"))
        pipeline.process(as_camera(frame, "warm"))
    pipeline.end_stream("warm", flush=False)  # warm-up tracklets are not part of the run
    pipeline.drain()
    tracker.reset("detector")

    decode_s = detector_s = pipeline_s = 0.0
    frames = 0
    ratios: list[float] = []
    chunk_times: list[tuple[float, float, float]] = []
    chunks = decode_chunks(video, args.stride, args.frames, args.chunk)
    for number, (chunk_decode, batch, last) in enumerate(chunks):
        times: dict[str, float] = {}
        for path in (("detector", "pipeline") if number % 2 == 0 else ("pipeline", "detector")):
            start = time.perf_counter()
            if path == "detector":
                for frame in batch:
                    tracker.update(as_camera(frame, "detector"))
            else:
                for frame in batch:
                    pipeline.process(as_camera(frame, "pipeline"))
                if last:
                    pipeline.end_stream("pipeline")
                pipeline.drain()
            times[path] = time.perf_counter() - start
        decode_s += chunk_decode
        detector_s += times["detector"]
        pipeline_s += times["pipeline"]
        frames += len(batch)
        ratios.append((chunk_decode + times["detector"]) / (chunk_decode + times["pipeline"]))
        chunk_times.append((round(chunk_decode, 3), round(times["detector"], 3), round(times["pipeline"], 3)))
    pipeline.close()
    stats = pipeline.stats
    entries = outbox.pending(limit=1_000_000)
    uplink_bytes = sum(len(e.payload) for e in entries)
    vectors_stored = len(store.vectors(embedder.fingerprint)[0])
    store.close()
    outbox.close()

    size = video.stat().st_size
    total = VideoFileSource(video, "probe").frame_count
    covered = 1.0 if args.frames is None or not total else min(1.0, frames * args.stride / total)
    source_bytes = round(size * covered)
    detector_fps = frames / (decode_s + detector_s)
    pipeline_fps = frames / (decode_s + pipeline_s)
    return {
        "video": video.name, "frames": frames, "stride": args.stride,
        "detector_fps": round(detector_fps, 2), "pipeline_fps": round(pipeline_fps, 2),
        "fps_ratio": round(pipeline_fps / detector_fps, 3),
        "fps_ratio_no_decode": round(detector_s / pipeline_s, 3),
        "chunk_ratio_median": round(statistics.median(ratios), 3), "chunk_ratio_min": round(min(ratios), 3),
        "uplink_bytes": uplink_bytes, "source_bytes": source_bytes,
        "uplink_ratio": round(uplink_bytes / source_bytes, 5),
        "decode_s": round(decode_s, 2), "detector_s": round(detector_s, 2), "pipeline_s": round(pipeline_s, 2),
        "tracklets_closed": stats.tracklets_closed, "tracklets_embedded": stats.worker.embedded,
        "vectors_stored": vectors_stored, "crops_embedded": stats.worker.crops_embedded,
        "embed_batches": stats.worker.batches, "short_lists": len(entries),
        "short_list_identities": sorted({k for k in _named(entries)}),
        "gallery": f"{distractor_note} + {len(real_ids)} people of this video ({gallery.size} vectors)",
        "min_p_same": args.min_p_same, "uplink": vars(uplink), "chunk_frames": args.chunk,
        "load_s": round(load_s, 1),
        "cpus": os.cpu_count(), "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "chunks_decode_detector_pipeline_s": chunk_times,
    }


def _named(entries: list[Any]) -> list[str]:
    from protos.crossview.v1 import edge_to_hub_pb2

    names = []
    for entry in entries:
        message = edge_to_hub_pb2.ShortList.FromString(entry.payload)
        names += [c.identity_id for c in message.candidates]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--video", default=DEFAULT_VIDEO, help="a path, or a file name in $CROSSVIEW_DATA/video")
    parser.add_argument("--frames", type=int, default=None, help="process this many frames (default: all)")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=100, help="frames per paired chunk")
    parser.add_argument("--identities", type=int, default=3, help="people of the video in the gallery")
    parser.add_argument("--distractors", type=int, default=300, help="other identities in the gallery")
    parser.add_argument("--min-p-same", type=float, default=DEFAULT_RECALL_P_SAME, help="short-list P(same) floor")
    parser.add_argument("--uplink-crops", type=int, default=UplinkSettings.crops, help="crops per short list")
    parser.add_argument("--uplink-max-height", type=int, default=UplinkSettings.max_height)
    parser.add_argument("--uplink-jpeg-quality", type=int, default=UplinkSettings.jpeg_quality)
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:<22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
