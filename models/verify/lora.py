"""LoRA fine-tuning of the `transformers` judge on "same person?" conversations (MUSE, stage two).

    >>> examples = read_judge_jsonl(Path("judge.jsonl"))                    # doctest: +SKIP
    >>> judge = create_judge("transformers", model="Qwen/Qwen2-VL-2B-Instruct")   # doctest: +SKIP
    >>> run = train_lora(judge, examples, LoraSettings(epochs=1))            # doctest: +SKIP
    >>> save_adapter(judge, Path("adapter"))                                 # doctest: +SKIP
    >>> create_judge("transformers", model="Qwen/Qwen2-VL-2B-Instruct", adapter="adapter")  # doctest: +SKIP

Only the first answer token is supervised, read exactly as the judge reads it: the batch is built by
`TransformersJudge.model_inputs` (same prompt, same image size, left padding) and the loss is the
cross-entropy, over the whole vocabulary, of the "Yes" or "No" token at the last prompt position —
the first generated position, whose Yes/No logits give the judge's μ. The base model is frozen;
LoRA matrices go on the language model's attention projections (``q_proj k_proj v_proj o_proj``;
Qwen2-VL's vision blocks name theirs ``qkv``/``proj``, so the vision tower stays as it is). AdamW
at a constant learning rate, examples shuffled each epoch with a fixed seed.

The adapter folder holds peft's files and ``crossview_judge.json``: a fingerprint of the base
model's configuration, so that an adapter is refused on a base of another shape or kind before
peft touches it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from models.errors import CrossviewError, require
from models.images import read_bgr
from models.verify.base import JudgeConfigError
from models.verify.prompt import NO, YES, chat_content

if TYPE_CHECKING:
    from models.verify.transformers_judge import TransformersJudge

ADAPTER_META = "crossview_judge.json"
DEFAULT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
_VOLATILE_CONFIG_KEYS = {"transformers_version", "torch_dtype", "dtype", "architectures", "use_cache"}


class JudgeDataError(CrossviewError, ValueError):
    """A judge fine-tuning file that is missing, empty or not in the expected conversation layout."""


@dataclass(frozen=True)
class JudgeExample:
    """One supervised pair: the query and candidate image files and the expected first answer token."""

    query: Path
    candidate: Path
    answer: str

    def __post_init__(self) -> None:
        if self.answer not in (YES, NO):
            raise JudgeDataError(f"answer: expected {YES!r} or {NO!r}, got {self.answer!r}")


def _answer_text(message: object) -> object:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list) and len(content) == 1 and isinstance(content[0], dict):
        return content[0].get("text")
    return content


def _example(record: object, where: str, folder: Path, prompt: list[dict]) -> JudgeExample:
    if not isinstance(record, dict):
        raise JudgeDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    messages, images = record.get("messages"), record.get("images")
    if not isinstance(messages, list) or len(messages) != 2:
        raise JudgeDataError(f"{where}: expected 'messages' with a user and an assistant turn, got {messages!r:.80}")
    user, assistant = messages
    if not isinstance(user, dict) or user.get("role") != "user" or user.get("content") != prompt:
        raise JudgeDataError(f"{where}: the user turn is not the judge's prompt (models/verify/prompt.py); "
                             "write the file with `crossview train judge-data`")
    if not isinstance(assistant, dict) or assistant.get("role") != "assistant":
        raise JudgeDataError(f"{where}: expected the second message from the assistant, got {assistant!r:.80}")
    answer = _answer_text(assistant)
    if answer not in (YES, NO):
        raise JudgeDataError(f"{where}: expected the answer {YES!r} or {NO!r}, got {answer!r:.40}")
    if not isinstance(images, list) or len(images) != 2 or not all(isinstance(p, str) for p in images):
        raise JudgeDataError(f"{where}: expected 'images' with two paths (query, candidate), got {images!r:.80}")
    paths = [folder / p for p in images]  # an absolute path stays as it is
    for path in paths:
        if not path.is_file():
            raise JudgeDataError(f"{where}: image {path} does not exist")
    return JudgeExample(paths[0], paths[1], answer)


def read_judge_jsonl(path: Path) -> list[JudgeExample]:
    """The examples of a judge-data JSONL file, every line checked (relative image paths: from its folder)."""
    path = Path(path)
    if not path.is_file():
        raise JudgeDataError(f"judge data: file {path} does not exist")
    prompt = chat_content(lambda slot: {"type": "image"})
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JudgeDataError(f"{path}:{number}: not JSON ({exc.msg})") from None
            examples.append(_example(record, f"{path}:{number}", path.parent, prompt))
    if not examples:
        raise JudgeDataError(f"judge data: no conversations in {path}")
    return examples


@dataclass(frozen=True)
class LoraSettings:
    """Training settings; `max_steps` stops early (None: all `epochs`)."""

    epochs: int = 1
    lr: float = 2e-4
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    batch_size: int = 4
    max_steps: int | None = None
    seed: int = 0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        for name in ("epochs", "rank", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JudgeConfigError(f"{name}: expected a positive int, got {value!r}")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise JudgeConfigError(f"max_steps: expected a positive int or None, got {self.max_steps!r}")
        for name in ("lr", "alpha"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise JudgeConfigError(f"{name}: expected a positive number, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise JudgeConfigError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise JudgeConfigError(f"target_modules: expected module names, got {self.target_modules!r}")

    def total_steps(self, n_examples: int) -> int:
        steps = self.epochs * math.ceil(n_examples / self.batch_size)
        return min(steps, self.max_steps) if self.max_steps is not None else steps


@dataclass(frozen=True)
class LoraRun:
    """What `train_lora` did: the loss and wall time of every step (reading the loss waits for the device)."""

    losses: tuple[float, ...]
    step_seconds: tuple[float, ...]
    examples: int
    trainable_parameters: int

    @property
    def seconds(self) -> float:
        return sum(self.step_seconds)

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {"final_loss": self.final_loss, "first_loss": self.losses[0], "steps": self.steps,
                "steps_per_s": self.steps_per_s, "seconds": self.seconds, "examples": self.examples,
                "trainable_parameters": self.trainable_parameters}


def base_fingerprint(model: Any) -> str:
    """SHA-256 of the base model's configuration, without fields that vary between saves."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()
                    if not str(k).startswith("_") and k not in _VOLATILE_CONFIG_KEYS}
        return value

    text = json.dumps(clean(model.config.to_dict()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def attach_lora(judge: TransformersJudge, settings: LoraSettings) -> Any:
    """Wrap the judge's model in fresh LoRA matrices (seeded); the judge then scores with the wrapped model."""
    torch = require("torch")
    peft = require("peft")
    torch.manual_seed(settings.seed)
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=list(settings.target_modules), bias="none")
    fingerprint = base_fingerprint(judge.model)
    try:
        model = peft.get_peft_model(judge.model, config)
    except ValueError as exc:
        raise JudgeConfigError(f"LoRA cannot be put on {judge.model_name}: {str(exc).splitlines()[0]}") from None
    model.crossview_base_fingerprint = fingerprint
    judge.model = model
    return model


def _first_token_logits(model: Any, inputs: dict[str, Any], keep: dict[str, int]) -> Any:
    torch = require("torch")
    mask = inputs.get("attention_mask")
    if mask is None or bool(mask[:, -1].all()):  # left padded: the last position is the first generated one
        return model(**inputs, use_cache=False, **keep).logits[:, -1, :]
    logits = model(**inputs, use_cache=False).logits
    position = mask.shape[1] - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)
    return logits[torch.arange(len(position), device=logits.device), position]


def train_lora(judge: TransformersJudge, examples: Sequence[JudgeExample], settings: LoraSettings, *,
               progress: bool = True) -> LoraRun:
    """Fine-tune LoRA matrices on `examples`; afterwards `judge` scores with the trained model."""
    torch = require("torch")
    if not examples:
        raise JudgeDataError("examples: expected at least one, got none")
    model = attach_lora(judge, settings)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=0.0)
    keep_arg = next((n for n in ("logits_to_keep", "num_logits_to_keep")
                     if n in _forward_parameters(model.get_base_model())), None)
    keep = {keep_arg: 1} if keep_arg else {}
    answer_id = {YES: judge.yes_id, NO: judge.no_id}
    total = settings.total_steps(len(examples))
    rng = np.random.default_rng(settings.seed)
    order: list[int] = []
    losses: list[float] = []
    step_seconds: list[float] = []
    model.train()
    bar = tqdm(total=total, desc="train judge (LoRA)", unit="step", disable=not progress)
    try:
        while len(losses) < total:
            start = time.perf_counter()
            if not order:  # a new epoch; its last batch may be short
                order = rng.permutation(len(examples)).tolist()
            batch = [examples[i] for i in order[:settings.batch_size]]
            order = order[settings.batch_size:]
            rows = [(read_bgr(e.query, JudgeDataError), read_bgr(e.candidate, JudgeDataError)) for e in batch]
            targets = torch.tensor([answer_id[e.answer] for e in batch], device=judge.device)
            logits = _first_token_logits(model, judge.model_inputs(rows), keep)
            loss = torch.nn.functional.cross_entropy(logits.float(), targets)
            if not torch.isfinite(loss):
                raise JudgeConfigError(f"the loss became {float(loss)} at step {len(losses) + 1}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step_seconds.append(time.perf_counter() - start)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    finally:
        bar.close()
        model.eval()
    trainable = sum(p.numel() for p in parameters)
    return LoraRun(tuple(losses), tuple(step_seconds), len(examples), trainable)


def save_adapter(judge: TransformersJudge, folder: Path, run: LoraRun | None = None) -> Path:
    """Write the judge's LoRA adapter (peft ``save_pretrained``) and its base fingerprint to `folder`."""
    model = judge.model
    fingerprint = getattr(model, "crossview_base_fingerprint", None)
    if fingerprint is None:
        raise JudgeConfigError("the judge has no LoRA adapter to save (train it with train_lora first)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    meta = {"base_model": judge.model_name, "base_fingerprint": fingerprint,
            "answer_tokens": {YES: judge.yes_id, NO: judge.no_id}, "image_hw": judge.image_hw}
    if run is not None:
        meta["training"] = run.to_json()
    (folder / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def load_adapter(model: Any, folder: str | Path, model_name: str) -> Any:
    """`model` with the LoRA adapter in `folder` merged into it; a wrong folder or base is one-line error."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise JudgeConfigError(f"adapter: expected a folder holding adapter_config.json (peft save_pretrained), "
                               f"got {folder}")
    meta_file = folder / ADAPTER_META
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise JudgeConfigError(f"adapter: {meta_file} is not JSON ({exc.msg})") from None
        if meta.get("base_fingerprint") != base_fingerprint(model):
            raise JudgeConfigError(f"adapter {folder} was trained on another base model "
                                   f"({meta.get('base_model')!r}), not on {model_name}")
    peft = require("peft")
    try:
        wrapped = peft.PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        raise JudgeConfigError(f"adapter {folder} does not fit {model_name}: {str(exc).splitlines()[0]}") from None
    return wrapped.merge_and_unload()


def _forward_parameters(model: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()
