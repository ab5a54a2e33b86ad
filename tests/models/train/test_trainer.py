"""The trainer (issue 14): losses against brute-force references, the distillation loss, augmentation,
the schedule, and real two-step runs of OSNet x0.25 on 16 CUHK03 crops (weights change, finite loss,
same seed → same weights, resume = uninterrupted run, export parity with ONNX Runtime and OpenVINO)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

from models.train.augment import AugmentSettings, augment_batch  # noqa: E402
from models.train.data import TrainingSet  # noqa: E402
from models.train.distill import similarity_distillation_loss  # noqa: E402
from models.train.losses import batch_hard_triplet, identity_loss  # noqa: E402
from models.train.trainer import TrainSettings, lr_factor, read_bgr, train_reid  # noqa: E402

INIT = "reid/osnet-x0.25-msmt17"
IDS = ("0000", "0001", "0002", "0003")
VIEWS = ("00", "01", "05", "06")  # two images on camera A (00-04), two on camera B (05-09)


# --- pure functions -------------------------------------------------------------------------------

def _triplet_reference(features: np.ndarray, labels: np.ndarray, margin: float) -> float:
    """Batch-hard triplet written out with loops."""
    terms = []
    for a in range(len(features)):
        pos = [np.linalg.norm(features[a] - features[j]) for j in range(len(features))
               if j != a and labels[j] == labels[a]]
        neg = [np.linalg.norm(features[a] - features[j]) for j in range(len(features)) if labels[j] != labels[a]]
        if pos and neg:
            terms.append(max(0.0, max(pos) - min(neg) + margin))
    return float(np.mean(terms)) if terms else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_batch_hard_triplet_matches_the_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(12, 5)).astype(np.float32)
    labels = rng.integers(0, 4, size=12)
    got = float(batch_hard_triplet(torch.from_numpy(features), torch.from_numpy(labels), margin=0.3))
    assert got == pytest.approx(_triplet_reference(features, labels, 0.3), rel=1e-4, abs=1e-5)


def test_batch_hard_triplet_without_positives_is_zero_with_a_gradient() -> None:
    features = torch.randn(4, 3, requires_grad=True)
    loss = batch_hard_triplet(features, torch.arange(4))
    loss.backward()
    assert float(loss) == 0.0 and features.grad is not None


def test_identity_loss_equals_torch_label_smoothed_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 6, generator=generator)
    labels = torch.randint(0, 6, (8,), generator=generator)
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert float(identity_loss(logits, labels, smoothing=0.1)) == pytest.approx(float(expected), rel=1e-5)


def test_distillation_loss_is_zero_for_equal_similarities_and_positive_otherwise() -> None:
    generator = torch.Generator().manual_seed(1)
    teacher = torch.randn(8, 16, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    # a rotated (and rescaled) copy has exactly the teacher's cosine similarities
    same = similarity_distillation_loss(3.0 * teacher @ rotation, teacher)
    other = similarity_distillation_loss(torch.randn(8, 16, generator=generator), teacher)
    assert abs(float(same)) < 1e-5
    assert float(other) > 1e-3


def test_distillation_loss_has_a_student_dimension_of_its_own() -> None:
    student = torch.randn(6, 32, requires_grad=True)
    loss = similarity_distillation_loss(student, torch.randn(6, 512))
    loss.backward()
    assert math.isfinite(float(loss)) and student.grad is not None and bool(student.grad.abs().sum() > 0)


def test_augmentation_is_fixed_by_the_generator_seed_and_keeps_the_shape() -> None:
    batch = torch.randn(6, 3, 32, 16)
    first = augment_batch(batch, torch.Generator().manual_seed(3))
    again = augment_batch(batch, torch.Generator().manual_seed(3))
    other = augment_batch(batch, torch.Generator().manual_seed(4))
    assert first.shape == batch.shape and torch.equal(first, again) and not torch.equal(first, other)
    plain = augment_batch(batch, torch.Generator().manual_seed(3), AugmentSettings(flip=0.0, pad=0, erase=0.0))
    assert torch.equal(plain, batch)


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    factors = [lr_factor(step, 100, 0.1, 0.01) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert factors[-1] == pytest.approx(0.01, abs=1e-3)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "epochs: expected an integer >= 1"),
    ({"epochs": 1, "sampler": "random"}, "sampler: expected one of pk, dfgs"),
    ({"epochs": 1, "p": 1}, "p: expected an integer >= 2"),
    ({"epochs": 1, "lr": 0.0}, "lr: expected > 0"),
])
def test_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainSettings(**kwargs)


# --- real runs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crops_set(models_dir: Path, data_dir: Path) -> TrainingSet:
    if not (models_dir / "onnx" / "osnet_x0_25_msmt17.onnx").is_file():
        pytest.skip("OSNet x0.25 (onnx/osnet_x0_25_msmt17.onnx) is not in CROSSVIEW_MODELS")
    root = data_dir / "cuhk03_labeled" / "train"
    paths = tuple(root / f"{pid}_{view}.jpg" for pid in IDS for view in VIEWS)
    if not all(p.is_file() for p in paths):
        pytest.skip(f"CUHK03 crops of identities {IDS} are not in {root}")
    labels = np.repeat(np.arange(len(IDS)), len(VIEWS))
    cameras = np.tile([0, 0, 1, 1], len(IDS))
    return TrainingSet(paths, labels, cameras, IDS, fmt="cuhk03", root=root)


def _settings(**overrides: object) -> TrainSettings:
    values = {"epochs": 2, "p": 2, "k": 2, "max_steps_per_epoch": 2, "lr": 1e-3, "progress": False}
    values.update(overrides)
    return TrainSettings(**values)


def _init():
    from models.train.network import resolve_init

    return resolve_init(INIT)


@pytest.fixture(scope="module")
def straight_run(crops_set: TrainingSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    train_reid(crops_set, _init(), out, _settings())
    return out


@pytest.fixture(scope="module")
def resumed_run(crops_set: TrainingSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resumed")
    first = train_reid(crops_set, _init(), out, _settings(max_minutes=1e-9))  # stops after epoch 1
    assert first.epochs == 1 and not (out / "checkpoint_epoch2.pt").exists()
    second = train_reid(crops_set, _init(), out, _settings(), resume=True)
    assert second.epochs == 2
    return out


def _network(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["network"]


def test_two_steps_change_the_weights_and_the_loss_is_finite(straight_run: Path) -> None:
    from models.train.network import convert_backbone

    before = convert_backbone(_init()).state_dict()
    after = _network(straight_run / "checkpoint_epoch1.pt")
    changed = [name for name, value in before.items()
               if value.is_floating_point() and not torch.equal(value, after[f"backbone.{name}"])]
    assert len(changed) > len(before) // 2
    records = [json.loads(line) for line in (straight_run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all(r["steps"] == 2 for r in records)
    assert all(math.isfinite(r[part]) for r in records for part in ("loss", "ce", "triplet"))


def test_the_same_seed_gives_the_same_weights(straight_run: Path, resumed_run: Path) -> None:
    first, again = _network(straight_run / "checkpoint_epoch1.pt"), _network(resumed_run / "checkpoint_epoch1.pt")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)


def test_a_resumed_run_ends_where_the_uninterrupted_run_ends(straight_run: Path, resumed_run: Path) -> None:
    straight, resumed = _network(straight_run / "checkpoint_epoch2.pt"), _network(resumed_run / "checkpoint_epoch2.pt")
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    log = (resumed_run / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]


def test_resume_refuses_a_checkpoint_of_other_settings(crops_set: TrainingSet, straight_run: Path,
                                                       tmp_path: Path) -> None:
    import shutil

    from models.train.network import TrainSetupError

    shutil.copy(straight_run / "checkpoint_epoch1.pt", tmp_path / "checkpoint_epoch1.pt")
    with pytest.raises(TrainSetupError, match="different run"):
        train_reid(crops_set, _init(), tmp_path, _settings(seed=7), resume=True)


def test_export_parity_onnxruntime_openvino_and_torch(straight_run: Path, crops_set: TrainingSet) -> None:
    from models.embed.preprocess import preprocess
    from models.train.export import FileEmbedder

    init = _init()
    crops = [read_bgr(p) for p in crops_set.paths[:5]]
    batch = preprocess(crops, init.spec)
    torch_module = _trained_backbone(straight_run)
    with torch.no_grad():
        expected = torch_module(torch.from_numpy(batch)).numpy()
    for size in (1, 5):  # the batch is dynamic
        got = FileEmbedder(straight_run / "model.onnx", init.spec).run(batch[:size])
        assert _cosines(got, expected[:size]).min() >= 0.999
    import openvino as ov

    # f32 as models/embed/openvino.py compiles it: the CPU plugin defaults to bf16 where the CPU has it
    compiled = ov.Core().compile_model(str(straight_run / "model.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(batch)[compiled.output(0)]
    assert _cosines(np.asarray(got), expected).min() >= 0.999


def _trained_backbone(run: Path):
    from models.train.network import convert_backbone

    module = convert_backbone(_init())
    state = _network(run / "checkpoint_epoch2.pt")
    module.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")})
    return module.eval()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_the_exported_model_differs_from_the_starting_one(straight_run: Path, crops_set: TrainingSet) -> None:
    from models.embed import create_embedder
    from models.train.export import FileEmbedder

    crops = [read_bgr(p) for p in crops_set.paths[:4]]
    trained = FileEmbedder(straight_run / "model.onnx", _init().spec).embed(crops).vectors
    shipped = create_embedder(INIT).embed(crops).vectors
    assert _cosines(trained, shipped).min() < 0.9999


def test_distillation_without_labels_trains_and_reuses_the_teacher_cache(crops_set: TrainingSet, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from models.train import distill

    crops = TrainingSet(crops_set.paths[:8], np.full(8, -1), np.zeros(8, np.int64), (), fmt="crops")
    teachers = ["reid/intel-0288", "reid/intel-0287"]
    result = train_reid(crops, _init(), tmp_path, _settings(epochs=1), teachers=teachers)
    assert set(result.final_loss) == {"loss", "distill"} and result.final_loss["distill"] > 0
    cached = np.load(tmp_path / "teacher_cache.npz")
    assert cached["vectors"].shape == (8, 512)  # two 256-d teachers, concatenated
    np.testing.assert_allclose(np.linalg.norm(cached["vectors"], axis=1), 1.0, atol=1e-5)

    def no_embedding(*args: object, **kwargs: object) -> None:
        raise AssertionError("teacher vectors were computed again instead of read from the cache")

    monkeypatch.setattr("models.embed.create_embedder", no_embedding)
    again = distill.teacher_vectors(crops.paths, teachers, tmp_path / "teacher_cache.npz", progress=False)
    np.testing.assert_array_equal(again, cached["vectors"])
