"""The one rule for writing when a person was seen (cloud/times.py; dom.js's formatTime is its twin)."""

from __future__ import annotations

import math

import pytest

from cloud.times import format_span, format_time, is_wall_clock, time_fields, utc_iso

LIVE = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC


@pytest.mark.parametrize(("seconds", "expected"), [
    (None, "-"),
    (math.nan, "-"),
    (0.0, "video +0.0 s"),
    (220.44, "video +220.4 s"),
    (999_999_999.0, "video +999999999.0 s"),  # just below the line: still an offset
    (1e9, "2001-09-09 01:46:40 UTC"),
    (LIVE, "2026-11-18 11:06:40 UTC"),
])
def test_format_time(seconds: float | None, expected: str) -> None:
    assert format_time(seconds) == expected


@pytest.mark.parametrize(("start", "end", "expected"), [
    (7.4, 9.51, "video +7.4–9.5 s"),
    (LIVE, LIVE + 4.2, "2026-11-18 11:06:40–11:06:44 UTC"),
    (LIVE + 46_000, LIVE + 46_800, "2026-11-18 23:53:20 – 2026-11-19 00:06:40 UTC"),
    (5.0, LIVE, "video +5.0 s – 2026-11-18 11:06:40 UTC"),  # never happens; still readable
])
def test_format_span(start: float, end: float, expected: str) -> None:
    assert format_span(start, end) == expected


def test_api_time_fields() -> None:
    assert time_fields(LIVE, LIVE + 1.5) == {
        "start_s": LIVE, "end_s": LIVE + 1.5, "wall_clock": True, "start_utc": "2026-11-18T11:06:40.000Z",
        "end_utc": "2026-11-18T11:06:41.500Z", "time_label": "2026-11-18 11:06:40–11:06:41 UTC"}
    assert time_fields(50.0, 52.0)["start_utc"] is None and not is_wall_clock(50.0)
    assert utc_iso(None) is None and utc_iso(math.inf) is None


def test_timeline_draws_wall_clock_and_video_times() -> None:
    from cloud.api.timeline import render_timeline
    from cloud.store import SightingRecord

    def seen(start: float, camera: str) -> SightingRecord:
        return SightingRecord("id-1", "edge-a", camera, f"t-{start}", start, start + 3, "s.jpg", 0.9, None, 0.9, "k")

    for sightings in ([seen(LIVE, "cam-1"), seen(LIVE + 600, "cam-2")], [seen(7.0, "cam-1")],
                      [seen(LIVE, "cam-1"), seen(7.0, "cam-2")]):
        assert render_timeline(sightings, title="Ann").startswith(b"\x89PNG")
