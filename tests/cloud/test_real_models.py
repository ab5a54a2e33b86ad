"""The hub's default wiring on real weights: zoo models per edge fingerprint, the `reid` judge.

Skipped without ../shared/models and ../shared/data. A wiring check with a loose bar, not an
accuracy benchmark. The decision reads the fused, calibrated P(same) (the zoo's calibrations, fitted on
CUHK03): on these Market-1501-mini queries the right person is the most likely candidate almost every
time, but some are below the confirm line (P(same) 0.5) and stay unknown; a wrong confirmation is what
must not happen.
"""

from __future__ import annotations

import collections
from pathlib import Path

import cv2
import numpy as np
import pytest

from cloud.hub import Hub
from cloud.wire import decode_short_list
from models.types import Crop, Tracklet
from protos import codec

EDGE_MODEL = "reid/intel-0288"


def test_enrol_and_confirm_with_real_models(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    root = data_dir / "market1501_mini"
    if not (root / "query").is_dir():
        pytest.skip(f"{root} is missing")
    from models.embed import create_embedder

    edge = create_embedder(EDGE_MODEL)
    hub = Hub.create(data_dir=tmp_path / "hub")  # default: zoo embedders, `reid` judge (0277 + 0286)
    try:
        hub.store.register_edge("edge-a", now=0.0)
        hub.store.record_hello("edge-a", site="", model_fingerprint=edge.fingerprint, embedding_dim=edge.dim,
                               cameras=[], gallery_version=0, acked_sequence=0, hub_id=hub.hub_id, now=0.0)
        by_person: dict[str, list[Path]] = collections.defaultdict(list)
        for path in sorted((root / "bounding_box_test").glob("*.jpg")):
            by_person[path.name.split("_")[0]].append(path)
        ids = {person: hub.gallery.enroll([paths[0].read_bytes()], display_name=person).identity_id
               for person, paths in by_person.items()}
        gallery = hub.gallery.matrix(edge.fingerprint)  # computed at the hub with the edge's model
        assert len(gallery.identity_ids) == len(ids) and gallery.vectors.shape[1] == edge.dim

        queries = sorted((root / "query").glob("*.jpg"))[::4]
        correct = most_likely_right = confirmed = 0
        for i, path in enumerate(queries):
            image = cv2.imread(str(path))
            embedding = edge.embed([image])
            distances = 1.0 - gallery.vectors @ embedding.vectors[0]
            candidates = [(gallery.identity_ids[j], float(distances[j])) for j in np.argsort(distances)[:5]]
            tracklet = Tracklet(f"t{i}", "cam-1", i, 0.0, 1.0, (Crop(image, "cam-1", 0.0),), embedding)
            msg = codec.short_list_to_proto(tracklet, candidates, idempotency_key=f"k{i}", edge_id="edge-a",
                                            created_s=1.0)
            outcome = hub.shortlists.process(decode_short_list(msg, edge_id="edge-a", fingerprint=edge.fingerprint,
                                                               dim=edge.dim))
            verdict = outcome.verdict
            assert verdict is not None and verdict.judge == "reid"
            truth = ids[path.name.split("_")[0]]
            assert all(0.0 <= p <= 1.0 for p in verdict.scores.values())
            most_likely_right += max(verdict.scores, key=verdict.scores.get) == truth
            confirmed += verdict.decision == "confirmed"
            correct += verdict.decision == "confirmed" and verdict.identity_id == truth
        assert most_likely_right >= len(queries) - 1, f"{most_likely_right} of {len(queries)} ranked right"
        assert correct == confirmed >= len(queries) // 2, f"{correct} of {confirmed} confirmations right"
    finally:
        hub.store.close()
        hub.executor.shutdown()
