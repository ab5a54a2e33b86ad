#!/usr/bin/env python
"""Train the edge model on CUHK03 `train` four ways and evaluate each on CUHK03 `val` (issue 14).

    nice -n 5 python tools/bench_train.py --epochs 2 --out /work/notes/bench_train --json

Rows (same epochs, seed, image size and steps per epoch for every trained row):
  intel-0288 (reference) · OSNet x0.25 as shipped · OSNet fine-tuned with P×K batches · with DFGS
  batches · OSNet distilled from intel-0277+0286 on the same images without their labels.
Columns: stage-one R1 / mAP / mINP alone; two-stage (the row as the edge model, the 0277+0286 `reid`
ensemble as stage two, as `crossview eval --stage2` computes it) recall@10 and @50 and the final
R1 / mAP with K=10 and K=50; train s: the epochs' wall time summed from the training log (so a row
resumed with --resume counts every epoch; teacher vectors and export are in run_s). Results are
written after every row (results.json, results.md in --out), so a run cut short keeps its rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from models.evaluation import EmbeddingCache, evaluate
from models.evaluation.datasets import load_dataset
from models.train.data import TrainingSet, load_training_set
from models.train.export import FileEmbedder
from models.train.network import resolve_init
from models.train.trainer import TrainSettings, train_reid

EDGE_INIT = "reid/osnet-x0.25-msmt17"
REFERENCE = "reid/intel-0288"
STAGE2 = ["reid/intel-0277", "reid/intel-0286"]
TRAINED = {"pk": "OSNet x0.25 fine-tuned, pk", "dfgs": "OSNet x0.25 fine-tuned, dfgs",
           "distill": "OSNet x0.25 distilled from 0277+0286, no labels"}
ROW_ORDER = ("reference", "shipped", "pk", "dfgs", "distill")
COLUMNS = ("R1", "mAP", "mINP", "recall@10", "recall@50", "final R1 @10", "final mAP @10", "final R1 @50",
           "final mAP @50", "epochs", "train s")


def unlabelled(ts: TrainingSet, count: int | None, seed: int) -> TrainingSet:
    """The images (a seeded random `count` of them, or all) with every label dropped: distillation only."""
    rows = np.arange(len(ts))
    if count is not None and count < len(ts):
        rows = np.sort(np.random.default_rng(seed).choice(len(ts), size=count, replace=False))
    return TrainingSet(tuple(ts.paths[i] for i in rows), np.full(rows.size, -1, np.int64),
                       np.zeros(rows.size, np.int64), (), fmt="crops", root=ts.root)


def evaluate_row(val: Path, model: str, factory: Any, cache: EmbeddingCache, split: Any) -> dict[str, float]:
    def run(**kwargs: Any) -> Any:
        return evaluate(val, "cuhk03", model, split=split, cache=cache, embedder_factory=factory, **kwargs)

    alone = run()
    k10 = run(stage2=STAGE2, shortlist=10)
    k50 = run(stage2=STAGE2, shortlist=50)
    return {"R1": alone.rank1, "mAP": alone.mAP, "mINP": alone.mINP, "recall@10": k10.recall_at_k,
            "recall@50": k50.recall_at_k, "final R1 @10": k10.rank1, "final mAP @10": k10.mAP,
            "final R1 @50": k50.rank1, "final mAP @50": k50.mAP}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for column in COLUMNS:
            value = row.get(column)
            if value is None:
                cells.append("–")
            elif column in ("epochs",):
                cells.append(str(value))
            elif column == "train s":
                cells.append(f"{value:.0f}")
            else:
                cells.append(f"{100 * value:.1f}")
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cuhk03_labeled"),
                        help="CUHK03 folder with train/ and val/")
    parser.add_argument("--out", type=Path, required=True, help="folder for the trained models and results")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3.5e-4)
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="steps per epoch for every trained row (default: ceil(identities / P))")
    parser.add_argument("--max-minutes", type=float, default=None, help="per training: stop after the "
                        "epoch that passes this wall time (the row then shows fewer epochs)")
    parser.add_argument("--distill-images", type=int, default=None,
                        help="distil on a seeded random subset of this many training images (teacher "
                        "vectors are the costly part on a small CPU); default: all")
    parser.add_argument("--distill-epochs", type=int, default=None,
                        help="epochs of the distilled row (default: --epochs); with --distill-images, "
                        "choose it so the row sees as many images as the labelled rows")
    parser.add_argument("--rows", default="shipped,pk,dfgs,distill,reference")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows of an earlier run in --out/results.json that this run does not redo")
    parser.add_argument("--resume", action="store_true",
                        help="continue each trained row from its newest checkpoint in --out (same settings)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    val = args.data / "val"
    split = load_dataset(val, "cuhk03")
    cache = EmbeddingCache(args.out / "eval_cache")
    trained: dict[str, FileEmbedder] = {}

    def factory(name: str) -> Any:
        if name in trained:
            return trained[name]
        from models.embed import create_embedder

        return create_embedder(name, batch_size=32)

    train_set = load_training_set(args.data / "train", "cuhk03", progress=not args.no_progress)
    steps = args.steps_per_epoch or math.ceil(train_set.n_ids / args.p)
    init = resolve_init(EDGE_INIT)
    rows: list[dict[str, Any]] = []
    earlier = args.out / "results.json"
    kept = json.loads(earlier.read_text())["rows"] if args.append and earlier.is_file() else []
    kept = [row for row in kept if row.get("key") not in wanted]
    header = {"train": str(args.data / "train"), "val": str(val), "epochs": args.epochs, "seed": args.seed,
              "p": args.p, "k": args.k, "lr": args.lr, "steps_per_epoch": steps,
              "input_hw": list(init.spec.input_hw), "stage2": STAGE2, "distill_images": args.distill_images,
              "distill_epochs": args.distill_epochs or args.epochs}
    print(json.dumps(header), flush=True)
    for key in wanted:
        start = time.perf_counter()
        if key == "reference":
            row = {"model": f"{REFERENCE} (reference)", "name": REFERENCE}
        elif key == "shipped":
            row = {"model": f"{EDGE_INIT} as shipped", "name": EDGE_INIT}
        elif key in TRAINED:
            epochs = (args.distill_epochs or args.epochs) if key == "distill" else args.epochs
            settings = TrainSettings(epochs=epochs, sampler="dfgs" if key == "dfgs" else "pk", p=args.p,
                                     k=args.k, lr=args.lr, seed=args.seed, max_steps_per_epoch=steps,
                                     max_minutes=args.max_minutes, progress=not args.no_progress)
            data = unlabelled(train_set, args.distill_images, args.seed) if key == "distill" else train_set
            result = train_reid(data, init, args.out / key, settings,
                                teachers=STAGE2 if key == "distill" else None, resume=args.resume)
            epochs_s = [json.loads(line)["wall_s"] for line in result.log_path.read_text().splitlines() if line]
            embedder = FileEmbedder(result.model_path, init.spec, name=f"trained-{key}")
            trained[embedder.fingerprint] = embedder
            row = {"model": TRAINED[key], "name": embedder.fingerprint, "epochs": result.epochs,
                   "train s": sum(epochs_s), "run_s": result.wall_s, "images": len(data),
                   "final_loss": result.final_loss,
                   "parity_cosine": result.parity_cosine, "onnx": str(result.model_path)}
        else:
            parser.error(f"--rows: unknown row {key!r}")
        row.update(evaluate_row(val, row["name"], factory, cache, split))
        row["row_s"] = time.perf_counter() - start
        row["key"] = key
        rows.append(row)
        print(json.dumps(row), flush=True)
        everything = sorted(kept + rows, key=lambda r: ROW_ORDER.index(r.get("key", "reference")))
        (args.out / "results.json").write_text(json.dumps({"settings": header, "rows": everything}, indent=1))
        (args.out / "results.md").write_text(markdown(everything))
    everything = sorted(kept + rows, key=lambda r: ROW_ORDER.index(r.get("key", "reference")))
    print(markdown(everything))
    if args.json:
        print(json.dumps({"settings": header, "rows": everything}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
