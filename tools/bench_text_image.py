"""What a text-image (CLIP-style) model costs an edge (issue 15, item 4), with random weights of a real shape.

    python tools/bench_text_image.py                    # CLIP ViT-B/32 shape, 10 000 stored tracklets
    python tools/bench_text_image.py --shape tiny --tracklets 2000 --json

No CLIP weights exist here, so the model is `models.attributes.random_clip` at `--shape` (b32: OpenAI's
ViT-B/32 layout; 126 M parameters here, the real one's 25 M more are its 49,408-token embedding table, a
lookup that costs nothing), exported to ONNX and registered in a temporary user models folder as a
deployment registers its own. Cost depends on the shape, not the weights, so the timings are the real
model's on this machine; its rankings are noise and are not scored. In one run:

1. image tower: crops/s embedding `--crops` random person crops in batches of 16 with one thread (as the
   edge's worker runs), next to the edge's Re-ID model (`--reid`, OpenVINO, one thread) on the same crops:
   `image_tower_cost` = Re-ID crops/s over image-tower crops/s (how many times the worker's embedding
   work grows when the model is on);
2. text tower: ms per description (median of `--repeats`);
3. a text job over `--tracklets` stored tracklets (random attribute profiles, Re-ID and image-tower
   vectors, one crop each), answered as the hub link answers it (`answer_search_job`), with the model
   (`text_query_ms`) and without it (`attributes_only_ms`, same store), and a full-scan reference that
   reads every profile and vector back and ranks with `rank_by_description` (`full_scan_ms`); the cached
   and the full-scan answers must name the same tracklets (checked). Medians of `--repeats` after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

QUERY = "woman, red top, black trousers, backpack"


def _median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up (builds caches and indexes)
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


def _crops_per_s(embed: Callable[[list[np.ndarray]], Any], crops: list[np.ndarray], batch: int = 16) -> float:
    embed(crops[:batch])
    start = time.perf_counter()
    for i in range(0, len(crops), batch):
        embed(crops[i:i + batch])
    return len(crops) / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> dict[str, Any]:
    before = os.environ.get("CROSSVIEW_USER_MODELS")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-text-image-") as tmp:  # the b32 towers are 600 MB
            return _run(args, Path(tmp))
    finally:
        if before is None:
            os.environ.pop("CROSSVIEW_USER_MODELS", None)
        else:
            os.environ["CROSSVIEW_USER_MODELS"] = before


def _run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from edge.storage.store import TrackletStore
    from edge.uplink.messages import answer_search_job
    from models.attributes.query import parse_description
    from models.attributes.random_clip import SHAPES, build_random_clip
    from models.attributes.scoring import rank_by_description
    from models.attributes.text_image import TextImageEncoder
    from models.attributes.types import ATTRIBUTE_NAMES, COLOUR_NAMES, AttributeProfile, ColourReading
    from models.embed import create_embedder
    from models.types import Embeddings, Tracklet
    from models.zoo.text_image import add_text_image_model
    from protos import codec
    from protos.crossview.v1 import hub_to_edge_pb2

    os.environ["CROSSVIEW_USER_MODELS"] = str(tmp / "user_models")
    shape = SHAPES[args.shape]
    start = time.perf_counter()
    clip = build_random_clip(tmp / "clip", args.shape)
    add_text_image_model("text/bench", clip.image_onnx, clip.text_onnx, clip.tokenizer,
                         input_hw=(shape.image_side, shape.image_side), max_length=shape.max_length)
    encoder = TextImageEncoder("text/bench", weight=0.5, num_threads=1)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (int(rng.integers(96, 256)), int(rng.integers(48, 128)), 3), np.uint8)
             for _ in range(args.crops)]
    tower_cps = _crops_per_s(encoder.image.embed, crops)
    reid = create_embedder(args.reid, None, num_threads=1) if args.reid else None
    reid_cps = _crops_per_s(reid.embed, crops) if reid is not None else None
    descriptions = [QUERY, "man in a blue jacket with a bag and long hair",
                    "person wearing a white shirt, grey shorts and a hat " * 4]
    text_ms = [_median_ms(lambda d=d: encoder.encode_text([d]), args.repeats)[0] for d in descriptions]

    fp, dim = "bench-reid@1", 256
    store = TrackletStore(tmp / "edge.db")
    store._conn.execute("PRAGMA synchronous=OFF")  # filling only: one fsync per row would take minutes
    store.add_camera("cam-0")
    crop = np.full((128, 64, 3), 90, np.uint8)

    def reading() -> ColourReading | None:
        return None if rng.random() < 0.1 else ColourReading(str(rng.choice(COLOUR_NAMES)), float(rng.random()))

    for i in tqdm(range(args.tracklets), desc="filling the store", unit="tracklet", disable=args.json):
        profile = AttributeProfile(dict(zip(ATTRIBUTE_NAMES, rng.random(len(ATTRIBUTE_NAMES)).tolist(), strict=True)),
                                   reading(), reading(), crops=4)
        image_vector = rng.standard_normal((1, shape.dim)).astype(np.float32)
        image_vector /= np.linalg.norm(image_vector)
        store.upsert_tracklet(Tracklet(f"t{i:06d}", "cam-0", i, float(i), i + 2.0, (),
                                       Embeddings(rng.standard_normal((1, dim)).astype(np.float32), fp)),
                              [crop], closed=True, attributes=profile,
                              extra_vectors=(Embeddings(image_vector, encoder.fingerprint),))
    query = parse_description(QUERY)
    job = hub_to_edge_pb2.SearchJob(job_id="bench", top_k=50, text=codec.text_search_to_proto(query))

    def answer(text_image: Any) -> list[str]:
        results = answer_search_job(job, store, edge_id="bench", model_fingerprint=fp, dim=dim, text_image=text_image)
        return [h.tracklet_id for r in results for h in r.hits]

    def full_scan() -> list[str]:
        rows = store.attribute_rows()
        profiles = [AttributeProfile.from_dict(json.loads(r[4])) for r in rows]
        reid_ids, reid_vectors = store.vectors(fp)
        image_ids, image_vectors = store.vectors(encoder.fingerprint)
        reid_at, image_at = {t: i for i, t in enumerate(reid_ids)}, {t: i for i, t in enumerate(image_ids)}
        cosine = image_vectors[[image_at[r[0]] for r in rows]] @ encoder.encode_text([query.text])[0]
        best, _ = rank_by_description(query, profiles, reid_vectors[[reid_at[r[0]] for r in rows]], top_k=50,
                                      text_image_cosine=cosine, text_image_weight=encoder.weight,
                                      text_image_range=encoder.cosine_range)
        return [rows[b][0] for b in best]

    with_ms, with_ids = _median_ms(lambda: answer(encoder), args.repeats)
    scan_ms, scan_ids = _median_ms(full_scan, args.repeats)
    if with_ids != scan_ids:
        raise SystemExit("text-image search: the cached answer names other tracklets than the full scan")
    alone_ms, _ = _median_ms(lambda: answer(None), args.repeats)
    store.close()
    return {
        "shape": args.shape, "parameters_m": round(sum(p.numel() for p in clip.model.parameters()) / 1e6, 1),
        "build_s": round(build_s, 1), "crops": args.crops,
        "image_tower_crops_per_s": round(tower_cps, 1), "reid_model": args.reid or None,
        "reid_crops_per_s": None if reid_cps is None else round(reid_cps, 1),
        "image_tower_cost": None if reid_cps is None else round(reid_cps / tower_cps, 2),
        "text_tower_ms": [round(t, 1) for t in text_ms], "tracklets": args.tracklets,
        "text_query_ms": round(with_ms, 1), "attributes_only_ms": round(alone_ms, 1),
        "full_scan_ms": round(scan_ms, 1), "load_average": round(os.getloadavg()[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=("b32", "tiny"), default="b32")
    parser.add_argument("--tracklets", type=int, default=10_000)
    parser.add_argument("--crops", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reid", default="reid/intel-0288", help="the edge's Re-ID model ('' : skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:<26}{v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
