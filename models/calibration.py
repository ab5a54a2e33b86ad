"""P(same) calibration: a model's raw score → the probability that two tracklets show the same person.

A raw score means nothing across models: a cosine distance of 0.3 is a near-certain match for one
Re-ID model and a stranger for another, and a judge's μ may be a probability or a halved distance.
A `Calibration` maps one model's score to P(same) (`models.scores`), fitted by logistic regression
(Platt scaling) on labelled pairs: ``P = 1 / (1 + exp(-(intercept + slope · score)))``.

Scores (`SCORES`):

- ``cosine_distance``: ``1 - cos`` of a tracklet vector and a gallery vector of the same model (0..2);
- ``judge_mu``: a judge's μ = P(different) as it reports it (0..1).

The pairs a calibration is fitted on are those a threshold will be asked about: each query's true
identity and its nearest other identities (a short list), cross-camera (`tools/calibrate.py`). One
file per model fingerprint (JSON); the zoo ships one per Re-ID model and for the default `reid` judge
(`models/zoo/calibrations/`), and ``crossview calibrate`` refits one on a site's own labels.
Without a fitted file a model gets `Calibration.uncalibrated` (P = 1 - μ, or 1 - distance),
which says so wherever it is shown.

Pure numpy to apply; fitting imports scikit-learn (the ``calibrate`` extra).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.errors import CrossviewError, InvalidInputError

SCORES = ("cosine_distance", "judge_mu")
METHODS = ("logistic", "uncalibrated")
PACKAGED_DIR = Path(__file__).parent / "zoo" / "calibrations"
ENV_DIR = "CROSSVIEW_CALIBRATIONS"


class CalibrationError(CrossviewError, ValueError):
    """A calibration file that is unreadable, malformed, or for another model than the one asked."""


@dataclass(frozen=True)
class Calibration:
    """Maps one model's `score` to P(same); see the module docstring.

    >>> c = Calibration("reid/x@0123456789ab", "cosine_distance", "logistic", 6.0, -20.0)
    >>> [round(float(p), 3) for p in c.p_same([0.2, 0.3, 0.4])]
    [0.881, 0.5, 0.119]
    """

    model_fingerprint: str
    score: str
    method: str = "logistic"
    intercept: float = 0.0
    slope: float = -1.0
    fitted_on: str = ""
    pairs: int = 0
    positives: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model_fingerprint, str) or not self.model_fingerprint.strip():
            raise CalibrationError(f"model_fingerprint: expected a non-empty string, got {self.model_fingerprint!r}")
        if self.score not in SCORES:
            raise CalibrationError(f"score: expected one of {SCORES}, got {self.score!r}")
        if self.method not in METHODS:
            raise CalibrationError(f"method: expected one of {METHODS}, got {self.method!r}")
        for name in ("intercept", "slope"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise CalibrationError(f"{name}: expected a finite number, got {value!r}")
        if self.method == "logistic" and not self.slope < 0:
            raise CalibrationError(f"slope: expected a negative slope (a larger {self.score} is less alike), "
                                   f"got {self.slope!r}")

    @classmethod
    def uncalibrated(cls, model_fingerprint: str, score: str) -> Calibration:
        """P = 1 - score, clipped to [0, 1]: a stand-in for a model nobody has calibrated yet."""
        return cls(model_fingerprint, score, "uncalibrated", fitted_on="not fitted: P(same) = 1 - score")

    @property
    def fitted(self) -> bool:
        return self.method == "logistic"

    def p_same(self, score: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """P(same) in [0, 1] for each score (same shape, float64)."""
        s = np.asarray(score, dtype=np.float64)
        if not np.all(np.isfinite(s)):
            raise InvalidInputError(f"{self.score}: expected finite scores, got NaN or inf")
        if self.method == "uncalibrated":
            return np.clip(1.0 - s, 0.0, 1.0)
        z = self.intercept + self.slope * s
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # a sigmoid that does not overflow

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Calibration:
        if not isinstance(data, dict):
            raise CalibrationError(f"expected a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise CalibrationError(f"unknown keys {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise CalibrationError(str(exc)) from None


def fit_calibration(scores: Sequence[float] | np.ndarray, same: Sequence[bool] | np.ndarray, *,
                    model_fingerprint: str, score: str, fitted_on: str = "") -> Calibration:
    """Logistic regression of `same` (N,) bools on `scores` (N,): the model's Platt calibration."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(same, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise InvalidInputError(f"same: expected {len(s)} labels, one per score, got {len(y)}")
    if not np.all(np.isfinite(s)):
        raise InvalidInputError("scores: expected finite numbers, got NaN or inf")
    if y.all() or not y.any():
        raise InvalidInputError(f"same: expected both same-person and different-person pairs, got "
                                f"{int(y.sum())} of {len(y)} same")
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise CrossviewError("fitting a calibration needs scikit-learn: pip install 'crossview[calibrate]'") from None
    model = LogisticRegression(C=1e6, max_iter=1000).fit(s[:, None], y)
    return Calibration(model_fingerprint, score, "logistic", float(model.intercept_[0]), float(model.coef_[0, 0]),
                       fitted_on, len(y), int(y.sum()))


def reliability(p_same: np.ndarray, same: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """The calibration curve: per equal-width bin of predicted P(same) that holds pairs,
    (mean predicted, observed fraction same, pairs)."""
    p = np.asarray(p_same, dtype=np.float64).reshape(-1)
    y = np.asarray(same, dtype=np.float64).reshape(-1)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [(float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if np.any(which == b)]


def expected_calibration_error(p_same: np.ndarray, same: np.ndarray, bins: int = 10) -> float:
    """Pair-weighted mean |predicted - observed| over the `reliability` bins."""
    rows = reliability(p_same, same, bins)
    total = sum(n for _, _, n in rows)
    return sum(n * abs(pred - obs) for pred, obs, n in rows) / total if total else math.nan


def file_name(model_fingerprint: str) -> str:
    """The calibration file's name for a fingerprint (``reid/intel-0288@ab12…`` → ``reid_intel-0288@ab12….json``)."""
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", model_fingerprint) + ".json"


def save_calibration(calibration: Calibration, path: Path) -> Path:
    """Write `calibration` as JSON at `path` atomically (a folder: its `file_name` inside it)."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name(calibration.model_fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(calibration.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_calibration(path: Path, expected_fingerprint: str | None = None, expected_score: str | None = None
                     ) -> Calibration:
    """Read a calibration file; refuse one made for another model (or another kind of score)."""
    path = Path(path)
    try:
        calibration = Calibration.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"calibration file {path}: {exc}") from None
    except CalibrationError as exc:
        raise CalibrationError(f"calibration file {path}: {exc}") from None
    if expected_fingerprint is not None and calibration.model_fingerprint != expected_fingerprint:
        raise CalibrationError(f"calibration file {path} is for model {calibration.model_fingerprint!r}, not "
                               f"{expected_fingerprint!r}: its P(same) would be wrong for this model; refit it with "
                               f"`crossview calibrate`")
    if expected_score is not None and calibration.score != expected_score:
        raise CalibrationError(f"calibration file {path} maps a {calibration.score}, expected a {expected_score}")
    return calibration


def calibration_for(model_fingerprint: str, score: str, path: Path | None = None) -> Calibration:
    """The calibration of a model: `path` when given (checked), else ``$CROSSVIEW_CALIBRATIONS/<file>``,
    else the one shipped with the zoo, else `Calibration.uncalibrated`."""
    if path is not None:
        return load_calibration(path, model_fingerprint, score)
    folders = [Path(os.environ[ENV_DIR])] if os.environ.get(ENV_DIR) else []
    for folder in [*folders, PACKAGED_DIR]:
        candidate = folder / file_name(model_fingerprint)
        if candidate.is_file():
            return load_calibration(candidate, model_fingerprint, score)
    return Calibration.uncalibrated(model_fingerprint, score)


def fuse_p_same(stage1: float | None, stage2: float | None, stage1_weight: float = 0.2) -> float | None:
    """One P(same) from the edge model's and the judge's calibrated P(same): a weighted mean of their
    log-odds, ``logit p = w·logit p1 + (1-w)·logit p2`` (the judge is the stronger model, so it weighs
    more; either alone is returned as it is). Weights summing to 1 keep a calibrated input's scale."""
    if not 0.0 <= stage1_weight <= 1.0:
        raise InvalidInputError(f"stage1_weight: expected a number in [0, 1], got {stage1_weight!r}")
    if stage1 is None or (isinstance(stage1, float) and math.isnan(stage1)):
        return stage2
    if stage2 is None or (isinstance(stage2, float) and math.isnan(stage2)):
        return stage1
    eps = 1e-6
    logit = [math.log(p / (1 - p)) for p in (min(max(stage1, eps), 1 - eps), min(max(stage2, eps), 1 - eps))]
    z = stage1_weight * logit[0] + (1.0 - stage1_weight) * logit[1]
    return 0.5 * (1.0 + math.tanh(0.5 * z))
