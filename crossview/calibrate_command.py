"""`crossview calibrate`: fit the P(same) calibration of a Re-ID model (and of the hub's judge) on a
labelled folder, check it on another, and draw the calibration curve.

    crossview calibrate --data cuhk03_labeled/train --format cuhk03 --model reid/intel-0288 \
        --judge reid --check cuhk03_labeled/val --out calibrations/ --png calibration.png

The files written are what `edge` (``calibration=FILE``) and `crossview hub` (``judge_calibration=FILE``)
read, or drop them in ``$CROSSVIEW_CALIBRATIONS``; the zoo ships the ones in
`models/zoo/calibrations/`, fitted with this command on CUHK03 ``train``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from models.errors import CrossviewError


def calibrate_command(data: Path, format: str, model: str, out: Path, *, judge: str | None = None,
                      check: Path | None = None, png: Path | None = None, json_out: bool = False,
                      top_k: int = 10, cache_dir: Path | None = None, progress: bool = True) -> int:
    """Fit, save, report (a table or JSON); the exit code."""
    from models.calibration import save_calibration
    from models.evaluation import EmbeddingCache
    from models.evaluation.calibrate import calibration_table, fit_from_pairs, plot_reliability, score_pairs
    from models.zoo import get_spec

    try:
        judge_obj = _judge(judge) if judge else None
        cache = EmbeddingCache(cache_dir)
        fingerprint = get_spec(model).fingerprint
        fitted = score_pairs(data, format, model, judge=judge_obj, top_k=top_k, cache=cache, progress=progress)
        rows: list[tuple[str, Any, Any]] = []
        calibrations = [fit_from_pairs(fitted, fingerprint, "cosine_distance")]
        if judge_obj is not None:
            calibrations.append(fit_from_pairs(fitted, judge_obj.fingerprint, "judge_mu"))
        held = score_pairs(check, format, model, judge=judge_obj, top_k=top_k, cache=cache,
                           progress=progress) if check else None
        written = []
        for c in calibrations:
            written.append(str(save_calibration(c, Path(out) if Path(out).suffix != ".json" or judge_obj is None
                                                 else Path(out).parent)))
            name = _short(c.model_fingerprint)
            rows.append((f"{name}, {fitted.dataset} (fitted)", c, fitted))
            if held is not None:
                rows.append((f"{name}, {held.dataset} (held out)", c, held))
        if png is not None:
            curves = [(label, c.p_same(p.distance if c.score == "cosine_distance" else p.mu), p.same)
                      for label, c, p in rows]
            plot_reliability(curves, Path(png), title=f"P(same) calibration, fitted on {fitted.dataset}")
    except (CrossviewError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = calibration_table(rows)
    if json_out:
        print(json.dumps({"written": written, "rows": table}, indent=2))
    else:
        for path in written:
            print(f"wrote {path}")
        for r in table:
            print(f"{r['label']}: {r['pairs']} pairs ({r['same']} same), ECE {r['ece']:.3f}, mean P(same) "
                  f"{r['mean_p_same_same']:.3f} for the same person, {r['mean_p_same_different']:.3f} for others")
    return 0


def _short(fingerprint: str) -> str:
    """``reid:reid/intel-0277@6bb6…+reid/intel-0286@d06b…`` → ``reid:intel-0277+intel-0286``."""
    import re

    return re.sub(r"(reid/|@[0-9a-f]+)", "", fingerprint)


def _judge(name: str) -> Any:
    from models.verify import create_judge

    if name != "reid":
        raise CrossviewError(f"judge: only the 'reid' judge can be calibrated here (no MLLM weights), got {name!r}")
    return create_judge(name, cache_size=50_000)
