"""Benchmark the edge's answer to a hub search job ("find this person in your footage") on a filled store.

    python tools/bench_edge_search.py --json                 # 1000 tracklets, one 256x128 crop each
    python tools/bench_edge_search.py --tracklets 5000 --repeats 5

A `TrackletStore` is filled with `--tracklets` tracklets of random unit vectors (dimension `--dim`) and
one JPEG crop each (smoothed random colours, 256x128: the size of a Re-ID input); a search job with one query vector and
``top_k`` = every tracklet (at most 1000 hits) is then answered `--repeats` times, as the hub link
answers it: ranked, each hit read with its best crop, batched as SearchResult messages. The figure is
the median time of one answer. Store filling is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from edge.storage.store import TrackletStore  # noqa: E402
from edge.uplink.messages import answer_search_job  # noqa: E402
from models.types import Crop, Embeddings, Tracklet  # noqa: E402
from protos.codec import vector_to_proto  # noqa: E402
from protos.crossview.v1 import hub_to_edge_pb2  # noqa: E402

FP = "bench-search@1"


def fill(store: TrackletStore, count: int, dim: int, rng: np.random.Generator) -> None:
    import cv2

    store.add_camera("cam")
    for i in range(count):
        image = cv2.resize(rng.integers(0, 256, size=(32, 16, 3), dtype=np.uint8), (128, 256))  # smooth-ish
        vector = rng.standard_normal((1, dim)).astype(np.float32)
        tracklet = Tracklet(f"t{i:06d}", "cam", i, float(i), float(i) + 1.0, (Crop(image, "cam", float(i)),),
                            Embeddings(vector / np.linalg.norm(vector), FP))
        store.upsert_tracklet(tracklet, [image], closed=True)  # with its vector


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-edge-search-") as tmp, \
            TrackletStore(Path(tmp) / "edge.db") as store:
        fill(store, args.tracklets, args.dim, rng)
        query = rng.standard_normal(args.dim).astype(np.float32)
        job = hub_to_edge_pb2.SearchJob(job_id="job-1", queries=[vector_to_proto(query, FP)],
                                        top_k=args.tracklets)
        times, results = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            results = answer_search_job(job, store, edge_id="bench", model_fingerprint=FP, dim=args.dim)
            times.append(time.perf_counter() - start)
    hits = sum(len(r.hits) for r in results)
    return {"tracklets": args.tracklets, "dim": args.dim, "hits": hits, "batches": len(results),
            "answer_s_median": round(statistics.median(times), 4), "answer_s_min": round(min(times), 4),
            "repeats": args.repeats, "cpus": os.cpu_count(), "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tracklets", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:<18} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
