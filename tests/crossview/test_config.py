"""Entry-point configuration: YAML + key=value overrides, validated, with suggestions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from crossview.config import ConfigError, load_config


@dataclass
class TrackerSettings:
    name: Literal["bytetrack", "botsort"] = "bytetrack"
    max_age_s: float = 2.0


@dataclass
class Settings:
    stride: int = 1
    model: str = "reid/intel-0288"
    blur_faces: bool = False
    cameras: list[str] = field(default_factory=list)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)


def test_defaults_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("stride: 3\ntracker:\n  name: botsort\ncameras: [a, b]\n")
    cfg = load_config(Settings, path, ["tracker.max_age_s=5", "blur_faces=true"])
    assert cfg.stride == 3
    assert cfg.tracker == TrackerSettings("botsort", 5.0)
    assert cfg.cameras == ["a", "b"]
    assert cfg.blur_faces is True
    assert cfg.model == "reid/intel-0288"


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "match"),
    [
        ("", ["strid=2"], r"unknown config key 'strid'; did you mean 'stride'\?"),
        ("", ["tracker.nmae=botsort"], r"did you mean 'tracker.name'\?"),
        ("trackr: {}\n", [], r"did you mean 'tracker'\?"),
        ("", ["stride=fast"], r"stride: expected int, got 'fast'"),
        ("", ["tracker.name=sort"], r"expected one of 'bytetrack', 'botsort', got 'sort'"),
        ("", ["blur_faces=1"], r"blur_faces: expected true or false"),
        ("", ["stride"], r"expected key=value"),
        ("- a\n- b\n", [], r"expected a mapping"),
        ("stride: [\n", [], r"not valid YAML"),
    ],
)
def test_bad_configuration_is_one_clear_line(tmp_path: Path, yaml_text: str, overrides: list[str],
                                             match: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(Settings, path, overrides)
    assert "\n" not in str(info.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Settings, tmp_path / "nope.yaml")


def test_an_unquoted_yaml_date_fills_a_text_setting(tmp_path: Path) -> None:
    from crossview.edge_command import ReplayConfig

    path = tmp_path / "replay.yaml"
    path.write_text("recorded_at: 2026-11-25 09:30:00\n")  # YAML reads it as a datetime
    cfg = load_config(ReplayConfig, path, [])
    assert cfg.recorded_at == "2026-11-25T09:30:00" and cfg.recorded_at_s == 1_795_599_000.0  # no zone: UTC
    for text, seconds in (("2026-11-25T10:30:00+01:00", 1_795_599_000.0), ("1795599000", 1_795_599_000.0),
                          ("2026-11-25", 1_795_564_800.0)):
        assert load_config(ReplayConfig, None, [f"recorded_at={text}"]).recorded_at_s == seconds
    with pytest.raises(ConfigError, match="recorded_at: expected Unix seconds >= 0"):
        load_config(ReplayConfig, None, ["recorded_at=-5"])
