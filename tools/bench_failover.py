"""Replica failover drill (issue 12): two hub replicas on one PostgreSQL database, edges replaying a sample
video with both addresses, one replica SIGKILLed mid-run; what arrived, how often, and how long moving took.

    python tools/bench_failover.py --edges 5 --frames 30 [--json] [--no-reference]

Each run gets a fresh database (``CREATE DATABASE cv_failover_…`` on the server of ``--postgres``, dropped
at the end). Replicas are child processes of this tool (``bench_failover.py replica …``: a `cloud.hub.Hub`
on 127.0.0.1, allow_new_identities, the ``reid`` judge, a short claim lease so a short list the dead
replica was processing is taken over soon; one crops folder for both, as replicas need shared storage for
the crops as much as the database); edges are ``crossview edge replay --serve`` child processes
with ``hub.addresses=A,B`` and ``send_unmatched=true`` (every closed tracklet goes up), so all begin on A.

The drill: once replica A has stored `--kill-after` short lists, A gets SIGKILL. It ends when every edge
has played its frames, its outbox is empty and (with a kill) its log says ``moved to hub replica``. Then:

- ``sent``: short-list keys the edges produced (acked ones remembered in ``outbox_acked`` + pending);
- ``stored``: short lists the shared store has done; ``duplicates``: keys with more than one sighting;
- ``lost``: produced but not stored; ``move_s``: SIGKILL -> each edge's "moved" line (median, max);
- ``delivery_s``: edges started -> everything delivered. ``--no-reference`` skips the second run, the same
  without the kill, whose delivery time gives ``delivery_ratio`` (kill / no kill).

Real detector and Re-ID models (``$CROSSVIEW_MODELS``) and the sample video (``$CROSSVIEW_DATA``) are used.
tests/integration/test_replica_failover.py runs the same drill and asserts on its report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud.store.postgres import postgres_reachable  # noqa: E402
from crossview.edge_command import SERVING_NOTICE  # noqa: E402
from models.errors import CrossviewError  # noqa: E402

DEFAULT_POSTGRES = os.environ.get("CROSSVIEW_TEST_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres")
DEFAULT_VIDEO = "pedestrians__nandinib1999.mp4"
MOVED = "moved to hub replica"
SHORT_LIST_PREFIX = "shortlist/"


class DrillError(CrossviewError):
    """A replica or an edge failed, or the drill did not finish in time."""


@dataclass(frozen=True)
class DrillSettings:
    """One drill. `frames` per edge (of `video`), `imgsz` the detector's input; `deadline_s` bounds every wait."""

    video: Path
    edges: int = 5
    frames: int = 30
    imgsz: int = 320
    kill: bool = True
    kill_after: int = 1
    lease_s: float = 10.0
    deadline_s: float = 600.0
    postgres: str = DEFAULT_POSTGRES

    def __post_init__(self) -> None:
        if not self.video.is_file():
            raise DrillError(f"video: expected a file, got {self.video}")
        for name in ("edges", "frames", "imgsz", "kill_after"):
            if getattr(self, name) < 1:
                raise DrillError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not (self.lease_s > 0 and self.deadline_s > 0):
            raise DrillError(f"lease_s, deadline_s: expected > 0, got {self.lease_s}, {self.deadline_s}")


@dataclass(frozen=True)
class DrillReport:
    killed: bool
    edges: int
    sent: int
    stored: int
    duplicates: int
    lost: int
    unexpected: int  # stored for an edge that never produced the key
    pending: int  # left in the edges' outboxes
    stored_by_survivor: int  # short lists received after the kill (by the replica left)
    delivery_s: float
    move_s: list[float] = field(default_factory=list)
    moved_to: dict[str, str] = field(default_factory=dict)  # edge -> replica its log says it moved to
    connected_hub_ids: dict[str, str | None] = field(default_factory=dict)  # the hub store's edges table
    replicas: dict[str, str] = field(default_factory=dict)  # "a"/"b" -> hub id


# -- the database -------------------------------------------------------------------------------------

@contextlib.contextmanager
def fresh_database(conninfo: str) -> Iterator[str]:
    """A new database on the server of `conninfo`, as a ``postgresql://`` URL; dropped afterwards."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"cv_failover_{uuid.uuid4().hex[:12]}"
    params = conninfo_to_dict(conninfo)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    user = params.get("user") or os.environ.get("PGUSER") or "postgres"
    auth = user + (f":{params['password']}" if params.get("password") else "")
    try:
        yield f"postgresql://{auth}@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _query(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(sql).fetchall()


def stored_keys(url: str) -> dict[tuple[str, str], str]:
    """(edge, key) -> status of every short list in the shared store."""
    return {(e, k): s for e, k, s in _query(url, "SELECT edge_id, idempotency_key, status FROM short_lists")}


# -- child processes ----------------------------------------------------------------------------------

class Child:
    """A child process whose stdout and stderr go to files in `folder` (read while it runs)."""

    def __init__(self, name: str, command: list[str], folder: Path) -> None:
        self.name, self.folder = name, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = folder / "stdout.txt", folder / "stderr.txt"
        self._files: list[IO[str]] = [open(self.out_path, "w"), open(self.err_path, "w")]  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=self._files[0], stderr=self._files[1], text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = " | ".join(self.stderr().strip().splitlines()[-5:])
            raise DrillError(f"{self.name} exited with status {self.process.returncode}: {tail}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        for f in self._files:
            f.close()


class Replica(Child):
    def __init__(self, name: str, url: str, data_dir: Path, folder: Path, lease_s: float) -> None:
        self.ready_path = folder / "ready.txt"
        super().__init__(name, [sys.executable, str(Path(__file__).resolve()), "replica", "--database", url,
                                "--data-dir", str(data_dir), "--ready-file", str(self.ready_path),
                                "--lease-s", str(lease_s)], folder)
        self.address = self.hub_id = ""

    def wait_ready(self, deadline: float) -> Replica:
        while not self.ready_path.is_file():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DrillError(f"{self.name} did not start in time")
            time.sleep(0.1)
        self.address, self.hub_id = self.ready_path.read_text().split()
        return self


class Edge(Child):
    def __init__(self, edge_id: str, video: Path, folder: Path, addresses: str, token: str, s: DrillSettings) -> None:
        self.edge_id, self.workdir = edge_id, folder / "work"
        settings = [f"edge_id={edge_id}", f"hub.addresses={addresses}", f"hub.token={token}", "progress=false",
                    f"max_frames={s.frames}", f"imgsz={s.imgsz}", "send_unmatched=true", "hub.heartbeat_s=1",
                    "hub.connect_timeout_s=60", f"hub.drain_timeout_s={s.deadline_s:g}"]
        command = [sys.executable, "-m", "crossview.cli", "edge", "replay", str(video), "--camera", f"cam-{edge_id}",
                   "--workdir", str(self.workdir), "--serve"]
        for setting in settings:
            command += ["--set", setting]
        super().__init__(f"edge {edge_id}", command, folder)
        self.moved_at: float | None = None

    def replayed(self) -> bool:
        return SERVING_NOTICE in self.stdout()

    def moved_to(self) -> str | None:
        """The replica id of the edge's last "moved to hub replica" line, if any."""
        lines = [line for line in self.stderr().splitlines() if MOVED in line]
        return lines[-1].split(MOVED, 1)[1].split()[0] if lines else None

    def outbox(self) -> tuple[set[str], int]:
        """(short-list keys the edge ever produced, how many of them are still pending)."""
        path = self.workdir / "outbox.db"
        if not path.is_file():
            return set(), 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
            pending = {k for (k,) in conn.execute("SELECT key FROM outbox")}
            acked = {k for (k,) in conn.execute("SELECT key FROM outbox_acked")}
        keys = {k for k in pending | acked if k.startswith(SHORT_LIST_PREFIX)}
        return keys, len({k for k in pending if k.startswith(SHORT_LIST_PREFIX)})


# -- the drill ----------------------------------------------------------------------------------------

def run_drill(s: DrillSettings, workdir: Path) -> DrillReport:
    """One drill in `workdir` (children's logs and work folders stay there); see the module docstring."""
    from cloud.auth import EdgeAuth
    from cloud.store.postgres import PostgresHubStore

    deadline = time.monotonic() + s.deadline_s
    children: list[Child] = []
    with fresh_database(s.postgres) as url:
        try:
            store = PostgresHubStore(url, pool_size=1)  # migrates once, before any replica starts
            try:
                edge_ids = [f"edge-{i + 1}" for i in range(s.edges)]
                tokens = {e: EdgeAuth(store).create_token(e).token for e in edge_ids}
            finally:
                store.close()
            # the crops folder is shared too (in production: a shared file system), as the database is
            a = Replica("replica a", url, workdir / "hub-data", workdir / "replica-a", s.lease_s)
            b = Replica("replica b", url, workdir / "hub-data", workdir / "replica-b", s.lease_s)
            children += [a, b]
            a.wait_ready(deadline)
            b.wait_ready(deadline)
            began = time.monotonic()
            edges = [Edge(e, s.video, workdir / e, f"{a.address},{b.address}", tokens[e], s) for e in edge_ids]
            children += edges
            killed_at, stored_before = None, 0
            if s.kill:
                _wait(lambda: sum(st == "done" for st in stored_keys(url).values()) >= s.kill_after, [a, b, *edges],
                      deadline, f"replica A to store {s.kill_after} short list(s)")
                a.kill()
                killed_at = time.monotonic()
                stored_before = sum(st == "done" for st in stored_keys(url).values())

            def finished() -> bool:
                for edge in edges:
                    if killed_at is not None and edge.moved_at is None and edge.moved_to() is not None:
                        edge.moved_at = time.monotonic()
                return all(e.replayed() and e.outbox()[1] == 0 and (not s.kill or e.moved_at is not None)
                           for e in edges)

            _wait(finished, [b, *edges] if s.kill else [a, b, *edges], deadline,
                  "every edge to play its frames, empty its outbox" + (" and move" if s.kill else ""))
            delivery_s = time.monotonic() - began
            return _report(s, url, edges, a, b, delivery_s, killed_at, stored_before)
        finally:
            for child in reversed(children):
                child.stop()


def _wait(condition: Any, children: list[Child], deadline: float, what: str) -> None:
    while not condition():
        for child in children:
            child.check_alive()
        if time.monotonic() > deadline:
            raise DrillError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _report(s: DrillSettings, url: str, edges: list[Edge], a: Replica, b: Replica, delivery_s: float,
            killed_at: float | None, stored_before: int) -> DrillReport:
    produced = {(e.edge_id, k) for e in edges for k in e.outbox()[0]}
    stored = {key for key, status in stored_keys(url).items() if status == "done"}
    sightings = _query(url, "SELECT edge_id, idempotency_key, count(*) FROM sightings GROUP BY edge_id, "
                            "idempotency_key HAVING count(*) > 1")
    connected = dict(_query(url, "SELECT edge_id, connected_hub_id FROM edges"))
    move_s = sorted(round(e.moved_at - killed_at, 3) for e in edges if killed_at is not None and e.moved_at)
    return DrillReport(
        killed=killed_at is not None, edges=len(edges), sent=len(produced), stored=len(stored),
        duplicates=len(sightings), lost=len(produced - stored), unexpected=len(stored - produced),
        pending=sum(e.outbox()[1] for e in edges),
        stored_by_survivor=len(stored) - stored_before if killed_at is not None else 0,
        delivery_s=round(delivery_s, 2), move_s=move_s,
        moved_to={e.edge_id: m for e in edges if (m := e.moved_to()) is not None},
        connected_hub_ids=connected, replicas={"a": a.hub_id, "b": b.hub_id})


# -- a replica (the child) ----------------------------------------------------------------------------

async def serve_replica(database: str, data_dir: Path, ready_file: Path, lease_s: float) -> None:
    """One hub replica on 127.0.0.1 (a free port) until SIGTERM; ``ADDRESS HUB_ID`` in `ready_file` once serving."""
    from cloud.hub import Hub
    from cloud.verification import DecisionPolicy

    hub = Hub.create(data_dir=data_dir, database=database, policy=DecisionPolicy(allow_new_identities=True),
                     lease_s=lease_s)
    port = await hub.start(port=0)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    partial = ready_file.with_suffix(".partial")
    partial.write_text(f"127.0.0.1:{port} {hub.hub_id}\n")
    partial.rename(ready_file)
    await stop.wait()
    await hub.stop()


# -- the command --------------------------------------------------------------------------------------

def _summary(name: str, r: DrillReport) -> str:
    moves = (f"; moved in {statistics.median(r.move_s):.2f} s median, {max(r.move_s):.2f} s max "
             f"({len(r.move_s)}/{r.edges} edges)" if r.move_s else "")
    return (f"{name}: {r.edges} edges, short lists sent {r.sent}, stored {r.stored} "
            f"({r.stored_by_survivor} after the kill), duplicates {r.duplicates}, lost {r.lost}, "
            f"unexpected {r.unexpected}; delivered in {r.delivery_s:.1f} s{moves}")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["replica"]:
        p = argparse.ArgumentParser(prog="bench_failover.py replica")
        p.add_argument("--database", required=True)
        p.add_argument("--data-dir", type=Path, required=True)
        p.add_argument("--ready-file", type=Path, required=True)
        p.add_argument("--lease-s", type=float, default=10.0)
        a = p.parse_args(argv[1:])
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(serve_replica(a.database, a.data_dir, a.ready_file, a.lease_s))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edges", type=int, default=5)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--video", type=Path, default=None, help=f"default: $CROSSVIEW_DATA/video/{DEFAULT_VIDEO}")
    p.add_argument("--kill-after", type=int, default=1)
    p.add_argument("--lease-s", type=float, default=10.0)
    p.add_argument("--deadline-s", type=float, default=900.0)
    p.add_argument("--postgres", default=DEFAULT_POSTGRES)
    p.add_argument("--no-reference", action="store_true", help="skip the run without the kill")
    p.add_argument("--keep", type=Path, default=None, help="keep the children's logs in this folder")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    try:
        if (why := postgres_reachable(a.postgres)) is not None:
            raise DrillError(why)
        video = a.video or Path(os.environ.get("CROSSVIEW_DATA", "")) / "video" / DEFAULT_VIDEO
        runs = {"failover": True} if a.no_reference else {"failover": True, "reference": False}
        results: dict[str, Any] = {}
        for name, kill in runs.items():
            s = DrillSettings(video, edges=a.edges, frames=a.frames, imgsz=a.imgsz, kill=kill,
                              kill_after=a.kill_after, lease_s=a.lease_s, deadline_s=a.deadline_s,
                              postgres=a.postgres)
            with contextlib.ExitStack() as stack:
                folder = a.keep / name if a.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
                report = run_drill(s, folder)
            results[name] = asdict(report)
            print(_summary(name, report), file=sys.stderr)
        if "reference" in results:
            results["delivery_ratio"] = round(results["failover"]["delivery_s"] / results["reference"]["delivery_s"], 3)
            print(f"delivery time with the kill / without: {results['delivery_ratio']:.2f}", file=sys.stderr)
    except CrossviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
