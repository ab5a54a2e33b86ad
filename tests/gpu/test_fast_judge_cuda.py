"""On a CUDA GPU in bf16, the judge's fast path gives the plain path's μ within 0.02 (issue 13).

Skipped without CUDA. A tiny random Qwen2-VL (plumbing only: random weights say nothing about
accuracy); bf16 rounds differently along the two paths (cached features, a shared KV prefix), hence
the looser bound than the CPU fp32 tests' 1e-4 (tests/models/verify/test_fast_judge.py).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'crossview[mllm]')")
pytest.importorskip("transformers")

from models.verify.fast_judge import FastTransformersJudge  # noqa: E402
from models.verify.random_qwen2vl import build_offline_processor, build_random_qwen2vl  # noqa: E402
from models.verify.transformers_judge import TransformersJudge  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]

BF16_TOLERANCE = 0.02


@pytest.mark.parametrize("share_prefix", [True, False], ids=["shared-prefix", "whole-prompt"])
def test_fast_path_matches_the_plain_path_in_bf16(share_prefix: bool) -> None:
    model, processor = build_random_qwen2vl("tiny", build_offline_processor(), dtype=torch.bfloat16, device="cuda")
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)  # spread μ over [0, 1]
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (int(rng.integers(120, 320)), int(rng.integers(50, 140)), 3), np.uint8)
             for _ in range(24)]
    plain = TransformersJudge(model, processor=processor, batch_size=10)
    fast = FastTransformersJudge(model, processor=processor, batch_size=10, share_prefix=share_prefix)
    for query in range(3):  # the later short lists reuse cached candidates
        candidates = crops[query + 1:query + 13]
        np.testing.assert_allclose(fast.score_shortlist(crops[query], candidates),
                                   plain.score_shortlist(crops[query], candidates), atol=BF16_TOLERANCE, rtol=0)
    assert fast.cache_stats.hits > 0
