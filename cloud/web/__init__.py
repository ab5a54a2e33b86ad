"""The hub's web UI: static files only (HTML, CSS and vanilla JS modules; no build step, nothing external).

The REST API (cloud/api) mounts `STATIC_DIR` at ``/static`` and serves ``STATIC_DIR / "index.html"`` at ``/``.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR: Path = Path(__file__).resolve().parent / "static"
INDEX_HTML: Path = STATIC_DIR / "index.html"

__all__ = ["INDEX_HTML", "STATIC_DIR"]
