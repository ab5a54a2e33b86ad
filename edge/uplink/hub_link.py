"""The edge's one gRPC session with the hub (docs/architecture.md; the protocol is at the top of session.proto).

Threads (sync gRPC, no asyncio): `start()` runs a link thread that dials, sends Hello, waits for
Welcome and then reads hub messages, handling each in arrival order; per session a pump thread sends
outbox entries (at most `max_inflight` unacknowledged) and heartbeats. Everything the edge sends goes
through one queue that gRPC drains. Hub messages are handled inline, in order, so the cumulative
``EdgeAck.hub_sequence`` is always true; a search job therefore delays the acks read after it, by
the time it takes to rank the local store (milliseconds to a few seconds).

Outbox: every entry is sent once per session (``mark_sent``). HubAck OK or DUPLICATE: ``outbox.ack``.
REJECTED: the entry can never succeed, so it moves to a dead-letter table (``LinkState``: key, kind,
payload, reason) and is acked in the outbox, so the queue cannot clog; `dead_letters()` lists them.
RETRY: the entry stays in flight and is sent again after a backoff, in the same session. An entry
larger than the hub accepts (Welcome.max_message_bytes) stays in the outbox and is skipped, logged.
On a dropped stream every in-flight entry is requeued; the hub deduplicates by idempotency key.

Hub messages with a sequence are processed once: the last processed sequence is persisted
(``LinkState``) before it is acked, sent in Hello on reconnect, and a re-sent message at or below it
is only acked again. What each message does (deltas, verdicts, search jobs, short lists and their
idempotency keys) is in `edge.uplink.messages`.

Fatal (the link stops, `error` says why, nothing is retried): gRPC UNAUTHENTICATED or
PERMISSION_DENIED, a hub Error with code UNAUTHENTICATED, PERMISSION_DENIED or
FINGERPRINT_MISMATCH, and a Welcome that accepts another model. Anything else reconnects with
exponential backoff and jitter (delay × U(0.5, 1)), on a fresh channel each time so gRPC's own
reconnect backoff never delays a hub that is back; the backoff starts over after a session that
lasted at least `max_backoff_s`. A stream that ends with the hub's ``retry-after-ms`` trailer (an
overloaded hub: RESOURCE_EXHAUSTED) waits at least that long before the next attempt
(`edge.uplink.hub_channel.reconnect_delay`).

Replicas: with several hub addresses the link dials the next one after a session ends or fails, and
logs ``moved to hub replica ID at ADDRESS`` when a session opens with another replica than the last
(`edge.uplink.replicas`); `target` is the address in use, `LinkStats.moves` counts the moves.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import grpc

from edge.gallery import EdgeGallery
from edge.privacy import FaceBlurrer
from edge.storage.store import TrackletStore, UnknownIdError
from edge.text_search import TextEncoder
from edge.uplink import messages as wire
from edge.uplink.hub_channel import (
    CameraLoad,
    LinkStats,
    StreamSession,
    is_loopback,
    make_channel,
    read_pem,
    reconnect_delay,
    retry_hint_s,
)
from edge.uplink.link_state import DeadLetter, LinkState
from edge.uplink.outbox import Entry, Outbox
from edge.uplink.replicas import ReplicaRotation
from edge.uplink.settings import HubLinkSettings
from models.errors import CrossviewError, InvalidInputError
from protos.crossview.v1 import edge_to_hub_pb2, hub_to_edge_pb2, session_pb2, session_pb2_grpc

log = logging.getLogger(__name__)

_FATAL_STATUS = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_ENVELOPE_BYTES = 1024  # room for the EdgeMessage wrapper and gRPC framing
_GALLERY_SETTLE_S = 1.0  # after Welcome (or a delta), no delta for this long: the gallery is in sync


class HubLinkError(CrossviewError):
    """The hub refused this edge for good (credentials, model); the link has stopped."""


class HubLink:
    """The edge's session with the hub; see the module docstring.

    Args:
        settings: where the hub is, the credentials, TLS, face blur, timings and limits (checked there).
        edge_id: this edge's id, announced in Hello.
        cameras: camera ids or `CameraInfo` messages, announced in Hello.
        gallery, outbox, store: the edge's gallery, outbox and (for search jobs and verdicts) store.
        camera_stats: called for each heartbeat; returns per-camera numbers.
        on_verdict: called with each new Verdict after it is recorded (e.g. to raise an alert).
        text_image: the edge's text-image model (`TextImageEncoder`), used by text jobs; None: attributes alone.
    """

    def __init__(self, settings: HubLinkSettings, edge_id: str, cameras: Sequence[str | edge_to_hub_pb2.CameraInfo],
                 model_fingerprint: str, gallery: EdgeGallery, outbox: Outbox, store: TrackletStore | None = None,
                 *, camera_stats: Callable[[], Iterable[CameraLoad]] | None = None,
                 on_verdict: Callable[[hub_to_edge_pb2.Verdict], None] | None = None,
                 rng: random.Random | None = None, text_image: TextEncoder | None = None) -> None:
        if not isinstance(settings, HubLinkSettings):
            raise InvalidInputError(f"settings: expected HubLinkSettings, got {type(settings).__name__}")
        if not isinstance(edge_id, str) or not edge_id.strip() or "\n" in edge_id:
            raise InvalidInputError(f"edge_id: expected a non-empty one-line string, got {edge_id!r}")
        if model_fingerprint != gallery.model_fingerprint:
            raise InvalidInputError(f"model_fingerprint: expected the gallery's {gallery.model_fingerprint!r}, "
                                    f"got {model_fingerprint!r}")
        self.settings = s_ = settings
        self._replicas = ReplicaRotation(s_.targets)
        self.edge_id, self.site = edge_id, s_.site
        self.model_fingerprint = model_fingerprint
        self.gallery, self.outbox, self.store = gallery, outbox, store
        self.text_image = text_image  # the edge's text-image model for text jobs (None: attributes alone)
        self._token = s_.token
        self._cameras = wire.camera_infos(cameras)
        self._tls = tuple(read_pem(x) for x in (s_.root_certificates, s_.private_key, s_.certificate_chain))
        self.heartbeat_s, self.hello_timeout_s = float(s_.heartbeat_s), float(s_.hello_timeout_s)
        self.initial_backoff_s, self.max_backoff_s = float(s_.initial_backoff_s), float(s_.max_backoff_s)
        self.max_message_bytes, self.max_receive_bytes = int(s_.max_message_bytes), int(s_.max_receive_bytes)
        self.max_inflight, self.search_top_k = max(1, int(s_.max_inflight)), int(s_.search_top_k)
        self.keepalive_s = s_.keepalive_s
        self._blurrer = FaceBlurrer() if s_.blur_faces is True else (s_.blur_faces or None)
        self.blur_jpeg_quality = 75 if s_.blur_jpeg_quality is None else int(s_.blur_jpeg_quality)
        self._camera_stats, self._verdict_callback = camera_stats, on_verdict
        self._rng = rng or random.Random()
        default_state = Path(outbox.path).with_name(Path(outbox.path).stem + ".link.db")
        self.state = LinkState(s_.state_path or default_state)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._call: grpc.Future | None = None
        self._connected = False
        self._error: HubLinkError | None = None
        self._last_error: str | None = None
        self._counts = {"sessions": 0, "reconnects": 0, "sent": 0, "short_lists_sent": 0, "resent": 0, "acked": 0,
                        "dead_letters": 0, "moves": 0}
        self._beat_soon = threading.Event()
        self._hub_id = ""
        self._retry_hint: float | None = None  # the hub's retry-after hint for the next reconnect
        self._last_retry_hint: float | None = None
        if not any(self._tls) and not all(is_loopback(t) for t in s_.targets):
            log.warning("hub link to %s without TLS: the edge token travels in clear text", s_.target)

    # -- public API

    @property
    def target(self) -> str:
        """The hub address in use (or tried next); one of `settings.targets`."""
        return self._replicas.current

    def start(self) -> None:
        """Start the link thread (once)."""
        if self._thread is not None:
            raise CrossviewError("hub link: already started")
        self._thread = threading.Thread(target=self._run, name=f"hub-link-{self.edge_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the stream and stop the thread; unacknowledged entries stay in the outbox."""
        self._stop.set()
        self._wake.set()
        with self._cond:
            if self._call is not None:
                self._call.cancel()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def error(self) -> HubLinkError | None:
        """Why the link stopped by itself, or None."""
        return self._error

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once a session is open (Welcome received); False on timeout. Raises the fatal error, if any."""
        with self._cond:
            self._cond.wait_for(lambda: self._connected or self._error is not None or self._stop.is_set(), timeout)
            if self._error is not None:
                raise self._error
            return self._connected

    def stats(self) -> LinkStats:
        with self._cond:
            counts, connected, last_error, hub_id = dict(self._counts), self._connected, self._last_error, self._hub_id
            hint = self._last_retry_hint
        return LinkStats(connected=connected, outbox_depth=self.outbox.depth(), gallery_version=self.gallery.version,
                         last_hub_sequence=self.state.last_hub_sequence, last_error=last_error, hub_id=hub_id,
                         retry_hint_s=hint, gallery_identities=len(self.gallery.identities()),
                         hub_address=self.target, **counts)

    def dead_letters(self) -> list[DeadLetter]:
        return self.state.dead_letters()

    def notify(self) -> None:
        """Tell the link that entries were put in the outbox directly (it also polls every second)."""
        self._wake.set()

    def heartbeat_soon(self) -> None:
        """Send a heartbeat now rather than at the next interval (e.g. a camera changed state)."""
        self._beat_soon.set()
        self._wake.set()

    # -- the link thread

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            welcomed, began = False, time.monotonic()
            try:
                welcomed = self._session()
            except HubLinkError as exc:
                log.error("%s", exc)
                with self._cond:
                    self._error, self._last_error = exc, str(exc)
                    self._cond.notify_all()
                return
            except Exception as exc:  # a bug must not end the link: log it and reconnect
                log.exception("hub link session failed")
                self._note_error(f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                return
            attempt = 0 if welcomed and time.monotonic() - began >= self.max_backoff_s else attempt + 1
            self._replicas.advance()  # the next replica, if any: this one just failed or ended the session
            with self._cond:
                hint, self._retry_hint = self._retry_hint, None
            delay = reconnect_delay(attempt, initial_s=self.initial_backoff_s, max_s=self.max_backoff_s, rng=self._rng,
                                    hint_s=hint)
            log.info("hub link: reconnecting to %s in %.2f s%s", self.target, delay,
                     "" if hint is None else f" (the hub asked for {hint:.2f} s)")
            self._stop.wait(delay)
            with self._cond:
                self._counts["reconnects"] += 1

    def _session(self) -> bool:
        """One stream, from dial to its end; True when it got a Welcome."""
        self.outbox.requeue_inflight()
        sess = StreamSession(self.max_message_bytes, self.heartbeat_s)
        channel = self._channel()
        pump: threading.Thread | None = None
        welcomed, timed_out = False, threading.Event()
        timer: threading.Timer | None = None
        try:
            sess.send(wire.hello_envelope(self._hello()))
            call = session_pb2_grpc.EdgeHubStub(channel).Session(
                sess.requests(), metadata=(("authorization", f"Bearer {self._token}"),))
            with self._cond:
                self._call = call
                if self._stop.is_set():
                    call.cancel()
            timer = threading.Timer(self.hello_timeout_s, lambda: (timed_out.set(), call.cancel()))
            timer.start()
            first = next(call, None)
            timer.cancel()
            if first is None:
                raise ConnectionError("the hub closed the stream before Welcome")
            self._welcome(first, sess)
            welcomed = True
            pump = threading.Thread(target=self._pump, args=(sess,), name=f"hub-pump-{self.edge_id}", daemon=True)
            pump.start()
            for msg in call:
                self._dispatch(msg, sess)
            self._note_error("the hub ended the stream")
        except grpc.RpcError as exc:
            if self._stop.is_set():
                return welcomed
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            hint = retry_hint_s(exc)
            if hint is not None:
                with self._cond:
                    self._retry_hint = self._last_retry_hint = hint
            if code in _FATAL_STATUS:
                raise HubLinkError(f"hub {self.target} refused edge {self.edge_id!r}: {code.name}: {details} "
                                   f"(check the edge token); the link has stopped") from None
            if timed_out.is_set() and not welcomed:
                details = f"no Welcome within {self.hello_timeout_s} s ({details})"
            self._note_error(f"{getattr(code, 'name', code)}: {details}")
        except ConnectionError as exc:
            self._note_error(str(exc))
        finally:
            if timer is not None:
                timer.cancel()
            sess.done.set()
            sess.send_q.put(None)
            with self._cond:
                if self._call is not None:
                    self._call.cancel()
                self._call, self._connected = None, False
                self._cond.notify_all()
            self._wake.set()
            if pump is not None:
                pump.join()
            channel.close()
            self.outbox.requeue_inflight()
        return welcomed

    def _welcome(self, msg: session_pb2.HubMessage, sess: StreamSession) -> None:
        first = wire.read_hub_message(msg)
        if first.kind == "error":
            assert isinstance(first.body, wire.HubErrorInfo)
            self._on_error(first.body)
            raise ConnectionError(f"the hub answered Hello with an error: {first.body.message}")
        if first.kind != "welcome":
            raise ConnectionError(f"expected Welcome from the hub, got {first.kind}")
        w = first.body
        assert isinstance(w, wire.WelcomeInfo)
        if w.accepted_model_fingerprint and w.accepted_model_fingerprint != self.model_fingerprint:
            raise HubLinkError(f"hub {self.target} accepts model {w.accepted_model_fingerprint!r}, this edge runs "
                               f"{self.model_fingerprint!r}; the link has stopped")
        last = self.state.last_hub_sequence
        if 0 < w.resume_hub_sequence <= last:  # the hub starts over (e.g. restored): so do we
            log.warning("hub resumes at sequence %d although this edge processed up to %d; starting over",
                        w.resume_hub_sequence, last)
            self.state.set_last_hub_sequence(w.resume_hub_sequence - 1)
        if w.max_message_bytes > 0:
            sess.max_bytes = min(sess.max_bytes, int(w.max_message_bytes))
        if w.heartbeat_interval_s > 0:
            sess.heartbeat_s = min(sess.heartbeat_s, w.heartbeat_interval_s)
        skew = w.server_time_s - time.time() if w.server_time_s is not None else 0.0
        if abs(skew) > 5:
            log.warning("clock skew to hub %s: %.1f s", w.hub_id, skew)
        move = self._replicas.welcomed(w.hub_id)
        if move is not None:
            log.warning("hub link: %s", move)
        with self._cond:
            self._connected, self._hub_id = True, w.hub_id
            self._counts["sessions"] += 1
            self._counts["moves"] += move is not None
            self._cond.notify_all()
        log.debug("hub link: session open with %s (%s), gallery version %d", self.target, w.hub_id,
                  self.gallery.version)
        sess.announce_at = time.monotonic() + _GALLERY_SETTLE_S  # the deltas the hub queued come first

    # -- sending (the pump thread)

    def _pump(self, sess: StreamSession) -> None:
        next_heartbeat = time.monotonic()
        try:
            while not sess.done.is_set():
                now = time.monotonic()
                if now >= next_heartbeat or self._beat_soon.is_set():
                    self._beat_soon.clear()
                    sess.send(wire.heartbeat_envelope(self._heartbeat()))
                    next_heartbeat = now + sess.heartbeat_s
                if sess.announce_at is not None and now >= sess.announce_at:
                    sess.announce_at = None
                    log.info("connected to hub %s, gallery v%d (%d identities)", self.target, self.gallery.version,
                             len(self.gallery.identities()))
                self._send_due(sess, now)
                self._wake.wait(min(max(next_heartbeat - time.monotonic(), 0.0), 1.0))
                self._wake.clear()
        except Exception as exc:  # e.g. the outbox's disk: end the session, the link reconnects
            log.exception("hub link: sending failed")
            self._note_error(f"sending failed: {exc}")
            with self._cond:
                if self._call is not None:
                    self._call.cancel()

    def _send_due(self, sess: StreamSession, now: float) -> None:
        with sess.lock:
            due = [k for k, t in sess.retry_at.items() if t <= now]
            for key in due:
                del sess.retry_at[key]
            room = self.max_inflight - len(sess.inflight)
        entries = [e for e in (self.outbox.get(k) for k in due) if e is not None]
        if room > len(entries):
            fresh = self.outbox.pending(room - len(entries) + len(sess.skipped))
            entries += [e for e in fresh if e.key not in sess.skipped][: room - len(entries)]
        for entry in entries:
            self._send_entry(entry, sess)

    def _send_entry(self, entry: Entry, sess: StreamSession) -> None:
        try:
            msg = wire.entry_message(entry)
            if self._blurrer is not None:  # here, at the one exit, whoever put the entry in the outbox
                wire.blur_message_crops(msg, self._blurrer, quality=self.blur_jpeg_quality)
        except Exception as exc:  # undecodable, or the blur failed: never send it as it is
            self._dead_letter(entry, f"cannot be sent: {exc}")
            return
        if (size := wire.wire_size(msg)) > sess.max_bytes:
            sess.skipped.add(entry.key)
            log.error("outbox entry %s is %d bytes, over the hub's limit of %d: kept, not sent", entry.key,
                      size, sess.max_bytes)
            return
        try:
            self.outbox.mark_sent(entry.key)
        except UnknownIdError:
            return
        with sess.lock:
            sess.inflight.add(entry.key)
        with self._cond:
            if entry.attempts:
                self._counts["resent"] += 1
            else:
                self._counts["sent"] += 1
                self._counts["short_lists_sent"] += entry.kind == wire.SHORT_LIST_KIND
        sess.send(msg)

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        log.error("outbox entry %s (%s) dead-lettered: %s", entry.key, entry.kind, reason)
        self.state.add_dead_letter(entry, reason)
        self.outbox.ack(entry.key)
        with self._cond:
            self._counts["dead_letters"] += 1

    # -- receiving (the link thread)

    def _dispatch(self, msg: session_pb2.HubMessage, sess: StreamSession) -> None:
        info = wire.read_hub_message(msg)
        body = info.kind
        if body == "ack":
            self._on_ack(info.body, sess)
        elif body == "error":
            self._on_error(info.body)
        elif body in ("gallery_delta", "search_job", "verdict"):
            if body == "gallery_delta" and sess.announce_at is not None:  # still syncing: announce after it
                sess.announce_at = time.monotonic() + _GALLERY_SETTLE_S
            seq, last = info.sequence, self.state.last_hub_sequence
            acked_sequence = 0
            if seq and seq <= last:  # re-sent after a lost ack: processed already, only ack again
                ack = wire.edge_ack(hub_sequence=last)
            else:
                try:
                    ack = getattr(self, f"_on_{body}")(info.body)
                except Exception as exc:  # never let one message wedge the session: refuse it, go on
                    log.exception("hub link: handling %s %d failed", body, seq)
                    ack = wire.edge_ack(rejected=f"edge: {exc}")
                if seq:
                    self.state.set_last_hub_sequence(seq)
                    acked_sequence = seq
            sess.send(wire.ack_envelope(ack, acked_sequence))
        elif body not in ("heartbeat", None):
            log.warning("hub link: unexpected %s from the hub, ignored", body)

    def _on_ack(self, ack: wire.HubAckInfo, sess: StreamSession) -> None:
        key = ack.key
        with sess.lock:
            sess.inflight.discard(key)
        if ack.status == wire.ACK_OK:
            if self.outbox.ack(key):
                with self._cond:
                    self._counts["acked"] += 1
        elif ack.status == wire.ACK_REJECTED:
            entry = self.outbox.get(key)
            if entry is not None:
                self._dead_letter(entry, f"rejected by the hub: {ack.error_message}")
        else:  # RETRY: send again later, in this session
            entry = self.outbox.get(key)
            attempts = entry.attempts if entry is not None else 1
            delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(attempts - 1, 30))
            with sess.lock:
                sess.retry_at[key] = time.monotonic() + delay * self._rng.uniform(0.5, 1.0)
            log.debug("hub asks to retry %s later: %s", key, ack.error_message)
        self._wake.set()

    def _on_error(self, error: wire.HubErrorInfo) -> None:
        if error.refuses_edge:
            raise HubLinkError(f"hub {self.target} refused edge {self.edge_id!r}: {error.name}: {error.message}; "
                               f"the link has stopped")
        log.warning("hub error %s: %s%s", error.name, error.message, " (closing)" if error.closing else "")
        self._note_error(f"hub error {error.name}: {error.message}")

    def _on_gallery_delta(self, delta: hub_to_edge_pb2.GalleryDelta) -> edge_to_hub_pb2.EdgeAck:
        return wire.apply_gallery_delta(self.gallery, delta)

    def _on_verdict(self, verdict: hub_to_edge_pb2.Verdict) -> edge_to_hub_pb2.EdgeAck:
        ack, fresh = wire.record_verdict(self.store, verdict)
        if fresh and self._verdict_callback is not None:
            self._verdict_callback(verdict)
        return ack

    def _on_search_job(self, job: hub_to_edge_pb2.SearchJob) -> edge_to_hub_pb2.EdgeAck:
        if not job.job_id:
            return wire.edge_ack(rejected="job without job_id")
        limit = min(self.max_message_bytes, self.outbox.max_payload_bytes) - _ENVELOPE_BYTES
        results = wire.answer_search_job(job, self.store, edge_id=self.edge_id,
                                         model_fingerprint=self.model_fingerprint, dim=self.gallery.dim,
                                         default_top_k=self.search_top_k, max_bytes=limit,
                                         text_image=self.text_image)
        for result in results:
            key, payload = wire.search_result_entry(result)
            self.outbox.put(wire.SEARCH_RESULT_KIND, payload, key)
        self._wake.set()
        return wire.edge_ack()

    # -- messages and plumbing

    def _hello(self) -> edge_to_hub_pb2.Hello:
        return wire.hello_message(self.edge_id, self.site, self._cameras, self.model_fingerprint,
                                  self.gallery.version, self.state.last_hub_sequence, self.gallery.dim)

    def _heartbeat(self) -> edge_to_hub_pb2.EdgeHeartbeat:
        if self._camera_stats is not None:
            try:
                return wire.heartbeat_message(list(self._camera_stats()), self.outbox.depth(), self.gallery.version)
            except Exception:
                log.exception("hub link: camera_stats callback failed")
        return wire.heartbeat_message([], self.outbox.depth(), self.gallery.version)

    def _channel(self) -> grpc.Channel:
        return make_channel(self.target, tls=self._tls, max_send_bytes=self.max_message_bytes,
                            max_receive_bytes=self.max_receive_bytes, keepalive_s=self.keepalive_s)

    def _note_error(self, message: str) -> None:
        log.warning("hub link: %s", message)
        with self._cond:
            self._last_error = message

