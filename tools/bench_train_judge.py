"""Benchmark LoRA fine-tuning of the `transformers` judge: training steps per second.

    python tools/bench_train_judge.py --device cuda                      # Qwen2-VL-2B shape, random weights
    python tools/bench_train_judge.py --device cuda --batch-size 8 --json
    python tools/bench_train_judge.py --model-config tiny --device cpu   # CPU smoke run of the plumbing

The model is a Qwen2-VL built from a config with the published sizes and RANDOM weights (no MLLM
weights exist on these machines), so the figures are speed only. Each step is what
`crossview train judge` does: read the two crops of each pair, build the judge's batch (its prompt,
both images at 280×140 = 100 image tokens), forward, cross-entropy of the first answer token,
backward through the LoRA matrices, AdamW. The first `--warmup` steps are not timed. Crops are
real (CUHK03 val from `$CROSSVIEW_DATA`) when available, else random images of person-crop sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.errors import CrossviewError, require  # noqa: E402
from models.verify.lora import JudgeExample, LoraSettings, train_lora  # noqa: E402
from models.verify.prompt import DEFAULT_IMAGE_HW, NO, YES  # noqa: E402
from models.verify.random_qwen2vl import QWEN2_VL_CONFIGS, build_offline_processor, build_random_qwen2vl  # noqa: E402


def write_crops(folder: Path, count: int, seed: int = 0) -> tuple[list[Path], str]:
    """`count` crop files in `folder`: real CUHK03 val ones from $CROSSVIEW_DATA when present, else random."""
    root = Path(os.environ.get("CROSSVIEW_DATA", "/nonexistent"))
    files = sorted((root / "cuhk03_labeled" / "val").glob("*.jpg"))
    if files:
        step = max(1, len(files) // count)
        return [files[(i * step) % len(files)] for i in range(count)], f"{count} real crops (CUHK03 val)"
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        shape = (int(rng.integers(120, 320)), int(rng.integers(50, 140)), 3)
        path = folder / f"crop_{index:03d}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 256, shape, np.uint8))
        paths.append(path)
    return paths, f"{count} random crops (CROSSVIEW_DATA not set)"


def parse_hw(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 280x140, got {text!r}") from None
    return height, width


def bench(args: argparse.Namespace) -> dict[str, Any]:
    torch = require("torch")
    from models.verify.transformers_judge import TransformersJudge

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CrossviewError(f"device {device!r} was asked for but torch sees no CUDA device")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(args.dtype)
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model, processor = build_random_qwen2vl(args.model_config, build_offline_processor(), seed=args.seed,
                                            dtype=dtype, device=device)
    judge = TransformersJudge(model, processor=processor, image_hw=args.image_hw, batch_size=args.batch_size)
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        crops, source = write_crops(Path(tmp), 2 * args.batch_size, args.seed)
        examples = [JudgeExample(crops[i], crops[(i + 1) % len(crops)], YES if i % 2 == 0 else NO)
                    for i in range(len(crops))]
        pair = (cv2.imread(str(crops[0])), cv2.imread(str(crops[1])))
        prompt_tokens = int(judge.model_inputs([pair])["input_ids"].shape[1])
        settings = LoraSettings(lr=args.lr, rank=args.rank, alpha=args.alpha, batch_size=args.batch_size,
                                epochs=total, max_steps=total, seed=args.seed)
        run = train_lora(judge, examples, settings, progress=not args.json)
    timed = run.step_seconds[args.warmup:]
    seconds = sum(timed)
    report = {
        "model_config": args.model_config, "weights": "random", "device": device, "dtype": str(dtype),
        "batch_size": args.batch_size, "image_hw": list(args.image_hw), "prompt_tokens": prompt_tokens,
        "rank": args.rank, "warmup": args.warmup, "steps": len(timed), "seconds": seconds,
        "steps_per_s": len(timed) / seconds, "pairs_per_s": len(timed) * args.batch_size / seconds,
        "median_step_ms": 1000 * statistics.median(timed), "final_loss": run.final_loss,
        "trainable_parameters": run.trainable_parameters, "crops": source,
        "torch": torch.__version__, "transformers": require("transformers").__version__,
        "peft": require("peft").__version__, "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
    }
    if device.startswith("cuda"):
        report["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-config", choices=sorted(QWEN2_VL_CONFIGS), default="qwen2-vl-2b")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--image-hw", type=parse_hw, default=DEFAULT_IMAGE_HW, help="HEIGHTxWIDTH, e.g. 280x140")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("expected --steps >= 1, --warmup >= 0 and --batch-size >= 1")
    try:
        report = bench(args)
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['model_config']} (random weights) on {report['gpu'] or report['device']}, {report['dtype']}, "
              f"batch {report['batch_size']}, {report['prompt_tokens']} prompt tokens: "
              f"{report['steps_per_s']:.2f} steps/s ({report['pairs_per_s']:.1f} pairs/s, "
              f"median step {report['median_step_ms']:.0f} ms) over {report['steps']} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
