"""Web UI helpers for the browser tests that are not fixtures (those are in tests/browser/conftest.py).

    from crossview_testing.web_ui import wait_for_search
"""

from __future__ import annotations

from typing import Any


def wait_for_search(page: Any, query: str, timeout_s: float | None = None) -> None:
    """Wait until the results on the search page are those of `query` (as the page describes it, e.g.
    ``identity ID``, ``sighting N``, ``photo: NAME``); `timeout_s` None: the context's default timeout."""
    page.wait_for_function("(query) => document.querySelector('[data-testid=search-query]')?.textContent === query",
                           arg=query, timeout=None if timeout_s is None else timeout_s * 1000)
