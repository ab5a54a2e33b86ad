"""An identity's timeline as a PNG: one row per (edge, camera), one bar per sighting (matplotlib Agg).
Times follow `cloud.times`: wall-clock in UTC, or seconds into a video for replays without `recorded_at`."""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections.abc import Sequence

from cloud.store import SightingRecord
from cloud.times import is_wall_clock

_LOCK = threading.Lock()  # pyplot-free, but font caches and rcParams are shared


def render_timeline(sightings: Sequence[SightingRecord], *, title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted({(s.edge_id, s.camera_id) for s in sightings})
    height = 1.2 + 0.4 * max(len(rows), 1)
    with _LOCK:
        figure = Figure(figsize=(9, height), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        if not sightings:
            axes.text(0.5, 0.5, "no sightings yet", ha="center", va="center", transform=axes.transAxes)
            axes.set_yticks([])
            axes.set_xticks([])
        else:
            # one time axis: wall-clock (UTC) when any sighting has a wall-clock time, seconds into the video
            # otherwise (replays without recorded_at); the other kind is counted in the title, not drawn
            wall_clock = any(is_wall_clock(s.start_s) for s in sightings)
            drawn = [s for s in sightings if is_wall_clock(s.start_s) == wall_clock]
            rows = sorted({(s.edge_id, s.camera_id) for s in drawn})
            for y, row in enumerate(rows):
                spans = [(s.start_s, max(s.end_s - s.start_s, 0.0)) for s in drawn if (s.edge_id, s.camera_id) == row]
                if wall_clock:
                    spans = [(_days(start), duration / 86400.0) for start, duration in spans]
                axes.broken_barh(spans, (y - 0.3, 0.6), color="tab:blue")
                axes.plot([s[0] + s[1] / 2 for s in spans], [y] * len(spans), "|", color="tab:blue", markersize=12)
            axes.set_yticks(range(len(rows)), [f"{edge} / {camera}" for edge, camera in rows])
            axes.set_ylim(-0.7, len(rows) - 0.3)
            if wall_clock:
                axes.xaxis_date(tz=dt.UTC)
                axes.set_xlabel("time (UTC)")
                figure.autofmt_xdate()
            else:
                axes.set_xlabel("video +s: seconds into the recording (a replay without recorded_at)")
            axes.grid(axis="x", alpha=0.3)
            if len(drawn) < len(sightings):
                title += f" ({len(sightings) - len(drawn)} replay sighting(s) without wall-clock time not drawn)"
        axes.set_title(f"{title}: {len(sightings)} sighting(s)", fontsize=10)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png")
    return out.getvalue()


def _days(seconds: float) -> float:
    from matplotlib.dates import date2num

    return float(date2num(dt.datetime.fromtimestamp(seconds, tz=dt.UTC)))
