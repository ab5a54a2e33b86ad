"""The text → image evaluation: label mapping, template, metrics vs brute force, the real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossview.eval_command import eval_command
from models.attributes.query import parse_description
from models.attributes.scoring import description_scores
from models.evaluation.datasets import DatasetError
from models.evaluation.text import (
    describe,
    labels_from_fields,
    load_market_attributes,
    oracle_profile,
    retrieval_metrics,
)

NO, YES = 1, 2
BASE = {"gender": 2, "hair": 2, "up": 1, "down": 1, "clothes": 2, "hat": NO, "backpack": YES, "bag": NO,
        "handbag": YES, "age": 2,
        **{f"up{c}": NO for c in ("black", "white", "red", "purple", "yellow", "gray", "blue", "green")},
        **{f"down{c}": NO for c in ("black", "white", "pink", "purple", "yellow", "gray", "blue", "green", "brown")},
        "upred": YES, "downgray": YES}


def test_labels_map_to_the_vocabulary_and_the_template_parses_back() -> None:
    labels = labels_from_fields(7, BASE)
    assert {n for n in ("male", "bag", "backpack", "hat", "long_sleeves", "long_trousers", "long_hair")
            if labels.attribute(n)} == {"bag", "backpack", "long_sleeves", "long_trousers", "long_hair"}
    assert (labels.upper, labels.lower, labels.dress) == ("red", "grey", False)
    text = describe(labels)
    assert text == "woman, long hair, red long-sleeved top, grey trousers, with a backpack, with a bag, no hat"
    query = parse_description(text)
    assert query.ignored == ()
    assert {c.describe() for c in query.constraints} == {
        "not male", "long_hair", "upper red", "long_sleeves", "lower grey", "long_trousers", "backpack", "bag",
        "not hat"}
    # the oracle profile satisfies every constraint of its own description
    assert description_scores(query, [oracle_profile(labels)])[0] == pytest.approx(9 * np.log(1 - 1e-3))


def test_dress_shorts_and_missing_colours() -> None:
    dress = labels_from_fields(1, {**BASE, "clothes": 1, "downgray": NO, "up": 2, "gender": 1})
    assert not dress.attribute("long_trousers") and dress.lower is None
    assert describe(dress).startswith("man, long hair, red t-shirt, skirt,")
    shorts = labels_from_fields(2, {**BASE, "down": 2})
    assert "grey shorts" in describe(shorts) and not shorts.attribute("long_trousers")
    with pytest.raises(DatasetError, match="missing fields"):
        labels_from_fields(3, {"gender": 1})


def _reference_metrics(scores: np.ndarray, text_pids: np.ndarray, pids: np.ndarray) -> dict[str, float]:
    r1, r5, aps = [], [], []
    for row, pid in zip(scores, text_pids, strict=True):
        ranked = sorted(range(len(row)), key=lambda j: (-row[j], j))
        hits = [pids[j] == pid for j in ranked]
        first = hits.index(True)
        r1.append(first == 0)
        r5.append(first < 5)
        found, precisions = 0, []
        for rank, hit in enumerate(hits, 1):
            if hit:
                found += 1
                precisions.append(found / rank)
        aps.append(sum(precisions) / len(precisions))
    return {"rank1": float(np.mean(r1)), "rank5": float(np.mean(r5)), "mAP": float(np.mean(aps))}


def test_retrieval_metrics_match_the_reference() -> None:
    rng = np.random.default_rng(0)
    pids = rng.integers(0, 6, size=40)
    text_pids = np.arange(6)
    scores = rng.integers(0, 5, size=(6, 40)).astype(float)  # many ties
    assert retrieval_metrics(scores, text_pids, pids) == pytest.approx(_reference_metrics(scores, text_pids, pids))
    perm = rng.permutation(40)
    ranked = retrieval_metrics(scores, text_pids, pids, perm)
    # tie-breaking by `perm` = index order on the permuted gallery
    assert ranked == pytest.approx(_reference_metrics(scores[:, perm], text_pids, pids[perm]))


@pytest.fixture(scope="module")
def label_file(data_dir: Path) -> Path:
    path = data_dir / "market1501_attributes" / "market_attribute.mat"
    if not path.is_file():
        pytest.skip(f"{path} is absent from CROSSVIEW_DATA")
    pytest.importorskip("scipy", reason="scipy (the attributes extra) is not installed")
    return path


def test_real_label_file(label_file: Path) -> None:
    labels = load_market_attributes(label_file)
    assert len(labels) == 1501
    assert all(pid in labels for pid in (2, 4, 5, 6, 1501))
    for identity in labels.values():
        parse_description(describe(identity))  # every identity gives a searchable description


def test_bad_label_file(tmp_path: Path, label_file: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_market_attributes(tmp_path / "nope.mat")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match=r"expected Market-1501's market_attribute\.mat"):
        load_market_attributes(bad)


def test_eval_command_on_the_mini_set(data_dir: Path, models_dir: Path, label_file: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    data = data_dir / "market1501_mini"
    code = eval_command(data, "market1501", "reid/intel-0288", False, None, 10, True, None,
                        progress=False, text_labels=label_file)
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["n_identities"], out["n_crops"]) == (32, 96)
    assert set(out["attribute_accuracy"]) == {"male", "bag", "backpack", "hat", "long_sleeves", "long_trousers",
                                              "long_hair", "upper_colour", "lower_colour"}
    # the ordering the evaluation exists to show: random < model <= oracle
    assert out["random_rank1"] < out["text_rank1"] <= out["oracle_rank1"]
    assert out["random_rank1"] == pytest.approx(3 / 96, abs=0.01)  # 3 crops per identity
    code = eval_command(data, "cuhk03", "reid/intel-0288", False, None, 10, True, None, progress=False,
                        text_labels=label_file)
    assert code == 2
    assert "expected --format market1501" in capsys.readouterr().err


def test_eval_with_a_text_image_model(data_dir: Path, models_dir: Path, label_file: Path, tiny_clip_model: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`--text-image-model` adds its rows; the tiny random CLIP knows nothing, so alone it ranks like chance."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    code = eval_command(data_dir / "market1501_mini", "market1501", "reid/intel-0288", False, None, 10, True, None,
                        progress=False, text_labels=label_file, text_image=(tiny_clip_model, 0.5))
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {"text_image_only_rank1", "text_image_only_mAP", "without_text_image_rank1"} <= set(out)
    assert out["text_image_only_rank1"] < 0.25 and out["without_text_image_rank1"] > out["text_image_only_rank1"]
    bands = out["text_image_cosines"]  # where the model's cosines fall, to set its --cosine-range
    assert set(bands) == {f"{side}_p{q}" for side in ("same", "other") for q in (5, 50, 95)}
    assert all(-1 <= bands[f"{side}_p5"] <= bands[f"{side}_p50"] <= bands[f"{side}_p95"] <= 1
               for side in ("same", "other"))
    code = eval_command(data_dir / "market1501_mini", "market1501", "reid/intel-0288", False, None, 10, True, None,
                        progress=False, text_labels=label_file, text_image=("text/none", 0.5))
    assert code == 2 and "text/none" in capsys.readouterr().err
