"""An identity's timeline as a PNG: one row per (edge, camera), one bar per sighting (matplotlib Agg)."""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections.abc import Sequence

from cloud.store import SightingRecord

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
            wall_clock = min(s.start_s for s in sightings) > 1e9  # edge times are Unix seconds in production
            for y, row in enumerate(rows):
                spans = [(s.start_s, max(s.end_s - s.start_s, 0.0)) for s in sightings
                         if (s.edge_id, s.camera_id) == row]
                if wall_clock:
                    spans = [(_days(start), duration / 86400.0) for start, duration in spans]
                axes.broken_barh(spans, (y - 0.3, 0.6), color="tab:blue")
                axes.plot([s[0] + s[1] / 2 for s in spans], [y] * len(spans), "|", color="tab:blue", markersize=12)
            axes.set_yticks(range(len(rows)), [f"{edge} / {camera}" for edge, camera in rows])
            axes.set_ylim(-0.7, len(rows) - 0.3)
            if wall_clock:
                axes.xaxis_date()
                figure.autofmt_xdate()
            else:
                axes.set_xlabel("time (s)")
            axes.grid(axis="x", alpha=0.3)
        axes.set_title(f"{title}: {len(sightings)} sighting(s)")
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png")
    return out.getvalue()


def _days(seconds: float) -> float:
    from matplotlib.dates import date2num

    return float(date2num(dt.datetime.fromtimestamp(seconds, tz=dt.UTC)))
