"""Short list → verdict → sighting: stage two for one tracklet, exactly once per idempotency key.

`ShortListService.process` (blocking; the session runs it on a worker thread):

1. Claim the key in the store. Keys are the edge's own: the hub stores and deduplicates them per
   (authenticated edge, key), so no edge can make another's short list a duplicate. A key already
   decided answers DUPLICATE (nothing is done twice); a key another worker is processing answers
   RETRY; a claim older than `lease_s` (its worker died) is taken over, so a crash between receipt
   and verdict loses nothing: the edge still holds the short list in its outbox (no HubAck was
   sent) and re-sends it.
2. Verify the candidates the hub knows with the `Verifier` (judge + fusion + decision).
3. A new identity (when the policy allows) gets an id derived from the edge and key, so a re-processed
   short list never creates a second one; it is enrolled from the query crops.
4. In one transaction: the verdict, the sighting (confirmed, new identity, or — when no candidate was
   confirmed and no new identity allowed — an "unknown" sighting without identity, so nobody seen
   vanishes; the best query crop is saved under a name derived from the key), an alert when due, and
   the Verdict message queued for the edge under its next sequence number. Only then is the short
   list acknowledged (OK).

Scores are P(same) in [0, 1] (`models.scores`): the verifier's fused `p_same` of the confirmed
identity, and each stage's own. Alerts: a confirmed sighting of a watchlist identity whose `p_same`
reaches the identity's watch threshold raises one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cloud.alerts import Alert, AlertFeed
from cloud.crops import CropFiles
from cloud.gallery import Gallery
from cloud.store import HubStore, NewSighting, ShortListSummary, StoreError, VerdictRecord
from cloud.verification import CandidateEvidence, Verifier, VerifyRequest, VerifyResult
from cloud.wire import ShortListInput, verdict_payload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShortListOutcome:
    status: Literal["ok", "duplicate", "retry"]
    verdict: VerdictRecord | None = None
    sequence: int | None = None  # of the queued Verdict message
    sighting_id: int | None = None
    alert_id: int | None = None
    message: str = ""


_NO_SCORES: tuple[None, None, None] = (None, None, None)


def result_scores(result: VerifyResult) -> tuple[float | None, float | None, float | None]:
    """(p_same, stage1_p_same, stage2_p_same) of the result's identity. A verifier from before
    calibration has only `stage2_score` (the judge's 1 - μ): it stands in for both stage 2 and fused."""
    stage2 = getattr(result, "stage2_p_same", getattr(result, "stage2_score", None))
    p_same = getattr(result, "p_same", stage2)
    return _probability(p_same), _probability(getattr(result, "stage1_p_same", None)), _probability(stage2)


def _probability(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class ShortListService:
    """Processes short lists; thread-safe (verifier calls are serialised unless it says
    ``thread_safe = True``)."""

    def __init__(self, store: HubStore, gallery: Gallery, crops: CropFiles, verifier: Verifier, *,
                 alerts: AlertFeed | None = None, clock: Callable[[], float] = time.time,
                 lease_s: float = 120.0, max_reference_crops: int = 4, max_new_identity_crops: int = 4) -> None:
        self.store, self.gallery, self.crops, self.verifier = store, gallery, crops, verifier
        self.alerts = alerts or AlertFeed()
        self._clock = clock
        self.lease_s = lease_s
        self.max_reference_crops = max_reference_crops
        self.max_new_identity_crops = max_new_identity_crops
        self._verify_lock = None if getattr(verifier, "thread_safe", False) else threading.Lock()

    def process(self, item: ShortListInput) -> ShortListOutcome:
        now = self._clock()
        summary = ShortListSummary(
            item.idempotency_key, item.edge_id, item.camera_id, item.tracklet_id, item.track_id, item.start_s,
            item.end_s, len(item.jpegs), item.candidates, item.model_fingerprint, item.gallery_version,
            item.created_s)
        claim = self.store.claim_short_list(summary, now=now, lease_s=self.lease_s)
        if claim == "duplicate":
            return ShortListOutcome("duplicate")
        if claim == "in_progress":
            return ShortListOutcome("retry", message="this short list is being processed; retry later")
        try:
            return self._decide(item)
        except StoreError:
            record = self.store.get_short_list(item.idempotency_key, item.edge_id)
            if record is not None and record.status == "done":  # another worker took over and finished
                return ShortListOutcome("duplicate")
            self.store.release_short_list(item.idempotency_key, item.edge_id)
            raise
        except BaseException:
            self.store.release_short_list(item.idempotency_key, item.edge_id)
            raise

    def _verify(self, request: VerifyRequest) -> VerifyResult:
        if self._verify_lock is None:
            return self.verifier.verify(request)
        with self._verify_lock:
            return self.verifier.verify(request)

    def _decide(self, item: ShortListInput) -> ShortListOutcome:
        evidence = []
        known = self.store.get_identities(identity_id for identity_id, _ in item.candidates)
        for identity_id, distance in item.candidates:
            identity = known.get(identity_id)
            if identity is None or identity.deleted:
                continue
            references = self.gallery.reference_images(identity_id, self.max_reference_crops, version=identity.version)
            evidence.append(CandidateEvidence(identity_id, distance, references,
                                              item.cosine_distances.get(identity_id)))
        gallery = self.gallery.matrix(item.model_fingerprint)
        request = VerifyRequest(item.crops, item.query_vector, evidence, gallery, item.model_fingerprint)
        result = self._verify(request)

        scores = result_scores(result)
        identity_id = result.identity_id
        if result.outcome == "new_identity":
            identity_id = f"auto-{_digest(item.edge_id, item.idempotency_key)[:16]}"
            self.gallery.enroll(list(item.jpegs[: self.max_new_identity_crops]), identity_id=identity_id,
                                source="auto")
        elif result.outcome == "rejected":
            identity_id = None
        identity = self.store.get_identity(identity_id) if identity_id else None
        crop_path = self.crops.save("sightings", _digest(item.edge_id, item.idempotency_key)[:32], item.jpegs[0])
        # only a confirmed identity was compared with the tracklet: a new one is made of it, an unknown has none
        shown = scores if result.outcome == "confirmed" else _NO_SCORES
        sighting = NewSighting(identity_id, item.edge_id, item.camera_id, item.tracklet_id, item.start_s,
                               item.end_s, crop_path, *shown, item.idempotency_key)
        now = self._clock()
        verdict = VerdictRecord(item.idempotency_key, result.outcome, identity_id, scores[0] or 0.0,
                                self.verifier.name, dict(result.scores), now)
        payload = verdict_payload(item.idempotency_key, result.outcome, identity_id, scores[0] or 0.0,
                                  item.tracklet_id)
        threshold = identity.watchlist_threshold if identity is not None else None
        alert = (result.outcome == "confirmed" and threshold is not None and sighting.p_same is not None
                 and sighting.p_same >= threshold)
        done = self.store.complete_short_list(verdict, sighting, edge_id=item.edge_id, verdict_payload=payload,
                                              alert=alert, now=now)
        if done.alert_id is not None and identity is not None and done.sighting_id is not None:
            record = self.store.get_sighting(done.sighting_id)
            assert record is not None and threshold is not None
            self.alerts.publish(Alert(done.alert_id, identity.identity_id, identity.display_name, threshold, record))
        log.debug("short list %s: %s %s (P(same) %s)", item.idempotency_key, result.outcome, identity_id,
                  "-" if scores[0] is None else f"{scores[0]:.3f}")
        return ShortListOutcome("ok", verdict, done.sequence, done.sighting_id, done.alert_id)
