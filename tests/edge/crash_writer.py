"""Child process of the SIGKILL tests: writes to a store and an outbox until it is killed.

Usage: python crash_writer.py FOLDER ROUND. After each commit returns it prints one line, flushed:
``T id`` (tracklet stored with crops and vector), ``R id`` (an earlier tracklet's crops replaced),
``O key`` (outbox entry put), ``A key`` (outbox entry acked), ``D n`` (retention removed tracklets
numbered below n - 20). Every printed line is a promise the parent checks after the kill. Each round
first re-puts the previous round's first keys, as an edge replaying its work after a restart would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edge.storage.store import TrackletStore
from edge.uplink.outbox import Outbox
from models.types import Embeddings, Tracklet

FINGERPRINT = "crash-test-model"


def payload(key: str) -> bytes:
    return (key * 50).encode()


def main(folder: Path, round_: int) -> None:
    store = TrackletStore(folder / "edge.db", folder / "crops")
    outbox = Outbox(folder / "outbox.db")
    store.add_camera("cam", source="crash-test")

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    for j in range(3):
        if round_ > 0:
            say("O " + outbox.put("shortlist", payload(f"r{round_ - 1}-{j}"), f"r{round_ - 1}-{j}"))
    rng = np.random.default_rng(round_)
    i = 0
    while True:
        tid = f"r{round_}-{i}"
        vector = rng.standard_normal((1, 16)).astype(np.float32)
        tracklet = Tracklet(tid, "cam", i, float(i), float(i) + 0.5,
                            embedding=Embeddings(vector / np.linalg.norm(vector), FINGERPRINT))
        images = [rng.integers(0, 256, (48 + 8 * k, 24, 3), dtype=np.uint8) for k in range(3)]
        store.upsert_tracklet(tracklet, crops=images, closed=i % 2 == 0)
        say(f"T {tid}")
        if i >= 2 and i % 3 == 2:
            earlier = store.get_tracklet(f"r{round_}-{i - 2}")
            store.upsert_tracklet(Tracklet(earlier.tracklet_id, "cam", earlier.track_id, earlier.start_s,
                                           earlier.end_s), crops=images[:1], closed=True)
            say(f"R {earlier.tracklet_id}")
        say("O " + outbox.put("shortlist", payload(tid), tid))
        if i % 4 == 3:
            oldest = outbox.pending(1)[0].key
            outbox.mark_sent(oldest)
            if outbox.ack(oldest):
                say(f"A {oldest}")
        if i % 10 == 0 and i > 0:  # tracklet j ends at j + 0.5: this removes j < i - 20 of every round
            store.apply_retention(max_age_s=20.0, now=i + 0.5)
            say(f"D {i}")
        i += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
