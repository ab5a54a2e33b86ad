"""The runtime name → class map, lazy imports, and the errors a wrong choice gives."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.embed import (
    RUNTIMES,
    Embedder,
    EmbedderConfigError,
    create_embedder,
    runtime_class,
    runtimes_for_format,
)
from models.errors import ModelNotFoundError


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_registered_runtime_is_an_embedder_with_its_name(name):
    cls = runtime_class(name)
    assert issubclass(cls, Embedder)
    assert cls.name == name
    assert "onnx" in cls.formats


def test_importing_the_registry_and_its_classes_imports_no_runtime_library():
    code = (
        "import sys; from models.embed import RUNTIMES, runtime_class\n"
        "[runtime_class(n) for n in RUNTIMES]\n"
        "heavy = {'onnxruntime', 'openvino', 'torch', 'onnx', 'onnx2torch', 'tensorrt', 'pycuda'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_formats_map_to_runtimes():
    assert runtimes_for_format("openvino") == ["openvino"]
    assert set(runtimes_for_format("onnx")) == {"onnxruntime", "openvino", "torch", "tensorrt"}


@pytest.mark.parametrize(("runtime", "match"), [
    pytest.param("onnxrt", "did you mean 'onnxruntime'", id="typo"),
    pytest.param("coreml", "valid runtimes: onnxruntime, openvino, torch, tensorrt", id="unknown"),
])
def test_unknown_runtime_lists_valid_ones(runtime, match):
    with pytest.raises(EmbedderConfigError, match=match):
        create_embedder("reid/osnet-x0.25-msmt17", runtime)


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch", "tensorrt"])
def test_ir_model_on_an_onnx_only_runtime_names_the_runtimes_that_can(runtime):
    with pytest.raises(EmbedderConfigError, match="runtimes that can run it: openvino") as info:
        create_embedder("reid/intel-0288", runtime)
    assert "format 'openvino'" in str(info.value)


@pytest.mark.parametrize(("model", "error", "match"), [
    pytest.param("detect/yolov8n-int8-openvino", EmbedderConfigError, "no embedding runtime opens", id="detector"),
    pytest.param("attributes/intel-0230", EmbedderConfigError, "not a Re-ID model", id="attributes"),
    pytest.param("reid/intel-9999", ModelNotFoundError, "unknown model", id="unknown-model"),
])
def test_models_that_cannot_be_embedded(model, error, match):
    with pytest.raises(error, match=match):
        create_embedder(model)


@pytest.mark.parametrize(("model", "runtime_name", "dim"), [
    ("reid/intel-0288", "openvino", 256),
    ("reid/osnet-x0.25-msmt17", "onnxruntime", 512),
])
def test_default_runtime_follows_the_model_format(models_root, model, runtime_name, dim):
    embedder = create_embedder(model)
    assert embedder.name == runtime_name
    assert embedder.embed([]).vectors.shape == (0, dim)
