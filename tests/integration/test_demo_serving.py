"""Issue #10: `crossview demo` (not ``--once``) leaves its edges serving while it serves the UI, so the UI's
search with a photo of the enrolled man returns his cam-b sighting; Ctrl-C stops the demo and its edges.

The demo runs as a process (real hub, real edge processes, real models), limited to the part of each
video where the man in the black T-shirt walks by, as tests/crossview/test_cli.py runs ``--once``; the
search goes through the REST API the web UI uses. Skipped without $CROSSVIEW_MODELS / $CROSSVIEW_DATA.
No timing assertions: waits poll with generous deadlines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crossview.api_client import http_client

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "demo-serving-secret"


def processes_mentioning(text: str) -> list[int]:
    """Ids of live processes whose command line contains `text` (the demo's edges name their work folders)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next((line for line in (entry / "status").read_text().splitlines()
                              if line.startswith("State:")), "")
            except OSError:
                continue
            if text in cmdline and "zombie" not in state:
                found.append(int(entry.name))
    return found


@pytest.mark.timeout(1900)  # its own deadlines: 1200 s to serve and 600 s to stop, for a loaded machine
def test_the_demo_serves_searches_that_find_the_man_on_camera_b(models_dir: Path, data_dir: Path,
                                                                 tmp_path: Path) -> None:
    env = {**os.environ, "CROSSVIEW_MODELS": str(models_dir), "CROSSVIEW_DATA": str(data_dir),
           "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen([sys.executable, "-m", "crossview.cli", "demo", "api_port=0", f"workdir={tmp_path}",
                             "max_frames_a=450", "max_frames_b=130", f"admin_password={PASSWORD}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    lines: list[str] = []
    errors: list[str] = []
    serving = threading.Event()

    def read_out() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("serving until Ctrl-C"):
                serving.set()
        serving.set()

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=lambda: errors.extend(demo.stderr or ()), daemon=True).start()
    try:
        assert serving.wait(1200) and demo.poll() is None, "".join(lines)[-3000:] + "".join(errors)[-3000:]
        out = "".join(lines)
        url = re.search(r"web UI: (http://\S+)", out)
        assert url, out[-3000:]
        assert processes_mentioning(str(tmp_path / "edge-a")) and processes_mentioning(str(tmp_path / "edge-b"))

        # as a browser on the UI's page would: its POSTs name the page's origin (the hub's CSRF check)
        with http_client(url.group(1), timeout_s=120, headers={"Origin": url.group(1).rstrip("/")}) as client:
            assert client.post("/api/login", json={"username": "admin", "password": PASSWORD}).status_code == 200
            (man,) = [i for i in client.get("/api/identities").json() if i["display_name"] == "person from cam-a"]
            photo = client.get(man["crop_urls"][0])
            assert photo.status_code == 200
            found = client.post("/api/search", files=[("photos", ("man.jpg", photo.content, "image/jpeg"))],
                                data={"deadline_s": "60"})
        assert found.status_code == 200, found.text
        answer = found.json()
        assert sorted(answer["edges_answered"]) == ["edge-a", "edge-b"], answer["edges_silent"]
        assert any(h["camera_id"] == "cam-b" for h in answer["hits"])  # edge-b answered from its store
        on_b = [h for h in answer["hits"] if h["camera_id"] == "cam-b" and h["identity_id"] == man["identity_id"]]
        assert on_b and on_b[0]["sighting_id"] is not None, (  # his cam-b sighting
            out[-1500:], [(h["camera_id"], h["start_s"], h["display_name"], h["p_same"]) for h in answer["hits"]])
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # Ctrl-C
        try:  # the edges get SIGTERM and up to 60 s each, then the hub stops: slow on a loaded machine
            code = demo.wait(600)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise AssertionError("the demo did not stop within 600 s of Ctrl-C: " + "".join(errors)[-3000:]) from None
    assert code == 0, "".join(errors)[-3000:]
    deadline = time.monotonic() + 60
    while processes_mentioning(str(tmp_path / "edge-")):
        assert time.monotonic() < deadline, "the demo's edges outlived it"
        time.sleep(0.2)
