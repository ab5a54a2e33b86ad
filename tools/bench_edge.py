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

Attributes (issue 15): with the attribute model found (`--attributes`, the default), a third path (c)
"pipeline_attributes" runs in the same chunks: the same pipeline with the attribute recognizer on its
worker (its own store, outbox and camera id); `fps_ratio_attributes` is (a) over (c) as `fps_ratio` is
(a) over (b), and `attributes_cost` (b) over (c). The order of the paths rotates per chunk.

Text-image model (issue 15, item 4; `--text-image NAME`, a registered one, or `random:b32` / `random:tiny`, a
random CLIP of that shape built and registered for the run): a fourth path (d) "pipeline_text_image", the
attribute pipeline with the model's image tower on its worker too (`text_image.crops` = 1, as an edge runs
it); `fps_ratio_text_image` is (a) over (d) and `text_image_cost` (c) over (d).

Text search (issue 15, `--text-tracklets N`, 0: skip; `--text-only`: skip the video): a store filled with
N closed tracklets (random attribute profiles, random 256-d vectors, one small crop each), then a text
job answered as the hub link answers it (`edge.uplink.messages.answer_search_job`: ranking on the cached
arrays, the hits' crops, the SearchResult messages) — `text_query_ms`, median of `--text-repeats` after
one warm-up that builds the index (`text_index_build_ms`) — and a full-scan reference in the same run:
every stored profile parsed from its JSON, `rank_by_description` on them, the same hits read
(`text_full_scan_ms`). Both must return the same tracklets (checked). As on a live edge, where tracklets
close between queries, `text_query_after_append_ms` times the same job right after 5 new tracklets were
stored (median of `--text-repeats`: the index catches up on the new rows instead of rebuilding).
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
                  min_p_same: float, uplink: UplinkSettings | None = None, attributes: Any = None,
                  text_image: Any = None) -> tuple[EdgePipeline, TrackletStore, Outbox]:
    store = TrackletStore(workdir / "edge.db")
    outbox = Outbox(workdir / "outbox.db")
    pipeline = EdgePipeline("bench-edge", tracker=tracker, embedder=embedder, store=store, outbox=outbox,
                            gallery=gallery, policy=ShortListPolicy(top_k=5, min_p_same=min_p_same),
                            uplink=uplink, attributes=attributes, text_image=text_image)
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


def attribute_recognizer(enabled: bool) -> tuple[Any, str]:
    """The attribute recognizer and a note, or (None, why not)."""
    if not enabled:
        return None, "off (--no-attributes)"
    from models.attributes.recognizer import AttributeRecognizer
    from models.errors import ModelNotFoundError

    try:
        recognizer = AttributeRecognizer("attributes/intel-0230")
    except ModelNotFoundError as exc:
        return None, f"off: {exc}"
    recognizer.recognize([np.zeros((160, 80, 3), np.uint8)] * 4)  # warm up
    return recognizer, "attributes/intel-0230"


def text_image_encoder(name: str | None, tmp: Path) -> Any:
    """The text-image model to time (a random one built and registered under `tmp` for `random:SHAPE`)."""
    if not name:
        return None
    from models.attributes.text_image import TextImageEncoder

    if name.startswith("random:"):
        from models.attributes.random_clip import SHAPES, build_random_clip
        from models.zoo.text_image import add_text_image_model

        shape = name.split(":", 1)[1]
        os.environ["CROSSVIEW_USER_MODELS"] = str(tmp / "user_models")  # this process only
        clip = build_random_clip(tmp / "random_clip", shape)
        side = SHAPES[shape].image_side
        name = f"text/random-{shape}"
        add_text_image_model(name, clip.image_onnx, clip.text_onnx, clip.tokenizer, input_hw=(side, side),
                             max_length=SHAPES[shape].max_length)
    encoder = TextImageEncoder(name, crops=1)
    encoder.image.embed([np.zeros((256, 128, 3), np.uint8)])  # warm up
    return encoder


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    video = find_video(args.video)
    load_start = time.perf_counter()
    tracker = PersonTracker()
    embedder = create_embedder("reid/intel-0288", num_threads=1)
    embedder.embed([np.zeros((256, 128, 3), np.uint8)] * 4)  # warm up
    recognizer, attributes_note = attribute_recognizer(args.attributes)
    text_image = text_image_encoder(args.text_image, tmp) if recognizer is not None else None
    load_s = time.perf_counter() - load_start

    real_ids, real_vectors = harvest_identities(video, args, tracker, embedder, tmp / "harvest")
    gallery = MemoryGallery(embedder.fingerprint, embedder.dim)
    d_ids, d_vectors, distractor_note = distractors(embedder, args.distractors)
    for identity, vectors in zip(d_ids + real_ids, d_vectors + real_vectors, strict=True):
        gallery.add(identity, vectors)
    gallery.recall(np.ones(embedder.dim, np.float32))  # gallery-only work, done once per gallery version

    uplink = UplinkSettings(args.uplink_crops, args.uplink_max_height, args.uplink_jpeg_quality)
    pipeline, store, outbox = make_pipeline(tmp / "pipeline", tracker, embedder, gallery, args.min_p_same, uplink)
    pipelines = {"pipeline": pipeline}
    if recognizer is not None:
        pipelines["pipeline_attributes"] = make_pipeline(tmp / "pipeline-attributes", tracker, embedder, gallery,
                                                         args.min_p_same, uplink, recognizer)[0]
    if text_image is not None:
        pipelines["pipeline_text_image"] = make_pipeline(tmp / "pipeline-text-image", tracker, embedder, gallery,
                                                         args.min_p_same, uplink, recognizer, text_image)[0]
    tracker.reset("detector")
    warm = VideoFileSource(video, "warm", stride=args.stride, max_frames=10)
    for frame in warm:  # warm every path on frames that are not measured; state reset below
        tracker.update(as_camera(frame, "detector"))
        for p in pipelines.values():
            p.process(as_camera(frame, "warm"))
    for name, p in pipelines.items():
        p.end_stream("warm", flush=False)  # warm-up tracklets are not part of the run
        p.drain()
        p.begin_stream(name)
    tracker.reset("detector")

    decode_s = 0.0
    busy = dict.fromkeys(["detector", *pipelines], 0.0)
    frames = 0
    ratios: list[float] = []
    chunk_times: list[tuple[float, ...]] = []
    chunks = decode_chunks(video, args.stride, args.frames, args.chunk)
    paths = list(busy)
    for number, (chunk_decode, batch, last) in enumerate(chunks):
        times: dict[str, float] = {}
        for path in paths[number % len(paths):] + paths[:number % len(paths)]:
            start = time.perf_counter()
            if path == "detector":
                for frame in batch:
                    tracker.update(as_camera(frame, "detector"))
            else:
                for frame in batch:
                    pipelines[path].process(as_camera(frame, path))
                if last:
                    pipelines[path].end_stream(path)
                pipelines[path].drain()
            times[path] = time.perf_counter() - start
        decode_s += chunk_decode
        for path in paths:
            busy[path] += times[path]
        frames += len(batch)
        ratios.append((chunk_decode + times["detector"]) / (chunk_decode + times["pipeline"]))
        chunk_times.append((round(chunk_decode, 3), *(round(times[p], 3) for p in paths)))
    for p in pipelines.values():
        p.close()
    detector_s, pipeline_s = busy["detector"], busy["pipeline"]
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
        "attributes": attributes_note, **_attribute_figures(pipelines, frames, decode_s, busy),
        **_text_image_figures(pipelines, frames, decode_s, busy, text_image),
        "chunks_decode_" + "_".join(paths) + "_s": chunk_times,
    }


def _attribute_figures(pipelines: dict[str, EdgePipeline], frames: int, decode_s: float,
                       busy: dict[str, float]) -> dict[str, Any]:
    if "pipeline_attributes" not in pipelines:
        return {}
    stats = pipelines["pipeline_attributes"].stats.worker
    store = pipelines["pipeline_attributes"].worker.store
    with_attributes = sum(1 for r in store.attribute_rows() if r[4] is not None)
    store.close()
    pipelines["pipeline_attributes"].worker.outbox.close()
    attributes_s = busy["pipeline_attributes"]
    return {
        "pipeline_attributes_fps": round(frames / (decode_s + attributes_s), 2),
        "fps_ratio_attributes": round((decode_s + busy["detector"]) / (decode_s + attributes_s), 3),
        "attributes_cost": round((decode_s + busy["pipeline"]) / (decode_s + attributes_s), 3),
        "pipeline_attributes_s": round(attributes_s, 2),
        "tracklets_with_attributes": with_attributes, "attribute_tracklets_embedded": stats.embedded,
    }


def _text_image_figures(pipelines: dict[str, EdgePipeline], frames: int, decode_s: float,
                        busy: dict[str, float], encoder: Any) -> dict[str, Any]:
    if "pipeline_text_image" not in pipelines:
        return {}
    stats = pipelines["pipeline_text_image"].stats.worker
    pipelines["pipeline_text_image"].worker.store.close()
    pipelines["pipeline_text_image"].worker.outbox.close()
    seconds = busy["pipeline_text_image"]
    return {
        "text_image": encoder.fingerprint, "pipeline_text_image_fps": round(frames / (decode_s + seconds), 2),
        "fps_ratio_text_image": round((decode_s + busy["detector"]) / (decode_s + seconds), 3),
        "text_image_cost": round((decode_s + busy["pipeline_attributes"]) / (decode_s + seconds), 3),
        "pipeline_text_image_s": round(seconds, 2), "tracklets_with_text_image": stats.text_image_read,
    }


def _named(entries: list[Any]) -> list[str]:
    from protos.crossview.v1 import edge_to_hub_pb2

    names = []
    for entry in entries:
        message = edge_to_hub_pb2.ShortList.FromString(entry.payload)
        names += [c.identity_id for c in message.candidates]
    return names


def bench_text(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """A text job over `args.text_tracklets` stored tracklets: the cached path and a full-scan reference."""
    import json as jsonlib
    import statistics as stats

    from tqdm import tqdm

    from edge.footage_search import crop_of
    from edge.uplink.messages import answer_search_job
    from models.attributes.query import parse_description
    from models.attributes.scoring import rank_by_description
    from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, ColourReading
    from models.types import Embeddings, Tracklet
    from protos import codec
    from protos.crossview.v1 import hub_to_edge_pb2

    n, fp, dim = args.text_tracklets, "bench-reid@1", 256
    rng = np.random.default_rng(0)
    store = TrackletStore(tmp / "text" / "edge.db")
    store._conn.execute("PRAGMA synchronous=OFF")  # filling only: one fsync per row would take minutes
    for camera in ("cam-0", "cam-1", "cam-2"):
        store.add_camera(camera)
    crop = np.full((128, 64, 3), 90, np.uint8)
    fill_start = time.perf_counter()

    def reading() -> ColourReading | None:
        return None if rng.random() < 0.1 else ColourReading(str(rng.choice(COLOUR_NAMES)), float(rng.random()))

    def add(i: int) -> None:
        vector = rng.standard_normal((1, dim)).astype(np.float32)
        profile = AttributeProfile(dict(zip(ATTRIBUTE_NAMES, rng.random(len(ATTRIBUTE_NAMES)).tolist(),
                                            strict=True)), reading(), reading(), crops=4)
        store.upsert_tracklet(Tracklet(f"t{i:06d}", f"cam-{i % 3}", i, float(i), i + 2.0, (),
                                       Embeddings(vector, fp)), [crop], closed=True, attributes=profile)

    for i in tqdm(range(n), desc="filling the store", unit="tracklet", disable=args.json):
        add(i)
    fill_s = time.perf_counter() - fill_start
    query = parse_description(args.text)
    job = hub_to_edge_pb2.SearchJob(job_id="bench", top_k=args.text_top_k, text=codec.text_search_to_proto(query))

    def cached() -> list[str]:
        results = answer_search_job(job, store, edge_id="bench-edge", model_fingerprint=fp, dim=dim)
        return [h.tracklet_id for r in results for h in r.hits]

    def full_scan() -> list[str]:
        rows = store.attribute_rows()
        profiles = [AttributeProfile.from_dict(jsonlib.loads(r[4])) for r in rows]
        ids, vectors = store.vectors(fp)
        at = {tid: i for i, tid in enumerate(ids)}
        best, _ = rank_by_description(query, profiles, vectors[[at[r[0]] for r in rows]], top_k=args.text_top_k)
        hits = [crop_of(store, rows[b][0], 0.0, vectors[at[rows[b][0]]]) for b in best]
        return [h.tracklet_id for h in hits if h is not None]

    start = time.perf_counter()
    first = cached()  # builds the index
    build_ms = (time.perf_counter() - start) * 1000
    cached_ms, scan_ms = [], []
    for _ in range(args.text_repeats):
        for name, fn, out in (("cached", cached, cached_ms), ("scan", full_scan, scan_ms)):
            start = time.perf_counter()
            got = fn()
            out.append((time.perf_counter() - start) * 1000)
            if got != first:
                raise SystemExit(f"text search: the {name} path returned other tracklets than the first answer")
    after_append_ms = []
    for r in range(args.text_repeats):
        for i in range(n + 5 * r, n + 5 * (r + 1)):
            add(i)
        start = time.perf_counter()
        cached()
        after_append_ms.append((time.perf_counter() - start) * 1000)
    store.close()
    return {
        "text_tracklets": n, "text_query": args.text, "text_top_k": args.text_top_k, "text_hits": len(first),
        "text_query_ms": round(stats.median(cached_ms), 1), "text_full_scan_ms": round(stats.median(scan_ms), 1),
        "text_speedup": round(stats.median(scan_ms) / stats.median(cached_ms), 1),
        "text_index_build_ms": round(build_ms, 1),
        "text_query_after_append_ms": round(stats.median(after_append_ms), 1),
        "text_query_after_append_ms_all": [round(x, 1) for x in after_append_ms],
        "text_query_ms_all": [round(x, 1) for x in cached_ms],
        "text_full_scan_ms_all": [round(x, 1) for x in scan_ms], "text_fill_s": round(fill_s, 1),
    }


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
    parser.add_argument("--attributes", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the pipeline with the attribute model (when it is found)")
    parser.add_argument("--text-image", default=None,
                        help="also time a text-image model: a registered name, or random:b32 / random:tiny")
    parser.add_argument("--text-tracklets", type=int, default=10_000, help="stored tracklets for the text query")
    parser.add_argument("--text-only", action="store_true", help="only the text query, not the video")
    parser.add_argument("--text", default="woman, red top, black trousers, backpack", help="the description")
    parser.add_argument("--text-top-k", type=int, default=50)
    parser.add_argument("--text-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.text_image and not args.attributes:
        parser.error("--text-image needs the attribute model (text search ranks by attributes first)")
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as scratch:  # a random b32 CLIP alone is 600 MB
        result = {} if args.text_only else run(args, Path(scratch))
        if args.text_tracklets > 0:
            result.update(bench_text(args, Path(scratch)))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:<22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
