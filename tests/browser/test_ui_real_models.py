"""The operator's story in Chromium, on real models and a sample video (skipped without $CROSSVIEW_MODELS and
$CROSSVIEW_DATA): a real hub (`reid` judge, new people become automatic identities) and in-process edge nodes
(YOLOv8n + ByteTrack + intel-0288) replaying footage into it.

Two cameras, fed by two parts of one-by-one-person-detection.mp4: camera "lobby" sees its first 13 s, camera
"corridor" the next 9 s, and the person who walks through at the cut is on both. (people-detection.264 shows
the same room, but the one man both videos seem to share is a hard case for the models, followed by
tests/integration/test_cross_camera.py with 90 s of enrolment; see the README's "Web UI" section.)

log in → upload a photo of that person (a crop from "lobby") → a result from "corridor" → its identity page
and timeline → watch the person → another edge replays the corridor footage → the alert arrives in the live
panel. A screenshot of every page goes where tests/browser/conftest.py says.
No timing assertions: every wait is on a condition with a generous timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.verification import DecisionPolicy
from edge.node import EdgeNode
from edge.pipeline import TrackletSettings
from edge.shortlist import ShortListPolicy
from edge.uplink.settings import HubLinkSettings

VIDEO = "one-by-one-person-detection.mp4"  # 10 fps; a person walks in at 6.4 s and stays until 19.3 s
LOBBY, CORRIDOR = (0, 130), (130, 220)  # frame ranges of the two cameras
EDGE_MODEL = "reid/intel-0288"


def write_clip(source: Path, target: Path, frames: tuple[int, int]) -> Path:
    """Frames [start, end) of `source` as a video file of their own (mp4v, same size and frame rate)."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    try:
        for index in range(frames[1]):
            ok, image = capture.read()
            if not ok:
                raise AssertionError(f"{source} has only {index} frames")
            if index >= frames[0]:
                writer.write(image)
    finally:
        writer.release()
        capture.release()
    return target


@pytest.fixture(scope="module")
def footage(models_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    video = data_dir / "video" / VIDEO
    if not video.is_file():
        pytest.skip(f"the sample video {video} is absent")
    folder = tmp_path_factory.mktemp("footage")
    return {"lobby": write_clip(video, folder / "lobby.mp4", LOBBY),
            "corridor": write_clip(video, folder / "corridor.mp4", CORRIDOR)}


@pytest.fixture(scope="module")
def models(footage: dict[str, Path]) -> dict[str, Any]:
    from edge.detect_track import PersonTracker
    from models.embed import create_embedder

    return {"tracker": PersonTracker(), "embedder": create_embedder(EDGE_MODEL, num_threads=1)}


@pytest.fixture
def hub(tmp_path: Path, ui: Any) -> Iterator[Any]:
    from crossview_testing.hub_api import start_hub_api

    policy = DecisionPolicy(allow_new_identities=True)
    with start_hub_api(tmp_path, username=ui.USERNAME, password=ui.PASSWORD, judge="reid", policy=policy) as api:
        yield api


def edge_node(tmp_path: Path, hub: Any, models: dict[str, Any], edge_id: str, cameras: list[str]) -> EdgeNode:
    return EdgeNode(tmp_path / edge_id, edge_id, cameras, tracker=models["tracker"], embedder=models["embedder"],
                    tracklets=TrackletSettings(close_after_s=0.5), policy=ShortListPolicy(3, min_p_same=0.05),
                    send_unmatched=True,
                    hub=HubLinkSettings(hub.running.grpc_address, hub.running.create_edge_token(edge_id),
                                        heartbeat_s=0.5, initial_backoff_s=0.05, max_backoff_s=0.5))


def replay(edge: EdgeNode, video: Path, camera: str) -> None:
    report = edge.replay([video], [camera], progress=False)
    assert report.ok, report
    assert edge.wait_outbox_drained(120), "the hub did not acknowledge every short list"


def test_find_a_person_across_cameras_watch_them_and_get_an_alert(footage: dict[str, Path], models: dict[str, Any],
                                                                    hub: Any, tmp_path: Path, page: Any, ui: Any,
                                                                    screenshot: Any) -> None:
    api = hub.client
    with edge_node(tmp_path, hub, models, "edge-1", ["lobby", "corridor"]) as edge:
        edge.start()
        assert edge.wait_connected(60)
        replay(edge, footage["lobby"], "lobby")  # nobody is known yet: the person becomes an automatic identity
        ui.wait_until(lambda: api.get("/api/identities").json(), what="an automatic identity")
        assert edge.wait_gallery(60)  # ... which the hub pushes to the edge's gallery
        replay(edge, footage["corridor"], "corridor")  # the edge recalls them; the hub's judge confirms

        sightings = api.get("/api/sightings").json()
        cameras_of: dict[str, set[str]] = {}
        for sighting in sightings:
            cameras_of.setdefault(sighting["identity_id"], set()).add(sighting["camera_id"])
        on_both = [identity for identity, cameras in cameras_of.items() if cameras == {"lobby", "corridor"}]
        assert len(on_both) == 1, f"expected one person on both cameras, got {sightings}"
        person = on_both[0]
        lobby_tracklet = edge.store.get_tracklet(next(s["tracklet_id"] for s in sightings
                                                      if s["identity_id"] == person and s["camera_id"] == "lobby"))
        assert lobby_tracklet is not None
        photo = Path(lobby_tracklet.crop_paths[0])

        page.goto(hub.url)
        page.wait_for_selector("body[data-page=login]")
        screenshot(page, "login")
        ui.log_in(page, hub.url)
        page.get_by_test_id("photo-input").set_input_files(str(photo))
        corridor = page.locator(f"[data-testid=result][data-camera-id=corridor][data-identity-id='{person}']")
        corridor.wait_for(timeout=60_000)
        assert corridor.get_attribute("data-verdict") == "same"
        assert page.locator(f"[data-testid=result][data-camera-id=lobby][data-identity-id='{person}']").count() >= 1
        screenshot(page, "search")

        corridor.click()
        page.wait_for_selector(f"[data-testid=identity-page][data-identity-id='{person}']")
        ui.wait_until(lambda: page.evaluate(
            "() => document.querySelector('[data-testid=timeline]').naturalWidth") > 0, what="the timeline")
        cameras = page.locator("[data-testid=sighting-row]").evaluate_all("rows => rows.map(r => r.dataset.cameraId)")
        assert set(cameras) == {"corridor", "lobby"}
        page.get_by_test_id("rename-input").fill("Visitor in grey")
        page.get_by_test_id("rename-form").locator("button").click()
        page.wait_for_function("() => document.querySelector('[data-testid=identity-name]').textContent"
                               " === 'Visitor in grey'")
        page.get_by_test_id("watch-button").click()  # the default threshold
        page.wait_for_selector("[data-testid=unwatch-button]")
        assert [i["identity_id"] for i in api.get("/api/watchlist").json()] == [person]
        screenshot(page, "identity")

        ui.go(page, "edges")
        page.wait_for_selector("[data-testid=edge-row][data-edge-id=edge-1][data-connected=true]")
        screenshot(page, "edges")

    # another edge, another camera: the corridor footage again; the hub confirms the watched person and alerts
    ui.go(page, "identities")
    page.wait_for_selector("[data-testid=watchlist-row]")
    with edge_node(tmp_path, hub, models, "edge-2", ["gate"]) as gate:
        gate.start()
        assert gate.wait_connected(60) and gate.wait_gallery(60)
        replay(gate, footage["corridor"], "gate")
    alert = page.locator(f"[data-testid=alert][data-identity-id='{person}']")
    alert.wait_for(timeout=60_000)
    assert alert.get_by_test_id("alert-name").inner_text() == "Visitor in grey"
    assert "gate" in alert.get_by_test_id("alert-camera").inner_text()
    page.reload()  # the watchlist now shows the new sighting
    page.wait_for_selector("body[data-page=identities] [data-testid=watchlist-row]")
    screenshot(page, "identities")
    ui.go(page, "enroll")
    screenshot(page, "enroll")
