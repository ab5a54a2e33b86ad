"""`crossview train judge-data` and `crossview train judge`: fine-tuning the MLLM judge (MUSE, issue 14 item 6).

`judge-data` ranks every image of a labelled folder with the stage-one model against the other
cameras' images and writes the mined pairs (`models.verify.judge_data`) as JSONL conversations;
`judge` trains a LoRA adapter on such a file (`models.verify.lora`) that the `transformers` judge
loads with ``adapter=``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from models.errors import CrossviewError, InvalidInputError


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _labels(pids: list[int], fmt: str) -> np.ndarray:
    """Identities for mining; Market-1501 distractors (pid 0) are each their own, never anyone's match."""
    labels = np.asarray(pids, np.int64)
    if fmt == "market1501":
        distractors = np.flatnonzero(labels == 0)
        labels[distractors] = -1 - np.arange(len(distractors))
    return labels


def judge_data_command(data: Path, format: str, model: str, *, top_k: int, out: Path, seed: int = 0,
                       swap: bool = True, per_query: int | None = None, runtime: str | None = None,
                       batch_size: int = 32, progress: bool = True) -> int:
    """Mine pairs from `data` with stage-one `model` and write them to `out`; the exit code."""
    from models.embed import create_embedder
    from models.evaluation import EmbeddingCache
    from models.evaluation.datasets import load_dataset
    from models.evaluation.ranking import cosine_distance
    from models.evaluation.run import embed_paths
    from models.verify.judge_data import judge_records, mine_pairs

    try:
        split = load_dataset(Path(data), format)
        samples = split.query + split.gallery
        paths = [s.path.resolve() for s in samples]
        vectors = embed_paths(paths, model, EmbeddingCache(),
                              lambda name: create_embedder(name, runtime, batch_size=batch_size),
                              slot=model, progress=progress)
        distances = cosine_distance(vectors, vectors)
        pairs = mine_pairs(distances, _labels([s.pid for s in samples], split.fmt),
                           np.asarray([s.camid for s in samples]), top_k=top_k, per_query=per_query)
        if not len(pairs):
            raise InvalidInputError(f"no pairs: no query of {data} has both a match on another camera and a "
                                    f"wrong identity in its top {top_k}")
    except CrossviewError as exc:
        return _fail(exc)
    records = judge_records(pairs, [str(p) for p in paths], swap=swap)
    order = np.random.default_rng(seed).permutation(len(records))  # trainers that read in order see mixed answers
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as file:
        for index in order:
            file.write(json.dumps(records[index]) + "\n")
    os.replace(partial, out)
    copies = 2 if swap else 1
    print(f"judge data: {len(records)} conversations to {out} (positives {pairs.n_positive * copies}, "
          f"negatives {pairs.n_negative * copies}{', with swapped copies' if swap else ''}); "
          f"queries {pairs.n_queries} of {len(samples)} images, stage one {model}, top {top_k}")
    return 0


def judge_command(data: Path, model: str, out: Path, *, epochs: int = 1, lr: float = 2e-4, rank: int = 8,
                  alpha: float = 16.0, batch_size: int = 4, max_steps: int | None = None, seed: int = 0,
                  device: str = "auto", dtype: str = "auto", json_out: bool = False,
                  progress: bool = True) -> int:
    """Train a LoRA adapter for the `transformers` judge on the JSONL file `data`; the exit code."""
    from models.verify import create_judge
    from models.verify.lora import LoraSettings, read_judge_jsonl, save_adapter, train_lora

    try:  # everything that can be checked is checked before the model is loaded
        settings = LoraSettings(epochs=epochs, lr=lr, rank=rank, alpha=alpha, batch_size=batch_size,
                                max_steps=max_steps, seed=seed)
        examples = read_judge_jsonl(Path(data))
        local = Path(model).exists()
        judge = create_judge("transformers", model=model, device=device, dtype=dtype, batch_size=batch_size,
                             local_files_only=local)
        run = train_lora(judge, examples, settings, progress=progress)
        save_adapter(judge, Path(out), run)
    except CrossviewError as exc:
        return _fail(exc)
    if json_out:
        print(json.dumps({**run.to_json(), "adapter": str(out), "model": model}, indent=2))
    else:
        print(f"judge LoRA: {run.steps} steps on {run.examples} conversations, loss {run.losses[0]:.4f} -> "
              f"{run.final_loss:.4f}, {run.steps_per_s:.2f} steps/s; adapter written to {out}")
    return 0


def register(train_app: typer.Typer) -> None:
    """Add `judge-data` and `judge` to the `crossview train` group."""

    @train_app.command("judge-data")
    def judge_data(
        data: Annotated[Path, typer.Option(help="Labelled image folder (Market-1501 or CUHK03 layout).")],
        out: Annotated[Path, typer.Option(help="JSONL file to write.")],
        format: Annotated[str, typer.Option(help="auto, market1501 or cuhk03.")] = "auto",
        model: Annotated[str, typer.Option(help="Stage-one (edge) model that ranks the candidates.")]
            = "reid/intel-0288",
        top_k: Annotated[int, typer.Option(help="Short list length; negatives come from it.")] = 10,
        per_query: Annotated[int | None, typer.Option(help="At most this many positives per query.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the order of the lines.")] = 0,
        swap: Annotated[bool, typer.Option(help="Also write each pair in (candidate, query) order.")] = True,
        runtime: Annotated[str | None, typer.Option(help="Embedding runtime (default: the model's own).")] = None,
    ) -> None:
        """Write judge fine-tuning conversations mined from the stage-one ranking (MUSE)."""
        raise typer.Exit(judge_data_command(data, format, model, top_k=top_k, out=out, seed=seed, swap=swap,
                                            per_query=per_query, runtime=runtime))

    @train_app.command("judge")
    def judge(
        data: Annotated[Path, typer.Option(help="JSONL written by `crossview train judge-data`.")],
        model: Annotated[str, typer.Option(help="Image-text-to-text model folder or hub id (Qwen2-VL family).")],
        out: Annotated[Path, typer.Option(help="Folder for the LoRA adapter.")],
        epochs: Annotated[int, typer.Option(help="Passes over the file.")] = 1,
        lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-4,
        rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
        alpha: Annotated[float, typer.Option(help="LoRA alpha.")] = 16.0,
        batch_size: Annotated[int, typer.Option(help="Conversations per step.")] = 4,
        max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the LoRA init and the order.")] = 0,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
        dtype: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
        json_out: Annotated[bool, typer.Option("--json", help="Print the final loss, steps and steps/s as JSON.")]
            = False,
    ) -> None:
        """LoRA-fine-tune the `transformers` judge on the first answer token; load it with adapter=DIR."""
        raise typer.Exit(judge_command(data, model, out, epochs=epochs, lr=lr, rank=rank, alpha=alpha,
                                       batch_size=batch_size, max_steps=max_steps, seed=seed, device=device,
                                       dtype=dtype, json_out=json_out))
