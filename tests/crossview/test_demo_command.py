"""The pieces of `crossview demo` that need no models: settings, which sighting is enrolled, edge failures.
The whole demo runs in tests/crossview/test_cli.py and tests/integration/test_cross_camera.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from crossview.config import ConfigError, load_config
from crossview.demo_command import DemoConfig, DemoError, pick_sighting, replay_edge


class Sightings:
    def __init__(self, *spans: tuple[str, float, float]) -> None:
        self.rows = [SimpleNamespace(sighting_id=i + 1, camera_id=c, start_s=a, end_s=b)
                     for i, (c, a, b) in enumerate(spans)]

    def sightings(self, limit: int = 100) -> list[SimpleNamespace]:
        return list(reversed(self.rows))[:limit]  # newest first, as the hub store


def test_the_sighting_covering_the_moment_else_the_nearest_else_the_longest() -> None:
    store = Sightings(("cam-a", 6.6, 19.0), ("cam-a", 23.2, 44.4), ("cam-b", 70.0, 90.0), ("cam-a", 75.0, 86.6))
    assert pick_sighting(store, "cam-a", 80.0).sighting_id == 4
    assert pick_sighting(store, "cam-a", 50.0).sighting_id == 2  # 5.6 s after the second, 25 s before the last
    assert pick_sighting(store, "cam-a", None).sighting_id == 2  # the longest
    assert pick_sighting(store, "cam-b", 0.0).sighting_id == 3
    with pytest.raises(DemoError, match="camera 'cam-c' has no sightings at the hub: nobody to enrol"):
        pick_sighting(store, "cam-c", 80.0)


@pytest.mark.parametrize(("overrides", "message"), [
    (["stride=0"], "stride: expected >= 1, got 0"),
    (["max_frames_b=0"], "max_frames_b: expected >= 1 or null, got 0"),
    (["camera_b=cam-a"], "camera_b: expected a camera id other than camera_a's 'cam-a'"),
    (["api_port=70000"], "api_port: expected 0..65535, got 70000"),
    (["enrol_at_s=3"], "did you mean 'enroll_at_s'?"),
])
def test_bad_settings_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(DemoConfig, None, overrides)


def test_a_failing_edge_process_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match=r"edge edge-a \(cam-a\) exited with status 2: .*unknown config key 'strid'"):
        replay_edge(tmp_path / "a.mp4", "cam-a", edge_id="edge-a", workdir=tmp_path / "w",
                    hub_address="127.0.0.1:1", token="t", settings=["strid=2"], timeout_s=120)
