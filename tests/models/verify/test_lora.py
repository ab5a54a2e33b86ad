"""LoRA fine-tuning of the `transformers` judge (issue 14 item 6) on a tiny random Qwen2-VL: plumbing only.

No MLLM weights exist here: the loss falling on a fixed tiny set and the adapter round trip say the
training reads what the judge reads and saves what the judge loads, nothing about accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from crossview_testing.tools import load_tool

pytest.importorskip("transformers")
pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from crossview.train_judge_command import judge_command  # noqa: E402
from models.verify import JudgeConfigError, create_judge  # noqa: E402
from models.verify.judge_data import judge_record  # noqa: E402
from models.verify.lora import (  # noqa: E402
    ADAPTER_META,
    JudgeDataError,
    JudgeExample,
    LoraRun,
    LoraSettings,
    read_judge_jsonl,
    save_adapter,
    train_lora,
)
from models.verify.random_qwen2vl import build_offline_processor, build_random_qwen2vl  # noqa: E402
from models.verify.transformers_judge import TransformersJudge  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(os.environ.get("CROSSVIEW_DATA", ROOT.parent / "shared" / "data"))
CUHK03 = DATA / "cuhk03_labeled" / "train"
SMALL_HW = (56, 28)
needs_crops = pytest.mark.skipif(not CUHK03.is_dir(), reason=f"real crops not found at {CUHK03} (set CROSSVIEW_DATA)")


def _save_tiny(folder: Path, **overrides: int) -> Path:
    processor = build_offline_processor(max_pixels=28 * 28 * 64)
    model, processor = build_random_qwen2vl("tiny", processor, seed=0)
    if overrides:
        config = model.config
        for key, value in overrides.items():
            setattr(config.text_config if hasattr(config, "text_config") else config, key, value)
            setattr(config, key, value)
        model = type(model)(config)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-qwen2-vl"))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight fixed pairs of real CUHK03 crops: four identities, each against itself and the next one."""
    if not CUHK03.is_dir():
        pytest.skip(f"real crops not found at {CUHK03} (set CROSSVIEW_DATA)")
    ids = sorted({p.name[:4] for p in CUHK03.glob("*_09.jpg")})[:4]
    records = []
    for index, pid in enumerate(ids):
        other = ids[(index + 1) % len(ids)]
        records.append(judge_record(CUHK03 / f"{pid}_00.jpg", CUHK03 / f"{pid}_05.jpg", True))
        records.append(judge_record(CUHK03 / f"{pid}_01.jpg", CUHK03 / f"{other}_06.jpg", False))
    return write_jsonl(tmp_path_factory.mktemp("judge-data") / "pairs.jsonl", records)


def crops_of(examples: list[JudgeExample]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(cv2.imread(str(e.query)), cv2.imread(str(e.candidate))) for e in examples]


@pytest.fixture(scope="module")
def trained(tiny_folder: Path, data_file: Path,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[TransformersJudge, LoraRun, Path]:
    """20 steps (10 epochs of 2 batches) on the fixed set; the adapter saved."""
    judge = TransformersJudge(tiny_folder, image_hw=SMALL_HW)
    run = train_lora(judge, read_judge_jsonl(data_file), LoraSettings(epochs=10, lr=5e-3, batch_size=4),
                     progress=False)
    folder = save_adapter(judge, tmp_path_factory.mktemp("adapter") / "lora", run)
    return judge, run, folder


def test_the_loss_falls_over_twenty_steps_on_a_fixed_tiny_set(trained: tuple[TransformersJudge, LoraRun, Path]
                                                              ) -> None:
    _, run, _ = trained
    losses = np.array(run.losses)
    assert run.steps == 20 and run.examples == 8 and np.all(np.isfinite(losses))
    assert losses[-5:].mean() < losses[:3].mean() - 0.3, losses.round(3).tolist()
    assert run.trainable_parameters > 0 and run.steps_per_s > 0


def test_the_adapter_round_trips_into_the_transformers_judge(trained: tuple[TransformersJudge, LoraRun, Path],
                                                             tiny_folder: Path, data_file: Path) -> None:
    judge, _, folder = trained
    assert (folder / "adapter_config.json").is_file() and (folder / ADAPTER_META).is_file()
    pairs = crops_of(read_judge_jsonl(data_file))
    in_memory = judge.score_pairs(pairs)
    loaded = create_judge("transformers", model=str(tiny_folder), image_hw=SMALL_HW, adapter=str(folder))
    base = create_judge("transformers", model=str(tiny_folder), image_hw=SMALL_HW)
    np.testing.assert_allclose(loaded.score_pairs(pairs), in_memory, atol=1e-5)
    assert np.abs(base.score_pairs(pairs) - in_memory).max() > 1e-3  # the adapter changed the answers
    assert "adapter=" in repr(loaded)


def test_training_reads_the_first_token_exactly_as_the_judge(trained: tuple[TransformersJudge, LoraRun, Path],
                                                             data_file: Path) -> None:
    """μ of the trained judge equals sigmoid(No - Yes) of the logits the loss is computed on."""
    judge, _, _ = trained
    pairs = crops_of(read_judge_jsonl(data_file))[:3]
    with torch.no_grad():
        last = judge.model(**judge.model_inputs(pairs), use_cache=False).logits[:, -1, :]
    yes, no = last[:, judge.yes_id].numpy(), last[:, judge.no_id].numpy()
    np.testing.assert_allclose(judge.score_pairs(pairs), 1 / (1 + np.exp(yes - no)), atol=1e-5)


def test_a_wrong_adapter_is_a_one_line_error(trained: tuple[TransformersJudge, LoraRun, Path], tiny_folder: Path,
                                             tmp_path: Path) -> None:
    _, _, folder = trained
    with pytest.raises(JudgeConfigError, match=r"adapter_config\.json") as missing:
        TransformersJudge(tiny_folder, image_hw=SMALL_HW, adapter=tmp_path / "nowhere")
    other = _save_tiny(tmp_path / "other-base", num_key_value_heads=1)
    with pytest.raises(JudgeConfigError, match="trained on another base model") as other_base:
        TransformersJudge(other, image_hw=SMALL_HW, adapter=folder)
    bare = tmp_path / "bare-adapter"  # peft's files only: peft itself finds the shapes do not fit
    shutil.copytree(folder, bare)
    (bare / ADAPTER_META).unlink()
    with pytest.raises(JudgeConfigError, match="does not fit") as misfit:
        TransformersJudge(other, image_hw=SMALL_HW, adapter=bare)
    for error in (missing, other_base, misfit):
        assert "\n" not in str(error.value)


def _fail_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    return err


@needs_crops
def test_bad_input_is_refused_before_training(tmp_path: Path, tiny_folder: Path, data_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adapter"
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    # the data is read before the model: a missing model is not even looked at
    assert judge_command(empty, str(tmp_path / "no-model"), out, progress=False) == 2
    assert "no conversations" in _fail_line(capsys)
    record = json.loads(data_file.read_text().splitlines()[0])
    missing = write_jsonl(tmp_path / "missing.jsonl", [{**record, "images": [record["images"][0], "gone.jpg"]}])
    assert judge_command(missing, str(tiny_folder), out, progress=False) == 2
    assert "gone.jpg does not exist" in _fail_line(capsys)
    assert judge_command(data_file, str(tmp_path / "no-model"), out, progress=False) == 2
    assert "no-model" in _fail_line(capsys)
    assert judge_command(data_file, str(tiny_folder), out, rank=0, progress=False) == 2
    assert "rank" in _fail_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"messages": [], "images": []}', "a user and an assistant turn"),
        ('{"messages": [{"role": "user", "content": "Same?"}, {"role": "assistant", "content": "Yes"}], '
         '"images": ["a.jpg", "b.jpg"]}', "not the judge's prompt"),
    ],
)
def test_malformed_lines_are_refused_with_their_line_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + line + "\n", encoding="utf-8")
    with pytest.raises(JudgeDataError, match=message) as error:
        read_judge_jsonl(path)
    assert f"{path}:2" in str(error.value)


def test_a_wrong_answer_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((20, 10, 3), np.uint8))
    record = judge_record(image, image, True)
    record["messages"][1]["content"][0]["text"] = "Maybe"
    with pytest.raises(JudgeDataError, match="'Maybe'"):
        read_judge_jsonl(write_jsonl(tmp_path / "maybe.jsonl", [record]))
    relative = judge_record("a.jpg", "a.jpg", False)  # relative paths are read from the file's folder
    (example,) = read_judge_jsonl(write_jsonl(tmp_path / "relative.jsonl", [relative]))
    assert example.query == image and example.answer == "No"
    with pytest.raises(JudgeDataError, match="does not exist"):
        read_judge_jsonl(tmp_path / "nothing.jsonl")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"max_steps": 0}, "max_steps"),
     ({"dropout": 1.0}, "dropout"), ({"target_modules": ()}, "target_modules"), ({"batch_size": True}, "batch_size")],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(JudgeConfigError, match=message):
        LoraSettings(**kwargs)


@needs_crops
def test_the_command_trains_saves_and_prints_json(tmp_path: Path, tiny_folder: Path, data_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adapter"
    assert judge_command(data_file, str(tiny_folder), out, max_steps=2, batch_size=2, json_out=True,
                         progress=False) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 2 and np.isfinite(report["final_loss"]) and report["steps_per_s"] > 0
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["training"]["steps"] == 2 and meta["base_model"] == str(tiny_folder)
    judge = TransformersJudge(tiny_folder, image_hw=SMALL_HW, adapter=out)
    assert judge.score_pairs(crops_of(read_judge_jsonl(data_file))[:2]).shape == (2,)


def test_bench_train_judge_runs_on_the_tiny_shape(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_tool("bench_train_judge")
    assert bench.main(["--json", "--model-config", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "2",
                       "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model_config"] == "tiny" and report["weights"] == "random" and report["steps"] == 2
    assert report["steps_per_s"] > 0 and np.isfinite(report["final_loss"]) and report["prompt_tokens"] > 100
