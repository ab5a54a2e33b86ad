"""The web UI's files (cloud/web/static), checked without a browser: every module that app.js imports exists,
and nothing in them points outside the hub (the browser tests check the same at run time)."""

from __future__ import annotations

import re
from pathlib import Path

from cloud.web import INDEX_HTML, STATIC_DIR

IMPORT = re.compile(r"""^\s*import\s[^'"]*?from\s+["']([^"']+)["']""", re.MULTILINE)
EXTERNAL = re.compile(r"""(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*["']?(https?:|//)""", re.IGNORECASE)


def imported_modules(entry: Path) -> set[Path]:
    """`entry` and every module it imports, transitively (relative ES module imports only)."""
    seen: set[Path] = set()
    pending = [entry]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        assert module.is_file(), f"{module.relative_to(STATIC_DIR)} is imported but missing"
        for target in IMPORT.findall(module.read_text()):
            assert target.startswith("./") or target.startswith("../"), f"{module.name} imports {target!r}"
            pending.append((module.parent / target).resolve())
    return seen


def test_the_page_and_its_modules_are_there() -> None:
    assert INDEX_HTML.is_file() and INDEX_HTML.parent == STATIC_DIR
    html = INDEX_HTML.read_text()
    assert 'src="/static/app.js"' in html and 'href="/static/style.css"' in html
    modules = imported_modules(STATIC_DIR / "app.js")
    on_disk = {p.resolve() for p in STATIC_DIR.rglob("*.js")}
    assert modules == on_disk, f"modules nothing imports: {sorted(str(p) for p in on_disk - modules)}"


def test_no_file_points_outside_the_hub() -> None:
    offenders = [f"{path.relative_to(STATIC_DIR)}: {match.group(0)}"
                 for path in sorted(STATIC_DIR.rglob("*")) if path.suffix in {".html", ".js", ".css"}
                 for match in EXTERNAL.finditer(path.read_text())]
    assert offenders == []
