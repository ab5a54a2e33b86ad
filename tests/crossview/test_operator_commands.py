"""The operator commands (`crossview enroll / search / watch / alerts`) against a real hub: gRPC + REST API
on 127.0.0.1 (tests/crossview_testing/hub_api.py, colour stand-in model, no weights needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from crossview_testing.hub_api import HubApi, colour_hub_kwargs, colour_jpeg, start_hub_api
from typer.testing import CliRunner

from crossview.api_client import HubApiError, HubClient
from crossview.operator_commands import register

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def api(tmp_path: Path) -> Iterator[HubApi]:
    with start_hub_api(tmp_path / "hub", **colour_hub_kwargs()) as running_api:
        yield running_api


def run(api: HubApi, *args: str) -> str:
    result = runner.invoke(cli(), [*args, "--hub", api.url, "--user", api.username, "--password", api.password])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def photo(tmp_path: Path, colour: str, seed: int = 0) -> Path:
    path = tmp_path / f"{colour}-{seed}.jpg"
    path.write_bytes(colour_jpeg(colour, seed=seed))
    return path


def test_enroll_watch_list_and_unwatch(api: HubApi, tmp_path: Path) -> None:
    out = run(api, "enroll", str(photo(tmp_path, "red")), str(photo(tmp_path, "red", 1)), "--name", "visitor")
    assert "2 reference crop(s)" in out and "visitor" in out and "not watched" in out
    identity_id = out.split()[1]
    assert [i["identity_id"] for i in api.client.get("/api/identities").json()] == [identity_id]

    assert "watched at 0.350" in run(api, "watch", identity_id, "--threshold", "0.35")
    listing = run(api, "watch")
    assert identity_id in listing and "0.350" in listing and "visitor" in listing
    assert "not watched" in run(api, "watch", identity_id, "--remove")
    assert identity_id not in run(api, "watch")


def test_search_with_no_edge_connected_says_so(api: HubApi, tmp_path: Path) -> None:
    out = run(api, "search", str(photo(tmp_path, "blue")), "--deadline", "1")
    assert "0 hit(s) from 0 of 0 edge(s)" in out


def test_a_token_instead_of_a_password(api: HubApi, tmp_path: Path) -> None:
    result = runner.invoke(cli(), ["enroll", str(photo(tmp_path, "green")), "--hub", api.url, "--token", api.token])
    assert result.exit_code == 0 and "1 reference crop(s)" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["enroll"], "give photos or --sighting ID"),
    (["search"], "exactly one of them"),
    (["enroll", "/nonexistent/x.jpg"], "no such file"),
    (["watch", "nobody"], "404 unknown identity"),
    (["enroll", "--sighting", "999"], "404"),
])
def test_bad_requests_are_one_line_errors(api: HubApi, args: list[str], message: str) -> None:
    with pytest.raises(HubApiError, match=message) as caught:
        run(api, *args)
    assert "\n" not in str(caught.value)


def test_wrong_password_and_unreachable_hub(api: HubApi, tmp_path: Path) -> None:
    result = runner.invoke(cli(), ["watch", "--hub", api.url, "--password", "wrong"])
    assert isinstance(result.exception, HubApiError) and "401" in str(result.exception)
    with HubClient("http://127.0.0.1:9") as client, pytest.raises(HubApiError, match="cannot reach the hub"):
        client.login("admin", "x")
    with pytest.raises(HubApiError, match="expected http"):
        HubClient("127.0.0.1:8080")
    result = runner.invoke(cli(), ["watch", "--hub", api.url])
    assert isinstance(result.exception, HubApiError) and "no credentials" in str(result.exception)
