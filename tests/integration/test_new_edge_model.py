"""Rolling out a new edge model (issue 14): an edge configured with a user-registered Re-ID model joins a
hub whose old-model edge keeps working beside it.

The hub runs in this process (`cloud.running.RunningHub`, SQLite, the default `reid` judge and zoo
embedders); each edge is opened from its configuration the way `crossview edge replay|run` opens it
(`embedder=` a registered user model's name, or the stock `reid/intel-0288`). The new model is OSNet
x0.25 with one weight tensor scaled by 1 %: new weights, new fingerprint, vectors of the same kind.

1. identity A is enrolled; the old edge connects and syncs A in intel-0288 vectors;
2. the new edge connects: the hub embeds the gallery with the user model (looked up by fingerprint in
   the same user models folder) and the edge syncs A in that model's vectors;
3. B and C are enrolled while both are connected: each edge gets them in its own model's vectors;
4. each edge recalls a held-out crop of each person as that person.

Real models and Market-1501 crops from ../shared (skipped where absent). No timing assertions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cloud import wire
from cloud.running import RunningHub
from models.zoo import USER_MODELS_ENV, get_spec, resolve_model
from protos.crossview.v1 import session_pb2

NEW_MODEL = "reid/site-v1"
OLD_MODEL = "reid/intel-0288"
PEOPLE = 3


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def nudged_osnet(path: Path) -> Path:
    """OSNet x0.25 with its largest weight tensor scaled by 1.01 (a stand-in for a fine-tuned file)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(resolve_model("reid/osnet-x0.25-msmt17").path))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    largest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(largest) * np.float32(1.01), largest.name))
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def people(models_dir: Path, data_dir: Path) -> list[tuple[list[bytes], np.ndarray]]:
    """(two enrolment JPEGs from the gallery split, one query crop) of the first Market-1501 ids with enough."""
    market = data_dir / "market1501_mini"
    if not (market / "query").is_dir():
        pytest.skip(f"{market} is absent")
    found = []
    for query in sorted((market / "query").glob("*.jpg")):
        pid = query.name[:4]
        gallery = sorted((market / "bounding_box_test").glob(f"{pid}_*.jpg"))
        if len(gallery) >= 2 and pid not in {p for p, _, _ in found}:
            found.append((pid, [f.read_bytes() for f in gallery[:2]], cv2.imread(str(query))))
    if len(found) < PEOPLE:
        pytest.skip(f"need {PEOPLE} Market-1501 ids with a query and two gallery crops in {market}")
    return [(enrol, query) for _, enrol, query in found[:PEOPLE]]


def open_edge(workdir: Path, edge_id: str, embedder: str, hub: RunningHub) -> Any:
    """An edge node built from its settings as the `crossview edge` commands build it."""
    from crossview.edge_command import HubConnectionConfig, ReplayConfig, _open_node

    token = hub.create_edge_token(edge_id)
    cfg = ReplayConfig(workdir=str(workdir), edge_id=edge_id, embedder=embedder,
                       hub=HubConnectionConfig(target=hub.grpc_address, token=token, heartbeat_s=0.5))
    node = _open_node(cfg, workdir, ["cam"])
    node.start()
    assert node.wait_connected(60), f"{edge_id} did not connect"
    return node


def test_a_new_model_edge_joins_and_the_old_model_edge_keeps_working(
        people: list[tuple[list[bytes], np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.embed import create_embedder
    from models.zoo.user import add_user_model

    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "user-models"))  # the hub's and the edges' machine
    new_fp = add_user_model(NEW_MODEL, nudged_osnet(tmp_path / "site-v1.onnx"), "reid/osnet-x0.25-msmt17"
                            ).spec.fingerprint
    old_fp = get_spec(OLD_MODEL).fingerprint
    assert new_fp != get_spec("reid/osnet-x0.25-msmt17").fingerprint

    with RunningHub(data_dir=tmp_path / "hub", api_port=None) as running:
        gallery, store = running.hub.gallery, running.hub.store
        ids = [gallery.enroll(people[0][0], display_name="person-0").identity_id]
        old = open_edge(tmp_path / "edge-old", "edge-old", OLD_MODEL, running)
        try:
            assert old.wait_gallery(60) and old.gallery.model_fingerprint == old_fp
            new = open_edge(tmp_path / "edge-new", "edge-new", NEW_MODEL, running)
            try:
                assert new.wait_gallery(60), "the new-model edge got no gallery"
                assert new.gallery.model_fingerprint == new_fp and new.gallery.dim == 512
                assert store.fingerprints() >= {old_fp, new_fp}
                ids += [gallery.enroll(enrol, display_name=f"person-{n}").identity_id
                        for n, (enrol, _) in enumerate(people[1:], start=1)]
                for edge in (old, new):
                    wait_until(lambda e=edge: len(e.gallery.identities()) == PEOPLE,
                               what=f"{edge.edge_id} to sync {PEOPLE} people")

                # the hub's vectors for the new fingerprint are the user model's (not stock OSNet's) of the crops
                # it stores, and on the wire they say which model made them
                user_model, stock = create_embedder(NEW_MODEL), create_embedder("reid/osnet-x0.25-msmt17")
                for identity_id in ids:
                    hub_vectors = store.get_embeddings(identity_id, new_fp)
                    assert hub_vectors is not None and hub_vectors.shape == (2, 512)
                    stored = [cv2.imread(str(running.hub.crops.path(c.path)))
                              for c in store.reference_crops(identity_id)]
                    same = np.sum(hub_vectors * user_model.embed(stored).vectors, axis=1)
                    assert same.min() > 0.9999
                    assert np.all(np.sum(hub_vectors * stock.embed(stored).vectors, axis=1) < same)
                    assert store.get_embeddings(identity_id, old_fp).shape == (2, 256)  # type: ignore[union-attr]
                for fp in (new_fp, old_fp):
                    message = session_pb2.HubMessage.FromString(
                        wire.gallery_delta_payload(gallery.delta_since(0, fp)[0], fp))
                    sent = {v.model_fingerprint for u in message.gallery_delta.upserts for v in u.vectors}
                    assert sent == {fp}

                # each edge tells the people apart with its own model's gallery
                old_model = create_embedder(OLD_MODEL)
                for edge, embedder in ((old, old_model), (new, user_model)):
                    for identity_id, (_, query) in zip(ids, people, strict=True):
                        recalled, _ = edge.gallery.recall(embedder.embed([query]), top_k=1)
                        assert recalled[0] == identity_id, f"{edge.edge_id}: {recalled}"
                records = {e.edge_id: e for e in store.list_edges()}
                assert records["edge-old"].model_fingerprint == old_fp
                assert records["edge-new"].model_fingerprint == new_fp
                assert old.link is not None and old.link.stats().connected  # still in session beside the new edge
            finally:
                new.close()
        finally:
            old.close()
