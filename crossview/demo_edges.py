"""The demo's edges: ``crossview edge replay`` child processes sending to the hub, which (with `serve`)
stay up after their files to answer the hub's searches until stopped.

    >>> edge = EdgeProcess(video, "cam-a", edge_id="edge-a", workdir=w, hub_address=addr, token=t, serve=True)
    >>> summary = edge.start().wait_replayed(timeout_s=900)   # the edge's summary once its files are done
    >>> ...                                                   # searches from the hub reach it meanwhile
    >>> edge.stop()                                           # SIGTERM; its exit status

Both pipes are read by threads all along (a child writing to a full pipe would stall); stdout is the
edge's summary, stderr its log, of which the last lines go into errors.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

from crossview.edge_command import SERVING_NOTICE
from models.errors import CrossviewError

log = logging.getLogger(__name__)


class DemoError(CrossviewError):
    """An edge process failed or camera A saw nobody to enrol."""


class EdgeProcess:
    """One edge replaying `video` as `camera_id` in a child process; see the module docstring."""

    def __init__(self, video: Path, camera_id: str, *, edge_id: str, workdir: Path, hub_address: str, token: str,
                 settings: Sequence[str] = (), serve: bool = False) -> None:
        self.camera_id, self.edge_id, self.serve = camera_id, edge_id, serve
        self.command = [sys.executable, "-m", "crossview.cli", "edge", "replay", str(video), "--camera", camera_id,
                        "--workdir", str(workdir), "--serve" if serve else "--no-serve"]
        for setting in (f"edge_id={edge_id}", f"hub.target={hub_address}", f"hub.token={token}", "progress=false",
                        *settings):
            self.command += ["--set", setting]
        self._token = token
        self._process: subprocess.Popen[str] | None = None
        self._out: list[str] = []
        self._err: collections.deque[str] = collections.deque(maxlen=20)
        self._replayed = threading.Event()  # the serving notice arrived, or stdout ended
        self._readers: list[threading.Thread] = []

    @property
    def name(self) -> str:
        return f"edge {self.edge_id} ({self.camera_id})"

    def start(self) -> Self:
        log.info("%s: %s", self.name, " ".join(self.command).replace(self._token, "***"))
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [threading.Thread(target=self._read_out, args=(self._process.stdout,), daemon=True),
                         threading.Thread(target=self._read_err, args=(self._process.stderr,), daemon=True)]
        for reader in self._readers:
            reader.start()
        return self

    def _read_out(self, stream: IO[str]) -> None:
        for line in stream:
            if SERVING_NOTICE in line:
                self._replayed.set()
            else:
                self._out.append(line)
        self._replayed.set()

    def _read_err(self, stream: IO[str]) -> None:
        for line in stream:
            self._err.append(line.rstrip("\n"))

    def wait_replayed(self, timeout_s: float = 900.0) -> str:
        """Wait until the edge has played its files and the hub acknowledged its short lists (then it serves,
        or it has exited); its summary. Raises DemoError when it failed, exited non-zero or took too long."""
        assert self._process is not None, "start() first"
        if not self._replayed.wait(timeout_s):
            self.stop()
            raise DemoError(f"{self.name} did not finish its files within {timeout_s:g} s")
        if not self.serve or self._process.poll() is not None:
            try:
                code = self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                code = self.stop()
            for reader in self._readers:
                reader.join(10)
            if code != 0:
                tail = list(self._err) or "".join(self._out).strip().splitlines()
                raise DemoError(f"{self.name} exited with status {code}: " + " | ".join(tail[-5:]))
        return "".join(self._out)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def send_signal(self, signum: int) -> None:
        if self.running:
            assert self._process is not None
            self._process.send_signal(signum)

    def terminate(self) -> None:
        """SIGTERM now, without waiting (see `stop`)."""
        self.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (a serving edge stops cleanly), SIGKILL if it has not exited within `timeout_s`; the exit status."""
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s: killed", self.name, timeout_s)
                process.kill()
                process.wait()
        return process.returncode


def stop_all(edges: Sequence[EdgeProcess]) -> None:
    """Stop every edge, all at once (each gets SIGTERM before any is waited for)."""
    for edge in edges:
        edge.terminate()
    for edge in edges:
        code = edge.stop()
        if code not in (0, -signal.SIGTERM):
            log.warning("%s exited with status %s", edge.name, code)
