"""A logged-in operator's request latency while others guess passwords (issue 12, finding 3).

    .venv/bin/python tools/bench_login.py [--guessers 16] [--requests 40]

Starts a hub on the colour stand-in model (no weights) with one logged-in operator, times `--requests`
GET /api/identities alone, then again while `--guessers` threads send wrong log-ins as fast as they
are answered, and prints the medians, 95th percentiles and what the guesses got (401 hashed, 429
refused before hashing). Wall-clock figures: run it on a quiet machine and compare runs of one machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # crossview_testing (after the root: its `models` is the package)

from crossview_testing.hub_api import HubApi, colour_hub_kwargs, start_hub_api  # noqa: E402

from crossview.api_client import http_client  # noqa: E402


def _timed(api: HubApi, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        reply = api.client.get("/api/identities")
        out.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise SystemExit(f"GET /api/identities answered {reply.status_code}: {reply.text}")
    return out


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guessers", type=int, default=16)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with start_hub_api(Path(tempfile.mkdtemp(prefix="bench-login-")), **colour_hub_kwargs()) as api:
        quiet = _timed(api, args.requests)
        stop, lock, outcomes = threading.Event(), threading.Lock(), {}

        def guess(i: int) -> None:
            with http_client(api.url, timeout_s=120) as client:
                while not stop.is_set():
                    status = client.post("/api/login", json={"username": f"user-{i}", "password": "guess"}).status_code
                    with lock:
                        outcomes[status] = outcomes.get(status, 0) + 1

        threads = [threading.Thread(target=guess, args=(i,), daemon=True) for i in range(args.guessers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the guessing is under way
        busy = _timed(api, args.requests)
        stop.set()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    print(f"alone: median {_ms(quiet, 0.5):.0f} ms, p95 {_ms(quiet, 0.95):.0f} ms")
    print(f"with {args.guessers} guessing threads: median {_ms(busy, 0.5):.0f} ms, p95 {_ms(busy, 0.95):.0f} ms, "
          f"max {max(busy) * 1000:.0f} ms")
    print(f"guesses in {seconds:.1f} s: " + ", ".join(f"{n} x {s}" for s, n in sorted(outcomes.items())))


if __name__ == "__main__":
    main()
