"""Benchmark the embedding runtimes: crops per second per runtime and batch size.

    python tools/bench_embed.py                                   # CPU, all runtimes, batches 1,32
    python tools/bench_embed.py --device cuda --batches 1,32,128  # GPU runtimes (torch FP16, ...)
    python tools/bench_embed.py --json --runtimes onnxruntime,openvino
    python tools/bench_embed.py --device cuda --runtimes torch --preprocess host,device --batches 1,32,256

Every figure is end to end through `Embedder.embed` (preprocessing from BGR uint8 crops of mixed
sizes, inference, normalisation); a "preprocess only" row shows how much of that is preprocessing.
The torch runtime gets one row per `--preprocess` place: "host" (OpenCV + numpy on the CPU, as every
runtime) and "device" (uint8 crops uploaded, resized and normalised with torch ops on its device),
with a "device preprocess only" row beside the host one.
ONNX Runtime on the CPU is measured in the same run as the reference, and each row's `ratio` is
its crops/s over the reference's at the same batch size. Crops are real (CUHK03 + Market-1501 from
$CROSSVIEW_DATA) when available, else random images of person-crop sizes. A runtime that cannot
start (library missing, no GPU) gets a row saying why instead of a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.embed import RUNTIMES, create_embedder, preprocess  # noqa: E402
from models.errors import CrossviewError  # noqa: E402
from models.zoo import get_spec  # noqa: E402

REFERENCE = "onnxruntime (cpu)"
PREPROCESS_ONLY = "(preprocess only)"
DEVICE_PREPROCESS_ONLY = "(device preprocess only)"


def load_crops(count: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """`count` BGR crops: real ones from $CROSSVIEW_DATA when present, else random ones."""
    root = Path(os.environ.get("CROSSVIEW_DATA", "/nonexistent"))
    files = (sorted((root / "cuhk03_labeled" / "val").glob("*.jpg"))
             + sorted((root / "market1501_mini" / "query").glob("*.jpg")))
    if files:
        step = max(1, len(files) // count)
        crops = [c for c in (cv2.imread(str(f)) for f in files[::step][:count]) if c is not None]
        while len(crops) < count:
            crops += crops[: count - len(crops)]
        return crops, f"{count} real crops (CUHK03 val + Market-1501 query, mixed sizes)"
    rng = np.random.default_rng(seed)
    crops = [rng.integers(0, 256, (int(rng.integers(120, 320)), int(rng.integers(50, 140)), 3), np.uint8)
             for _ in range(count)]
    return crops, f"{count} random crops (CROSSVIEW_DATA not set)"


def runtime_options(runtime: str, device: str, fp16: bool) -> tuple[str, dict[str, Any]] | str:
    """(device label, create_embedder kwargs) for a runtime on `device`, or why it is skipped."""
    if device == "cpu":
        if runtime == "tensorrt":
            return "TensorRT runs on CUDA GPUs only"
        return "cpu", ({"device": "cpu"} if runtime in ("onnxruntime", "torch") else {})
    if runtime == "openvino":
        return "cpu", {}  # OpenVINO has no CUDA device; shown on its CPU for comparison
    if runtime == "onnxruntime":
        return "cuda", {"device": "cuda"}
    if runtime == "torch":
        return "cuda", {"device": "cuda", "fp16": fp16}
    return "cuda", {"fp16": fp16}


def time_call(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_runtime(model: str, runtime: str, label: str, kwargs: dict[str, Any], crops: Sequence[np.ndarray],
                  batch: int, repeats: int) -> dict[str, Any]:
    row: dict[str, Any] = {"runtime": runtime, "device": label, "batch": batch,
                           "preprocess": kwargs.get("preprocess", "host")}
    try:
        embedder = create_embedder(model, runtime, batch_size=batch, **kwargs)
    except (CrossviewError, ImportError, RuntimeError) as exc:
        row["status"] = f"unavailable: {str(exc).splitlines()[0]}"
        return row
    row["precision"] = embedder.precision
    seconds = time_call(lambda: embedder.embed(crops), repeats)
    row.update(status="ok", crops_per_s=len(crops) / seconds, ms_per_batch=1000 * seconds * batch / len(crops))
    return row


def bench_device_preprocess(spec: Any, device: str, crops: Sequence[np.ndarray], batch: int, repeats: int,
                            fp16: bool) -> dict[str, Any]:
    """The torch embedder's device preprocessing alone: pack, upload, resize and normalise every batch."""
    row: dict[str, Any] = {"runtime": DEVICE_PREPROCESS_ONLY, "device": device, "batch": batch, "preprocess": "device"}
    try:
        import torch

        from models.embed.device_preprocess import pack_crops, resize_normalise
    except ImportError as exc:
        row["status"] = f"unavailable: {exc}"
        return row
    if device == "cuda" and not torch.cuda.is_available():
        row["status"] = "unavailable: torch sees no CUDA GPU here"
        return row
    on_cuda = device == "cuda"
    dtype = torch.float16 if on_cuda and fp16 else torch.float32

    def all_batches() -> None:
        for start in range(0, len(crops), batch):
            part = crops[start:start + batch]
            packed = pack_crops(torch, part, pin_memory=on_cuda).to(device, non_blocking=on_cuda)
            resize_normalise(torch, packed, len(part), spec, dtype=dtype)
        if on_cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        seconds = time_call(all_batches, repeats)
    row.update(status="ok", crops_per_s=len(crops) / seconds, ms_per_batch=1000 * seconds * batch / len(crops))
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    batches = [int(b) for b in args.batches.split(",")]
    runtimes = [r.strip() for r in args.runtimes.split(",")]
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise SystemExit(f"unknown runtimes {unknown}; valid: {', '.join(RUNTIMES)}")
    places = [p.strip() for p in args.preprocess.split(",")]
    if not set(places) <= {"host", "device"}:
        raise SystemExit(f"--preprocess: expected host and/or device, got {args.preprocess!r}")
    count = args.crops or max(128, *batches)
    crops, source = load_crops(count)
    spec = get_spec(args.model)
    threads: dict[str, Any] = {}
    if args.threads:
        threads["num_threads"] = args.threads
        if "torch" in runtimes:
            import torch  # only to limit its intra-op threads like the other runtimes'

            torch.set_num_threads(args.threads)

    rows: list[dict[str, Any]] = []
    for batch in batches:
        reference = bench_runtime(args.model, "onnxruntime", "cpu", {"device": "cpu", **threads}, crops, batch,
                                  args.repeats)
        reference["runtime"] = REFERENCE
        rows.append(reference)
        for runtime in runtimes:
            options = runtime_options(runtime, args.device, not args.fp32)
            if runtime == "onnxruntime" and options == ("cpu", {"device": "cpu"}):
                continue  # that is the reference row
            if isinstance(options, str):
                rows.append({"runtime": runtime, "device": args.device, "batch": batch,
                             "status": f"skipped: {options}"})
                continue
            label, kwargs = options
            if runtime in ("onnxruntime", "openvino"):
                kwargs = {**kwargs, **threads}
            for place in places if runtime == "torch" else ("host",):
                place_kwargs = {**kwargs, "preprocess": place} if runtime == "torch" else kwargs
                rows.append(bench_runtime(args.model, runtime, label, place_kwargs, crops, batch, args.repeats))
        seconds = time_call(lambda b=batch: [preprocess(crops[i:i + b], spec) for i in range(0, count, b)],
                            args.repeats)
        rows.append({"runtime": PREPROCESS_ONLY, "device": "cpu", "batch": batch, "preprocess": "host",
                     "status": "ok", "crops_per_s": count / seconds, "ms_per_batch": 1000 * seconds * batch / count})
        if "torch" in runtimes and "device" in places:
            rows.append(bench_device_preprocess(spec, args.device, crops, batch, args.repeats, not args.fp32))

    for row in rows:
        ref = next((r for r in rows if r["runtime"] == REFERENCE and r["batch"] == row["batch"]), None)
        if "crops_per_s" in row and ref is not None and "crops_per_s" in ref:
            row["ratio"] = row["crops_per_s"] / ref["crops_per_s"]
    return {"meta": environment(args, source), "rows": rows}


def environment(args: argparse.Namespace, source: str) -> dict[str, Any]:
    versions = {}
    for package in ("onnxruntime", "openvino", "torch", "onnx2torch", "tensorrt", "numpy", "opencv-python-headless"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "command": "python tools/bench_embed.py " + " ".join(sys.argv[1:]),
        "model": args.model, "device": args.device, "crops": source, "repeats": args.repeats,
        "threads": args.threads or "runtime default", "load_average_at_start": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "versions": versions,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["| runtime | device | preprocess | precision | batch | crops/s | ms/batch | ratio vs ORT CPU |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        head = f"| {row['runtime']} | {row['device']} | {row.get('preprocess', '-')}"
        if "crops_per_s" in row:
            ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
            lines.append(f"{head} | {row.get('precision', '-')} | {row['batch']} "
                         f"| {row['crops_per_s']:.1f} | {row['ms_per_batch']:.2f} | {ratio} |")
        else:
            lines.append(f"{head} | - | {row['batch']} | {row['status']} | | |")
    meta = result["meta"]
    load = ", ".join(f"{v:.1f}" for v in meta["load_average_at_start"])
    lines += ["", f"model {meta['model']}, {meta['crops']}, median of {meta['repeats']} runs, "
              f"{meta['cpu_count']} CPU cores, threads: {meta['threads']}, load average at start: {load}, "
              f"command: `{meta['command']}`"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="reid/osnet-x0.25-msmt17", help="zoo Re-ID model (ONNX for all runtimes)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated runtime names")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--crops", type=int, default=0, help="crops per timed run (default max(128, batches))")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median reported)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per runtime (default: each runtime's own choice)")
    parser.add_argument("--preprocess", default="host,device",
                        help="where the torch runtime preprocesses: host and/or device (one row each)")
    parser.add_argument("--fp32", action="store_true", help="on CUDA, run torch/TensorRT in FP32 (default FP16)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
