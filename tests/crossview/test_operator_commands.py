"""The operator commands (`crossview enroll / search / watch / alerts`) against a real hub: gRPC + REST API
on 127.0.0.1 (tests/crossview_testing/hub_api.py, colour stand-in model, no weights needed)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from crossview_testing.colour_model import ColourEmbedder
from crossview_testing.hub_api import COLOUR_FP, HubApi, colour_hub_kwargs, colour_jpeg, start_hub_api
from typer.testing import CliRunner

from cloud.wire import ShortListInput
from crossview.api_client import HubApiError, HubClient
from crossview.operator_commands import register
from models.errors import InvalidInputError
from models.scores import DEFAULT_WATCH_P_SAME

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

    assert "watched at P(same) >= 0.35" in run(api, "watch", identity_id, "--threshold", "0.35")
    listing = run(api, "watch")
    assert identity_id in listing and "0.35" in listing and "visitor" in listing and "P(same)" in listing
    assert f"watched at P(same) >= {DEFAULT_WATCH_P_SAME:.2f}" in run(api, "watch", identity_id)  # the default
    assert "not watched" in run(api, "watch", identity_id, "--remove")
    assert identity_id not in run(api, "watch")


def test_search_with_no_edge_connected_says_so(api: HubApi, tmp_path: Path) -> None:
    result = runner.invoke(cli(), ["search", str(photo(tmp_path, "blue")), "--deadline", "1", "--hub", api.url,
                                   "--password", api.password])
    assert result.exit_code == 1 and "no edge is connected to the hub: nothing was searched" in result.output


def _seen(api: HubApi, key: str, colour: str, candidates: list[tuple[str, float]], start_s: float) -> int:
    """A short list from edge-a through the hub's real short-list service; the sighting it made."""
    crop = cv2.imdecode(np.frombuffer(colour_jpeg(colour), np.uint8), cv2.IMREAD_COLOR)
    item = ShortListInput(key, "edge-a", "cam-1", f"t-{key}", 1, start_s, start_s + 4.0, (crop,),
                          (colour_jpeg(colour),), ColourEmbedder().embed([crop]).vectors[0], COLOUR_FP,
                          tuple(candidates), start_s, 0)
    outcome = api.running.hub.shortlists.process(item)
    assert outcome.sighting_id is not None
    return outcome.sighting_id


def test_search_by_identity_shows_the_hub_s_sightings_first(api: HubApi, tmp_path: Path) -> None:
    """No edge connected: `search --identity` lists what the hub holds of that person, with wall-clock times."""
    api.running.create_edge_token("edge-a")  # an edge of the colour model was here once (now disconnected)
    api.running.hub.store.record_hello("edge-a", site="", model_fingerprint=COLOUR_FP, embedding_dim=12, cameras=[],
                                       gallery_version=0, acked_sequence=0, hub_id="gone", now=0.0)
    api.running.hub.store.record_disconnect("edge-a", hub_id="gone", now=1.0)
    out = run(api, "enroll", str(photo(tmp_path, "red")), "--name", "visitor")
    identity_id = out.split()[1]
    by_identity = runner.invoke(cli(), ["search", "--identity", identity_id, "--deadline", "1", "--hub", api.url,
                                        "--password", api.password])
    assert by_identity.exit_code == 1  # nothing stored yet, nobody to ask
    assert "no edge is connected to the hub, and the hub holds no sighting of this person" in by_identity.output
    live = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC: a live camera's time
    mine = [_seen(api, f"k{i}", "red", [(identity_id, 0.1)], live + 60 * i) for i in range(3)]
    stranger = _seen(api, "k9", "blue", [(identity_id, 0.5)], 220.4)  # a replay without recorded_at
    result = runner.invoke(cli(), ["search", "--identity", identity_id, "--deadline", "1", "--hub", api.url,
                                   "--password", api.password])
    assert result.exit_code == 0, result.output
    assert "stored at the hub: 3 sighting(s)" in result.output
    assert "no edge is connected to the hub: only the hub's stored sightings are shown" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.split()[:1] in ([str(i)] for i in mine)]
    assert [r[0] for r in rows] == [str(i) for i in reversed(mine)]  # newest first
    assert rows[-1][1:7] == ["visitor", "edge-a", "cam-1", "2026-11-18", "11:06:40", "UTC"]
    assert all(0.5 <= float(r[7]) <= 1 for r in rows)  # the fused P(same) of a confirmed sighting
    by_unknown = run(api, "search", "--sighting", str(stranger), "--deadline", "1")
    assert "(unknown person)" in by_unknown and "video +220.4 s" in by_unknown


@pytest.mark.parametrize("args", [["watch", "id-x", "--threshold", "1.5"], ["watch", "id-x", "--threshold", "-0.1"],
                                  ["enroll", "x.jpg", "--watch", "2"]])
def test_thresholds_outside_0_1_are_refused(api: HubApi, args: list[str]) -> None:
    with pytest.raises(InvalidInputError, match=r"threshold: expected a P\(same\) in \[0, 1\]"):
        run(api, *args)


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


def test_alerts_say_when_the_person_was_seen_and_the_p_same(api: HubApi, tmp_path: Path) -> None:
    api.running.create_edge_token("edge-a")
    api.running.hub.store.record_hello("edge-a", site="", model_fingerprint=COLOUR_FP, embedding_dim=12, cameras=[],
                                       gallery_version=0, acked_sequence=0, hub_id="gone", now=0.0)
    out = run(api, "enroll", str(photo(tmp_path, "red")), "--name", "visitor", "--watch", "0.5")
    assert "watched at P(same) >= 0.50" in out
    sighting = _seen(api, "k1", "red", [(out.split()[1], 0.1)], 1_795_000_000.0)
    lines = run(api, "alerts", "--count", "1").splitlines()
    assert len(lines) == 1 and f"sighting {sighting}" in lines[0]
    assert "visitor on edge-a/cam-1, seen 2026-11-18 11:06:40–11:06:44 UTC (P(same) " in lines[0]


# ------------------------------------------------------------------ admins: crossview operators ... / audit ...
def admin_cli() -> typer.Typer:
    from crossview.admin_commands import register as register_admin

    app = typer.Typer()
    register(app)
    register_admin(app)
    return app


def run_admin(api: HubApi, *args: str, user: tuple[str, str] | None = None, stdin: str | None = None,
              new_password: str | None = None) -> str:
    username, password = user or (api.username, api.password)
    env = {"CROSSVIEW_NEW_PASSWORD": new_password} if new_password is not None else {}
    result = runner.invoke(admin_cli(), [*args, "--hub", api.url, "--user", username, "--password", password],
                           input=stdin, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_operators_commands_manage_accounts(api: HubApi) -> None:
    out = run_admin(api, "operators", "add", "watcher", "--role", "viewer", stdin="pw one\npw one\n")
    assert out.splitlines()[-1] == "operator watcher: viewer, enabled"  # the password was prompted for, twice
    assert "pw one" not in out
    listing = run_admin(api, "operators", "list")
    assert listing.splitlines()[0].split() == ["operator", "role", "state", "created"]
    assert any(line.split()[:3] == ["watcher", "viewer", "enabled"] for line in listing.splitlines())
    assert run_admin(api, "operators", "set-role", "watcher", "operator") == "operator watcher: operator, enabled\n"
    assert run_admin(api, "operators", "disable", "watcher") == "operator watcher: operator, disabled\n"
    with pytest.raises(HubApiError, match="operator 'watcher' is disabled"):
        HubClient(api.url).login("watcher", "pw one")
    assert run_admin(api, "operators", "enable", "watcher") == "operator watcher: operator, enabled\n"
    out = run_admin(api, "operators", "reset-password", "watcher", new_password="pw two")
    assert out == "operator watcher: operator, enabled; its sessions were ended\n"
    with HubClient(api.url) as client:
        client.login("watcher", "pw two")
        with pytest.raises(HubApiError, match=r"^GET /api/operators: 403 forbidden: 'watcher' is an operator; this "
                                              r"needs the admin role$"):
            client.operators()


@pytest.mark.parametrize(("args", "message"), [
    (["operators", "set-role", "admin", "viewer"], "409 cannot demote 'admin': it is the last enabled admin"),
    (["operators", "set-role", "watcher", "root"], "role: expected one of viewer, operator, admin, got 'root'"),
    (["operators", "disable", "nobody"], "404 unknown operator 'nobody'"),
    (["audit", "list", "--since", "yesterday"], "--since: expected Unix seconds or an ISO 8601 time"),
    (["audit", "list", "--action", "dance"], "400 action: expected one of"),
    (["audit", "export", "--format", "xml"], "--format: expected csv or jsonl, got 'xml'"),
])
def test_admin_commands_bad_input_is_one_line(api: HubApi, args: list[str], message: str) -> None:
    with pytest.raises(HubApiError, match=message) as caught:
        run_admin(api, *args)
    assert "\n" not in str(caught.value)


def test_audit_list_and_export(api: HubApi, tmp_path: Path) -> None:
    out = run(api, "enroll", str(photo(tmp_path, "red")), "--name", "visitor")
    identity_id = out.split()[1]
    run(api, "watch", identity_id, "--threshold", "0.4")
    listing = run_admin(api, "audit", "list", "--action", "watch", "--since", "2020-01-01T00:00")
    [header, line] = listing.splitlines()
    assert header.split()[:4] == ["id", "time", "(UTC)", "operator"]
    assert line.split()[2:7] == [api.username, "admin", "127.0.0.1", "watch", identity_id]
    assert run_admin(api, "audit", "list", "--action", "watch", "--until", "2020-01-01").splitlines()[1:] == []
    paged = run_admin(api, "audit", "list", "--limit", "2").splitlines()
    assert len(paged) == 4 and paged[-1].startswith("more: --before ")
    target = tmp_path / "audit.csv"
    run_admin(api, "audit", "export", "--output", str(target), "--target", identity_id)
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [r["action"] for r in rows] == ["enrol", "watch"] and rows[1]["detail"] == "threshold 0.4"
    jsonl = run_admin(api, "audit", "export", "--format", "jsonl", "--operator", api.username, "--action", "enrol")
    assert [json.loads(x)["target"] for x in jsonl.splitlines()] == [identity_id]
