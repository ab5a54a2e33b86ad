"""Browser tests: Playwright's sync API driving Debian's Chromium (no browser download); skipped with a
reason when either is missing.

Screenshots (1280×800) go to $CROSSVIEW_SCREENSHOTS when it is set (``CROSSVIEW_SCREENSHOTS=docs/img`` refreshes
the README's pictures), else to the test's temporary folder, so a plain test run leaves the checkout unchanged.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

VIEWPORT = {"width": 1280, "height": 800}
USERNAME, PASSWORD = "admin", "correct horse battery staple"


def chromium_executable() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@pytest.fixture(scope="module")  # not the session: other tests' asyncio.run() must not outlive the Playwright loop
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class PageErrors:
    """Uncaught JavaScript errors of a page (console 4xx noise is expected: the UI shows those errors itself)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, error: Any) -> None:
        self.errors.append(str(error))


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) at 1280×800; fails the test on an uncaught JavaScript error."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    opened = context.new_page()
    errors = PageErrors()
    opened.on("pageerror", errors)
    try:
        yield opened
    finally:
        context.close()
    assert errors.errors == [], f"uncaught JavaScript errors: {errors.errors}"


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Any, str], Path]:
    """`screenshot(page, "search")` writes ui-search.png (see the module docstring for where)."""
    folder = Path(os.environ.get("CROSSVIEW_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = folder / f"ui-{name}.png"
        images_loaded(page)  # not "networkidle": the alerts stream never idles
        page.screenshot(path=str(path))
        return path
    return take


def images_loaded(page: Any, timeout_s: float = 30.0) -> None:
    """Wait until every <img> on the page has finished loading (or failed)."""
    page.wait_for_function("[...document.images].every((img) => img.complete)", timeout=timeout_s * 1000)


def log_in(page: Any, url: str, username: str = USERNAME, password: str = PASSWORD) -> None:
    """Open the UI at `url` and log in; waits for the search page."""
    page.goto(url)
    log_in_here(page, username, password)
    page.wait_for_selector("body[data-page=search]")


def log_in_here(page: Any, username: str = USERNAME, password: str = PASSWORD) -> None:
    """Fill in and send the log-in form the page shows now."""
    page.wait_for_selector("body[data-page=login]")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()


def go(page: Any, route: str) -> None:
    """Follow a nav link (``search``, ``identities``, ``enroll``, ``edges``) and wait for the page."""
    page.get_by_test_id(f"nav-{route}").click()
    page.wait_for_selector(f"body[data-page={route}]")


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


@pytest.fixture
def ui() -> SimpleNamespace:
    """The helpers above, for the test modules (tests are not a package)."""
    return SimpleNamespace(log_in=log_in, log_in_here=log_in_here, go=go, wait_until=wait_until,
                           images_loaded=images_loaded, USERNAME=USERNAME, PASSWORD=PASSWORD)
