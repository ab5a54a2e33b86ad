"""The edge's embedding worker: closed tracklets in; stored vectors, recall and short lists out.

`EmbedWorker` owns one thread and a queue. The frame loop only hands it closed tracklets
(`submit`), so embedding never stalls decoding. The thread takes what is queued — tracklets of
any camera — up to `batch_size` crops, waiting at most `max_wait_s` for company after the first,
embeds those crops in one call, and for each tracklet, in submission order:

1. aggregates its crop vectors, quality-weighted (`edge.tracklets.aggregate`);
   with an `attributes` reader (issue 15), the same crops then go through the attribute model in one
   call and each tracklet's profiles are aggregated (`aggregate_profiles`); with a `text_image` model,
   through its image tower, aggregated like the Re-ID vectors; a failure of either leaves the tracklet
   without attributes or text-image vector (logged), never unstored;
2. stores tracklet, best crops, vectors and attributes in the `TrackletStore` (one transaction);
3. recalls it against the gallery (a `Recaller`: the synced `EdgeGallery`, or `MemoryGallery`, both in
   `edge.gallery`): an ordering distance and the plain cosine distance per gallery entry;
4. applies the `ShortListPolicy` on P(same), the cosine distance through the edge model's calibration
   (the policy's, else the zoo's: `models.calibration.calibration_for`), the gallery's watchlist
   never crowded out;
5. when candidates remain, puts a `ShortList` in the outbox (kind ``"short_list"``) under the
   key ``shortlist/<edge id>/<tracklet id>/g<gallery version>``, built by `edge.uplink.messages` (the
   key and message the hub link's own short lists get), so redoing the work puts nothing twice.
   With `send_unmatched`, a tracklet no candidate passed for goes up too, with an empty candidate
   list: a hub that opens new identities (``DecisionPolicy(allow_new_identities=True)``) then gives
   everyone an automatic identity and a sighting, the start of enrolment from a sighting.

Restart after a crash: a tracklet already stored closed with a vector of this embedder is not
embedded or written again (`reuse_stored`); its stored vector is recalled and the (idempotent)
outbox put is redone, which re-creates a short list lost between the store write and the put.

Priority: on Linux the worker thread lowers its own scheduling priority (`nice`, default +10), so it
mostly runs on CPU time the frame loop leaves idle (Ultralytics' single-threaded pre/post-processing
and tracking leave one core of two idle for part of every frame) instead of slowing detection; it
still gets about a tenth of a busy core, so it keeps up and never starves.

Determinism: vectors must not depend on which tracklets share a batch. OpenVINO on the CPU with
one inference thread gives bit-identical rows for any batch composition (with two threads a
single-crop batch differs by ~5e-6), so the edge builds its embedder with ``num_threads=1`` —
which also keeps it from fighting the detector for cores.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from edge.settings import UplinkSettings as UplinkSettings  # re-exported: defined once, in edge.settings
from edge.shortlist import Candidate, ShortListPolicy
from edge.storage.store import TrackletStore, UnknownIdError
from edge.tracklets import ClosedTracklet, aggregate
from edge.uplink.messages import SHORT_LIST_KIND as SHORT_LIST_KIND  # re-exported: the outbox kind
from edge.uplink.messages import short_list_key as short_list_key  # re-exported
from edge.uplink.messages import short_list_payload
from edge.uplink.outbox import Outbox
from models.attributes.types import AttributeProfile
from models.calibration import calibration_for
from models.errors import CrossviewError, InvalidInputError
from models.types import Crop, Embeddings, Tracklet

log = logging.getLogger(__name__)


@runtime_checkable
class Recaller(Protocol):
    """What the worker needs from a gallery: `EdgeGallery` (synced from the hub) or `MemoryGallery`."""

    @property
    def version(self) -> int: ...

    def recall_scored(self, vector: np.ndarray | Embeddings) -> tuple[Sequence[str], np.ndarray, np.ndarray]:
        """Per gallery entry: identity id, ordering distance (re-ranked or cosine; lower is closer) and
        plain cosine distance to `vector` (one vector: (D,), (1, D), or `Embeddings` whose fingerprint
        is checked)."""
        ...

    def watchlist_thresholds(self) -> Mapping[str, float]: ...


@runtime_checkable
class CropEmbedder(Protocol):
    """`models.embed.Embedder`, as far as the worker uses it."""

    fingerprint: str

    def embed(self, images: Sequence[np.ndarray]) -> Embeddings: ...


@runtime_checkable
class AttributeReader(Protocol):
    """`models.attributes.recognizer.AttributeRecognizer`, as far as the worker uses it."""

    def recognize(self, crops_bgr: Sequence[np.ndarray]) -> list[AttributeProfile]: ...


@runtime_checkable
class TextImageReader(Protocol):
    """`models.attributes.text_image.TextImageEncoder`, as far as the worker uses it: its image tower and
    how many of a tracklet's best crops go through it (an image tower costs many Re-ID models)."""

    image: CropEmbedder
    crops: int


@dataclass(frozen=True)
class TrackletResult:
    """What became of one closed tracklet (handed to the worker's `on_result`)."""

    tracklet_id: str
    camera_id: str
    candidates: tuple[Candidate, ...]
    short_list_key: str | None  # None: no short list (no candidate passed the policy, and not `send_unmatched`)
    reused: bool  # found stored from an earlier run: not embedded or written again


@dataclass(frozen=True)
class WorkerStats:
    submitted: int = 0
    embedded: int = 0  # tracklets embedded and stored
    reused: int = 0  # tracklets found stored by an earlier run
    crops_embedded: int = 0
    batches: int = 0
    short_lists: int = 0
    uplink_bytes: int = 0  # bytes of short-list payloads put in the outbox
    failed: int = 0
    attributes_read: int = 0  # tracklets stored with attributes
    text_image_read: int = 0  # tracklets stored with a text-image vector
    queued: int = 0  # submitted, not finished


class WorkerStoppedError(CrossviewError):
    """A tracklet was submitted to a worker that has been closed."""


class EmbedWorker:
    """Embeds, stores, recalls and short-lists closed tracklets on its own thread; see the module docstring.

    `submit` blocks only when `queue_size` tracklets are waiting (back-pressure, never a drop).
    `on_result` is called on the worker thread after each tracklet is done (e.g. to wake a hub link).
    `clock` gives a short list's `created_at`; None (the default) uses the tracklet's end time, as
    `edge.uplink.messages.short_list_payload` does, so a replay rebuilds byte-identical short lists.
    `send_unmatched` also sends tracklets without candidates (an empty short list) to the hub.
    `attributes` (an `AttributeRecognizer`, used only from the worker thread) reads each tracklet's
    attributes from the crops it embeds; None: tracklets are stored without attributes. `text_image` (a
    `TextImageEncoder`; needs `attributes`) stores the image-tower vector of each tracklet whose attributes
    were read (the others are never searched by text), under that model's fingerprint.
    """

    def __init__(self, *, edge_id: str, embedder: CropEmbedder, store: TrackletStore, outbox: Outbox,
                 gallery: Recaller, policy: ShortListPolicy | None = None, batch_size: int = 32,
                 max_wait_s: float = 0.05, queue_size: int = 256, uplink: UplinkSettings | None = None,
                 clock: Callable[[], float] | None = None, reuse_stored: bool = True, nice: int | None = 10,
                 on_result: Callable[[TrackletResult], None] | None = None, send_unmatched: bool = False,
                 attributes: AttributeReader | None = None, text_image: TextImageReader | None = None) -> None:
        if attributes is not None and not isinstance(attributes, AttributeReader):
            raise InvalidInputError(f"attributes: expected an attribute recognizer, got {type(attributes).__name__}")
        if text_image is not None and not (isinstance(text_image, TextImageReader)
                                           and isinstance(text_image.image, CropEmbedder)):
            raise InvalidInputError(f"text_image: expected a text-image model, got {type(text_image).__name__}")
        if text_image is not None and attributes is None:
            raise InvalidInputError("text_image: text search ranks tracklets by their attributes first; a worker "
                                    "that reads no attributes would store image-tower vectors nothing searches")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"embed_batch_size: expected an integer >= 1, got {batch_size!r}")
        if not (max_wait_s >= 0 and math.isfinite(max_wait_s)):
            raise InvalidInputError(f"max_wait_s: expected a finite number >= 0, got {max_wait_s!r}")
        if queue_size < 1:
            raise InvalidInputError(f"queue_size: expected >= 1, got {queue_size!r}")
        self.edge_id = edge_id
        self.embedder = embedder
        self.store = store
        self.outbox = outbox
        self.gallery = gallery
        self.policy = policy if policy is not None else ShortListPolicy()
        self.calibration = self.policy.calibration or calibration_for(embedder.fingerprint, "cosine_distance")
        if self.calibration.model_fingerprint != embedder.fingerprint:
            raise InvalidInputError(f"calibration: it is for model {self.calibration.model_fingerprint!r}, this "
                                    f"edge runs {embedder.fingerprint!r}")
        if not self.calibration.fitted:
            log.warning("no P(same) calibration for %s: P(same) is read as 1 - cosine distance (uncalibrated); "
                        "fit one with `crossview calibrate`", embedder.fingerprint)
        self.batch_size = batch_size
        self.max_wait_s = float(max_wait_s)
        self.queue_size = queue_size
        self.uplink = uplink if uplink is not None else UplinkSettings()
        self.clock = clock
        self.reuse_stored = reuse_stored
        self.on_result = on_result
        self.nice = nice
        self.send_unmatched = bool(send_unmatched)
        self.attributes = attributes
        self.text_image = text_image
        self._queue: deque[ClosedTracklet] = deque()
        self._cond = threading.Condition()
        self._unfinished = 0
        self._stopping = False
        self._counts = {name: 0 for name in WorkerStats.__dataclass_fields__ if name != "queued"}
        self._policy_cache: tuple[int, ShortListPolicy] | None = None
        self._thread = threading.Thread(target=self._run, name="crossview-embed", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> WorkerStats:
        with self._cond:
            return WorkerStats(**self._counts, queued=self._unfinished)

    def submit(self, tracklet: ClosedTracklet) -> None:
        if not isinstance(tracklet, ClosedTracklet):
            raise InvalidInputError(f"tracklet: expected a ClosedTracklet, got {type(tracklet).__name__}")
        with self._cond:
            while len(self._queue) >= self.queue_size and not self._stopping:
                self._cond.wait()
            if self._stopping:
                raise WorkerStoppedError(f"tracklet {tracklet.tracklet_id}: the embedding worker is closed")
            self._queue.append(tracklet)
            self._unfinished += 1
            self._counts["submitted"] += 1
            self._cond.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted tracklet is done; False if `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Finish the queued work, then stop the thread; False if it did not finish within `timeout`."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread

    def _next_batch(self) -> list[ClosedTracklet] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            crops = len(batch[0].crops)
            deadline = time.monotonic() + self.max_wait_s
            while crops < self.batch_size:
                if not self._queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stopping:
                        break
                    self._cond.wait(remaining)
                    continue
                if crops + len(self._queue[0].crops) > self.batch_size:
                    break
                batch.append(self._queue.popleft())
                crops += len(batch[-1].crops)
            self._cond.notify_all()  # room in the queue for blocked submitters
            return batch

    def _run(self) -> None:
        if self.nice and sys.platform.startswith("linux"):  # a thread id names just this thread on Linux
            try:
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.nice))
            except OSError as exc:
                log.debug("embedding worker: cannot lower its priority (%s)", exc)
        while (batch := self._next_batch()) is not None:
            try:
                self._process(batch)
            except Exception:  # never let the thread die: submitters would block forever
                log.exception("embedding worker: a batch of %d tracklets failed", len(batch))
                self._count(failed=len(batch))
            finally:
                with self._cond:
                    self._unfinished -= len(batch)
                    self._cond.notify_all()

    def _count(self, **deltas: int) -> None:
        with self._cond:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def _process(self, batch: list[ClosedTracklet]) -> None:
        fingerprint = self.embedder.fingerprint
        stored = {t.tracklet_id: self._stored_vector(t, fingerprint) for t in batch} if self.reuse_stored else {}
        todo = [t for t in batch if stored.get(t.tracklet_id) is None]
        vectors: dict[str, Embeddings] = {}
        if todo:
            try:
                vectors = self._embed(todo)
            except Exception:  # embed the tracklets one by one, so that only a culprit fails
                log.warning("embedding worker: a batch of %d tracklets failed; trying them one by one",
                            len(todo), exc_info=True)
                for t in todo if len(todo) > 1 else []:
                    try:
                        vectors.update(self._embed([t]))
                    except Exception:
                        log.exception("embedding worker: tracklet %s of camera %r cannot be embedded",
                                      t.tracklet_id, t.camera_id)
        embedded = [t for t in todo if t.tracklet_id in vectors]
        profiles = self._read_attributes(embedded)
        text_image = self._text_image_vectors([t for t in embedded if t.tracklet_id in profiles])  # searchable ones
        for t in batch:
            reused = stored.get(t.tracklet_id)
            vector = reused if reused is not None else vectors.get(t.tracklet_id)
            if vector is None:
                self._count(failed=1)
                continue
            try:
                self._finish(t, vector, reused is not None, profiles.get(t.tracklet_id),
                             text_image.get(t.tracklet_id))
            except Exception:
                log.exception("embedding worker: tracklet %s of camera %r failed", t.tracklet_id, t.camera_id)
                self._count(failed=1)

    def _embed(self, tracklets: list[ClosedTracklet], embedder: CropEmbedder | None = None,
               max_crops: int | None = None) -> dict[str, Embeddings]:
        """One call of `embedder` (default: the Re-ID embedder) for every crop of `tracklets` (their best
        `max_crops`; None: all); each tracklet's quality-weighted vector."""
        embeddings = (embedder or self.embedder).embed([c.image for t in tracklets for c in t.crops[:max_crops]])
        if embedder is None:
            self._count(batches=1, crops_embedded=len(embeddings))
        vectors, start = {}, 0
        for t in tracklets:
            count = len(t.crops[:max_crops])
            part = Embeddings(embeddings.vectors[start:start + count], embeddings.model_fingerprint)
            vectors[t.tracklet_id] = aggregate(part, t.qualities[:count])
            start += count
        return vectors

    def _read_attributes(self, tracklets: list[ClosedTracklet]) -> dict[str, AttributeProfile]:
        """Each tracklet's aggregated attribute profile, from one recognizer call over all their crops."""
        if self.attributes is None or not tracklets:
            return {}
        from models.attributes.recognizer import aggregate_profiles

        try:
            profiles = self.attributes.recognize([c.image for t in tracklets for c in t.crops])
            out, start = {}, 0
            for t in tracklets:
                out[t.tracklet_id] = aggregate_profiles(profiles[start:start + len(t.crops)])
                start += len(t.crops)
            return out
        except Exception:
            log.exception("embedding worker: attributes of %d tracklets cannot be read; stored without them",
                          len(tracklets))
            return {}

    def _text_image_vectors(self, tracklets: list[ClosedTracklet]) -> dict[str, Embeddings]:
        """Each tracklet's aggregated image-tower vector of the text-image model ({} without one, or on failure)."""
        if self.text_image is None or not tracklets:
            return {}
        try:
            return self._embed(tracklets, self.text_image.image, self.text_image.crops)
        except Exception:
            log.exception("embedding worker: text-image vectors of %d tracklets cannot be made; stored without them",
                          len(tracklets))
            return {}

    def _stored_vector(self, tracklet: ClosedTracklet, fingerprint: str) -> Embeddings | None:
        try:
            record = self.store.get_tracklet(tracklet.tracklet_id)
        except UnknownIdError:
            return None
        if not record.closed or fingerprint not in record.fingerprints or not record.crop_paths:
            return None
        return self.store.vector(tracklet.tracklet_id, fingerprint)

    def _finish(self, closed: ClosedTracklet, vector: Embeddings, reused: bool,
                profile: AttributeProfile | None, text_image: Embeddings | None = None) -> None:
        tracklet = closed.to_tracklet(vector)
        if not reused:
            self.store.upsert_tracklet(tracklet, closed=True, attributes=profile,
                                       extra_vectors=() if text_image is None else (text_image,))
            self._count(attributes_read=int(profile is not None), text_image_read=int(text_image is not None))
        elif self.attributes is not None:
            profile = self.store.attributes(tracklet.tracklet_id)
        version = int(self.gallery.version)
        ids, order, cosine = self.gallery.recall_scored(vector)
        candidates = (self._policy(version).decide(ids, order, self.calibration.p_same(cosine), cosine)
                      if len(ids) else [])
        key = None
        if candidates or self.send_unmatched:
            key, payload = self._short_list(tracklet, candidates, version, profile)
            self.outbox.put(SHORT_LIST_KIND, payload, key)
            self._count(short_lists=1, uplink_bytes=len(payload))
        self._count(**{"reused" if reused else "embedded": 1})
        if self.on_result is not None:
            try:
                self.on_result(TrackletResult(tracklet.tracklet_id, tracklet.camera_id, tuple(candidates), key,
                                              reused))
            except Exception:
                log.exception("embedding worker: on_result failed for tracklet %s", tracklet.tracklet_id)

    def _policy(self, version: int) -> ShortListPolicy:
        """The configured policy with the gallery's watchlist added, rebuilt per version."""
        if self._policy_cache is None or self._policy_cache[0] != version:
            policy = self.policy.with_watchlist({*self.policy.watchlist, *self.gallery.watchlist_thresholds()})
            self._policy_cache = (version, policy)
        return self._policy_cache[1]

    def _short_list(self, tracklet: Tracklet, candidates: list[Candidate], version: int,
                    profile: AttributeProfile | None) -> tuple[str, bytes]:
        return short_list_entry(tracklet, candidates, edge_id=self.edge_id,
                                model_fingerprint=self.embedder.fingerprint, gallery_version=version,
                                uplink=self.uplink, max_bytes=self.outbox.max_payload_bytes,
                                created_s=tracklet.end_s if self.clock is None else self.clock(), attributes=profile)


def short_list_entry(tracklet: Tracklet, candidates: Sequence[Candidate | tuple[str, float]], *, edge_id: str,
                     model_fingerprint: str, gallery_version: int, uplink: UplinkSettings, max_bytes: int,
                     created_s: float | None = None, attributes: AttributeProfile | None = None) -> tuple[str, bytes]:
    """(outbox key, payload) of a tracklet's short list as the worker queues it: its best `uplink.crops`
    crops scaled to `uplink.max_height` and encoded at `uplink.jpeg_quality`, the worst dropped while the
    message is over `max_bytes`; `created_s` defaults to the tracklet's end."""
    crops = tuple(_scaled(c, uplink.max_height) for c in tracklet.crops[: uplink.crops])
    return short_list_payload(
        Tracklet(tracklet.tracklet_id, tracklet.camera_id, tracklet.track_id, tracklet.start_s, tracklet.end_s,
                 crops, tracklet.embedding),
        candidates, edge_id=edge_id, model_fingerprint=model_fingerprint, gallery_version=gallery_version,
        created_s=created_s, max_bytes=max_bytes, jpeg_quality=uplink.jpeg_quality, attributes=attributes)


def _scaled(crop: Crop, max_height: int) -> Crop:
    h, w = crop.image.shape[:2]
    if h <= max_height:
        return crop
    size = (max(1, round(w * max_height / h)), max_height)
    image = cv2.resize(crop.image, size, interpolation=cv2.INTER_AREA)
    return Crop(image, crop.camera_id, crop.timestamp_s, crop.xyxy, crop.confidence, crop.quality)
