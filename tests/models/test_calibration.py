"""models.calibration: fitting recovers a known logistic, P(same) is monotone and bounded, files round-trip
and refuse another model's or a malformed calibration, the uncalibrated stand-in, fusion, reliability."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from models import calibration as calibration_module
from models.calibration import (
    Calibration,
    CalibrationError,
    calibration_for,
    expected_calibration_error,
    file_name,
    fit_calibration,
    fuse_p_same,
    load_calibration,
    reliability,
    save_calibration,
)
from models.errors import InvalidInputError

FP = "reid/test-model@0123456789ab"


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def logistic(intercept: float = 5.0, slope: float = -12.0, fp: str = FP, score: str = "cosine_distance"
             ) -> Calibration:
    return Calibration(fp, score, "logistic", intercept, slope, "synthetic", 100, 40)


@pytest.fixture
def no_installed_calibrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The zoo's folder and $CROSSVIEW_CALIBRATIONS out of the way: an empty packaged folder, no env."""
    packaged = tmp_path / "packaged"
    packaged.mkdir()
    monkeypatch.setattr(calibration_module, "PACKAGED_DIR", packaged)
    monkeypatch.delenv(calibration_module.ENV_DIR, raising=False)
    return packaged


# ---------------------------------------------------------------- fitting

def test_fit_recovers_a_known_logistic() -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.0, 1.0, 20_000)
    same = rng.uniform(size=scores.size) < sigmoid(5.0 - 12.0 * scores)
    fitted = fit_calibration(scores, same, model_fingerprint=FP, score="cosine_distance", fitted_on="synthetic")
    assert fitted.intercept == pytest.approx(5.0, abs=0.4) and fitted.slope == pytest.approx(-12.0, abs=0.8)
    assert (fitted.model_fingerprint, fitted.score, fitted.method, fitted.fitted_on) == (
        FP, "cosine_distance", "logistic", "synthetic")
    assert fitted.fitted and fitted.pairs == 20_000 and fitted.positives == int(same.sum())
    grid = np.linspace(0.0, 1.0, 21)
    np.testing.assert_allclose(fitted.p_same(grid), sigmoid(5.0 - 12.0 * grid), atol=0.03)


def test_fit_on_a_judge_mu() -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(1)
    mu = np.concatenate([rng.uniform(0.0, 0.3, 500), rng.uniform(0.2, 0.6, 500)])
    same = np.arange(1000) < 500
    fitted = fit_calibration(mu.tolist(), same.tolist(), model_fingerprint="reid:x", score="judge_mu")
    assert fitted.score == "judge_mu" and fitted.slope < 0
    assert fitted.p_same(0.05) > 0.9 and fitted.p_same(0.55) < 0.1


@pytest.mark.parametrize(("scores", "same", "message"), [
    ([0.1, 0.2], [True], "expected 2 labels"),
    ([0.1, float("nan")], [True, False], "finite"),
    ([0.1, math.inf], [True, False], "finite"),
    ([0.1, 0.2], [True, True], "both same-person and different-person"),
    ([0.1, 0.2], [False, False], "got 0 of 2 same"),
    ([], [], "both"),
])
def test_fit_refuses(scores: list, same: list, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fit_calibration(scores, same, model_fingerprint=FP, score="cosine_distance")


# ---------------------------------------------------------------- applying

@pytest.mark.parametrize("calibration", [logistic(), logistic(0.5, -3.0, score="judge_mu"),
                                         Calibration.uncalibrated(FP, "cosine_distance")],
                         ids=["logistic", "logistic judge", "uncalibrated"])
def test_p_same_is_monotone_bounded_and_keeps_the_shape(calibration: Calibration) -> None:
    grid = np.linspace(0.0, 2.0, 401)
    p = calibration.p_same(grid)
    assert p.dtype == np.float64 and p.shape == grid.shape
    assert np.all(np.diff(p) <= 0) and np.all((p >= 0) & (p <= 1))
    assert p[0] > p[-1]
    assert calibration.p_same(0.25).shape == () and calibration.p_same([[0.1, 0.2]]).shape == (1, 2)
    assert float(calibration.p_same(np.float32(0.3))) == pytest.approx(float(calibration.p_same(0.3)), abs=1e-6)


def test_logistic_values_and_extremes_without_overflow() -> None:
    c = logistic(6.0, -20.0)
    np.testing.assert_allclose(c.p_same([0.2, 0.3, 0.4]), [sigmoid(2.0), 0.5, sigmoid(-2.0)], rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in exp
        extreme = logistic(5.0, -1e6).p_same([-1e300, 0.0, 1e300])
    assert extreme.tolist() == pytest.approx([1.0, sigmoid(5.0), 0.0])


@pytest.mark.parametrize("bad", [[0.1, float("nan")], [math.inf], float("-inf")])
def test_p_same_refuses_nan_and_inf(bad: object) -> None:
    for c in (logistic(), Calibration.uncalibrated(FP, "cosine_distance")):
        with pytest.raises(InvalidInputError, match="finite"):
            c.p_same(bad)


def test_uncalibrated_is_one_minus_the_score_and_says_so() -> None:
    c = Calibration.uncalibrated(FP, "judge_mu")
    assert not c.fitted and c.method == "uncalibrated" and "not fitted" in c.fitted_on
    assert c.p_same([0.0, 0.25, 1.0, 1.5, 2.0]).tolist() == [1.0, 0.75, 0.0, 0.0, 0.0]
    assert c.p_same(-0.5) == 1.0  # clipped
    assert logistic().fitted


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"model_fingerprint": ""}, "model_fingerprint"),
    ({"model_fingerprint": "   "}, "model_fingerprint"),
    ({"model_fingerprint": None}, "model_fingerprint"),
    ({"score": "distance"}, "score: expected one of"),
    ({"method": "isotonic"}, "method: expected one of"),
    ({"intercept": float("nan")}, "intercept: expected a finite number"),
    ({"intercept": "1"}, "intercept"),
    ({"slope": math.inf}, "slope: expected a finite number"),
    ({"slope": True}, "slope"),
    ({"slope": 0.0}, "negative slope"),
    ({"slope": 3.0}, "negative slope"),
])
def test_constructor_refuses(kwargs: dict, message: str) -> None:
    args = {"model_fingerprint": FP, "score": "cosine_distance", "method": "logistic", "intercept": 1.0,
            "slope": -2.0, **kwargs}
    with pytest.raises(CalibrationError, match=message):
        Calibration(**args)


def test_calibration_error_is_a_value_error() -> None:
    assert issubclass(CalibrationError, ValueError)


# ---------------------------------------------------------------- files

def test_file_name_is_safe_and_matches_the_zoo_s_names() -> None:
    assert file_name("reid/intel-0288@08e24c2f1dd9") == "reid_intel-0288@08e24c2f1dd9.json"
    assert file_name("reid:reid/intel-0277@6bb69e09d077+reid/intel-0286@d06beb9e2b26") == \
        "reid_reid_intel-0277@6bb69e09d077+reid_intel-0286@d06beb9e2b26.json"
    assert "/" not in file_name("../../etc/passwd") and file_name("a b/c").endswith(".json")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    c = logistic(4.07, -11.5)
    path = save_calibration(c, tmp_path)  # a folder: the file is named after the fingerprint
    assert path == tmp_path / file_name(FP)
    assert load_calibration(path) == c
    assert load_calibration(path, FP, "cosine_distance") == c
    assert json.loads(path.read_text())["slope"] == -11.5
    other = save_calibration(Calibration.uncalibrated("reid:x", "judge_mu"), tmp_path / "sub" / "judge.json")
    assert load_calibration(other, "reid:x", "judge_mu") == Calibration.uncalibrated("reid:x", "judge_mu")
    save_calibration(logistic(1.0, -2.0), path)  # replaced whole
    assert load_calibration(path).intercept == 1.0
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([file_name(FP), "sub", "judge.json"])  # no temps


def test_another_model_s_calibration_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = save_calibration(logistic(), tmp_path)
    with pytest.raises(CalibrationError) as info:
        load_calibration(path, "reid/other-model@ffffffffffff")
    message = str(info.value)
    assert str(path) in message and FP in message and "reid/other-model@ffffffffffff" in message
    assert "crossview calibrate" in message
    with pytest.raises(CalibrationError, match="maps a cosine_distance, expected a judge_mu"):
        load_calibration(path, FP, "judge_mu")


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "calibration file"),
    ("", "calibration file"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('"x"', "expected a JSON object, got str"),
    (json.dumps({**logistic().to_dict(), "threshold": 0.5}), r"unknown keys \['threshold'\]"),
    (json.dumps({"score": "cosine_distance"}), "model_fingerprint"),  # a required key missing
    (json.dumps({**logistic().to_dict(), "slope": 1.0}), "negative slope"),
    (json.dumps({**logistic().to_dict(), "score": "mu"}), "score: expected one of"),
    (json.dumps({**logistic().to_dict(), "intercept": None}), "intercept"),
])
def test_malformed_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message) as info:
        load_calibration(path)
    assert str(path) in str(info.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="calibration file"):
        load_calibration(tmp_path / "absent.json")


def test_from_dict_refuses_non_objects_and_unknown_keys() -> None:
    assert Calibration.from_dict(logistic().to_dict()) == logistic()
    with pytest.raises(CalibrationError, match="unknown keys"):
        Calibration.from_dict({**logistic().to_dict(), "extra": 1})
    with pytest.raises(CalibrationError, match="expected a JSON object"):
        Calibration.from_dict(None)


def test_calibration_for_prefers_a_path_then_the_env_then_the_zoo_then_uncalibrated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_installed_calibrations: Path) -> None:
    assert calibration_for(FP, "cosine_distance") == Calibration.uncalibrated(FP, "cosine_distance")
    save_calibration(logistic(1.0, -1.0), no_installed_calibrations)
    assert calibration_for(FP, "cosine_distance").intercept == 1.0
    site = tmp_path / "site"
    site.mkdir()
    save_calibration(logistic(2.0, -2.0), site)
    monkeypatch.setenv(calibration_module.ENV_DIR, str(site))
    assert calibration_for(FP, "cosine_distance").intercept == 2.0
    explicit = save_calibration(logistic(3.0, -3.0), tmp_path / "explicit.json")
    assert calibration_for(FP, "cosine_distance", explicit).intercept == 3.0
    with pytest.raises(CalibrationError, match="is for model"):
        calibration_for("reid/other@1", "cosine_distance", explicit)
    with pytest.raises(CalibrationError, match="expected a judge_mu"):
        calibration_for(FP, "judge_mu")  # the installed file maps another score
    assert calibration_for("reid/nobody@1", "judge_mu") == Calibration.uncalibrated("reid/nobody@1", "judge_mu")


def test_an_installed_file_under_the_wrong_name_is_refused(no_installed_calibrations: Path) -> None:
    # a file copied over another model's name must not give that model its P(same)
    (no_installed_calibrations / file_name("reid/victim@1")).write_text(json.dumps(logistic().to_dict()))
    with pytest.raises(CalibrationError, match="is for model"):
        calibration_for("reid/victim@1", "cosine_distance")


# ---------------------------------------------------------------- fusion

def test_fuse_returns_either_alone() -> None:
    for p in (0.0, 0.13, 0.5, 0.97, 1.0):
        assert fuse_p_same(p, None) == p and fuse_p_same(None, p) == p
        assert fuse_p_same(p, math.nan) == p and fuse_p_same(math.nan, p) == p
    assert fuse_p_same(None, None) is None


def test_fuse_weights() -> None:
    assert fuse_p_same(0.9, 0.3, 0.0) == pytest.approx(0.3)  # the judge alone
    assert fuse_p_same(0.9, 0.3, 1.0) == pytest.approx(0.9)  # the edge model alone
    z = 0.2 * math.log(0.9 / 0.1) + 0.8 * math.log(0.3 / 0.7)
    assert fuse_p_same(0.9, 0.3) == pytest.approx(1.0 / (1.0 + math.exp(-z)))  # default: the judge weighs 0.8
    assert fuse_p_same(0.2, 0.8, 0.5) == pytest.approx(0.5)
    for bad in (-0.1, 1.1, math.nan):
        with pytest.raises(InvalidInputError, match="stage1_weight"):
            fuse_p_same(0.5, 0.5, bad)


def test_fuse_is_symmetric_bounded_and_monotone() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        a, b = (float(x) for x in rng.uniform(0.001, 0.999, 2))
        w = float(rng.uniform(0, 1))
        fused = fuse_p_same(a, b, w)
        assert fused == pytest.approx(fuse_p_same(b, a, 1.0 - w), abs=1e-12)  # the weights, not the order, matter
        assert fuse_p_same(a, b, 0.5) == pytest.approx(fuse_p_same(b, a, 0.5), abs=1e-12)
        assert min(a, b) - 1e-12 <= fused <= max(a, b) + 1e-12
        assert fuse_p_same(a, a, w) == pytest.approx(a, abs=1e-9)
        if 0.0 < w < 1.0:
            assert fuse_p_same(min(a + 0.01, 0.999), b, w) >= fused and fuse_p_same(a, min(b + 0.01, 0.999), w) >= fused
    for a, b in ((0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.3)):  # certainties are clipped, not infinite
        fused = fuse_p_same(a, b)
        assert math.isfinite(fused) and min(a, b) - 1e-6 <= fused <= max(a, b) + 1e-6


# ---------------------------------------------------------------- reliability

def test_perfectly_calibrated_data_has_a_small_ece() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0.0, 1.0, 100_000)
    same = rng.uniform(size=p.size) < p
    assert expected_calibration_error(p, same) < 0.01
    rows = reliability(p, same)
    assert len(rows) == 10 and sum(n for _, _, n in rows) == p.size
    for b, (predicted, observed, n) in enumerate(rows):
        assert b / 10 <= predicted < (b + 1) / 10 and abs(predicted - observed) < 0.02 and n > 9000
    assert expected_calibration_error(p ** 3, same) > 0.2  # over-cautious predictions are caught


def test_reliability_edges() -> None:
    assert reliability(np.array([0.0, 1.0, 1.0]), np.array([False, True, False])) == [(0.0, 0.0, 1), (1.0, 0.5, 2)]
    assert len(reliability(np.array([0.05, 0.5, 0.95]), np.array([0, 1, 1]), bins=2)) == 2
    assert math.isnan(expected_calibration_error(np.zeros(0), np.zeros(0)))
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 1])) == pytest.approx(0.1)
