"""Child processes in tests: kill one with SIGKILL at a chosen moment (an edge dying mid-write)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def sigkill_when(child: subprocess.Popen, condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Wait until `condition()` holds, then SIGKILL `child` (always reaped). Fails the test if the child
    ended by itself first (its stderr tail is in the message)."""
    try:
        deadline = time.monotonic() + timeout_s
        while not condition() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert child.poll() is None, f"the child ended before it could be killed: {child.communicate()[1][-2000:]}"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
