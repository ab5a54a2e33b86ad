"""Distillation from the hub's ensemble: teacher vectors (computed once, cached) and the similarity loss.

The student learns the teacher's similarity structure within a batch: with S and T the (B, B) cosine
similarities of the batch's student and teacher vectors (the diagonal left out), the loss is

    KL(softmax(T_i / τ) ‖ softmax(S_i / τ)) + (1 − cos(S_i, T_i)),   averaged over rows i,

so it needs no identity labels. Teachers embed the original (un-augmented) image with their own
preprocessing, so their input size need not match the student's. The teacher vector is the
concatenation of each teacher's unit vector, renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.errors import CrossviewError, ModelNotFoundError
from models.images import read_bgr
from models.train.network import TrainSetupError
from models.zoo import ModelSpec, get_spec, resolve_model

DISTILL_TEMPERATURE = 0.1
_CHUNK = 64


def similarity_distillation_loss(student: Any, teacher: Any, *, temperature: float = DISTILL_TEMPERATURE) -> Any:
    """KL + (1 − cosine) between the rows of the batch's student and teacher similarity matrices.

    Args:
        student: (B, Ds) torch tensor (normalised here). teacher: (B, Dt) tensor (normalised here).
        temperature: τ of the softmax over a row's similarities.

    Returns:
        a scalar tensor: 0 when the two similarity matrices are equal, positive otherwise.
    """
    import torch

    s = torch.nn.functional.normalize(student, dim=1)
    t = torch.nn.functional.normalize(teacher.to(s.dtype), dim=1)
    n = s.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    s_sim = (s @ s.t())[off].view(n, n - 1)
    t_sim = (t @ t.t())[off].view(n, n - 1)
    log_p_s = (s_sim / temperature).log_softmax(dim=1)
    log_p_t = (t_sim / temperature).log_softmax(dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    cosine = torch.nn.functional.cosine_similarity(s_sim, t_sim, dim=1, eps=1e-8).mean()
    return kl + (1.0 - cosine)


def parse_teachers(text: str | Sequence[str] | None) -> list[str]:
    """"a,b" (or a list) → ["a", "b"]; blanks dropped."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [t.strip() for t in items if t and t.strip()]


def check_teachers(names: Sequence[str]) -> list[ModelSpec]:
    """The zoo specs of the teachers, each a Re-ID model whose files resolve; else TrainSetupError."""
    specs = []
    for name in names:
        try:
            spec = get_spec(name)
        except ModelNotFoundError as exc:
            raise TrainSetupError(f"--teacher: {exc}") from None
        if spec.task != "reid":
            raise TrainSetupError(f"--teacher: {name!r} is a {spec.task} model, not a Re-ID model")
        try:
            resolve_model(name, allow_download=False, progress=False)
        except CrossviewError as exc:
            raise TrainSetupError(f"--teacher: {name!r} cannot be found ({exc})") from None
        specs.append(spec)
    if len(set(names)) != len(names):
        raise TrainSetupError(f"--teacher: expected distinct models, got {', '.join(names)}")
    return specs


def _cache_key(specs: Sequence[ModelSpec]) -> str:
    return "+".join(spec.fingerprint for spec in specs)


def teacher_vectors(paths: Sequence[Path], teachers: Sequence[str], cache_file: Path | None, *,
                    batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """(N, D) unit teacher vectors of the images at `paths`, read from `cache_file` when it holds
    exactly these teachers (by fingerprint) and paths, else computed and written there."""
    from models.embed import create_embedder, l2_normalise

    specs = check_teachers(teachers)
    key = _cache_key(specs)
    names = np.array([str(Path(p)) for p in paths])
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as cached:
            if str(cached["key"]) == key and np.array_equal(cached["paths"], names):
                return cached["vectors"].astype(np.float32)
    parts = []
    for spec in specs:
        embedder = create_embedder(spec.name, batch_size=batch_size)
        rows = []
        for start in tqdm(range(0, len(paths), _CHUNK), desc=f"teacher {spec.name}", unit="chunk",
                          disable=not progress, leave=False):
            images = [read_bgr(Path(p), TrainSetupError) for p in paths[start:start + _CHUNK]]
            rows.append(embedder.embed(images).vectors)
        parts.append(l2_normalise(np.concatenate(rows)))
    vectors = l2_normalise(np.concatenate(parts, axis=1))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + ".part.npz")
        np.savez(tmp, key=np.array(key), paths=names, vectors=vectors)
        tmp.replace(cache_file)
    return vectors
