"""`send_unmatched=true`: an edge sends tracklets nobody in the gallery matched as short lists without
candidates, and the real hub (gRPC on 127.0.0.1, SQLite, the `reid` judge on a colour "model") accepts
them and, allowing new identities, gives each person an automatic identity with a sighting and vectors
of the edge's model (what the gallery sync then sends to edges). Fakes for the models
(tests/crossview_testing/edge_fakes.py), so no weights are needed. No timing assertions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crossview_testing.edge_fakes import (
    FP,
    JUDGE_CALIBRATION,
    MIN_P_SAME,
    BlobTracker,
    ColourEmbedder,
    write_video,
)

import edge.detect_track
import models.embed
from cloud.running import RunningHub
from cloud.verification import DecisionPolicy, JudgeVerifier
from crossview.config import load_config
from crossview.edge_command import ReplayConfig, replay_command
from models.verify.reid_judge import ReidJudge

RED, GREEN = (40, 40, 230), (40, 230, 40)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command builds its models by name; here it gets the fakes."""
    monkeypatch.setattr(models.embed, "create_embedder", lambda *a, **k: ColourEmbedder())
    monkeypatch.setattr(edge.detect_track, "PersonTracker", lambda *a, **k: BlobTracker())


def running_hub(tmp_path: Path, *, allow_new_identities: bool) -> RunningHub:
    verifier = JudgeVerifier(ReidJudge(embedders=[ColourEmbedder()]),
                             DecisionPolicy(allow_new_identities=allow_new_identities), name="reid",
                             calibration=JUDGE_CALIBRATION)
    return RunningHub(data_dir=tmp_path / "hub", api_port=None, verifier=verifier,
                      embedder_factory=lambda fingerprint: ColourEmbedder())


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Any]:
    with running_hub(tmp_path, allow_new_identities=True) as running:
        yield running


def test_the_option_is_off_by_default_and_read_from_the_config() -> None:
    assert load_config(ReplayConfig, None, []).send_unmatched is False
    assert load_config(ReplayConfig, None, ["send_unmatched=true"]).send_unmatched is True


def test_unmatched_tracklets_become_automatic_identities_at_the_hub(tmp_path: Path, hub: Any, fake_models: None,
                                                                   capsys: pytest.CaptureFixture) -> None:
    token = hub.create_edge_token("edge-u")
    video = write_video(tmp_path / "a.mp4", [RED, GREEN])
    overrides = ["edge_id=edge-u", "send_unmatched=true", "tracklets.close_after_s=0.5", "tracklets.min_quality=0.0",
                 f"min_p_same={MIN_P_SAME}", f"hub.target={hub.grpc_address}", f"hub.token={token}",
                 "hub.drain_timeout_s=30"]
    assert replay_command([video], ["cam"], overrides=overrides, workdir=tmp_path / "w", progress=False) == 0
    assert "holds 0 unsent" in capsys.readouterr().out
    store = hub.hub.store
    sightings = store.sightings(edge_id="edge-u")
    # red and green: nobody matched them on the edge, both went up
    assert len(sightings) == 2 and {s.camera_id for s in sightings} == {"cam"}
    identities = {s.identity_id for s in sightings}
    assert len(identities) == 2 and all(i.startswith("auto-") for i in identities)
    assert {store.get_identity(i).source for i in identities} == {"auto"}  # type: ignore[union-attr]
    assert all(s.p_same is None and s.stage1_p_same is None for s in sightings)  # made of itself: nothing compared
    assert all(store.get_embeddings(i, FP).shape[0] >= 1 for i in identities)  # vectors of the edge's model


def test_without_the_option_unmatched_tracklets_stay_on_the_edge(tmp_path: Path, hub: Any, fake_models: None
                                                                 ) -> None:
    token = hub.create_edge_token("edge-u")
    video = write_video(tmp_path / "a.mp4", [RED])
    overrides = ["edge_id=edge-u", "tracklets.close_after_s=0.5", "tracklets.min_quality=0.0",
                 f"hub.target={hub.grpc_address}", f"hub.token={token}", "hub.drain_timeout_s=30"]
    assert replay_command([video], ["cam"], overrides=overrides, workdir=tmp_path / "w", progress=False) == 0
    assert hub.hub.store.sightings(edge_id="edge-u") == []
    assert hub.hub.store.count_short_lists() == 0


def test_a_hub_without_new_identities_keeps_them_as_unknown_sightings(tmp_path: Path, fake_models: None) -> None:
    """Nobody vanishes: every short list the hub acknowledged is a sighting, of nobody known."""
    with running_hub(tmp_path, allow_new_identities=False) as hub:
        token = hub.create_edge_token("edge-u")
        overrides = ["edge_id=edge-u", "send_unmatched=true", "tracklets.close_after_s=0.5",
                     "tracklets.min_quality=0.0",
                     f"hub.target={hub.grpc_address}", f"hub.token={token}", "hub.drain_timeout_s=30"]
        video = write_video(tmp_path / "a.mp4", [RED, GREEN])
        assert replay_command([video], ["cam"], overrides=overrides, workdir=tmp_path / "w", progress=False) == 0
        store = hub.hub.store
        unknown = store.sightings(unknown=True)
        assert len(unknown) == store.count_short_lists("edge-u") == 2
        assert store.list_identities() == [] and all(s.edge_id == "edge-u" for s in unknown)
