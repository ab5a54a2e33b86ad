"""A micro-batcher: pairs from concurrent callers packed into one judge call, with back-pressure.

The hub verifies many short lists at once (one worker thread per edge request). Each alone is a
small batch (a query crop against ten candidates' reference crops); a GPU judge is much faster on
fewer, larger batches. `JudgeBatcher` queues each caller's pairs, and one worker thread takes the
oldest request, waits at most `max_wait_ms` for more, and scores up to `max_batch_pairs` pairs from
as many requests as fit in ONE `score_pairs` call; each caller's future gets exactly its own rows.

- Back-pressure: at most `max_queue_pairs` pairs wait; a submit beyond that waits `put_timeout_s`
  for room and then raises `JudgeBusyError` (the queue never grows without bound).
- Isolation: a batch that fails is retried request by request, so a bad request (or one too large
  for the device) fails only its own future; the worker keeps serving.
- Inputs are validated at submit, so a bad image is the caller's `InvalidInputError` at once.

`JudgeBatcher` is itself a `Judge` (same fingerprint, swap and text mode as the judge it wraps), so it
can stand wherever a judge does, e.g. in `cloud.verification.JudgeVerifier`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from models.verify.base import Judge, JudgeConfigError, JudgeError, Pair
from models.verify.prompt import validate_pairs


class JudgeBusyError(JudgeError):
    """The micro-batcher's queue stayed full for the submit's timeout (back-pressure)."""


class JudgeClosedError(JudgeError):
    """The micro-batcher was closed before (or while) the request was scored."""


@dataclass
class BatcherStats:
    requests: int = 0
    pairs: int = 0
    batches: int = 0  # judge calls made for packed batches (retries of a failed batch not counted)
    failed_batches: int = 0
    largest_batch_pairs: int = 0


@dataclass
class _Request:
    pairs: list[Pair]
    future: Future


class JudgeBatcher(Judge):
    """Packs concurrent callers' pairs into few `judge.score_pairs` calls (see the module docstring).

    Args:
        judge: the judge that scores the packed batches (its own `batch_size` splits them further).
        max_batch_pairs: most pairs per judge call; a larger single request is scored alone.
        max_wait_ms: how long the oldest waiting request waits for others to join its batch.
        max_queue_pairs: most pairs waiting (not yet taken by the worker) before submits are refused.
        put_timeout_s: how long a submit waits for room in a full queue before `JudgeBusyError`.
        owns_judge: close `judge` when the batcher closes (it was built for the batcher alone).
    """

    def __init__(self, judge: Judge, *, max_batch_pairs: int = 64, max_wait_ms: float = 5.0,
                 max_queue_pairs: int = 2048, put_timeout_s: float = 0.0, owns_judge: bool = False) -> None:
        super().__init__(swap=False)  # the wrapped judge swaps (both orders then share its batches)
        for option, value in (("max_batch_pairs", max_batch_pairs), ("max_queue_pairs", max_queue_pairs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JudgeConfigError(f"{option}: expected a positive int, got {value!r}")
        for option, value in (("max_wait_ms", max_wait_ms), ("put_timeout_s", put_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise JudgeConfigError(f"{option}: expected a number >= 0, got {value!r}")
        if not isinstance(judge, Judge):
            raise JudgeConfigError(f"judge: expected a models.verify.Judge, got {type(judge).__name__}")
        self.judge = judge
        self.owns_judge = bool(owns_judge)
        self.name = judge.name
        self.supports_text = judge.supports_text
        self.text_unsupported_reason = judge.text_unsupported_reason
        self.max_batch_pairs = max_batch_pairs
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_pairs = max_queue_pairs
        self.put_timeout_s = float(put_timeout_s)
        self.stats = BatcherStats()
        self._queue: deque[_Request] = deque()
        self._queued_pairs = 0
        self._closed = False
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._serve, name="judge-batcher", daemon=True)
        self._worker.start()

    @property
    def fingerprint(self) -> str:
        return self.judge.fingerprint

    # -- callers ---------------------------------------------------------------------------------

    def submit(self, pairs: Sequence[Pair], timeout_s: float | None = None) -> Future:
        """A future of the (N,) float32 μ of `pairs`; `JudgeBusyError` when the queue stays full for
        `timeout_s` (default `put_timeout_s`), `InvalidInputError` for a bad pair, at once."""
        validate_pairs(pairs)
        return self._enqueue([(query, candidate) for query, candidate in pairs], timeout_s)

    def _enqueue(self, pairs: list[Pair], timeout_s: float | None = None) -> Future:
        """`submit` for pairs already validated (`Judge.score_pairs` checked them)."""
        request = _Request(pairs, Future())
        if not request.pairs:
            request.future.set_result(np.zeros((0,), np.float32))
            return request.future
        wait_s = self.put_timeout_s if timeout_s is None else timeout_s
        count = len(request.pairs)
        # a request larger than the whole queue is let in when the queue is empty, else it could never be
        with self._changed:
            deadline = time.monotonic() + wait_s
            while not self._closed and self._queued_pairs and self._queued_pairs + count > self.max_queue_pairs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JudgeBusyError(f"judge queue full: {self._queued_pairs} pairs waiting, "
                                         f"limit {self.max_queue_pairs}; {count} more refused")
                self._changed.wait(remaining)
            if self._closed:
                raise JudgeClosedError("the judge batcher is closed")
            self._queue.append(request)
            self._queued_pairs += count
            self.stats.requests += 1
            self.stats.pairs += count
            self._changed.notify_all()
        return request.future

    def _score(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self._enqueue(list(pairs)).result()

    def _score_text(self, description: str, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.judge.score_text(description, images)  # rare (operator searches): not batched

    def close(self) -> None:
        """Stop the worker after the batch in flight; waiting requests fail with `JudgeClosedError`.
        The wrapped judge is closed too when the batcher owns it (`owns_judge`)."""
        with self._changed:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            self._queued_pairs = 0
            self._changed.notify_all()
        for request in waiting:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(JudgeClosedError("the judge batcher was closed before scoring"))
        if threading.current_thread() is not self._worker:
            self._worker.join()
        if self.owns_judge:
            self.judge.close()

    # -- the worker ------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Request] | None:
        """The oldest request plus those that join within `max_wait_s`, up to `max_batch_pairs` pairs."""
        with self._changed:
            while not self._queue and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            batch = [self._queue.popleft()]
            pairs = len(batch[0].pairs)
            deadline = time.monotonic() + self.max_wait_s
            while pairs < self.max_batch_pairs and not self._closed:
                if self._queue:
                    if pairs + len(self._queue[0].pairs) > self.max_batch_pairs:
                        break
                    batch.append(self._queue.popleft())
                    pairs += len(batch[-1].pairs)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            self._queued_pairs -= pairs
            self._changed.notify_all()  # room for submits waiting on a full queue
        return batch

    def _run(self, batch: list[_Request]) -> None:
        live = [request for request in batch if request.future.set_running_or_notify_cancel()]
        if not live:
            return
        pairs = [pair for request in live for pair in request.pairs]
        self.stats.batches += 1
        self.stats.largest_batch_pairs = max(self.stats.largest_batch_pairs, len(pairs))
        try:
            mu = self.judge.score_pairs(pairs)
        except BaseException as exc:  # any judge failure goes to its callers (none waits for ever)
            self.stats.failed_batches += 1
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            for request in live:  # retry alone: only the request that fails by itself fails
                try:
                    request.future.set_result(self.judge.score_pairs(request.pairs))
                except BaseException as alone_exc:
                    request.future.set_exception(alone_exc)
            return
        start = 0
        for request in live:
            request.future.set_result(mu[start:start + len(request.pairs)])
            start += len(request.pairs)
