"""Evaluation results as a text table, a JSON-ready dict and a CMC-curve PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation.run import EvalResult
from models.metrics import RankMetrics

_CMC_JSON_RANKS = 50


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}"


def describe(result: EvalResult) -> str:
    """A short label: model, re-ranking and stage 2, e.g. "reid/intel-0288 +rerank → reid/intel-0277 @20"."""
    label = result.model
    if result.rerank:
        label += " +rerank" + ("(incr)" if result.rerank_mode == "incremental" else "")
    if result.stage2:
        label += f" → {'+'.join(result.stage2)} @{result.shortlist}"
    return label


def format_table(results: EvalResult | Sequence[EvalResult]) -> str:
    """A fixed-width table (percentages), one row per result; two-stage rows also show stage 1."""
    rows = [results] if isinstance(results, EvalResult) else list(results)
    if not rows:
        return "(no results)"
    two_stage = any(r.stage2 for r in rows)
    header = ["setting", "R1", "R5", "R10", "mAP", "mINP"]
    if two_stage:
        header += ["recall@K", "stage1 R1", "stage1 mAP"]
    lines = []
    for r in rows:
        cells = [describe(r), _pct(r.rank1), _pct(r.rank5), _pct(r.rank10), _pct(r.mAP), _pct(r.mINP)]
        if two_stage:
            s1 = r.stage1
            cells += [_pct(r.recall_at_k), _pct(s1.rank1 if s1 else None), _pct(s1.mAP if s1 else None)]
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    first = rows[0]
    title = (f"{first.dataset} ({first.fmt}): {first.n_query} queries "
             f"({first.n_valid_query} with a cross-camera match), {first.n_gallery} gallery items")
    rule = "-" * len(fmt(header))
    return "\n".join([title, fmt(header), rule, *(fmt(c) for c in lines)])


def _metrics_dict(m: RankMetrics) -> dict[str, Any]:
    return {"rank1": m.rank1, "rank5": m.rank5, "rank10": m.rank10, "mAP": m.mAP, "mINP": m.mINP,
            "cmc": [float(v) for v in m.cmc[:_CMC_JSON_RANKS]]}


def to_json_dict(result: EvalResult) -> dict[str, Any]:
    """JSON-ready figures (fractions in [0, 1]); `recall_at_k` and `stage1` only for two-stage runs."""
    out: dict[str, Any] = {
        "dataset": result.dataset, "format": result.fmt, "model": result.model,
        "rank1": result.rank1, "rank5": result.rank5, "rank10": result.rank10,
        "mAP": result.mAP, "mINP": result.mINP,
        "n_query": result.n_query, "n_gallery": result.n_gallery, "n_valid_query": result.n_valid_query,
        "rerank": result.rerank, "rerank_mode": result.rerank_mode,
        "cmc": [float(v) for v in result.cmc[:_CMC_JSON_RANKS]],
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
    }
    if result.stage2:
        out["stage2"] = list(result.stage2)
        out["shortlist"] = result.shortlist
        out["recall_at_k"] = result.recall_at_k
        if result.stage1 is not None:
            out["stage1"] = _metrics_dict(result.stage1)
    return out


def plot_cmc(results: EvalResult | Sequence[EvalResult], path: Path, *, title: str | None = None,
             max_rank: int = 20) -> Path:
    """Write CMC curves (one per result, ranks 1…`max_rank`) to a PNG at `path`; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [results] if isinstance(results, EvalResult) else list(results)
    if not rows:
        raise ValueError("plot_cmc: expected at least one result")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    try:
        for r in rows:
            n = min(max_rank, len(r.cmc))
            ranks = np.arange(1, n + 1)
            ax.plot(ranks, 100.0 * np.asarray(r.cmc[:n]), marker="o", markersize=3, linewidth=1.5,
                    label=f"{describe(r)} (mAP {_pct(r.mAP)})")
        first = rows[0]
        ax.set_title(title or f"CMC — {first.dataset}: {first.n_query} queries, {first.n_gallery} gallery")
        ax.set_xlabel("rank")
        ax.set_ylabel("matching rate (%)")
        last = max(2, min(max_rank, max(len(r.cmc) for r in rows)))
        ax.set_xlim(1, last)
        ax.set_xticks([1, *range(5, last + 1, 5)] if last >= 5 else list(range(1, last + 1)))
        lowest = min(100.0 * float(r.cmc[0]) for r in rows)
        ax.set_ylim(max(0.0, 10.0 * np.floor((lowest - 5.0) / 10.0)), 100.5)
    except BaseException:
        plt.close(fig)
        raise
    finish_figure(fig, ax, path)
    return path


def finish_figure(fig: Any, ax: Any, path: Path) -> None:
    """The house style's last touches (grid, legend at the lower right), saved to `path` and closed."""
    import matplotlib.pyplot as plt

    try:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
