"""The judge's fast path against the plain path (the reference), on a tiny random Qwen2-VL in fp32.

Random weights: these tests say nothing about accuracy, only that the fast path gives the plain
path's μ for the same pairs while encoding each distinct image once and caching candidates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from models.errors import InvalidInputError  # noqa: E402
from models.verify import JudgeConfigError, JudgeError  # noqa: E402
from models.verify.fast_judge import FastTransformersJudge, pixel_values_of  # noqa: E402
from models.verify.image_cache import ImageCache, pair_keys  # noqa: E402
from models.verify.prompt import to_model_rgb  # noqa: E402
from models.verify.random_qwen2vl import build_offline_processor, build_random_qwen2vl  # noqa: E402
from models.verify.transformers_judge import TransformersJudge  # noqa: E402

SMALL_HW = (56, 28)
TOLERANCE = 1e-4


def _tiny(seed: int) -> tuple[Any, Any]:
    model, processor = build_random_qwen2vl("tiny", build_offline_processor(max_pixels=28 * 28 * 64), seed=seed)
    with torch.no_grad():  # sharpen the random logits so μ spreads over [0, 1] instead of sitting at 0.5
        model.lm_head.weight.mul_(40.0)
    return model, processor


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return _tiny(seed=0)


@pytest.fixture(scope="module")
def plain(tiny: tuple[Any, Any]) -> TransformersJudge:
    model, processor = tiny
    return TransformersJudge(model, processor=processor, image_hw=SMALL_HW, batch_size=4)


def fast_judge(tiny: tuple[Any, Any], **kwargs: Any) -> FastTransformersJudge:
    model, processor = tiny
    return FastTransformersJudge(model, processor=processor, **{"image_hw": SMALL_HW, "batch_size": 4, **kwargs})


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    sizes = [(128, 64), (60, 30), (200, 90), (100, 100), (56, 28), (300, 120), (90, 40), (150, 70), (80, 44),
             (110, 52)]
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in sizes]


def test_tensor_preprocessing_makes_the_processors_pixel_values(plain: TransformersJudge,
                                                               tiny: tuple[Any, Any],
                                                               crops: list[np.ndarray]) -> None:
    judge = fast_judge(tiny)
    expected = plain.model_inputs([[crops[0], crops[5]]])
    rgb = torch.from_numpy(np.stack([to_model_rgb(c, SMALL_HW) for c in (crops[0], crops[5])]))
    mine = pixel_values_of(rgb, judge._image_processing)
    assert torch.equal(mine.grid_thw, expected["image_grid_thw"])
    torch.testing.assert_close(mine.values, expected["pixel_values"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("share_prefix", [True, False], ids=["shared-prefix", "whole-prompt"])
@pytest.mark.parametrize("candidates", [1, 3, 9], ids=["list-of-1", "under-a-batch", "over-two-batches"])
def test_short_lists_match_the_plain_path(plain: TransformersJudge, tiny: tuple[Any, Any],
                                          crops: list[np.ndarray], candidates: int, share_prefix: bool) -> None:
    judge = fast_judge(tiny, share_prefix=share_prefix)
    query, others = crops[0], crops[1:1 + candidates]
    expected = plain.score_shortlist(query, others)
    np.testing.assert_allclose(judge.score_shortlist(query, others), expected, atol=TOLERANCE, rtol=0)
    assert judge.cache_stats.images_encoded == 1 + candidates  # the query once, not once per pair
    assert np.ptp(expected) > 50 * TOLERANCE or candidates == 1  # pairs told apart: a row mix-up would show


@pytest.mark.parametrize("share_prefix", [True, False], ids=["shared-prefix", "whole-prompt"])
def test_mixed_pairs_and_swapped_order_match_the_plain_path(tiny: tuple[Any, Any], crops: list[np.ndarray],
                                                            share_prefix: bool) -> None:
    """Batches that mix queries (each row on its own query's prefix), and both orders of a pair."""
    model, processor = tiny
    pairs = [(crops[i], crops[j]) for i, j in [(0, 1), (2, 3), (1, 0), (4, 4), (5, 6), (0, 7), (8, 9), (2, 1)]]
    for swap in (False, True):
        reference = TransformersJudge(model, processor=processor, image_hw=SMALL_HW, batch_size=3, swap=swap)
        judge = fast_judge(tiny, batch_size=3, swap=swap, share_prefix=share_prefix)
        np.testing.assert_allclose(judge.score_pairs(pairs), reference.score_pairs(pairs), atol=TOLERANCE, rtol=0)
    ab, ba = judge.score_pairs([(crops[0], crops[5]), (crops[5], crops[0])])
    assert ab == pytest.approx(ba, abs=1e-6)  # with swap both orders give the averaged μ


def test_a_cache_hit_skips_the_vision_tower_and_gives_the_same_mu(plain: TransformersJudge,
                                                                  tiny: tuple[Any, Any],
                                                                  crops: list[np.ndarray]) -> None:
    judge = fast_judge(tiny)
    gallery = crops[2:7]
    first = judge.score_shortlist(crops[0], gallery)
    assert judge.cache_stats.images_encoded == 6 and len(judge.feature_cache) == 5
    second = judge.score_shortlist(crops[1], gallery)  # a new query against the same reference crops
    assert judge.cache_stats.images_encoded == 7 and judge.cache_stats.hits == 5
    np.testing.assert_allclose(first, plain.score_shortlist(crops[0], gallery), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(second, plain.score_shortlist(crops[1], gallery), atol=TOLERANCE, rtol=0)
    copy = [c.copy() for c in gallery]  # equal content, other arrays: the same entries
    np.testing.assert_allclose(judge.score_shortlist(crops[0], copy), first, atol=1e-6, rtol=0)
    assert judge.cache_stats.images_encoded == 8 and judge.cache_stats.hits == 10


def test_with_swap_only_the_candidates_are_cached_and_each_image_is_encoded_once(
        plain: TransformersJudge, tiny: tuple[Any, Any], crops: list[np.ndarray]) -> None:
    model, processor = tiny
    judge = fast_judge(tiny, swap=True)
    reference = TransformersJudge(model, processor=processor, image_hw=SMALL_HW, swap=True)
    gallery = crops[2:6]
    np.testing.assert_allclose(judge.score_shortlist(crops[0], gallery), reference.score_shortlist(crops[0], gallery),
                               atol=TOLERANCE, rtol=0)
    assert len(judge.feature_cache) == 4 and judge.cache_stats.images_encoded == 5  # the query: encoded, not kept
    cached = [judge.feature_cache.get(judge._cache_key(key)) for _, key in pair_keys([(crops[0], c) for c in gallery])]
    assert all(f is not None and f.untyped_storage().nbytes() == f.numel() * f.element_size() for f in cached)


@pytest.mark.parametrize("share_prefix", [True, False], ids=["shared-prefix", "whole-prompt"])
def test_evicted_candidates_are_encoded_again_with_the_same_mu(plain: TransformersJudge,
                                                               tiny: tuple[Any, Any], crops: list[np.ndarray],
                                                               share_prefix: bool) -> None:
    judge = fast_judge(tiny, cache_images=2, share_prefix=share_prefix)
    gallery = crops[1:6]
    expected = plain.score_shortlist(crops[0], gallery)
    np.testing.assert_allclose(judge.score_shortlist(crops[0], gallery), expected, atol=TOLERANCE, rtol=0)
    assert len(judge.feature_cache) == 2 and judge.cache_stats.evictions == 3
    np.testing.assert_allclose(judge.score_shortlist(crops[0], gallery), expected, atol=TOLERANCE, rtol=0)
    # the two kept (the last two) are hits; the three evicted ones and the query are encoded again
    assert judge.cache_stats.hits == 2 and judge.cache_stats.images_encoded == 6 + 4


def test_a_shared_cache_never_mixes_two_models_features(crops: list[np.ndarray]) -> None:
    shared = ImageCache(64)
    models = [_tiny(seed=0), _tiny(seed=1)]
    judges = [FastTransformersJudge(m, processor=p, image_hw=SMALL_HW, feature_cache=shared) for m, p in models]
    for (model, processor), judge in zip(models, judges, strict=True):
        reference = TransformersJudge(model, processor=processor, image_hw=SMALL_HW)
        np.testing.assert_allclose(judge.score_shortlist(crops[0], crops[1:4]),
                                   reference.score_shortlist(crops[0], crops[1:4]), atol=TOLERANCE, rtol=0)
    assert len(shared) == 6 and shared.stats.hits == 0


def test_the_fast_path_keeps_the_plain_paths_fingerprint(plain: TransformersJudge, tiny: tuple[Any, Any]) -> None:
    assert fast_judge(tiny).fingerprint == plain.fingerprint  # same μ, so the same calibration


def test_the_registry_builds_it_from_a_folder_and_refuses_unknown_options(tiny: tuple[Any, Any], tmp_path: Path,
                                                                          crops: list[np.ndarray]) -> None:
    from models.verify import create_judge

    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    judge = create_judge("transformers-fast", model=str(tmp_path), image_hw=SMALL_HW, cache_images=8)
    assert isinstance(judge, FastTransformersJudge) and judge.feature_cache.max_images == 8
    reference = TransformersJudge(tmp_path, image_hw=SMALL_HW)
    np.testing.assert_allclose(judge.score_shortlist(crops[0], crops[1:4]),
                               reference.score_shortlist(crops[0], crops[1:4]), atol=TOLERANCE, rtol=0)
    with pytest.raises(JudgeConfigError, match="unexpected keyword argument 'colour'"):
        create_judge("transformers-fast", model=str(tmp_path), colour="red")


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ((np.zeros((40, 20, 3), np.float32), np.zeros((40, 20, 3), np.uint8)), "pair 0 query: expected dtype uint8"),
        ((np.zeros((40, 20, 3), np.uint8), np.zeros((40, 20), np.uint8)), "pair 0 candidate"),
        ((np.zeros((40, 20, 3), np.uint8), np.zeros((0, 20, 3), np.uint8)), "non-empty"),
    ],
)
def test_bad_images_are_refused_before_the_model_runs(tiny: tuple[Any, Any], pair: tuple, message: str) -> None:
    judge = fast_judge(tiny)
    with pytest.raises(InvalidInputError, match=message):
        judge.score_pairs([pair])
    assert judge.cache_stats.images_encoded == 0


def test_running_out_of_device_memory_is_a_judge_error_and_the_next_call_works(
        plain: TransformersJudge, tiny: tuple[Any, Any], crops: list[np.ndarray]) -> None:
    judge = fast_judge(tiny)

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(judge.model, "forward", out_of_memory)
        with pytest.raises(JudgeError, match=r"ran out of device memory scoring 3 rows \(3 pairs;"):
            judge.score_shortlist(crops[0], crops[1:4])
    np.testing.assert_allclose(judge.score_shortlist(crops[0], crops[1:4]),
                               plain.score_shortlist(crops[0], crops[1:4]), atol=TOLERANCE, rtol=0)


def test_an_empty_short_list_is_an_empty_answer(tiny: tuple[Any, Any], crops: list[np.ndarray]) -> None:
    judge = fast_judge(tiny)
    assert judge.score_shortlist(crops[0], []).shape == (0,)
    assert judge.cache_stats.images_encoded == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_hw": None}, "one fixed"),
        ({"image_hw": (60, 28)}, "multiples of 28"),
        ({"image_hw": (28 * 20, 28 * 20)}, "pixels"),  # over the processor's max_pixels: it would shrink it
        ({"cache_images": -1}, "max_images"),
        ({"share_prefix": "yes"}, "share_prefix"),
    ],
)
def test_options_the_fast_path_cannot_honour_are_refused(tiny: tuple[Any, Any], kwargs: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(JudgeConfigError, match=message):
        fast_judge(tiny, **kwargs)


def test_concurrent_short_lists_through_the_micro_batcher_get_the_plain_paths_mu(
        plain: TransformersJudge, tiny: tuple[Any, Any], crops: list[np.ndarray]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from models.verify.batcher import JudgeBatcher

    lists = [(crops[q], [crops[(q + 1 + k) % len(crops)] for k in range(1 + q % 4)]) for q in range(len(crops))]
    with JudgeBatcher(fast_judge(tiny, batch_size=5), max_batch_pairs=12, max_wait_ms=2) as batcher, \
            ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda item: batcher.score_shortlist(*item), lists))
    for (query, candidates), mu in zip(lists, results, strict=True):
        np.testing.assert_allclose(mu, plain.score_shortlist(query, candidates), atol=TOLERANCE, rtol=0)
