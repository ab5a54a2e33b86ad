"""An edge with several hub replicas (issue 12): address lists, moving to the next replica when one dies,
resuming there, and saying so. Real gRPC test hubs on 127.0.0.1 (tests/crossview_testing/hub_fixture.py);
the two-replica PostgreSQL chaos test is tests/integration/test_replica_failover.py.

No timing assertions: every wait is on a condition, with a generous timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from crossview_testing import hub_fixture

from crossview.config import ConfigError, load_config
from crossview.edge_command import ReplayConfig
from edge.embed_worker import SHORT_LIST_KIND, UplinkSettings, short_list_entry
from edge.gallery import EdgeGallery
from edge.uplink.hub_link import HubLink
from edge.uplink.outbox import Outbox
from edge.uplink.replicas import ReplicaRotation, split_targets
from edge.uplink.settings import HubLinkSettings
from models.errors import InvalidInputError
from models.types import Crop, Embeddings, Tracklet

FP, DIM, TOKEN = "edge-test-model@1", 8, "test-token"


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:7443", ("127.0.0.1:7443",)),
    ("hub-a:7443,hub-b:7443", ("hub-a:7443", "hub-b:7443")),
    (" hub-a:7443 , hub-b:7443 ", ("hub-a:7443", "hub-b:7443")),
    ("[::1]:7443,[::1]:7444", ("[::1]:7443", "[::1]:7444")),
    ("dns:///hub.example:7443", ("dns:///hub.example:7443",)),
    ("ipv4:10.0.0.1:7443,10.0.0.2:7443", ("ipv4:10.0.0.1:7443,10.0.0.2:7443",)),  # one gRPC target
    ("", InvalidInputError),
    ("hub-a:7443,", InvalidInputError),
    ("hub-a:7443,hub-a:7443", InvalidInputError),
    ("hub a:7443", InvalidInputError),
    (None, InvalidInputError),
])
def test_split_targets(text: object, expected: object) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected, match="hub address: expected"):
            split_targets(text)  # type: ignore[arg-type]
    else:
        assert split_targets(text) == expected  # type: ignore[arg-type]


def test_rotation_goes_round_and_names_moves() -> None:
    rotation = ReplicaRotation(("a:1", "b:2", "c:3"))
    assert [rotation.current] + [rotation.advance() for _ in range(3)] == ["a:1", "b:2", "c:3", "a:1"]
    assert rotation.welcomed("hub-a") is None  # the first session is no move
    assert rotation.welcomed("hub-a") is None  # the same replica again
    rotation.advance()
    move = rotation.welcomed("hub-b")
    assert move is not None and str(move) == "moved to hub replica hub-b at b:2 (was hub-a at a:1)"
    assert rotation.welcomed("hub-b2") is not None  # another replica behind the same address (one DNS name)
    with pytest.raises(InvalidInputError, match="expected at least one"):
        ReplicaRotation(())


@pytest.mark.parametrize(("overrides", "expected"), [
    (["hub.addresses=hub-a:7443,hub-b:7443"], "hub-a:7443,hub-b:7443"),
    (["hub.addresses=[hub-a:7443, hub-b:7443]"], "hub-a:7443,hub-b:7443"),
    (["hub.target=old:1", "hub.addresses=hub-a:7443"], "hub-a:7443"),
    (["hub.target=hub-a:7443,hub-b:7443"], "hub-a:7443,hub-b:7443"),
    (["hub.addresses=hub-a:7443,,hub-b:7443"], ConfigError),
    (["hub.addresses=[hub-a:7443, hub-a:7443]"], ConfigError),
])
def test_hub_addresses_setting(overrides: list[str], expected: object) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected, match="hub address: expected"):
            load_config(ReplayConfig, None, overrides)
    else:
        cfg = load_config(ReplayConfig, None, overrides)
        assert cfg.hub.target == expected
        assert HubLinkSettings(cfg.hub.target, TOKEN).targets == tuple(expected.split(","))  # type: ignore[union-attr]


# -- two replicas -------------------------------------------------------------------------------------

def short_list(link: HubLink, i: int) -> str:
    image = np.full((64, 32, 3), 40 + 10 * i, np.uint8)
    crops = (Crop(image, "cam-a", 1000.0 + i), Crop(image[:, ::-1].copy(), "cam-a", 1000.5 + i))
    vector = np.random.default_rng(i).normal(size=(1, DIM)).astype(np.float32)
    t = Tracklet(f"t{i}", "cam-a", i, 1000.0 + i, 1002.0 + i, crops, Embeddings(vector, FP))
    key, payload = short_list_entry(t, [], edge_id=link.edge_id, model_fingerprint=FP,
                                    gallery_version=link.gallery.version,
                                    uplink=UplinkSettings(crops=2, max_height=128, jpeg_quality=80),
                                    max_bytes=link.outbox.max_payload_bytes)
    link.outbox.put(SHORT_LIST_KIND, payload, key)
    link.notify()
    return key


@pytest.fixture
def replicas() -> Iterator[tuple[hub_fixture.HubFixture, hub_fixture.HubFixture]]:
    a = hub_fixture.make_hub(token=TOKEN, hub_id="replica-a")
    b = hub_fixture.make_hub(token=TOKEN, hub_id="replica-b")
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def make_link(tmp_path: Path) -> Iterator[Callable[[str], HubLink]]:
    made: list[tuple[HubLink, EdgeGallery, Outbox]] = []

    def make(target: str) -> HubLink:
        gallery, outbox = EdgeGallery(tmp_path / "gallery.db", FP, DIM, k1=4, k2=2), Outbox(tmp_path / "outbox.db")
        settings = HubLinkSettings(target, TOKEN, heartbeat_s=0.2, initial_backoff_s=0.05, max_backoff_s=0.3)
        link = HubLink(settings, "edge-1", ["cam-a"], FP, gallery, outbox)
        made.append((link, gallery, outbox))
        link.start()
        return link

    yield make
    for link, gallery, outbox in made:
        link.stop()
        gallery.close()
        outbox.close()


def acked_by(hub: hub_fixture.HubFixture, keys: list[str]) -> Callable[[hub_fixture.HubFixture], bool]:
    return lambda h: set(keys) <= set(h.accepted)


def test_edge_moves_to_the_next_replica_and_back(replicas, make_link, caplog: pytest.LogCaptureFixture) -> None:
    a, b = replicas
    caplog.set_level(logging.INFO, logger="edge.uplink.hub_link")
    link = make_link(f"{a.address},{b.address}")
    assert link.wait_connected(30)
    first = [short_list(link, i) for i in range(3)]
    a.wait_for(acked_by(a, first), 30, "replica A to store the first short lists")
    wait_until(lambda: link.outbox.depth() == 0, what="the outbox to drain at replica A")

    a.stop()  # replica A dies: the edge moves to B and the outbox goes on there
    second = [short_list(link, i) for i in range(3, 6)]
    b.wait_for(acked_by(b, second), 30, "replica B to store the later short lists")
    wait_until(lambda: link.outbox.depth() == 0 and link.stats().connected, what="the outbox to drain at B")
    stats = link.stats()
    assert (stats.hub_id, stats.hub_address, stats.moves) == ("replica-b", b.address, 1)
    moves = [r.getMessage() for r in caplog.records if "moved to hub replica" in r.getMessage()]
    assert moves == [f"hub link: moved to hub replica replica-b at {b.address} (was replica-a at {a.address})"]
    assert b.hellos[-1].gallery_version == a.hellos[-1].gallery_version  # the session resumed, not restarted

    a.start()  # A is back, B dies: round the list to A
    b.stop()
    third = [short_list(link, i) for i in range(6, 8)]
    a.wait_for(acked_by(a, third), 30, "replica A to store the last short lists")
    wait_until(lambda: link.stats().moves == 2 and link.outbox.depth() == 0, what="the move back to A")
    every = a.accepted + b.accepted
    assert sorted(every) == sorted(first + second + third)  # each exactly once, nothing lost
    assert sum(a.deliveries.values()) + sum(b.deliveries.values()) == len(every)  # nothing was even re-sent


def test_unacknowledged_short_lists_follow_the_edge(replicas, make_link) -> None:
    """A replica that dies holding short lists it never acknowledged: the outbox re-sends them to the next."""
    a, b = replicas
    a.hold_acks = True
    link = make_link(f"{a.address},{b.address}")
    keys = [short_list(link, i) for i in range(4)]
    a.wait_for(acked_by(a, keys), 30, "replica A to receive the short lists (never acknowledged)")
    assert link.outbox.depth() == 4
    a.stop()
    b.wait_for(acked_by(b, keys), 30, "replica B to receive them again")
    wait_until(lambda: link.outbox.depth() == 0, what="the outbox to drain at B")
    assert sorted(b.accepted) == sorted(keys) and link.stats().moves == 1


def test_one_grpc_target_resolving_to_two_replicas(replicas, make_link) -> None:
    """``ipv4:A,B`` is one gRPC target: gRPC's own resolution and pick_first skip the dead replica."""
    a, b = replicas
    link = make_link(f"ipv4:{a.address},{b.address}")
    assert link.wait_connected(30) and link.stats().hub_id == "replica-a"
    a.stop()
    key = short_list(link, 0)
    b.wait_for(acked_by(b, [key]), 30, "replica B, behind the same target, to store the short list")
    wait_until(lambda: link.stats().moves == 1, what="the move to be counted")
    assert link.stats().hub_id == "replica-b" and link.target == f"ipv4:{a.address},{b.address}"
