"""The judges' text mode (issue 15): one photo against a description, μ = P(does not match).

The `openai` judge runs against the fake chat-completions server on 127.0.0.1, the `transformers`
judge on a tiny randomly initialised Qwen2-VL (plumbing only: no MLLM weights exist here), and the
`reid` judge says it cannot read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crossview_testing.fake_openai import Script, fake_openai_server, request_description, text_answer

from models.errors import InvalidInputError
from models.verify import TextNotSupportedError, create_judge, judge_class
from models.verify.prompt import (
    MAX_DESCRIPTION_CHARS,
    description_sentence,
    prompt_text,
    text_prompt_parts,
)
from models.verify.reid_judge import ReidJudge

RNG = np.random.default_rng(7)
PHOTOS = [RNG.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in [(160, 64), (200, 90), (120, 60), (90, 40)]]
DARK = np.full((128, 64, 3), 20, np.uint8)
BRIGHT = np.full((128, 64, 3), 230, np.uint8)


# -- the prompt ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("woman, red top, black trousers", "woman, red top, black trousers"),
        ("  a man   in a\nblue coat.  ", "a man in a blue coat"),
        ("backpack?!", "backpack"),
    ],
)
def test_description_sentence_is_the_text_tidied(text: str, sentence: str) -> None:
    assert description_sentence(text) == sentence


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("  .?! ", "empty"), ("x" * (MAX_DESCRIPTION_CHARS + 1), "at most"), (None, "a string")],
)
def test_bad_descriptions_are_refused(text: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        description_sentence(text)


def test_text_prompt_has_one_photo_and_the_question_last() -> None:
    rendered = prompt_text(parts=text_prompt_parts("woman, red top"))
    assert rendered.count("<image>") == 1
    assert rendered.index("Photo:") < rendered.index("<image>") < rendered.index("Judge only by")
    assert rendered.endswith("Does the person in the photo match this description: woman, red top? "
                             "Answer Yes or No.")


# -- the openai judge on the fake server -----------------------------------------------------------

@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    with fake_openai_server() as served:
        yield served


def make_openai(url: str, **kwargs: Any) -> Any:
    return create_judge("openai", base_url=url, model="judge", timeout_s=5.0, max_retries=1, backoff_s=0.01,
                        **kwargs)


def brightness_p_yes(description: str, image: np.ndarray) -> float:
    """Yes for bright photos when the description says "white", for dark ones otherwise."""
    bright = float(image.mean()) / 255.0
    return bright if "white" in description else 1.0 - bright


def test_openai_text_requests_are_in_the_apis_shape(server: tuple[str, Script]) -> None:
    url, script = server
    with make_openai(url) as judge:
        mu = judge.score_text("a man in a white shirt.", PHOTOS[:3])
    assert mu.shape == (3,) and mu.dtype == np.float32
    np.testing.assert_allclose(mu, 0.29 / 0.99, atol=1e-5)  # the fake's fixed text answer: Yes 0.7, No 0.29
    assert len(script.requests) == 3
    for path, _, body in script.requests:
        assert path == "/v1/chat/completions"
        assert body["max_tokens"] == 1 and body["logprobs"] is True and body["temperature"] == 0.0
        assert body["top_logprobs"] == 20 and body["model"] == "judge"
        (message,) = body["messages"]
        assert message["role"] == "user"
        kinds = [entry["type"] for entry in message["content"]]
        assert kinds == ["text", "image_url", "text"]
        assert message["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert request_description(body) == "a man in a white shirt"


def test_openai_mu_is_one_minus_p_yes_over_yes_and_no(server: tuple[str, Script]) -> None:
    url, script = server
    script.answer = text_answer(brightness_p_yes)
    with make_openai(url) as judge:
        white = judge.score_text("white shirt", [DARK, BRIGHT])
        black = judge.score_text("black shirt", [DARK, BRIGHT])
        pairs = judge.score_pairs([(DARK, DARK), (DARK, BRIGHT)])  # pair requests still answered as before
    for mu, image, description in [(white[0], DARK, "white"), (white[1], BRIGHT, "white"),
                                   (black[0], DARK, "black"), (black[1], BRIGHT, "black")]:
        p_yes = min(max(brightness_p_yes(description, image), 1e-4), 0.98)
        assert mu == pytest.approx((0.99 - p_yes) / 0.99, abs=1e-4)
    assert white[1] < white[0] and black[0] < black[1]
    assert pairs[0] < 0.1 < 0.8 < pairs[1]


def test_openai_text_mode_with_no_images_sends_nothing(server: tuple[str, Script]) -> None:
    url, script = server
    with make_openai(url) as judge:
        assert judge.score_text("red coat", []).shape == (0,)
        with pytest.raises(InvalidInputError, match="empty"):
            judge.score_text("   ", [DARK])
        with pytest.raises(InvalidInputError, match="image 1"):
            judge.score_text("red coat", [DARK, np.zeros((10, 10), np.uint8)])
    assert script.requests == []


# -- the reid judge --------------------------------------------------------------------------------

class _UnusedEmbedder:
    """The reid judge needs an embedder to be built; text mode never reaches it."""

    fingerprint = "unused"

    def embed(self, images: Any) -> Any:
        raise AssertionError("text mode must not embed")


def test_reid_judge_cannot_read_and_says_why() -> None:
    assert judge_class("reid").supports_text is False
    assert judge_class("openai").supports_text and judge_class("transformers").supports_text
    judge = ReidJudge(embedders=[_UnusedEmbedder()])
    with pytest.raises(TextNotSupportedError, match="cannot read a description"):
        judge.score_text("red coat", [DARK])
    assert "cannot read" in judge.text_unsupported_reason


# -- the transformers judge on a tiny random Qwen2-VL ----------------------------------------------

SMALL_HW = (56, 28)


@pytest.fixture(scope="module")
def qwen_judge(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from models.verify.random_qwen2vl import build_offline_processor, build_random_qwen2vl

    folder: Path = tmp_path_factory.mktemp("tiny-qwen2-vl-text")
    model, processor = build_random_qwen2vl("tiny", build_offline_processor(max_pixels=28 * 28 * 64), seed=0)
    with torch.no_grad():  # sharpen the random logits so μ spreads over [0, 1]
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return create_judge("transformers", model=str(folder), image_hw=SMALL_HW, batch_size=3)


def test_transformers_text_prompt_carries_one_image_and_the_description(qwen_judge: Any) -> None:
    mu = qwen_judge.score_text("woman with a red backpack", PHOTOS)
    assert mu.shape == (4,) and np.all((mu >= 0) & (mu <= 1))
    prompt = qwen_judge._text_prompt[1]
    assert prompt.count("<|image_pad|>") == 1
    assert "match this description: woman with a red backpack? Answer Yes or No." in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_transformers_text_mu_is_the_first_generated_token(qwen_judge: Any) -> None:
    """Independent oracle: `generate`'s scores for its first new token, one photo at a time."""
    import torch

    mu = qwen_judge.score_text("man in a black coat", PHOTOS)  # batches of 3 and 1
    prompt = qwen_judge._text_prompt[1]
    for image, value in zip(PHOTOS, mu, strict=True):
        inputs = qwen_judge.processor(text=[prompt], images=[[qwen_judge.model_image(image)]], return_tensors="pt")
        with torch.no_grad():
            out = qwen_judge.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_logits=True,
                                            return_dict_in_generate=True)
        first = out.logits[0][0]
        yes, no = float(first[qwen_judge.yes_id]), float(first[qwen_judge.no_id])
        assert value == pytest.approx(1.0 / (1.0 + math.exp(yes - no)), abs=1e-5)


def test_transformers_descriptions_change_the_answer_and_pairs_still_work(qwen_judge: Any) -> None:
    a = qwen_judge.score_text("man in a black coat", PHOTOS[:2])
    b = qwen_judge.score_text("woman in a yellow dress with long hair", PHOTOS[:2])
    assert not np.allclose(a, b, atol=1e-6)
    assert qwen_judge.score_pairs([(PHOTOS[0], PHOTOS[1])]).shape == (1,)
