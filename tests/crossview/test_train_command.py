"""`crossview train reid` (issue 14): bad input is one line before any training; a small real run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

from crossview.cli import app


def _invoke(*args: str):
    return CliRunner().invoke(app, ["train", "reid", *args])


def _assert_refused(result, out: Path, message: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not list(out.glob("checkpoint_epoch*.pt")) and not (out / "model.onnx").exists()


@pytest.fixture
def cuhk03_few(data_dir: Path, tmp_path: Path) -> Path:
    source = data_dir / "cuhk03_labeled" / "train"
    if not source.is_dir():
        pytest.skip(f"CUHK03 crops are not in {source}")
    folder = tmp_path / "cuhk03"
    folder.mkdir()
    for pid in ("0000", "0001", "0002"):
        for view in ("00", "05"):
            shutil.copy(source / f"{pid}_{view}.jpg", folder)
    return folder


def _custom_op_onnx(path: Path) -> Path:
    """A model onnx2torch has no converter for (an op of a private domain)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mystery", ["images"], ["features"], domain="com.example")], "mystery",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 256, 128])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 512])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(path))
    return path


def test_a_model_onnx2torch_cannot_convert_is_refused(models_dir: Path, cuhk03_few: Path, tmp_path: Path) -> None:
    model = _custom_op_onnx(tmp_path / "mystery.onnx")
    out = tmp_path / "out"
    result = _invoke("--data", str(cuhk03_few), "--format", "cuhk03", "--init", str(model), "--out", str(out),
                     "--p", "2", "--k", "2")
    _assert_refused(result, out, "cannot be converted to torch")


def test_a_file_that_is_not_a_model_is_refused(models_dir: Path, cuhk03_few: Path, tmp_path: Path) -> None:
    model = tmp_path / "notes.onnx"
    model.write_bytes(b"\x08\x96\x01 this is not a protobuf \xff\xfe")
    out = tmp_path / "out"
    result = _invoke("--data", str(cuhk03_few), "--format", "cuhk03", "--init", str(model), "--out", str(out),
                     "--p", "2", "--k", "2")
    _assert_refused(result, out, str(model))


def test_an_openvino_zoo_model_cannot_be_the_starting_point(models_dir: Path, cuhk03_few: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _invoke("--data", str(cuhk03_few), "--format", "cuhk03", "--init", "reid/intel-0288", "--out", str(out),
                     "--p", "2", "--k", "2")
    _assert_refused(result, out, "cannot be converted to torch")


@pytest.mark.parametrize(("teacher", "message"), [
    ("detect/yolov8n-int8-openvino", "not a Re-ID model"),
    ("reid/intel-0277,reid/no-such-model", "unknown model 'reid/no-such-model'"),
    ("reid/intel-0277,reid/intel-0277", "expected distinct models"),
])
def test_a_teacher_that_is_not_a_known_reid_model_is_refused(models_dir: Path, cuhk03_few: Path, tmp_path: Path,
                                                             teacher: str, message: str) -> None:
    out = tmp_path / "out"
    result = _invoke("--data", str(cuhk03_few), "--format", "cuhk03", "--teacher", teacher, "--out", str(out),
                     "--p", "2", "--k", "2")
    _assert_refused(result, out, message)


@pytest.mark.parametrize(("args", "message"), [
    (("--sampler", "random"), "sampler: expected one of pk, dfgs"),
    (("--epochs", "0"), "epochs: expected an integer >= 1"),
    (("--p", "8"), "fewer than P=8"),
])
def test_bad_settings_are_refused(models_dir: Path, cuhk03_few: Path, tmp_path: Path, args: tuple[str, ...],
                                  message: str) -> None:
    out = tmp_path / "out"
    result = _invoke("--data", str(cuhk03_few), "--format", "cuhk03", "--out", str(out), *args)
    _assert_refused(result, out, message)


def test_one_identity_is_refused_before_training(models_dir: Path, cuhk03_few: Path, tmp_path: Path) -> None:
    for extra in cuhk03_few.glob("000[12]_*.jpg"):
        extra.unlink()
    out = tmp_path / "out"
    result = _invoke("--data", str(cuhk03_few), "--format", "cuhk03", "--out", str(out), "--p", "2", "--k", "2")
    _assert_refused(result, out, "at least 2 identities")


def test_train_reid_json_on_a_small_folder(models_dir: Path, cuhk03_few: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _invoke("--data", str(cuhk03_few), "--format", "cuhk03", "--out", str(out), "--p", "2", "--k", "2",
                     "--epochs", "1", "--sampler", "dfgs", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["parity_cosine"] >= 0.999
    assert summary["final_loss"]["loss"] > 0 and summary["wall_s"] > 0
    assert (out / "model.onnx").is_file() and (out / "checkpoint_epoch1.pt").is_file()
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 1
