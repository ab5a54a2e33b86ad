"""One embedder called from 8 threads at once gives every thread the vectors a lone call gives.

Issue 12: a shared OpenVINO embedder raised "Infer Request is busy" when the hub's executor and a
test called it from several threads. Needs ../shared (real models and crops); skipped without.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from models.embed import create_embedder

THREADS = 8
ROUNDS = 3
CASES = [("reid/osnet-x0.25-msmt17", "onnxruntime", {}), ("reid/osnet-x0.25-msmt17", "torch", {}),
         ("reid/osnet-x0.25-msmt17", "torch", {"preprocess": "device"}),
         ("reid/osnet-x0.25-msmt17", "openvino", {}), ("reid/intel-0288", "openvino", {})]


@pytest.mark.parametrize(("model", "runtime", "options"), CASES,
                         ids=[f"{m}-{r}" + "".join(f"-{v}" for v in o.values()) for m, r, o in CASES])
def test_eight_threads_at_once_get_the_single_thread_vectors(models_root, real_crops, model, runtime, options):
    embedder = create_embedder(model, runtime, batch_size=4, **options)
    # Each thread embeds its own slice of the crops, so a mixed-up request shows as wrong vectors.
    slices = [real_crops[i::THREADS] for i in range(THREADS)]
    expected = [embedder.embed(part).vectors for part in slices]
    start = threading.Barrier(THREADS)

    def work(index: int) -> list[np.ndarray]:
        start.wait()
        return [embedder.embed(slices[index]).vectors for _ in range(ROUNDS)]

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))
    for index, rounds in enumerate(results):
        for vectors in rounds:
            np.testing.assert_allclose(vectors, expected[index], atol=1e-5, err_msg=f"thread {index}")
