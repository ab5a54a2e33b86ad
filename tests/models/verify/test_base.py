"""The judge interface, the prompt, and the name → class registry (no model needed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.verify import JUDGES, Judge, JudgeConfigError, JudgeError, JudgeResult, create_judge, judge_class
from models.verify.base import Pair, mu_from_yes_no
from models.verify.prompt import (
    CANDIDATE_LABEL,
    DEFAULT_IMAGE_HW,
    QUERY_LABEL,
    chat_content,
    check_image_hw,
    prompt_text,
    to_model_rgb,
)


class MeanJudge(Judge):
    """μ from the difference of mean brightness, with an order-dependent term to test swapping."""

    name = "mean"

    def __init__(self, swap: bool = False) -> None:
        super().__init__(swap=swap)
        self.calls: list[int] = []

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        self.calls.append(len(pairs))
        return np.array([abs(q.mean() - c.mean()) / 255 + (0.2 if q.mean() > c.mean() else 0.0)
                         for q, c in pairs])


def image(value: int, hw: tuple[int, int] = (64, 32)) -> np.ndarray:
    return np.full((*hw, 3), value, np.uint8)


def test_score_pairs_validates_clips_and_returns_float32() -> None:
    judge = MeanJudge()
    mu = judge.score_pairs([(image(0), image(255)), (image(255), image(0)), (image(10), image(10))])
    assert mu.dtype == np.float32 and mu.shape == (3,)
    np.testing.assert_allclose(mu, [1.0, 1.0, 0.0])  # 1.2 clipped to 1
    assert judge.score_pairs([]).shape == (0,)
    assert judge.calls == [3]  # the empty call never reached the backend


def test_swap_averages_both_orders_in_one_backend_call() -> None:
    judge = MeanJudge(swap=True)
    a, b = image(100), image(50)
    forward, backward = judge.score_pairs([(a, b)]), judge.score_pairs([(b, a)])
    np.testing.assert_allclose(forward, backward)
    np.testing.assert_allclose(forward, [(50 / 255 + 0.2 + 50 / 255) / 2], rtol=1e-6)
    assert judge.calls == [2, 2]


def test_score_shortlist_and_judge_shortlist() -> None:
    judge = MeanJudge()
    result = judge.judge_shortlist(image(100), [image(0), image(100), image(120)], threshold=0.5)
    assert result.mu.shape == (3,)
    assert result.best == 1 and result.confirmed == 1 and result.best_mu == 0.0
    assert result.same.tolist() == [False, True, True]  # 100/255 + 0.2 > 0.5
    assert JudgeResult(np.array([0.9, 0.7], np.float32)).confirmed is None
    assert JudgeResult(np.zeros(0, np.float32)).best is None


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([(image(0), image(0)[..., 0])], "pair 0 candidate: expected shape"),
        ([(image(0).astype(np.float32), image(0))], "pair 0 query: expected dtype uint8"),
        ([(image(0), np.zeros((0, 4, 3), np.uint8))], "non-empty"),
        ([(image(0), "not an image")], "numpy array"),
        ([image(0)], "pair 0: expected a"),
        (np.zeros((2, 2, 64, 32, 3), np.uint8), "sequence"),
    ],
)
def test_bad_pairs_are_refused_before_the_backend_runs(pairs: object, message: str) -> None:
    judge = MeanJudge()
    with pytest.raises(InvalidInputError, match=message):
        judge.score_pairs(pairs)  # type: ignore[arg-type]
    assert judge.calls == []


def test_a_backend_returning_the_wrong_count_or_nan_is_an_error() -> None:
    class Broken(MeanJudge):
        def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
            return np.array([np.nan] * len(pairs)) if len(pairs) == 1 else np.zeros(1)

    with pytest.raises(JudgeError, match="NaN"):
        Broken().score_pairs([(image(0), image(0))])
    with pytest.raises(JudgeError, match="1 scores for 2 pairs"):
        Broken().score_pairs([(image(0), image(0))] * 2)


def test_mu_from_yes_no_is_a_stable_two_way_softmax() -> None:
    np.testing.assert_allclose(mu_from_yes_no(0.0, 0.0), 0.5)
    np.testing.assert_allclose(mu_from_yes_no(2.0, 1.0), np.exp(1.0) / (np.exp(1.0) + np.exp(2.0)))
    np.testing.assert_allclose(mu_from_yes_no(np.array([-1e4, 1e4]), np.array([1e4, -1e4])), [1.0, 0.0])


def test_prompt_says_what_design_section_2_says() -> None:
    text = prompt_text()
    for phrase in ("expert", "Query:", "Candidate:", "body shape", "clothing", "carried objects", "background",
                   "pose", "lighting", "camera angle", "Answer Yes or No."):
        assert phrase in text
    assert text.index(QUERY_LABEL) < text.index(CANDIDATE_LABEL) < text.index("body shape")
    assert text.endswith("Answer Yes or No.")
    content = chat_content(lambda slot: {"type": "image", "slot": slot})
    assert [c.get("slot") for c in content if c["type"] == "image"] == ["query", "candidate"]
    assert content[0]["text"].endswith("Query:") and content[2]["text"] == "\nCandidate:"


def test_images_are_resized_to_one_small_size_as_rgb() -> None:
    bgr = np.zeros((300, 90, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    rgb = to_model_rgb(bgr)
    assert rgb.shape == (*DEFAULT_IMAGE_HW, 3)
    assert rgb[..., 2].min() == 255 and rgb[..., 0].max() == 0
    assert to_model_rgb(bgr, None).shape == (300, 90, 3)
    with pytest.raises(InvalidInputError, match="image_hw"):
        check_image_hw((10, 10))


def test_registry_names_every_backend_and_imports_lazily() -> None:
    assert set(JUDGES) == {"transformers", "transformers-fast", "openai", "reid"}
    assert judge_class("openai").__name__ == "OpenAIJudge"
    assert judge_class("reid").__name__ == "ReidJudge"
    with pytest.raises(JudgeConfigError, match="did you mean 'openai'"):
        judge_class("opena")
    with pytest.raises(JudgeConfigError, match="unexpected keyword argument 'colour'"):
        create_judge("openai", base_url="http://127.0.0.1:1/v1", model="m", colour="red")


def test_importing_the_registry_and_the_openai_judge_loads_no_ml_framework() -> None:
    code = ("import sys, models.verify, models.verify.openai_judge, models.verify.reid_judge; "
            "print(sorted(m for m in ('torch', 'transformers', 'openvino') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
