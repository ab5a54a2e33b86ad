"""The hub's opt-in judge micro-batcher (`judge_batching`): short lists decided through it, closed at stop.

The reid judge on the colour model (no real models needed) stands behind the batcher; the config
path (`crossview hub judge_batching={...}`) loads the real reid judge and is skipped without
CROSSVIEW_MODELS.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crossview_testing.colour_model import DIM, ColourEmbedder, colour_factory, crop

from cloud.hub import Hub
from cloud.verification import CandidateEvidence, GalleryMatrix, VerifyRequest, create_verifier
from crossview.config import ConfigError, load_config
from crossview.hub_command import HubConfig, create_hub
from models.verify import JudgeConfigError
from models.verify.batcher import JudgeBatcher, JudgeClosedError

BATCHING = {"max_batch_pairs": 64, "max_wait_ms": 3}


def _colour_hub(tmp_path: Path, judge_batching: dict[str, Any] | None) -> Hub:
    return Hub.create(data_dir=tmp_path / "hub", judge="reid", judge_kwargs={"embedders": [ColourEmbedder()]},
                      judge_batching=judge_batching, embedder_factory=colour_factory)


def _request(query: str, candidates: list[str]) -> VerifyRequest:
    """A `query` person against candidates "id-<colour>" with two reference crops each."""
    evidence = [CandidateEvidence(identity, 0.2 + 0.1 * rank,
                                  [crop(identity.removeprefix("id-"), seed=20 + i) for i in range(2)])
                for rank, identity in enumerate(candidates)]
    return VerifyRequest([crop(query, seed=1), crop(query, seed=2)], np.zeros(DIM, np.float32), evidence,
                         GalleryMatrix.empty(DIM))


def test_a_hub_with_batching_confirms_through_the_batcher_and_closes_it_at_stop(tmp_path: Path) -> None:
    hub = _colour_hub(tmp_path, BATCHING)
    batcher = hub.shortlists.verifier.judge  # type: ignore[attr-defined]
    assert isinstance(batcher, JudgeBatcher)
    assert (batcher.max_batch_pairs, batcher.max_wait_s) == (64, 0.003)
    plain = create_verifier("reid", embedders=[ColourEmbedder()])
    request = _request("red", ["id-blue", "id-red"])
    try:
        result = hub.shortlists.verifier.verify(request)
        assert (result.outcome, result.identity_id) == ("confirmed", "id-red")
        assert result.scores == plain.verify(request).scores  # the same μ as without the batcher
        assert batcher.stats.requests == 1 and batcher.stats.pairs > 0
    finally:
        asyncio.run(hub.stop())
    with pytest.raises(JudgeClosedError):
        batcher.submit([(crop("red"), crop("red"))])
    assert not batcher._worker.is_alive()


def test_concurrent_short_lists_each_get_their_own_decision(tmp_path: Path) -> None:
    hub = _colour_hub(tmp_path, BATCHING)
    plain = create_verifier("reid", embedders=[ColourEmbedder()])
    requests = [_request(query, ["id-red", "id-blue", "id-green"]) for query in ("red", "blue", "green") * 4]
    try:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(hub.shortlists.verifier.verify, requests))
    finally:
        asyncio.run(hub.stop())
    for request, result in zip(requests, results, strict=True):
        expected = plain.verify(request)
        assert (result.outcome, result.identity_id, result.scores) == \
            (expected.outcome, expected.identity_id, expected.scores)


def test_without_batching_the_judge_is_used_directly(tmp_path: Path) -> None:
    hub = _colour_hub(tmp_path, {})
    try:
        assert not isinstance(hub.shortlists.verifier.judge, JudgeBatcher)  # type: ignore[attr-defined]
    finally:
        asyncio.run(hub.stop())


@pytest.mark.parametrize(("options", "match"), [
    pytest.param({"max_batch_pairs": 0}, "judge_batching: max_batch_pairs: expected a positive int", id="zero"),
    pytest.param({"max_wait_ms": "soon"}, "judge_batching: max_wait_ms: expected a number", id="not-a-number"),
    pytest.param({"max_wait": 3}, "judge_batching: got an unexpected keyword argument 'max_wait'; "
                                  "valid: max_batch_pairs", id="unknown-key"),
])
def test_a_bad_batching_option_is_one_line_naming_the_key(tmp_path: Path, options: dict, match: str) -> None:
    with pytest.raises(JudgeConfigError, match=match) as caught:
        _colour_hub(tmp_path, options)
    assert "\n" not in str(caught.value)


def test_judge_batching_from_the_hub_config(tmp_path: Path, models_dir: Path) -> None:
    cfg = load_config(HubConfig, None, [f"data_dir={tmp_path}", "judge_batching={max_batch_pairs: 8, max_wait_ms: 1}"])
    assert cfg.judge_batching == {"max_batch_pairs": 8, "max_wait_ms": 1}
    assert load_config(HubConfig, None, []).judge_batching == {}
    hub = create_hub(cfg)
    batcher = hub.shortlists.verifier.judge  # type: ignore[attr-defined]
    try:
        assert isinstance(batcher, JudgeBatcher) and batcher.max_batch_pairs == 8
    finally:
        asyncio.run(hub.stop())
    assert not batcher._worker.is_alive()
    with pytest.raises(ConfigError, match="judge_batching"):
        load_config(HubConfig, None, ["judge_batching=[max_batch_pairs]"])
