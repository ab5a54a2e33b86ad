"""Benchmark the judges: pairs per second and latency per short list (query + K candidates).

    python tools/bench_judge.py --device cuda                         # Qwen2-VL-2B dims, random weights
    python tools/bench_judge.py --device cuda --model-config qwen2-vl-7b --batch-size 10 --json
    python tools/bench_judge.py --model-config tiny                   # CPU smoke run of the plumbing
    python tools/bench_judge.py --device cuda --streams 20 --json     # + 20 concurrent short-list streams

The `transformers` judge runs a Qwen2-VL built from a config with the published 2B (or 7B) sizes
and RANDOM weights (no MLLM weights exist on these machines): the figures are throughput only and
say nothing about accuracy. Its prompt has the real judge's length (two 280×140 images = 100 image
tokens, plus the text). The `reid` judge (Intel 0277 + 0286, `$CROSSVIEW_MODELS`) is measured in the
same run as the reference. Each short list is one `score_shortlist` call: one query against
`--candidates` crops; latency is per short list, pairs/s is over all of them. Crops are real
(CUHK03 val from `$CROSSVIEW_DATA`) when available, else random images of person-crop sizes.

The same model is measured, in one run, through the plain path (`TransformersJudge`, the reference)
and the fast path (`FastTransformersJudge`: each image encoded once, candidates' vision features
cached, the prefix's KV shared, no processor per batch); `ratio_vs_plain` is fast pairs/s over plain
pairs/s. Short list q is crop q against crops q+1..q+K, so consecutive lists share candidates as a
gallery's reference crops do (`cache_hit_rate` says how much; `--cache-images 0` turns the cache off).
With `--streams N`, N threads each send every short list (rotated) through one `JudgeBatcher` over
the fast judge: pairs/s over all streams, latency per short list from submit to answer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.errors import CrossviewError  # noqa: E402
from models.verify import create_judge  # noqa: E402
from models.verify.random_qwen2vl import QWEN2_VL_CONFIGS  # noqa: E402


def load_crops(count: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """`count` BGR crops: real CUHK03 ones from $CROSSVIEW_DATA when present, else random ones."""
    root = Path(os.environ.get("CROSSVIEW_DATA", "/nonexistent"))
    files = sorted((root / "cuhk03_labeled" / "val").glob("*.jpg"))
    if files:
        step = max(1, len(files) // count)
        crops = [c for c in (cv2.imread(str(f)) for f in files[::step][:count]) if c is not None]
        if crops:
            while len(crops) < count:
                crops += crops[: count - len(crops)]
            return crops, f"{count} real crops (CUHK03 val)"
    rng = np.random.default_rng(seed)
    crops = [rng.integers(0, 256, (int(rng.integers(120, 320)), int(rng.integers(50, 140)), 3), np.uint8)
             for _ in range(count)]
    return crops, f"{count} random crops (CROSSVIEW_DATA not set)"


def shortlists(crops: Sequence[np.ndarray], queries: int, candidates: int) -> list[tuple[np.ndarray, list]]:
    """`queries` short lists, each one crop against the next `candidates` crops (wrapping around)."""
    n = len(crops)
    return [(crops[q % n], [crops[(q + 1 + j) % n] for j in range(candidates)]) for q in range(queries)]


def measure(score: Callable[[np.ndarray, list], Any], lists: Sequence[tuple[np.ndarray, list]],
            sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Latency per short list (after one warm-up list) and pairs per second over all lists."""
    score(*lists[0])
    sync()
    latencies = []
    for query, candidates in lists:
        start = time.perf_counter()
        score(query, candidates)
        sync()
        latencies.append(time.perf_counter() - start)
    return _figures(latencies, sum(len(c) for _, c in lists), sum(latencies))


def measure_streams(score: Callable[[np.ndarray, list], Any], lists: Sequence[tuple[np.ndarray, list]],
                    streams: int) -> dict[str, float]:
    """`streams` threads, each sending every short list (starting at its own offset) one after the other."""
    score(*lists[0])
    latencies: list[float] = []
    lock = threading.Lock()

    def stream(offset: int) -> None:
        for index in range(len(lists)):
            query, candidates = lists[(offset + index) % len(lists)]
            start = time.perf_counter()
            score(query, candidates)
            with lock:
                latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(stream, range(streams)))
    wall = time.perf_counter() - started
    return {**_figures(latencies, streams * sum(len(c) for _, c in lists), wall), "streams": streams}


def _figures(latencies: Sequence[float], pairs: int, seconds: float) -> dict[str, float]:
    return {
        "pairs_per_s": round(pairs / seconds, 2),
        "p50_ms_per_query": round(1000 * statistics.median(latencies), 2),
        "p90_ms_per_query": round(1000 * float(np.percentile(latencies, 90)), 2),
        "queries": len(latencies),
    }


def bench_transformers(args: argparse.Namespace, lists: Sequence[tuple[np.ndarray, list]]) -> list[dict[str, Any]]:
    """Rows for the plain path, the fast path and (with --streams) the fast path behind the micro-batcher."""
    import torch

    from models.verify.batcher import JudgeBatcher
    from models.verify.fast_judge import FastTransformersJudge
    from models.verify.random_qwen2vl import build_offline_processor, build_random_qwen2vl
    from models.verify.transformers_judge import TransformersJudge

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        return [{"judge": "transformers", "skipped": "--device cuda but torch sees no CUDA device"}]
    dtype = {"auto": torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported()
             else (torch.float16 if device == "cuda" else torch.float32),
             "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, processor = build_random_qwen2vl(args.model_config, build_offline_processor(), dtype=dtype, device=device)
    build_s = time.perf_counter() - started
    judge = TransformersJudge(model, processor=processor, batch_size=args.batch_size, swap=args.swap)
    query, candidates = lists[0]
    tokens = judge.processor(text=[judge.prompt], images=[[judge.model_image(query), judge.model_image(candidates[0])]],
                             return_tensors="pt")["input_ids"].shape[1]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    common = {
        "model_config": args.model_config,
        "weights": "random",
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "dtype": str(dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "swap": args.swap,
        "prompt_tokens": int(tokens),
        "build_s": round(build_s, 1),
    }

    def timed(row: dict[str, Any], run: Callable[[], dict[str, float]]) -> dict[str, Any]:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        row = {**row, **common, **run()}
        if device == "cuda":
            row["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return row

    plain = timed({"judge": "transformers"}, lambda: measure(judge.score_shortlist, lists, sync))
    rows = [plain]
    fast = FastTransformersJudge(model, processor=processor, batch_size=args.batch_size, swap=args.swap,
                                 cache_images=args.cache_images, share_prefix=not args.no_share_prefix)
    rows.append(timed({"judge": "transformers-fast", "cache_images": args.cache_images,
                       "share_prefix": fast.share_prefix},
                      lambda: measure(fast.score_shortlist, lists, sync)))
    rows[-1]["cache_hit_rate"] = _hit_rate(fast)
    if args.streams:
        fast.feature_cache.clear()
        with JudgeBatcher(fast, max_batch_pairs=args.max_batch_pairs, max_wait_ms=args.max_wait_ms) as batcher:
            rows.append(timed({"judge": "transformers-fast+batcher", "cache_images": args.cache_images,
                               "max_batch_pairs": args.max_batch_pairs, "max_wait_ms": args.max_wait_ms},
                              lambda: measure_streams(batcher.score_shortlist, lists, args.streams)))
            rows[-1]["mean_batch_pairs"] = round(batcher.stats.pairs / max(1, batcher.stats.batches), 1)
    for row in rows:
        row["ratio_vs_plain"] = round(row["pairs_per_s"] / plain["pairs_per_s"], 2)
    return rows


def _hit_rate(judge: Any) -> float:
    stats = judge.cache_stats
    return round(stats.hits / max(1, stats.hits + stats.misses), 3)


def bench_reid(lists: Sequence[tuple[np.ndarray, list]]) -> dict[str, Any]:
    try:
        judge = create_judge("reid")
    except CrossviewError as exc:
        return {"judge": "reid", "skipped": str(exc).splitlines()[0]}
    return {"judge": "reid", "models": list(judge.models), "device": f"cpu ({os.cpu_count()} cores)",
            **measure(judge.score_shortlist, lists)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--model-config", default="qwen2-vl-2b", choices=sorted(QWEN2_VL_CONFIGS),
                        help="Qwen2-VL sizes of the random model (default: qwen2-vl-2b)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                        help="auto: bf16 (or fp16) on CUDA, fp32 on CPU")
    parser.add_argument("--queries", type=int, default=20, help="short lists timed (after one warm-up)")
    parser.add_argument("--candidates", type=int, default=10, help="candidates per short list")
    parser.add_argument("--batch-size", type=int, default=10, help="pairs per forward pass")
    parser.add_argument("--swap", action="store_true", help="also score the swapped order (2× the pairs)")
    parser.add_argument("--no-reid", action="store_true", help="skip the reid reference")
    parser.add_argument("--cache-images", type=int, default=2048,
                        help="fast path: candidate images whose vision features are cached (0: none)")
    parser.add_argument("--no-share-prefix", action="store_true",
                        help="fast path: run the whole prompt per pair instead of sharing the query's KV prefix")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); 1 avoids thread oversubscription on a busy host")
    parser.add_argument("--streams", type=int, default=0,
                        help="also N concurrent short-list streams through the micro-batcher (0: not run)")
    parser.add_argument("--max-batch-pairs", type=int, default=64, help="micro-batcher: most pairs per judge call")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="micro-batcher: longest wait for a batch")
    args = parser.parse_args(argv)
    if args.queries < 1 or args.candidates < 1 or args.batch_size < 1 or args.max_batch_pairs < 1:
        parser.error("--queries, --candidates, --batch-size and --max-batch-pairs must be >= 1")
    if args.cache_images < 0 or args.streams < 0 or args.max_wait_ms < 0 or args.threads < 0:
        parser.error("--cache-images, --streams, --threads and --max-wait-ms must be >= 0")

    crops, source = load_crops(max(args.queries + args.candidates, 32))
    lists = shortlists(crops, args.queries, args.candidates)
    rows = bench_transformers(args, lists)
    if not args.no_reid:
        rows.append(bench_reid(lists))
    report = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "crops": source,
        "candidates_per_query": args.candidates,
        "note": "transformers judge: random weights, throughput only (accuracy not measurable here)",
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['crops']}; {args.candidates} candidates per query; {report['note']}")
    for row in rows:
        if "skipped" in row:
            print(f"  {row['judge']:<12} skipped: {row['skipped']}")
            continue
        what = (f"{row['model_config']} {row['dtype']} bs={row['batch_size']} {row['prompt_tokens']} tok"
                if row["judge"].startswith("transformers") else "+".join(row["models"]))
        extra = f"  {row['ratio_vs_plain']:.2f}x plain" if "ratio_vs_plain" in row else ""
        extra += f"  {row['streams']} streams" if "streams" in row else ""
        extra += f"  peak {row['peak_gpu_mem_gb']} GB" if "peak_gpu_mem_gb" in row else ""
        print(f"  {row['judge']:<26} {what:<40} {row['device']:<24} {row['pairs_per_s']:>9.1f} pairs/s  "
              f"p50 {row['p50_ms_per_query']:>8.1f} ms/query  p90 {row['p90_ms_per_query']:>8.1f} ms{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
