"""User Re-ID models in the zoo: add / list / remove, checksums, name rules, shape checks, .onnx paths,
and the places a Re-ID model is chosen (embedders, `crossview eval`, the hub's fingerprint lookup).

The ONNX files are tiny networks exported here with torch (no real weights needed); the CLI is run as
a user runs it, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from models.errors import ChecksumMismatchError, CrossviewError, ModelNotFoundError
from models.zoo import USER_MODELS_ENV, get_spec, resolve_model, spec_for_fingerprint, user_model_names
from models.zoo.user import UserModelError, add_user_model, remove_user_model, spec_for_path

ROOT = Path(__file__).resolve().parents[2]
OSNET = "reid/osnet-x0.25-msmt17"


def export_tiny(path: Path, *, out_dim: int = 512, hw: tuple[int, int] = (256, 128), seed: int = 0,
                dynamic: bool = True) -> Path:
    """A small conv net [N, 3, H, W] -> [N, out_dim] as ONNX (its weights depend on `seed`)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
            self.fc = torch.nn.Linear(8, out_dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(seed)
    axes = {"input": {0: "n"}, "features": {0: "n"}} if dynamic else None
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and fine for this net
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Tiny().eval(), torch.zeros(1, 3, *hw), str(path), input_names=["input"],
                          output_names=["features"], dynamic_axes=axes, dynamo=False)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture
def user_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "user-models"
    monkeypatch.setenv(USER_MODELS_ENV, str(root))
    return root


def test_add_copies_hashes_and_takes_the_like_models_preprocessing(tiny: Path, user_root: Path) -> None:
    model = add_user_model("reid/site-v1", tiny, OSNET)
    like = get_spec(OSNET)
    copied = user_root / "reid" / "site-v1.onnx"
    assert model.onnx == copied and copied.read_bytes() == tiny.read_bytes()
    manifest = json.loads((user_root / "reid" / "site-v1.json").read_text())
    import hashlib

    sha = hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert (manifest["sha256"], manifest["size"], manifest["like"]) == (sha, tiny.stat().st_size, OSNET)
    spec = get_spec("reid/site-v1")
    assert spec.fingerprint == f"reid/site-v1@{sha[:12]}"
    assert (spec.task, spec.format, spec.output_dim) == ("reid", "onnx", 512)
    assert (spec.input_hw, spec.channel_order, spec.scale, spec.mean, spec.std) == (
        like.input_hw, like.channel_order, like.scale, like.mean, like.std)
    resolved = resolve_model("reid/site-v1")
    assert resolved.path == copied and resolved.source == "user"
    assert user_model_names() == ["reid/site-v1"]
    assert spec_for_fingerprint(spec.fingerprint) == spec
    assert spec_for_fingerprint("reid/site-v1@000000000000") is None


def test_a_name_is_registered_once_unless_forced(tiny: Path, user_root: Path, tmp_path: Path) -> None:
    add_user_model("site", tiny, OSNET)
    other = export_tiny(tmp_path / "other.onnx", seed=1)
    with pytest.raises(UserModelError, match=r"already exists.*--force"):
        add_user_model("site", other, OSNET)
    first = get_spec("site").fingerprint
    add_user_model("site", other, OSNET, force=True)
    assert get_spec("site").fingerprint != first
    assert resolve_model("site").path.read_bytes() == other.read_bytes()


@pytest.mark.parametrize(("name", "error"), [
    ("Bad/Name", "expected lower-case letters"),
    ("reid/a/b", "at most one '/'"),
    ("reid/..", "expected lower-case letters"),
    ("", "expected lower-case letters"),
    ("reid/site v1", "expected lower-case letters"),
    ("file/site", "kept for models opened by path"),
    ("reid/intel-0288", "is a built-in model's"),
    (OSNET, "is a built-in model's"),
])
def test_bad_names_are_refused(name: str, error: str, tiny: Path, user_root: Path) -> None:
    with pytest.raises(UserModelError, match=error):
        add_user_model(name, tiny, OSNET)
    assert not user_root.exists() or not any(user_root.rglob("*.onnx"))


def test_files_that_do_not_fit_the_like_model_are_refused(tiny: Path, user_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserModelError, match=r"output shape expected \[N, 256\] \(like reid/intel-0288\)"):
        add_user_model("site", tiny, "reid/intel-0288")
    small = export_tiny(tmp_path / "small.onnx", hw=(128, 64), dynamic=False)
    with pytest.raises(UserModelError, match=r"input shape expected \[N, 3, 256, 128\].*got \[1, 3, 128, 64\]"):
        add_user_model("site", small, OSNET)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(UserModelError, match="not a readable ONNX model"):
        add_user_model("site", junk, OSNET)
    with pytest.raises(UserModelError, match="not a file"):
        add_user_model("site", tmp_path / "absent.onnx", OSNET)
    with pytest.raises(UserModelError, match="expected a built-in Re-ID model"):
        add_user_model("site", tiny, "detect/yolov8n-int8-openvino")
    with pytest.raises(UserModelError, match="expected a built-in Re-ID model"):
        add_user_model("site", tiny, "reid/no-such-model")
    assert user_model_names() == []


def test_a_file_changed_since_add_is_refused(tiny: Path, user_root: Path, tmp_path: Path) -> None:
    model = add_user_model("reid/site-v1", tiny, OSNET)
    model.onnx.write_bytes(export_tiny(tmp_path / "other.onnx", seed=2).read_bytes())
    with pytest.raises(ChecksumMismatchError, match=r"changed since it was added.*--force"):
        resolve_model("reid/site-v1")
    model.onnx.unlink()
    with pytest.raises(ModelNotFoundError, match="is missing"):
        resolve_model("reid/site-v1")


def test_remove(tiny: Path, user_root: Path) -> None:
    add_user_model("reid/site-v1", tiny, OSNET)
    removed = remove_user_model("reid/site-v1")
    assert not removed.onnx.exists() and not removed.manifest.exists()
    assert user_model_names() == []
    with pytest.raises(ModelNotFoundError, match="unknown user model"):
        remove_user_model("reid/site-v1")
    with pytest.raises(ModelNotFoundError, match=r"did you mean .reid/intel-0288.*path to an \.onnx file"):
        get_spec("reid/intel-288")


def test_a_path_is_preprocessed_like_osnet_unless_a_sibling_json_says_otherwise(tiny: Path, tmp_path: Path,
                                                                                user_root: Path) -> None:
    spec = get_spec(str(tiny))
    like = get_spec(OSNET)
    assert spec.fingerprint.startswith("file/tiny@") and spec.name == str(tiny.resolve())
    assert (spec.channel_order, spec.mean, spec.output_dim) == (like.channel_order, like.mean, 512)
    assert resolve_model(str(tiny)).path == tiny.resolve()

    model = export_tiny(tmp_path / "bgr.onnx", out_dim=256)
    (tmp_path / "bgr.json").write_text(json.dumps({"like": "reid/intel-0288"}))
    bgr = spec_for_path(model)
    assert (bgr.channel_order, bgr.scale, bgr.output_dim) == ("BGR", 1.0, 256)
    (tmp_path / "bgr.json").write_text(json.dumps({"like": "reid/intel-0288", "input_hw": [128, 64]}))
    assert spec_for_path(model).input_hw == (128, 64)
    (tmp_path / "bgr.json").write_text(json.dumps({"colour": "RGB"}))
    with pytest.raises(UserModelError, match=r"unknown key.*colour"):
        spec_for_path(model)
    (tmp_path / "bgr.json").write_text(json.dumps({"channel_order": "GRB"}))
    with pytest.raises(UserModelError, match="channel_order: expected 'RGB' or 'BGR'"):
        spec_for_path(model)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        get_spec(str(tmp_path / "absent.onnx"))


def test_embedders_and_the_hub_open_a_user_model(tiny: Path, user_root: Path) -> None:
    pytest.importorskip("onnxruntime")
    from cloud.gallery import UnknownFingerprintError, zoo_embedder
    from models.embed import create_embedder

    spec = add_user_model("reid/site-v1", tiny, OSNET).spec
    crops = [np.full((120, 50, 3), v, np.uint8) for v in (10, 128, 250)]
    embedder = create_embedder("reid/site-v1")
    result = embedder.embed(crops)
    assert result.model_fingerprint == spec.fingerprint and result.vectors.shape == (3, 512)
    hub_side = zoo_embedder(spec.fingerprint)  # the hub maps the edge's fingerprint back to the model
    np.testing.assert_allclose(hub_side.embed(crops).vectors, result.vectors, atol=1e-6)
    by_path = create_embedder(str(tiny)).embed(crops)
    assert by_path.model_fingerprint == f"file/tiny@{spec.weights.sha256[:12]}"
    np.testing.assert_allclose(by_path.vectors, result.vectors, atol=1e-6)
    with pytest.raises(UnknownFingerprintError, match="register the edge's model here"):
        zoo_embedder("reid/site-v2@0123456789ab")


def test_eval_accepts_a_user_model_and_a_path(tiny: Path, user_root: Path, data_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from crossview.eval_command import eval_command

    market = data_dir / "market1501_mini"
    if not (market / "query").is_dir():
        pytest.skip(f"{market} is absent")
    add_user_model("reid/site-v1", tiny, OSNET)
    for model in ("reid/site-v1", str(tiny)):
        code = eval_command(market, "market1501", model, False, None, 10, True, None, progress=False)
        out = capsys.readouterr()
        assert code == 0, out.err
        report = json.loads(out.out)
        assert report["model"] == model and 0.0 <= report["mAP"] <= 1.0 and report["n_query"] > 0


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossview.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_the_models_commands(tiny: Path, tmp_path: Path) -> None:
    env = {USER_MODELS_ENV: str(tmp_path / "user-models"), "CROSSVIEW_MODELS": str(tmp_path / "no-models"),
           "CROSSVIEW_CACHE": str(tmp_path / "cache")}
    added = _cli("models", "add", "reid/site-v1", "--onnx", str(tiny), "--like", OSNET, env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added reid/site-v1@") and "like reid/osnet-x0.25-msmt17, 512-d" in added.stdout
    listed = _cli("models", "list", env=env)  # built-ins are missing here (exit 1); the user model is fine
    user_lines = [line for line in listed.stdout.splitlines() if line.startswith("reid/site-v1 ")]
    assert len(user_lines) == 1 and " ok (user) " in user_lines[0] and " user " in user_lines[0]
    for args, message in ((["models", "add", "reid/site-v1", "--onnx", str(tiny)], "already exists"),
                          (["models", "add", "reid/intel-0288", "--onnx", str(tiny)], "is a built-in model's"),
                          (["models", "remove", "reid/intel-0288"], "only user models can be removed"),
                          (["models", "remove", "reid/site-v2"], "unknown user model")):
        refused = _cli(*args, env=env)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    removed = _cli("models", "remove", "reid/site-v1", env=env)
    assert removed.returncode == 0 and removed.stdout.startswith("removed reid/site-v1@")


def test_errors_are_crossview_errors() -> None:
    assert issubclass(UserModelError, CrossviewError)
