"""The REST API stays optional: FastAPI, uvicorn and matplotlib are imported only by cloud/api (FastAPI) and
lazily (matplotlib), so the hub's gRPC side runs without them; the web UI is served from cloud/web/static."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from crossview_testing.hub_api import HubApi

from cloud.api.routes.web import STATIC_DIR
from cloud.running import RunningHub
from models.errors import CrossviewError

ROOT = Path(__file__).resolve().parents[3]
WEB_ONLY = {"fastapi", "uvicorn", "starlette", "pydantic", "matplotlib"}


def _module_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_cloud_api_imports_the_web_stack() -> None:
    offenders = []
    for path in (ROOT / "cloud").rglob("*.py"):
        inside_api = (ROOT / "cloud" / "api") in path.parents
        allowed = WEB_ONLY - {"matplotlib"} if inside_api else set()
        offenders += [f"{path.relative_to(ROOT)}: {m}" for m in _module_level_imports(path) & WEB_ONLY - allowed]
    assert offenders == [], offenders


def test_the_hub_imports_without_the_web_stack() -> None:
    code = ("import sys, cloud.hub, cloud.running, crossview.hub_command; "
            f"print(sorted(m for m in {sorted(WEB_ONLY)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_web_ui_is_served(api: HubApi) -> None:
    page = httpx.get(f"{api.url}/")  # no log-in: the page itself asks for one
    if not (STATIC_DIR / "index.html").is_file():
        assert page.status_code == 404 and "web UI is not installed" in page.json()["detail"]
        return
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in [*sorted(p.name for p in STATIC_DIR.glob("*.js"))[:3], "style.css"]:
        if (STATIC_DIR / name).is_file():
            reply = httpx.get(f"{api.url}/static/{name}")
            assert reply.status_code == 200 and reply.content == (STATIC_DIR / name).read_bytes(), name
    assert httpx.get(f"{api.url}/static/../../hub.py").status_code == 404
    assert httpx.get(f"{api.url}/static/nothing.js").status_code == 404


def test_a_busy_api_port_is_one_clear_error(api: HubApi, tmp_path: Path) -> None:
    with pytest.raises(CrossviewError, match=r"REST API: cannot listen on 127\.0\.0\.1:"):
        RunningHub(data_dir=tmp_path / "second", api_port=api.running.api_port,
                   verifier=api.running.hub.shortlists.verifier).start()
    assert api.client.get("/api/me").status_code == 200
