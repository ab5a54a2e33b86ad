"""When a person was seen, written one way by the REST API, the CLI, the timeline PNG and alerts.

Edges stamp frames of live cameras (and replays given `recorded_at`) with Unix seconds; a replay
without `recorded_at` has seconds into its video. No recording runs for 31 years, so a time below
`WALL_CLOCK_FROM_S` (2001-09-09) is a video offset, shown as ``video +220.4 s``; any other time is a
wall-clock time, shown in UTC. The web UI's `formatTime` (cloud/web/static/dom.js) is the same rule.
"""

from __future__ import annotations

import datetime as dt
import math

WALL_CLOCK_FROM_S = 1e9


def is_wall_clock(seconds: float) -> bool:
    return seconds >= WALL_CLOCK_FROM_S


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def utc_iso(seconds: float | None) -> str | None:
    """``2026-11-25T09:30:00.250Z`` for a wall-clock time; None for a video offset or no time."""
    if seconds is None or not math.isfinite(seconds) or not is_wall_clock(seconds):
        return None
    return _utc(seconds).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_time(seconds: float | None) -> str:
    """``2026-11-25 09:30:00 UTC``, ``video +220.4 s``, or ``-`` for no time."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if not is_wall_clock(seconds):
        return f"video +{seconds:.1f} s"
    return _utc(seconds).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_span(start_s: float, end_s: float) -> str:
    """``2026-11-25 09:30:00–09:30:04 UTC`` (the date once when it is the same), ``video +7.4–9.5 s``."""
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or is_wall_clock(start_s) != is_wall_clock(end_s):
        return f"{format_time(start_s)} – {format_time(end_s)}"
    if not is_wall_clock(start_s):
        return f"video +{start_s:.1f}–{end_s:.1f} s"
    start, end = _utc(start_s), _utc(end_s)
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M:%S}–{end:%H:%M:%S} UTC"
    return f"{start:%Y-%m-%d %H:%M:%S} – {end:%Y-%m-%d %H:%M:%S} UTC"


def time_fields(start_s: float, end_s: float) -> dict[str, object]:
    """The API's time fields of a span (see `cloud.api.schemas.Times`)."""
    return {"start_s": start_s, "end_s": end_s, "wall_clock": is_wall_clock(start_s), "start_utc": utc_iso(start_s),
            "end_utc": utc_iso(end_s), "time_label": format_span(start_s, end_s)}
