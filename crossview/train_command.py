"""`crossview train`: the learning loop (issue 14): training Re-ID models and fine-tuning the judge.

`crossview.cli` adds `train_app` as `train`; `train judge-data` and `train judge` are registered from
`crossview.train_judge_command`, `train reid` is defined here:

    crossview train reid --data ../shared/data/cuhk03_labeled/train --format cuhk03 \
        --init reid/osnet-x0.25-msmt17 --sampler dfgs --epochs 3 --out runs/dfgs [--teacher A,B] [--json]

Configuration is parsed and checked here; the work is in `models.train`. Everything that can be
refused (data, model conversion, teachers, settings) is refused with one line before training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from crossview.train_judge_command import register as register_judge_commands
from models.errors import CrossviewError

train_app = typer.Typer(no_args_is_help=True, help="Train and fine-tune models (the learning loop).")
register_judge_commands(train_app)  # judge-data, judge


def train_reid_command(data: Path, fmt: str, init: str, sampler: str, epochs: int, out: Path, *,
                       teacher: str | None = None, p: int = 16, k: int = 4, lr: float = 3.5e-4, seed: int = 0,
                       resume: bool = False, max_minutes: float | None = None, json_out: bool = False,
                       progress: bool = True) -> int:
    """Run `train reid`; raises CrossviewError (one line) for anything refused before training."""
    from models.train.data import load_training_set
    from models.train.distill import check_teachers, parse_teachers
    from models.train.network import convert_backbone, resolve_init
    from models.train.trainer import TrainSettings, train_reid

    settings = TrainSettings(epochs=epochs, sampler=sampler, p=p, k=k, lr=lr, seed=seed, max_minutes=max_minutes,
                             progress=progress)
    teachers = parse_teachers(teacher)
    check_teachers(teachers)
    model = resolve_init(init)
    convert_backbone(model)  # refuse an unconvertible model before the data is read
    training_set = load_training_set(data, fmt, progress=progress)
    result = train_reid(training_set, model, out, settings, teachers=teachers, resume=resume)
    summary = {"model": str(result.model_path), "log": str(result.log_path), "epochs": result.epochs,
               "final_loss": result.final_loss, "wall_s": round(result.wall_s, 3),
               "train_s": round(result.train_s, 3), "parity_cosine": result.parity_cosine}
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        losses = ", ".join(f"{name} {value:.4f}" for name, value in result.final_loss.items())
        typer.echo(f"trained {result.epochs} epoch(s) in {result.wall_s:.1f} s; final {losses}")
        typer.echo(f"wrote {result.model_path} (ONNX Runtime vs torch cosine {result.parity_cosine:.6f})")
    return 0


@train_app.command("reid")
def train_reid_cli(
    data: Annotated[Path, typer.Option(help="Training folder (Market-1501 layout, CUHK03 crops, or crops).")],
    out: Annotated[Path, typer.Option(help="Folder for model.onnx, train_log.jsonl and checkpoints.")],
    format: Annotated[str, typer.Option("--format", help="market1501 | cuhk03 | crops (unlabelled)")] = "market1501",
    init: Annotated[str, typer.Option(help="Zoo model (ONNX) or .onnx file to start from.")
                    ] = "reid/osnet-x0.25-msmt17",
    sampler: Annotated[str, typer.Option(help="pk (random P×K) | dfgs (hard mining).")] = "pk",
    epochs: Annotated[int, typer.Option(help="Training epochs (each identity once per epoch).")] = 3,
    teacher: Annotated[str | None, typer.Option(help="Teacher Re-ID models, comma-separated, to distil from.")
                       ] = None,
    p: Annotated[int, typer.Option("--p", help="Identities per batch.")] = 16,
    k: Annotated[int, typer.Option("--k", help="Images per identity in a batch.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adam).")] = 3.5e-4,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same model.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after the epoch that passes this wall time.")
                           ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the final loss and wall time as JSON.")] = False,
) -> None:
    """Fine-tune (or distil) a Re-ID model and export it to OUT/model.onnx."""
    try:
        code = train_reid_command(data, format, init, sampler, epochs, out, teacher=teacher, p=p, k=k, lr=lr,
                                  seed=seed, resume=resume, max_minutes=max_minutes, json_out=json_out,
                                  progress=sys.stderr.isatty())
    except CrossviewError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)
