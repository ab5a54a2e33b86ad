"""`crossview eval`: Re-ID accuracy of one or more zoo models on a dataset folder.

The typer CLI and `tools/eval_reid.py` both call `eval_command`; the work is in `models.evaluation`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from models.errors import CrossviewError
from models.zoo.spec import DEFAULT_TEXT_IMAGE_WEIGHT


def parse_models(text: str | None) -> list[str]:
    """Split a comma-separated model list, e.g. "a,b" → ["a", "b"]; blank entries are dropped."""
    return [m.strip() for m in (text or "").split(",") if m.strip()]


def eval_command(
    data: Path,
    format: str,
    model: str,
    rerank: bool,
    stage2: list[str] | None,
    shortlist: int,
    json_out: bool,
    png: Path | None,
    *,
    rerank_mode: str = "exact",
    batch_size: int = 32,
    runtime: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    text_labels: Path | None = None,
    text_image: tuple[str | None, float] = (None, DEFAULT_TEXT_IMAGE_WEIGHT),
) -> int:
    """Evaluate, print a table (or JSON with `json_out`), write the CMC PNG if asked; the exit code.

    `model` may list several stage-1 models separated by commas: each is evaluated with the same
    settings (one embedding cache), one table row / JSON object / CMC curve each. With one model the
    JSON is an object, with several a list of objects. `stage2` (one model or an ensemble) turns on
    two-stage ranking with a short list of `shortlist` candidates per query. `text_labels` (Market-1501
    attribute labels) runs the text search evaluation instead (`text_eval_command`), with `text_image`
    (a registered text-image model's name or None, its weight) mixed in.
    """
    from models.evaluation import EmbeddingCache, evaluate_many, format_table, plot_cmc, to_json_dict

    if text_image[0] and text_labels is None:
        print("error: --text-image-model: expected --text-labels too (it evaluates text search)", file=sys.stderr)
        return 2
    if text_labels is not None:
        return text_eval_command(data, format, parse_models(model), Path(text_labels), json_out, progress,
                                 text_image=text_image)
    models = parse_models(model)
    if not models:
        print("error: --model: expected at least one model name", file=sys.stderr)
        return 2
    try:
        results = evaluate_many(
            Path(data), format, models, rerank=rerank, stage2=stage2 or None, shortlist=shortlist,
            batch_size=batch_size, progress=progress, rerank_mode=rerank_mode, runtime=runtime,
            cache=EmbeddingCache(cache_dir),
        )
        if png is not None:
            plot_cmc(results, Path(png))
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if json_out:
        payload = [to_json_dict(r) for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        print(format_table(results))
        if png is not None:
            print(f"CMC curve written to {png}")
    return 0


def text_eval_command(data: Path, format: str, models: list[str], text_labels: Path, json_out: bool,
                      progress: bool = True,
                      text_image: tuple[str | None, float] = (None, DEFAULT_TEXT_IMAGE_WEIGHT)) -> int:
    """`--text-labels`: attribute accuracy and text → image retrieval (issue 15); the first `--model`
    gives the Re-ID vectors of the cross-modal re-ranking."""
    from models.evaluation.text import format_text_table, run_text_evaluation, to_text_json

    try:
        result = run_text_evaluation(Path(data), format, text_labels, models[0] if models else None,
                                     progress=progress, text_image_model=text_image[0],
                                     text_image_weight=text_image[1])
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(to_text_json(result), indent=2) if json_out else format_text_table(result))
    return 0
