"""The hub's web UI in Chromium against a real hub (gRPC + REST API on 127.0.0.1, SQLite) and real in-process
edge nodes; the models are stand-ins (a blob "tracker" and a colour "embedder", tests/crossview_testing), so this
needs no weights. tests/browser/test_ui_real_models.py tells the same story on the sample videos.

No timing assertions: every wait is on a condition with a generous timeout.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from crossview_testing.edge_fakes import BlobTracker, write_video
from crossview_testing.hub_api import ColourEmbedder, HubApi, colour_hub_kwargs, colour_jpeg, start_hub_api
from crossview_testing.web_ui import wait_for_search

from edge.node import EdgeNode
from edge.pipeline import TrackletSettings
from edge.shortlist import ShortListPolicy
from edge.uplink.settings import HubLinkSettings

RED, GREEN = (40, 40, 230), (40, 230, 40)  # BGR


@pytest.fixture
def site(tmp_path: Path, ui: Any) -> Iterator[HubApi]:
    """A hub on the colour model that makes automatic identities of people nobody matched."""
    with start_hub_api(tmp_path, username=ui.USERNAME, password=ui.PASSWORD,
                       **colour_hub_kwargs(allow_new_identities=True)) as api:
        yield api


def colour_edge(tmp_path: Path, api: HubApi, edge_id: str, camera: str) -> EdgeNode:
    token = api.running.create_edge_token(edge_id)
    return EdgeNode(tmp_path / edge_id, edge_id, [camera], tracker=BlobTracker(), embedder=ColourEmbedder(),
                    tracklets=TrackletSettings(close_after_s=0.5, min_quality=0.0),
                    policy=ShortListPolicy(3, min_p_same=0.95),  # uncalibrated: cosine distance <= 0.05
                    send_unmatched=True,
                    hub=HubLinkSettings(api.running.grpc_address, token, heartbeat_s=0.5, initial_backoff_s=0.05,
                                        max_backoff_s=0.5))


def replay(edge: EdgeNode, video: Path, camera: str) -> None:
    assert edge.wait_connected(30)
    report = edge.replay([video], [camera], progress=False)
    assert report.ok
    assert edge.wait_outbox_drained(60), "the hub did not acknowledge every short list"


def identities(api: HubApi) -> list[dict[str, Any]]:
    return api.client.get("/api/identities").json()


@pytest.fixture
def seen(site: HubApi, tmp_path: Path, ui: Any) -> Iterator[tuple[HubApi, EdgeNode]]:
    """Camera "door" of edge-colour has seen a red and then a green person: two automatic identities."""
    with colour_edge(tmp_path, site, "edge-colour", "door") as edge:
        edge.start()
        replay(edge, write_video(tmp_path / "door.mp4", [RED, GREEN]), "door")
        ui.wait_until(lambda: len(identities(site)) == 2, what="two automatic identities")
        yield site, edge


def red_crop(edge: EdgeNode, api: HubApi) -> Path:
    """The edge's best crop of the red person (the sighting whose crop is reddest)."""
    import cv2

    for sighting in api.client.get("/api/sightings").json():
        record = edge.store.get_tracklet(sighting["tracklet_id"])
        if record is not None and record.crop_paths:
            _, green, red = cv2.imread(str(record.crop_paths[0])).reshape(-1, 3).mean(axis=0)
            if red > 2 * green:
                return Path(record.crop_paths[0])
    raise AssertionError("no red crop on the edge")


def test_every_page_needs_a_login_and_login_errors_show_the_api_detail(site: HubApi, page: Any, ui: Any) -> None:
    page.goto(f"{site.url}/#/edges")
    page.wait_for_selector("body[data-page=login]")
    assert page.get_by_test_id("alerts-panel").is_hidden()
    page.get_by_test_id("login-username").fill(ui.USERNAME)
    page.get_by_test_id("login-password").fill("wrong")
    page.get_by_test_id("login-submit").click()
    page.wait_for_selector("[data-testid=error]:visible")
    assert page.get_by_test_id("error").inner_text() == "wrong username or password"
    page.get_by_test_id("login-password").fill(ui.PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.wait_for_selector("body[data-page=edges]")  # back where the operator wanted to go
    assert page.get_by_test_id("current-user").inner_text() == ui.USERNAME
    assert page.get_by_test_id("alerts-panel").is_visible()
    page.get_by_test_id("logout").click()
    page.wait_for_selector("body[data-page=login]")
    page.goto(f"{site.url}/#/identities")  # the session is over: the cookie no longer opens pages
    page.wait_for_selector("body[data-page=login]")
    assert site.client.get("/api/me").status_code == 200  # other sessions are untouched


def test_an_expired_session_sends_the_operator_to_log_in_again(tmp_path: Path, page: Any, ui: Any) -> None:
    now = [time.time()]
    with start_hub_api(tmp_path, username=ui.USERNAME, password=ui.PASSWORD, session_ttl_s=3600,
                       operator_clock=lambda: now[0], **colour_hub_kwargs()) as api:
        ui.log_in(page, api.url)
        ui.go(page, "identities")
        now[0] += 3601  # the operator's session runs out while the page is open
        page.get_by_test_id("nav-edges").click()
        page.wait_for_selector("body[data-page=login]")
        assert page.get_by_test_id("error").inner_text() == "session expired; log in again"
        ui.log_in_here(page)
        page.wait_for_selector("body[data-page=edges]")  # back on the page that was asked for


def test_search_by_photo_open_identity_watch_and_get_a_live_alert(seen: tuple[HubApi, EdgeNode], tmp_path: Path,
                                                                   page: Any, ui: Any) -> None:
    api, edge = seen
    crop = red_crop(edge, api)
    ui.log_in(page, api.url)
    page.get_by_test_id("photo-input").set_input_files(str(crop))
    page.wait_for_selector("[data-testid=result]")
    red = page.locator("[data-testid=result][data-verdict=same]").first
    identity_id = red.get_attribute("data-identity-id")
    assert identity_id and identity_id.startswith("auto-")
    assert red.get_attribute("data-camera-id") == "door"
    red.click()
    page.wait_for_selector(f"[data-testid=identity-page][data-identity-id='{identity_id}']")
    ui.wait_until(lambda: page.evaluate("() => document.querySelector('[data-testid=timeline]').naturalWidth") > 0,
                  what="the timeline image")
    assert page.locator("[data-testid=sighting-row][data-camera-id=door]").count() == 1

    page.get_by_test_id("watch-threshold-input").fill("0.3")
    page.get_by_test_id("watch-button").click()
    page.wait_for_selector("[data-testid=unwatch-button]")
    assert "0.30" in page.get_by_test_id("watch-status").inner_text()
    assert [i["identity_id"] for i in api.client.get("/api/watchlist").json()] == [identity_id]
    assert page.locator("[data-testid=alert]").count() == 0

    # another edge's camera sees the red person: the hub confirms the watched identity and alerts
    with colour_edge(tmp_path, api, "edge-hall", "hall") as hall:
        hall.start()
        assert hall.wait_gallery(30)
        replay(hall, write_video(tmp_path / "hall.mp4", [RED]), "hall")
    alert = page.locator(f"[data-testid=alert][data-identity-id='{identity_id}']")
    alert.wait_for()
    assert page.locator("[data-testid=alert]").first.get_attribute("data-identity-id") == identity_id  # newest on top
    assert "hall" in alert.get_by_test_id("alert-camera").inner_text()
    alert.click()  # an alert opens its identity, now seen on two cameras
    page.wait_for_selector("[data-testid=sighting-row][data-camera-id=hall]")


def test_the_drop_zone_takes_a_dropped_or_chosen_photo_and_ids_search_too(seen: tuple[HubApi, EdgeNode], page: Any,
                                                                         ui: Any, tmp_path: Path) -> None:
    api, edge = seen
    ui.log_in(page, api.url)
    chosen = tmp_path / "chosen.jpg"
    chosen.write_bytes(red_crop(edge, api).read_bytes())
    with page.expect_file_chooser() as chooser:  # a click on the zone opens the file picker
        page.get_by_test_id("dropzone").click()
    chooser.value.set_files(str(chosen))
    wait_for_search(page, "photo: chosen.jpg")

    photo = base64.b64encode(chosen.read_bytes()).decode()
    dropped = page.evaluate_handle("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
        return transfer;
    }""", photo)
    page.dispatch_event("[data-testid=dropzone]", "drop", {"dataTransfer": dropped})
    wait_for_search(page, "photo: dropped.jpg")
    assert page.locator("[data-testid=previews] img").count() == 1
    assert page.locator("[data-testid=result][data-camera-id=door]").count() >= 1

    sighting = api.client.get("/api/sightings").json()[0]  # by sighting id: that sighting's tracklet comes first
    page.get_by_test_id("search-sighting-input").fill(str(sighting["sighting_id"]))
    page.get_by_test_id("search-sighting-submit").click()
    wait_for_search(page, f"sighting {sighting['sighting_id']}")
    first = page.locator("[data-testid=result]").first
    assert first.get_attribute("data-identity-id") == sighting["identity_id"]
    page.get_by_test_id("search-sighting-input").fill("999999")
    page.get_by_test_id("search-sighting-submit").click()
    page.wait_for_selector("[data-testid=error]:visible")
    assert page.get_by_test_id("error").inner_text() == "unknown sighting 999999"


def test_enroll_from_photos_and_the_identities_page(seen: tuple[HubApi, EdgeNode], page: Any, ui: Any,
                                                    tmp_path: Path) -> None:
    api, _ = seen
    photos = []
    for seed in range(2):
        photos.append(tmp_path / f"blue-{seed}.jpg")
        photos[-1].write_bytes(colour_jpeg("blue", seed=seed))
    (tmp_path / "notes.txt").write_text("not a photo")
    ui.log_in(page, api.url)
    ui.go(page, "enroll")
    page.get_by_test_id("enroll-name").fill("Blue visitor")
    page.get_by_test_id("enroll-photos").set_input_files(str(tmp_path / "notes.txt"))
    page.get_by_test_id("enroll-submit").click()
    page.wait_for_selector("[data-testid=error]:visible")
    assert page.get_by_test_id("error").inner_text() == "photo 'notes.txt' is not a JPEG or PNG image"

    page.get_by_test_id("enroll-photos").set_input_files([str(p) for p in photos])
    page.get_by_test_id("enroll-watch").check()
    page.get_by_test_id("enroll-threshold").fill("0.25")
    page.get_by_test_id("enroll-submit").click()
    page.wait_for_selector("[data-testid=identity-page]")
    assert page.get_by_test_id("identity-name").inner_text() == "Blue visitor"
    assert page.locator("[data-testid=identity-crops] img").count() == 2
    assert "0.25" in page.get_by_test_id("watch-status").inner_text()
    assert page.get_by_test_id("error").is_hidden()
    blue = page.get_by_test_id("identity-page").get_attribute("data-identity-id")
    page.get_by_test_id("search-this").click()  # the edges are asked for this person
    wait_for_search(page, f"identity {blue}")
    assert page.get_by_test_id("search-summary").is_visible()

    ui.go(page, "identities")
    page.wait_for_selector("[data-testid=identity-card]")
    assert page.locator("[data-testid=identity-card]").count() == 3  # two automatic ones and the enrolled one
    assert page.locator("[data-testid=identity-card][data-source=auto]").count() == 2
    rows = page.locator("[data-testid=watchlist-row]")
    assert rows.count() == 1 and "Blue visitor" in rows.first.inner_text()
    page.get_by_test_id("identities-filter").fill("blue")
    assert page.locator("[data-testid=identity-card]").count() == 1
    rows.first.get_by_test_id("watchlist-remove").click()
    page.wait_for_selector("[data-testid=watchlist-empty]")
    assert api.client.get("/api/watchlist").json() == []

    page.goto(f"{api.url}/#/identity/nobody")
    page.wait_for_selector("[data-testid=error]:visible")
    assert page.get_by_test_id("error").inner_text() == "unknown identity 'nobody'"


def test_edges_page_shows_each_edge_its_cameras_and_outbox(seen: tuple[HubApi, EdgeNode], page: Any,
                                                           ui: Any) -> None:
    api, edge = seen
    ui.log_in(page, api.url)
    ui.go(page, "edges")
    row = page.locator("[data-testid=edge-row][data-edge-id=edge-colour]")
    row.wait_for()
    assert row.get_attribute("data-connected") == "true"
    assert row.locator("[data-testid=camera][data-camera-id=door]").count() == 1
    ui.wait_until(lambda: row.get_by_test_id("edge-outbox").inner_text() == "0", what="outbox depth 0")
    assert row.get_by_test_id("edge-heartbeat-age").inner_text().endswith("ago")
    # its replay is over: the camera says so (not "running" at a lifetime-average frame rate)
    ui.wait_until(lambda: row.get_by_test_id("camera-status").inner_text() == " · finished", what="finished")
    edge.close()  # the edge goes away: the page (refreshing by itself) says so
    page.wait_for_selector("[data-testid=edge-row][data-edge-id=edge-colour][data-connected=false]")


def test_the_ui_loads_nothing_from_outside_the_hub(seen: tuple[HubApi, EdgeNode], page: Any, ui: Any) -> None:
    api, edge = seen
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(api.url))
    requested: list[str] = []

    def record(route: Any) -> None:
        requested.append(route.request.url)
        if route.request.url.startswith((origin + "/", "data:")):
            route.continue_()
        else:
            route.abort()
    page.context.route("**/*", record)

    ui.log_in(page, api.url)
    page.get_by_test_id("photo-input").set_input_files(str(red_crop(edge, api)))
    page.locator("[data-testid=result][data-verdict=same]").first.click()
    page.wait_for_selector("[data-testid=identity-page]")
    ui.images_loaded(page)
    for route in ("identities", "enroll", "edges", "search"):
        ui.go(page, route)
        ui.images_loaded(page)
    fonts = page.evaluate("() => [...document.fonts].map((font) => font.family)")
    assert fonts == []  # system fonts only: no web font to fetch
    assert any(url.startswith(f"{origin}/api/alerts/stream") for url in requested)  # the recording saw the page
    outside = [url for url in requested if not url.startswith((origin + "/", "data:"))]
    assert outside == []


def test_search_by_identity_shows_the_stored_sightings_when_no_edge_is_connected(
        seen: tuple[HubApi, EdgeNode], page: Any, ui: Any) -> None:
    api, edge = seen
    edge.close()  # every edge gone: the hub's own sightings are all there is
    ui.wait_until(lambda: not any(e["connected"] for e in api.client.get("/api/edges").json()),
                  what="the edge's disconnect")
    red = api.client.get("/api/sightings").json()[0]  # either person: each was seen once, on "door"
    identity_id = red["identity_id"]
    ui.log_in(page, api.url)
    page.get_by_test_id("search-identity-input").fill(identity_id)
    page.get_by_test_id("search-identity-submit").click()
    wait_for_search(page, f"identity {identity_id}")
    stored = page.locator("[data-testid=stored-sighting]")
    assert stored.count() == 1 and stored.first.get_attribute("data-sighting-id") == str(red["sighting_id"])
    assert "video +" in stored.first.inner_text()  # a replay without recorded_at, labelled as such
    assert page.get_by_test_id("no-edges").inner_text() == "No edge is connected to the hub"
    assert "only the hub's stored sightings are shown" in page.get_by_test_id("search-summary").inner_text()
    assert page.locator("[data-testid=result]").count() == 0
    help_text = page.get_by_test_id("p-same-help").inner_text()
    assert "P(same) 0.9: about 9 in 10 such matches are the same person" in help_text
    stored.first.click()  # a stored sighting opens its identity
    page.wait_for_selector(f"[data-testid=identity-page][data-identity-id='{identity_id}']")
    page.get_by_test_id("watch-threshold-input").fill("1.5")  # a P(same) is at most 1
    page.get_by_test_id("watch-button").click()
    page.wait_for_selector("[data-testid=error]:visible")
    assert page.get_by_test_id("error").inner_text() == "threshold: expected a P(same) in [0, 1], got 1.5"
    assert api.client.get("/api/watchlist").json() == []


def test_unknown_people_are_listed_searchable_and_saved_as_identities(tmp_path: Path, page: Any, ui: Any) -> None:
    """A hub that makes no automatic identities: people nobody matched are unknown sightings, not lost."""
    with start_hub_api(tmp_path, username=ui.USERNAME, password=ui.PASSWORD, **colour_hub_kwargs()) as api:
        with colour_edge(tmp_path, api, "edge-colour", "door") as edge:
            edge.start()
            replay(edge, write_video(tmp_path / "door.mp4", [RED, GREEN]), "door")
        unknown = ui.wait_until(lambda: len(api.client.get("/api/sightings", params={"unknown": "true"}).json()) == 2
                                and api.client.get("/api/sightings", params={"unknown": "true"}).json(),
                                what="two unknown sightings")
        assert identities(api) == []
        ui.log_in(page, api.url)
        ui.go(page, "identities")
        cards = page.locator("[data-testid=unknown-sighting]")
        cards.first.wait_for()
        assert cards.count() == 2
        newest = page.locator(f"[data-testid=unknown-sighting][data-sighting-id='{unknown[0]['sighting_id']}']")
        newest.get_by_test_id("unknown-search").click()  # searchable: the search page, by that sighting
        wait_for_search(page, f"sighting {unknown[0]['sighting_id']}")
        assert page.locator("[data-testid=stored-sighting]").count() == 1
        ui.go(page, "identities")
        newest.wait_for()
        newest.get_by_test_id("unknown-name").fill("Green visitor")
        newest.get_by_test_id("unknown-save").click()  # promoted: an identity, with that sighting as its own
        page.wait_for_selector("[data-testid=identity-page]")
        assert page.get_by_test_id("identity-name").inner_text() == "Green visitor"
        assert page.locator(f"[data-testid=sighting-row][data-sighting-id='{unknown[0]['sighting_id']}']").count() == 1
        assert len(api.client.get("/api/sightings", params={"unknown": "true"}).json()) == 1
