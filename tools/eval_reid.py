#!/usr/bin/env python
"""Re-ID accuracy (Rank-k, mAP, mINP; optional re-ranking and two-stage) of zoo models on a dataset.

    python tools/eval_reid.py --data ../shared/data/cuhk03_labeled/val --format cuhk03 \
        --model reid/intel-0288 --rerank --stage2 reid/intel-0277 --shortlist 20 --png cmc.png

The same as `crossview eval`; see `models.evaluation` for the protocols.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossview.eval_command import eval_command, parse_models
from models.evaluation import FORMATS, RERANK_MODES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="dataset layout (default: auto)")
    parser.add_argument("--model", default="reid/intel-0288",
                        help="stage-1 zoo model; several, comma-separated, are compared")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking of stage 1")
    parser.add_argument("--rerank-mode", default="exact", choices=RERANK_MODES,
                        help="exact (all at once) or incremental (the edge's GalleryIndex)")
    parser.add_argument("--stage2", default=None,
                        help="stage-2 model, or several comma-separated for an ensemble")
    parser.add_argument("--shortlist", type=int, default=10, help="K candidates per query for stage 2")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--png", type=Path, default=None, help="write the CMC curve(s) to this PNG")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runtime", default=None, help="embedding runtime (default: by model format)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="keep embeddings on disk here and reuse them on later runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return eval_command(
        args.data, args.format, args.model, args.rerank, parse_models(args.stage2) or None,
        args.shortlist, args.json, args.png, rerank_mode=args.rerank_mode, batch_size=args.batch_size,
        runtime=args.runtime, cache_dir=args.cache_dir, progress=not args.no_progress,
    )


if __name__ == "__main__":
    raise SystemExit(main())
