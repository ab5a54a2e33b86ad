"""The admin page in Chromium against a real hub (issue 12): operators listed, added, disabled and re-roled; the
audit trail listed and filtered; a viewer sees no admin link and is refused the page. No timing assertions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crossview_testing.hub_api import HubApi, colour_hub_kwargs, start_hub_api


@pytest.fixture
def site(tmp_path: Path, ui: Any) -> Iterator[HubApi]:
    with start_hub_api(tmp_path, username=ui.USERNAME, password=ui.PASSWORD, **colour_hub_kwargs()) as api:
        yield api


def test_an_admin_manages_operators_and_reads_the_audit_trail(site: HubApi, page: Any, ui: Any) -> None:
    ui.log_in(page, site.url)
    ui.go(page, "admin")
    page.wait_for_selector("[data-testid=operator-row][data-username=admin]")
    page.get_by_test_id("new-operator-name").fill("watcher")
    page.get_by_test_id("new-operator-password").fill("watcher password")
    page.get_by_test_id("new-operator-role").select_option("viewer")
    page.get_by_test_id("add-operator").locator("button[type=submit]").click()
    row = page.locator("[data-testid=operator-row][data-username=watcher]")
    row.wait_for()
    assert row.get_by_test_id("operator-role").input_value() == "viewer"
    row.get_by_test_id("operator-disable").click()
    page.wait_for_selector("[data-testid=operator-row][data-username=watcher] [data-testid=operator-enable]")
    assert {o["username"]: o["disabled"] for o in site.client.get("/api/operators").json()}["watcher"] is True
    page.locator("[data-testid=operator-row][data-username=watcher] [data-testid=operator-role]").select_option(
        "operator")
    ui.wait_until(lambda: {o["username"]: o["role"] for o in site.client.get("/api/operators").json()}["watcher"]
                  == "operator", what="the new role stored")
    # the admin demoting itself is refused with the API's own line
    page.locator("[data-testid=operator-row][data-username=admin] [data-testid=operator-role]").select_option("viewer")
    page.wait_for_selector("[data-testid=error]:visible")
    assert page.get_by_test_id("error").inner_text() == "cannot demote 'admin': it is the last enabled admin"

    page.get_by_test_id("audit-action").fill("operator_created")
    page.get_by_test_id("audit-filters").locator("button[type=submit]").click()
    ui.wait_until(lambda: page.get_by_test_id("audit-row").count() == 1, what="one operator_created line")
    assert "watcher" in page.get_by_test_id("audit-row").inner_text()
    assert "action=operator_created" in page.get_by_test_id("audit-export-csv").get_attribute("href")


def test_a_viewer_has_no_admin_page(site: HubApi, page: Any, ui: Any) -> None:
    site.client.post("/api/operators", json={"username": "watcher", "password": "watcher password", "role": "viewer"})
    ui.log_in(page, site.url, "watcher", "watcher password")
    assert page.get_by_test_id("nav-admin").is_hidden()
    page.goto(f"{site.url}/#/admin")
    page.wait_for_selector("body[data-page=admin]")
    assert page.get_by_test_id("error").inner_text() == "forbidden: this page is for admins; you are a viewer"
