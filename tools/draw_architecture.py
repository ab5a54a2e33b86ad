"""Draw the architecture picture of docs/architecture.md: boxes and arrows, matplotlib (Agg).

    python tools/draw_architecture.py [--out docs/img/architecture.png]

Left, at run time: one edge node (detect → track → tracklets → embed → recall → short list →
outbox → uplink) and the hub (sessions, verification with the judge, gallery, search, store,
REST API + web UI), joined by the one gRPC stream the edge dials. Right, at import time: the
floors, each importing only the floors below it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

EDGE, HUB, SHARED, OUTSIDE = "#dbe9f6", "#fde5cc", "#e3f1de", "#eeeeee"  # pale fills, dark text
WIDTH, HEIGHT = 2.3, 0.62


def box(ax, x: float, y: float, text: str, colour: str, w: float = WIDTH, h: float = HEIGHT) -> tuple:
    """A rounded box centred at (x, y); returns its centre for arrows."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="#444444", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=7.5)
    return (x, y)


def arrow(ax, a: tuple, b: tuple, label: str = "", both: bool = False, dy: float = HEIGHT / 2,
          style: str = "-") -> None:
    """An arrow from box a to box b, leaving and entering at their top/bottom (or sides when level)."""
    (x0, y0), (x1, y1) = a, b
    if abs(y0 - y1) < 1e-6:
        sx = 1 if x1 > x0 else -1
        start, end = (x0 + sx * WIDTH / 2, y0), (x1 - sx * WIDTH / 2, y1)
    else:
        sy = 1 if y1 > y0 else -1
        start, end = (x0, y0 + sy * dy), (x1, y1 - sy * dy)
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "<|-|>" if both else "-|>", "color": "#333333", "lw": 0.9,
                            "linestyle": style, "shrinkA": 1, "shrinkB": 1})
    if label:  # above a level arrow, right of any other
        level = abs(y0 - y1) < 1e-6
        ax.text((start[0] + end[0]) / 2 + (0 if level else 0.08), (start[1] + end[1]) / 2 + (0.08 if level else 0),
                label, fontsize=6.5, ha="center" if level else "left", va="bottom" if level else "center",
                color="#333333", style="italic")


def run_time(ax) -> None:
    ax.set_title("at run time: one edge node and the hub", fontsize=10)
    ex, hx = 1.6, 6.4
    ax.text(ex, 9.55, "edge node (edge/), one per site", ha="center", fontsize=8.5, weight="bold")
    ax.text(hx, 9.55, "hub (cloud/), one or more replicas", ha="center", fontsize=8.5, weight="bold")
    cams = box(ax, ex, 8.9, "cameras, files, RTSP, webcam\n(edge/sources)", OUTSIDE)
    det = box(ax, ex, 7.9, "detector + tracker\n(YOLO, ByteTrack / BoT-SORT)", EDGE)
    trk = box(ax, ex, 6.9, "tracklets: best crops\nby quality score", EDGE)
    emb = box(ax, ex, 5.9, "embedder: small Re-ID model\n(OpenVINO, ONNX RT, torch, TensorRT)", EDGE)
    gal = box(ax, ex, 4.9, "gallery + k-reciprocal\nre-ranking (GalleryIndex)", EDGE)
    pol = box(ax, ex, 3.9, "short-list policy:\ncalibrated P(same) ≥ min_p_same", EDGE)
    out = box(ax, ex, 2.9, "outbox (SQLite, WAL)\n+ local store (edge/storage)", EDGE)
    upl = box(ax, ex, 1.9, "uplink: the hub link\n(edge/uplink, gRPC)", EDGE)
    for a, b in ((cams, det), (det, trk), (trk, emb), (emb, gal), (gal, pol), (pol, out), (out, upl)):
        arrow(ax, a, b)

    ses = box(ax, hx, 1.9, "sessions, one per edge\n(cloud/edge_session, server)", HUB)
    row = [box(ax, hx - 1.65, 3.4, "verification: judge\n(MLLM or larger Re-ID),\ncalibrate, fuse, decide",
               HUB, w=1.55, h=0.8),
           box(ax, hx, 3.4, "gallery\n(versions, deltas\nsynced to edges)", HUB, w=1.55, h=0.8),
           box(ax, hx + 1.65, 3.4, "search fan-out\n(jobs to edges,\nhits judged)", HUB, w=1.55, h=0.8)]
    sto = box(ax, hx, 5.0, "store: identities, sightings,\nalerts (SQLite / PostgreSQL)", HUB)
    api = box(ax, hx, 6.4, "REST API (FastAPI)\n+ web UI", HUB)
    ops = box(ax, hx, 8.0, "operators: browser,\ncrossview CLI", OUTSIDE)
    arrow(ax, upl, ses, "one stream,\nedge dials out", both=True)
    for part in row:
        arrow(ax, ses, part, both=True, dy=0.4)
        arrow(ax, part, sto, dy=0.4)
    arrow(ax, sto, api, both=True)
    arrow(ax, ops, api, "HTTP")
    ax.text(hx, 0.95, "down: gallery deltas, search jobs, verdicts\nup: short lists, search results"
            "\nboth: acks, heartbeats (protos/crossview/v1)", ha="center", va="center", fontsize=6.5)
    ax.set_xlim(0.2, 9.0)
    ax.set_ylim(0.4, 9.8)


def floors(ax) -> None:
    ax.set_title("at import time: the floors", fontsize=10)
    top = box(ax, 1.5, 8.6, "tools/\nbenchmarks, eval, export", OUTSIDE, w=2.4)
    cli = box(ax, 1.5, 7.1, "crossview/\nthe CLI, configuration", OUTSIDE, w=2.4)
    edg = box(ax, 0.4, 5.6, "edge/", EDGE, w=1.1)
    hub = box(ax, 2.6, 5.6, "cloud/", HUB, w=1.1)
    per = box(ax, 0.55, 4.1, "persist/\nSQLite, durable", SHARED, w=1.3)
    pro = box(ax, 2.45, 4.1, "protos/\nthe wire", SHARED, w=1.3)
    mod = box(ax, 1.5, 2.6, "models/\nthe ML core", SHARED, w=2.4)
    arrow(ax, top, cli)
    for side in (edg, hub):
        arrow(ax, cli, side)
        arrow(ax, side, per)
        arrow(ax, side, pro)
        arrow(ax, side, mod, dy=HEIGHT / 2)
    arrow(ax, pro, mod)
    ax.text(1.5, 5.6, "never\neach other", ha="center", va="center", fontsize=6.5, color="#aa0000")
    ax.text(1.5, 1.5, "an arrow: may import\n(tests/test_layout.py keeps it so)", ha="center",
            va="center", fontsize=6.5)
    ax.set_xlim(-0.4, 3.4)
    ax.set_ylim(0.4, 9.8)


def draw(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 6.6), dpi=110,
                                      gridspec_kw={"width_ratios": [2.1, 0.9]})
    try:
        for ax in (left, right):
            ax.set_axis_off()
        run_time(left)
        floors(right)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/architecture.png"))
    print(draw(parser.parse_args().out))


if __name__ == "__main__":
    main()
