"""Build (or find) the cached TensorRT engine for an ONNX model of the zoo.

    python tools/build_trt_engine.py reid/osnet-x0.25-msmt17 --fp16 --min-batch 1 --opt-batch 32 --max-batch 128

Needs a CUDA GPU with TensorRT and pycuda installed (`pip install 'crossview[tensorrt]'`); where
they are missing it says so and exits with status 2. The engine lands in the engine cache
(`<crossview cache>/tensorrt`, or --cache-dir) under a key that covers the ONNX file's checksum,
the TensorRT version, the precision, the batch profile and the GPU model, which is where
`create_embedder(model, "tensorrt", ...)` looks for it. Written against the TensorRT 10 API and
untested on these machines (TensorRT cannot be installed here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.errors import CrossviewError  # noqa: E402
from models.zoo import model_names  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help=f"zoo model name (ONNX), e.g. {', '.join(model_names())}")
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--opt-batch", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine folder (default: the cache)")
    parser.add_argument("--device-id", type=int, default=0)
    parser.add_argument("--workspace-gb", type=float, default=1.0)
    parser.add_argument("--rebuild", action="store_true", help="build even if a cached engine exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from models.embed.tensorrt import BatchProfile, build_cached_engine

    try:
        profile = BatchProfile(args.min_batch, args.opt_batch, args.max_batch)
        path = build_cached_engine(args.model, fp16=args.fp16, profile=profile, cache_dir=args.cache_dir,
                                   device_id=args.device_id, workspace_gb=args.workspace_gb,
                                   rebuild=args.rebuild)
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
