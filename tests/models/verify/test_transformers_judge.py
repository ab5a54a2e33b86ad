"""The `transformers` judge on a tiny randomly initialised Qwen2-VL: plumbing only.

No MLLM weights exist on this machine, so nothing here says whether the judge is *right*; these
tests check that the prompt reaches the model with both images, that μ is read from the first
generated position for the "Yes"/"No" ids, and that batching, padding and swapping change nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from models.errors import InvalidInputError  # noqa: E402
from models.verify import JudgeConfigError, create_judge  # noqa: E402
from models.verify.base import JudgeError  # noqa: E402
from models.verify.random_qwen2vl import build_offline_processor, build_random_qwen2vl  # noqa: E402
from models.verify.transformers_judge import TransformersJudge  # noqa: E402

SMALL_HW = (56, 28)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL saved like a hub folder (config, weights, tokenizer, processor)."""
    folder = tmp_path_factory.mktemp("tiny-qwen2-vl")
    processor = build_offline_processor(max_pixels=28 * 28 * 64)
    model, processor = build_random_qwen2vl("tiny", processor, seed=0)
    with torch.no_grad():  # sharpen the random logits so μ spreads over [0, 1] instead of sitting at 0.5
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def judge(tiny_folder: Path) -> TransformersJudge:
    return create_judge("transformers", model=str(tiny_folder), image_hw=SMALL_HW, batch_size=8)


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    sizes = [(128, 64), (60, 30), (200, 90), (100, 100), (56, 28), (300, 120), (90, 40), (150, 70)]
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in sizes]


def pairs_of(crops: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(crops[i], crops[j]) for i, j in [(0, 1), (2, 3), (4, 5), (6, 7), (1, 2), (3, 0), (5, 5)]]


def test_loads_from_a_folder_and_returns_one_mu_per_pair(judge: TransformersJudge,
                                                          crops: list[np.ndarray]) -> None:
    assert judge.device == "cpu" and judge.dtype == torch.float32
    assert judge.tokenizer.decode([judge.yes_id]) == "Yes" and judge.tokenizer.decode([judge.no_id]) == "No"
    mu = judge.score_pairs(pairs_of(crops))
    assert mu.shape == (7,) and mu.dtype == np.float32
    assert np.all((mu >= 0) & (mu <= 1))
    assert mu.std() > 0.01  # the pairs are really told apart, not a constant
    assert judge.score_shortlist(crops[0], crops[1:4]).shape == (3,)
    assert judge.score_shortlist(crops[0], []).shape == (0,)


def test_prompt_carries_both_images_and_ends_at_the_assistant_turn(judge: TransformersJudge) -> None:
    prompt = judge.prompt
    assert prompt.count("<|image_pad|>") == 2  # expanded to 28×28-pixel tokens by the processor
    assert prompt.index("Query:") < prompt.index("Candidate:") < prompt.index("Answer Yes or No.")
    assert prompt.endswith("<|im_start|>assistant\n")


def test_mu_is_the_first_generated_token_of_generate(judge: TransformersJudge, crops: list[np.ndarray]) -> None:
    """Independent oracle: the scores `generate` gives for its first new token."""
    query, candidate = crops[0], crops[3]
    inputs = judge.processor(text=[judge.prompt], images=[[judge.model_image(query), judge.model_image(candidate)]],
                             return_tensors="pt")
    with torch.no_grad():
        out = judge.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_logits=True,
                                   return_dict_in_generate=True)
    first = out.logits[0][0]
    yes, no = float(first[judge.yes_id]), float(first[judge.no_id])
    expected = np.exp(no) / (np.exp(no) + np.exp(yes))
    assert judge.score_pairs([(query, candidate)])[0] == pytest.approx(expected, abs=1e-5)


def test_batched_equals_one_by_one_with_left_padding(tiny_folder: Path, crops: list[np.ndarray]) -> None:
    # image_hw=None keeps each crop's size, so prompts differ in length and the batch is padded
    batched = TransformersJudge(tiny_folder, image_hw=None, batch_size=8)
    pairs = pairs_of(crops)
    inputs = batched.processor(text=[batched.prompt] * 2, images=[[batched.model_image(q), batched.model_image(c)]
                                                                  for q, c in pairs[:2]], padding=True,
                               return_tensors="pt")
    mask = inputs["attention_mask"]
    assert not bool(mask.all()) and bool(mask[:, -1].all()), "expected left padding in this batch"
    together = batched.score_pairs(pairs)
    alone = np.concatenate([batched.score_pairs([pair]) for pair in pairs])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    batched.batch_size = 3  # batches of 3, 3, 1
    np.testing.assert_allclose(batched.score_pairs(pairs), alone, atol=1e-5)


def test_a_right_padding_processor_reads_each_rows_last_real_token(tiny_folder: Path,
                                                                   crops: list[np.ndarray]) -> None:
    judge = TransformersJudge(tiny_folder, image_hw=None, batch_size=8)
    reference = judge.score_pairs(pairs_of(crops))
    judge.tokenizer.padding_side = "right"
    np.testing.assert_allclose(judge.score_pairs(pairs_of(crops)), reference, atol=1e-5)


def test_swapped_order_averaging_is_symmetric(tiny_folder: Path, crops: list[np.ndarray]) -> None:
    plain = TransformersJudge(tiny_folder, image_hw=SMALL_HW)
    swapped = TransformersJudge(tiny_folder, image_hw=SMALL_HW, swap=True)
    a, b = crops[0], crops[5]
    ab, ba = plain.score_pairs([(a, b), (b, a)])
    assert abs(ab - ba) > 1e-4  # the model is order-sensitive, which is why swapping exists
    np.testing.assert_allclose(swapped.score_pairs([(a, b)]), swapped.score_pairs([(b, a)]), atol=1e-6)
    np.testing.assert_allclose(swapped.score_pairs([(a, b)]), [(ab + ba) / 2], atol=1e-5)


def test_an_already_built_model_and_processor_can_be_passed_in() -> None:
    model, processor = build_random_qwen2vl("tiny", build_offline_processor(max_pixels=28 * 28 * 16), seed=1)
    judge = TransformersJudge(model, processor=processor, image_hw=SMALL_HW)
    image = np.zeros((40, 20, 3), np.uint8)
    assert judge.score_pairs([(image, image)]).shape == (1,)


def _fail(**kwargs: Any) -> None:
    TransformersJudge(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"yes_token": "Yes No"}, "expected exactly one"),
        ({"dtype": "int8"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"batch_size": 0}, "batch_size"),
        ({"image_hw": (4, 4)}, "image_hw"),
    ],
)
def test_bad_options_are_refused(tiny_folder: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(JudgeConfigError, match=message):
        TransformersJudge(tiny_folder, **kwargs)


def test_missing_folder_processor_or_cuda_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JudgeConfigError, match="cannot load a processor"):
        TransformersJudge(tmp_path / "nowhere", local_files_only=True)
    model, _ = build_random_qwen2vl("tiny", seed=0)
    with pytest.raises(JudgeConfigError, match="processor: required"):
        TransformersJudge(model)
    if not torch.cuda.is_available():
        with pytest.raises(JudgeConfigError, match="no CUDA"):
            TransformersJudge(tmp_path, device="cuda")


def test_bad_images_are_refused(judge: TransformersJudge) -> None:
    with pytest.raises(InvalidInputError, match="pair 0 candidate"):
        judge.score_pairs([(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8))])


def test_a_closed_judge_says_so_and_close_waits_for_a_call_in_progress(tiny_folder: Path,
                                                                        crops: list[np.ndarray]) -> None:
    judge = create_judge("transformers", model=str(tiny_folder), image_hw=SMALL_HW, batch_size=8)
    with judge._lock:  # a forward pass in progress holds the model lock: close waits for it
        closer = threading.Thread(target=judge.close)
        closer.start()
        closer.join(0.2)
        assert closer.is_alive() and judge.model is not None
    closer.join()
    assert judge.model is None
    for call in (lambda: judge.score_pairs(pairs_of(crops)[:1]), lambda: judge.score_text("a man", crops[:1])):
        with pytest.raises(JudgeError, match="the judge is closed"):
            call()
