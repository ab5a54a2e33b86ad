"""The judge micro-batcher: own rows per caller, packing, back-pressure, a failing batch isolated.

A fake judge (μ from each pair's pixel values) stands in for the model, and a gate holds its worker
inside a call so that the queue's state is known when the next requests arrive: no timing, no sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.verify import Judge, JudgeConfigError, JudgeError
from models.verify.base import Pair
from models.verify.batcher import JudgeBatcher, JudgeBusyError, JudgeClosedError

POISON = 250  # a crop of this value makes the fake judge fail


def crop(value: int) -> np.ndarray:
    return np.full((8, 4, 3), value, np.uint8)


class FakeJudge(Judge):
    """μ = (query value + 2 × candidate value) / 1000, recorded per call; a POISON crop fails the call."""

    name = "fake"

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.gate = gate
        self.closed = 0

    def close(self) -> None:
        self.closed += 1

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        self.calls.append(len(pairs))
        values = [(int(q[0, 0, 0]), int(c[0, 0, 0])) for q, c in pairs]
        if any(POISON in pair for pair in values):
            raise JudgeError("the device ran out of memory")
        return np.array([(q + 2 * c) / 1000 for q, c in values])


def expected_mu(query: int, candidates: Sequence[int]) -> np.ndarray:
    return np.array([(query + 2 * c) / 1000 for c in candidates], np.float32)


def hold_worker(batcher: JudgeBatcher, judge: FakeJudge, pairs: int = 1) -> Future:
    """Submit one request and wait until the worker is inside the judge with it (blocked on the gate)."""
    future = batcher.submit([(crop(1), crop(1))] * pairs)
    judge.entered.wait()
    return future


def test_concurrent_callers_each_get_their_own_rows() -> None:
    judge = FakeJudge()
    with JudgeBatcher(judge, max_batch_pairs=16, max_wait_ms=2) as batcher:
        lists = [(q, [q + 1 + k for k in range(1 + q % 5)]) for q in range(40)]

        def one(item: tuple[int, list[int]]) -> np.ndarray:
            query, candidates = item
            return batcher.score_shortlist(crop(query), [crop(c) for c in candidates])

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, lists))
    for (query, candidates), mu in zip(lists, results, strict=True):
        np.testing.assert_allclose(mu, expected_mu(query, candidates), atol=1e-6)
    assert sum(judge.calls) == sum(len(c) for _, c in lists) and max(judge.calls) <= 16


def test_waiting_requests_are_packed_into_one_judge_call() -> None:
    gate = threading.Event()
    judge = FakeJudge(gate)
    with JudgeBatcher(judge, max_batch_pairs=9, max_wait_ms=60_000) as batcher:
        first = hold_worker(batcher, judge, pairs=9)  # a full batch: the worker need not wait for more
        sizes = [3, 3, 3, 3, 9]
        futures = [batcher.submit([(crop(10 + i), crop(20 + k)) for k in range(size)])
                   for i, size in enumerate(sizes)]
        gate.set()
        assert first.result().shape == (9,)
        for i, (size, future) in enumerate(zip(sizes, futures, strict=True)):
            np.testing.assert_allclose(future.result(), expected_mu(10 + i, range(20, 20 + size)), atol=1e-6)
    # 3 + 3 + 3 fill a batch of 9 at once; the 4th's batch closes when the next request (9) cannot join it
    assert judge.calls == [9, 9, 3, 9]
    assert batcher.stats.batches == 4 and batcher.stats.largest_batch_pairs == 9


def test_a_failing_batch_fails_only_its_own_request() -> None:
    gate = threading.Event()
    judge = FakeJudge(gate)
    with JudgeBatcher(judge, max_batch_pairs=100, max_wait_ms=0) as batcher:
        first = hold_worker(batcher, judge)
        good = batcher.submit([(crop(2), crop(3)), (crop(2), crop(4))])
        bad = batcher.submit([(crop(5), crop(POISON))])
        other = batcher.submit([(crop(6), crop(7))])
        gate.set()
        first.result()
        np.testing.assert_allclose(good.result(), expected_mu(2, [3, 4]), atol=1e-6)
        np.testing.assert_allclose(other.result(), expected_mu(6, [7]), atol=1e-6)
        with pytest.raises(JudgeError, match="out of memory"):
            bad.result()
        # the packed call failed, then each request was retried alone; the worker still serves
        assert judge.calls == [1, 4, 2, 1, 1] and batcher.stats.failed_batches == 1
        np.testing.assert_allclose(batcher.score_pairs([(crop(8), crop(9))]), expected_mu(8, [9]), atol=1e-6)


def test_a_full_queue_refuses_new_pairs_instead_of_growing() -> None:
    gate = threading.Event()
    judge = FakeJudge(gate)
    batcher = JudgeBatcher(judge, max_batch_pairs=4, max_queue_pairs=4, put_timeout_s=0)
    try:
        first = hold_worker(batcher, judge)
        waiting = batcher.submit([(crop(2), crop(c)) for c in range(4)])  # fills the queue
        with pytest.raises(JudgeBusyError, match="queue full: 4 pairs waiting, limit 4"):
            batcher.submit([(crop(3), crop(4))])
        gate.set()
        first.result()
        np.testing.assert_allclose(waiting.result(), expected_mu(2, range(4)), atol=1e-6)
        np.testing.assert_allclose(batcher.submit([(crop(3), crop(4))]).result(), expected_mu(3, [4]), atol=1e-6)
    finally:
        gate.set()
        batcher.close()


def test_closing_fails_the_waiting_requests_and_later_submits() -> None:
    gate = threading.Event()
    judge = FakeJudge(gate)
    batcher = JudgeBatcher(judge)
    first = hold_worker(batcher, judge)
    waiting = batcher.submit([(crop(2), crop(3))])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    with pytest.raises(JudgeClosedError):
        waiting.result()
    gate.set()
    closer.join()
    assert first.result().shape == (1,)  # the batch in flight still finished
    with pytest.raises(JudgeClosedError):
        batcher.submit([(crop(2), crop(3))])


def test_a_batcher_closes_the_judge_it_owns_and_only_that() -> None:
    for owns in (False, True):
        judge = FakeJudge()
        with JudgeBatcher(judge, owns_judge=owns) as batcher:
            batcher.score_pairs([(crop(1), crop(2))])
        assert judge.closed == int(owns)


def test_bad_input_is_the_callers_error_at_once_and_empty_is_empty() -> None:
    judge = FakeJudge()
    with JudgeBatcher(judge) as batcher:
        with pytest.raises(InvalidInputError, match="pair 0 candidate: expected dtype uint8"):
            batcher.submit([(crop(1), crop(1).astype(np.float32))])
        assert batcher.score_shortlist(crop(1), []).shape == (0,)
        assert batcher.stats.requests == 0 and judge.calls == []


def test_it_stands_in_for_the_judge_it_wraps() -> None:
    judge = FakeJudge()
    judge.swap = True
    with JudgeBatcher(judge) as batcher:
        assert batcher.fingerprint == judge.fingerprint and batcher.swap is False
        mu = batcher.candidate_mu([crop(1), crop(2)], [[crop(3)], [crop(4), crop(5)], []])
        assert mu[:2] == pytest.approx(list(judge.candidate_mu([crop(1), crop(2)], [[crop(3)], [crop(4), crop(5)]])))
        assert np.isnan(mu[2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_pairs": 0}, "max_batch_pairs"),
        ({"max_queue_pairs": True}, "max_queue_pairs"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"put_timeout_s": float("nan")}, "put_timeout_s"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(JudgeConfigError, match=message):
        JudgeBatcher(FakeJudge(), **kwargs)
