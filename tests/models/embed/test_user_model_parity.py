"""A user-registered model gives the same vectors on ONNX Runtime, OpenVINO and torch (real crops, CPU).

The model is made here the way a trained edge model arrives: OSNet x0.25 converted to torch
(onnx2torch, as the torch runtime does), its last layer's weights nudged so the file (and fingerprint)
is new, exported again with a dynamic batch (Identity nodes over shared weights folded away, see
`fold_identity_initialisers`: without that the torch runtime cannot open the file), then registered
with `add_user_model`.

Needs ../shared (CROSSVIEW_MODELS, CROSSVIEW_DATA); skipped with a reason where absent.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest

from models.embed import create_embedder
from models.zoo import USER_MODELS_ENV, get_spec, resolve_model
from models.zoo.user import add_user_model

OSNET = "reid/osnet-x0.25-msmt17"
RUNTIMES = ("onnxruntime", "openvino", "torch")
MIN_COSINE = 0.999


def fold_identity_initialisers(model: object) -> None:
    """Point every node that reads ``Identity(initializer)`` at the initializer itself, drop the Identity.

    The TorchScript exporter stores equal weights once and feeds the other uses through Identity nodes
    (OSNet's channel gates are shared between streams); onnx2torch, the torch runtime, cannot convert a
    Conv whose weight comes from a node. Reading the shared initializer directly is what the original
    export does, and what onnx2torch accepts.
    """
    graph = model.graph  # type: ignore[attr-defined]
    initialisers = {i.name for i in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in initialisers}
    outputs = {o.name for o in graph.output}
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias
                                          and n.output[0] not in outputs)]
    for node in keep:
        for index, name in enumerate(node.input):
            if name in alias and alias[name] not in outputs:
                node.input[index] = alias[name]
    del graph.node[:]
    graph.node.extend(keep)


def retrained_osnet(path: Path) -> Path:
    """OSNet through torch with its last weighted layer perturbed (fixed seed), exported with a dynamic batch."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    onnx2torch = pytest.importorskip("onnx2torch")
    from models.embed.torch import infer_ranks

    module = onnx2torch.convert(infer_ranks(onnx.load(str(resolve_model(OSNET).path)))).eval()
    last = [m for m in module.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)][-1]
    generator = torch.Generator().manual_seed(14)
    with torch.no_grad():
        last.weight.mul_(1.0 + 0.05 * torch.randn(last.weight.shape, generator=generator))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(module, torch.zeros(2, 3, 256, 128), str(path), input_names=["input"],
                          output_names=["features"], dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=17, dynamo=False)
    exported = onnx.load(str(path))
    fold_identity_initialisers(exported)
    onnx.checker.check_model(exported)
    onnx.save(exported, str(path))
    return path


@pytest.fixture(scope="module")
def user_vectors(models_root: Path, real_crops: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("user-model")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(USER_MODELS_ENV, str(folder / "registered"))
        spec = add_user_model("reid/osnet-site", retrained_osnet(folder / "osnet-site.onnx"), OSNET).spec
        assert spec.fingerprint != get_spec(OSNET).fingerprint and spec.fingerprint.startswith("reid/osnet-site@")
        vectors = {}
        for runtime in RUNTIMES:
            result = create_embedder("reid/osnet-site", runtime, batch_size=16).embed(real_crops)
            assert result.model_fingerprint == spec.fingerprint
            vectors[runtime] = result.vectors
        vectors["stock"] = create_embedder(OSNET, "onnxruntime", batch_size=16).embed(real_crops).vectors
    return vectors


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(RUNTIMES, 2)))
def test_runtimes_agree_on_a_user_model(user_vectors: dict[str, np.ndarray], first: str, second: str) -> None:
    cosine = np.sum(user_vectors[first] * user_vectors[second], axis=1)
    worst = int(np.argmin(cosine))
    assert cosine[worst] >= MIN_COSINE, f"crop {worst}: cosine {cosine[worst]:.6f} between {first} and {second}"


def test_the_user_model_is_a_new_model_close_to_the_one_it_came_from(user_vectors: dict[str, np.ndarray]) -> None:
    cosine = np.sum(user_vectors["onnxruntime"] * user_vectors["stock"], axis=1)
    assert cosine.max() < 0.99999  # the perturbation changed the vectors ...
    assert cosine.min() > 0.8  # ... of a model still like OSNet
    assert user_vectors["onnxruntime"].shape == user_vectors["stock"].shape
    off_diagonal = (user_vectors["torch"] @ user_vectors["torch"].T)[~np.eye(len(user_vectors["torch"]), dtype=bool)]
    assert off_diagonal.min() < 0.9  # not collapsed to one vector
