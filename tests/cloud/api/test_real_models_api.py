"""The REST API on the hub's default wiring with real weights: enrol a CUHK03 photo, read it back, and search
with the real `reid` judge. Skipped without CROSSVIEW_MODELS / CROSSVIEW_DATA."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from crossview_testing.hub_api import start_hub_api

from protos import codec
from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, session_pb2

EDGE_MODEL = "reid/intel-0288"


def test_enrol_and_search_with_real_models(models_dir: Path, data_dir: Path, tmp_path: Path,
                                           kit: types.SimpleNamespace) -> None:
    photos = data_dir / "cuhk03_labeled" / "val"
    if not (photos / "0000_00.jpg").is_file():
        pytest.skip(f"{photos} is missing")
    from models.embed import create_embedder

    edge_model = create_embedder(EDGE_MODEL)
    with start_hub_api(tmp_path) as api:  # default Hub.create: zoo embedders, `reid` judge
        async def run() -> None:
            edge = kit.EdgeClient(api.running.grpc_port, api.running.create_edge_token("edge-a"))
            await edge.send(kit.hello("edge-a", fingerprint=edge_model.fingerprint, dim=edge_model.dim))
            assert (await edge.recv()).WhichOneof("body") == "welcome"
            original = (photos / "0000_00.jpg").read_bytes()
            reply = await asyncio.to_thread(api.client.post, "/api/identities", data={"display_name": "person 0"},
                                            files=[("photos", ("0000_00.jpg", original, "image/jpeg"))])
            assert reply.status_code == 201, reply.text
            identity = reply.json()
            vectors = api.running.hub.store.get_embeddings(identity["identity_id"], edge_model.fingerprint)
            assert vectors is not None and vectors.shape == (1, edge_model.dim)  # the edge's model, run at the hub
            crop = (await asyncio.to_thread(api.client.get, identity["crop_urls"][0])).content
            back = cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR)
            assert back.shape == cv2.imread(str(photos / "0000_00.jpg")).shape

            async def answer() -> None:
                message = await edge.recv_until(lambda m: m.WhichOneof("body") == "search_job")
                job = message.search_job
                hits = []
                for name in ("0001_00", "0000_05"):
                    jpeg = (photos / f"{name}.jpg").read_bytes()
                    vector = edge_model.embed([cv2.imread(str(photos / f"{name}.jpg"))]).vectors
                    hits.append(edge_to_hub_pb2.SearchHit(
                        tracklet_id=name, camera_id="cam-1", stage1_distance=0.4, crop=common_pb2.CropImage(jpeg=jpeg),
                        vector=codec.vector_to_proto(vector[0], edge_model.fingerprint)))
                await edge.send(session_pb2.EdgeMessage(search_result=edge_to_hub_pb2.SearchResult(
                    job_id=job.job_id, edge_id="edge-a", batch_index=0, done=True, hits=hits,
                    idempotency_key=f"{job.job_id}/0")))
                assert (await edge.ack_key(f"{job.job_id}/0", timeout=60)).ack.status == common_pb2.ACK_STATUS_OK

            task = asyncio.create_task(answer())
            reply = await asyncio.to_thread(api.client.post, "/api/search",
                                            data={"identity_id": identity["identity_id"], "deadline_s": "60"})
            await task
            await edge.close()
            assert reply.status_code == 200, reply.text
            hits = reply.json()["hits"]
            assert [h["tracklet_id"] for h in hits] == ["0000_05", "0001_00"]  # same stage 1: the judge decides
            assert hits[0]["stage2_p_same"] > hits[1]["stage2_p_same"] and hits[0]["p_same"] > hits[1]["p_same"]
            assert hits[0]["verdict"] == "same", hits

        asyncio.run(run())
