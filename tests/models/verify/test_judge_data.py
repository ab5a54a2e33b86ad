"""Judge fine-tuning data (issue 14 item 6): stage-one hard-negative mining and the JSONL records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from models.errors import InvalidInputError
from models.verify.judge_data import MinedPairs, judge_record, judge_records, mine_pairs
from models.verify.prompt import NO, YES, chat_content

DATA = Path(os.environ.get("CROSSVIEW_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data"))
MARKET = DATA / "market1501_mini"


def brute_force(distances: np.ndarray, labels: np.ndarray, cameras: np.ndarray, top_k: int,
                per_query: int | None = None) -> list[tuple[int, int, bool, int]]:
    """The rule written out with plain loops: (query, candidate, same, rank) tuples."""
    out = []
    n = len(labels)
    for q in range(n):
        ranking = sorted((j for j in range(n) if cameras[j] != cameras[q]), key=lambda j: (distances[q, j], j))
        positives = [(place, j) for place, j in enumerate(ranking) if labels[j] == labels[q]]
        negatives, seen = [], set()
        for place, j in enumerate(ranking[:top_k]):
            if labels[j] != labels[q] and labels[j] not in seen:
                seen.add(labels[j])
                negatives.append((place, j))
        count = min(len(positives), len(negatives))
        if per_query is not None:
            count = min(count, per_query)
        out += [(q, j, True, place) for place, j in positives[:count]]
        out += [(q, j, False, place) for place, j in negatives[:count]]
    return out


def as_tuples(pairs: MinedPairs) -> list[tuple[int, int, bool, int]]:
    return list(zip(pairs.query.tolist(), pairs.candidate.tolist(), pairs.same.tolist(), pairs.rank.tolist(),
                    strict=True))


# Six images: identities A (0, 3), B (1, 4), C (2, 5); camera 0 holds 0-2, camera 1 holds 3-5.
# Row 0 (A, cam 0) ranks camera 1 as 4 (B), 5 (C), 3 (A): both wrong identities outrank the match.
HAND = np.array([
    [0.0, 0.1, 0.1, 0.9, 0.2, 0.5],
    [0.1, 0.0, 0.1, 0.3, 0.8, 0.6],
    [0.1, 0.1, 0.0, 0.2, 0.4, 0.7],
    [0.9, 0.3, 0.2, 0.0, 0.1, 0.1],
    [0.2, 0.8, 0.4, 0.1, 0.0, 0.1],
    [0.5, 0.6, 0.7, 0.1, 0.1, 0.0],
])
HAND_LABELS = np.array([0, 1, 2, 0, 1, 2])
HAND_CAMERAS = np.array([0, 0, 0, 1, 1, 1])


def test_the_stage_one_hard_negatives_are_picked_on_a_hand_made_matrix() -> None:
    pairs = mine_pairs(HAND, HAND_LABELS, HAND_CAMERAS, top_k=2)
    rows = as_tuples(pairs)
    # query 0: the one positive (image 3, ranked last) against the highest-ranked wrong identity (image 4)
    assert [r for r in rows if r[0] == 0] == [(0, 3, True, 2), (0, 4, False, 0)]
    # query 1 (B): ranking 3 (A), 5 (C), 4 (B) -> hardest negative is image 3
    assert [r for r in rows if r[0] == 1] == [(1, 4, True, 2), (1, 3, False, 0)]
    # query 3 (A, cam 1): ranking 2 (C), 1 (B), 0 (A)
    assert [r for r in rows if r[0] == 3] == [(3, 0, True, 2), (3, 2, False, 0)]
    assert pairs.n_positive == pairs.n_negative == 6 and pairs.n_queries == 6
    assert not any(HAND_CAMERAS[q] == HAND_CAMERAS[c] for q, c, _, _ in rows)  # cross-camera only
    assert rows == brute_force(HAND, HAND_LABELS, HAND_CAMERAS, top_k=2)


def test_a_short_list_without_a_wrong_identity_gives_no_pair_for_that_query() -> None:
    distances = HAND.copy()
    distances[0, 3] = 0.0  # query 0's match now ranks first; with top_k=1 no negative is in its short list
    rows = as_tuples(mine_pairs(distances, HAND_LABELS, HAND_CAMERAS, top_k=1))
    assert [r for r in rows if r[0] == 0] == []
    assert rows == brute_force(distances, HAND_LABELS, HAND_CAMERAS, top_k=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("top_k", "per_query"), [(1, None), (5, None), (10, 2), (40, None)])
def test_mining_equals_the_brute_force_reference(seed: int, top_k: int, per_query: int | None) -> None:
    rng = np.random.default_rng(seed)
    n = 30
    labels = rng.integers(0, 8, n)
    cameras = rng.integers(0, 3, n)
    vectors = rng.normal(size=(n, 4)) + labels[:, None] * 0.3
    distances = np.round(np.linalg.norm(vectors[:, None] - vectors[None], axis=2), 1)  # rounded: ties happen
    pairs = mine_pairs(distances, labels, cameras, top_k=top_k, per_query=per_query)
    assert as_tuples(pairs) == brute_force(distances, labels, cameras, top_k, per_query)
    for q in np.unique(pairs.query):  # balanced per query
        mine = pairs.query == q
        assert pairs.same[mine].sum() * 2 == mine.sum()


def test_records_carry_the_judges_exact_prompt_and_the_answer() -> None:
    pairs = mine_pairs(HAND, HAND_LABELS, HAND_CAMERAS, top_k=2)
    paths = [f"/img/{i}.jpg" for i in range(6)]
    records = judge_records(pairs, paths, swap=True)
    assert len(records) == 2 * len(pairs)
    prompt = chat_content(lambda slot: {"type": "image"})
    for index, record in enumerate(records):
        user, assistant = record["messages"]
        assert user == {"role": "user", "content": prompt}
        assert assistant["role"] == "assistant"
        q, c, same = pairs.query[index // 2], pairs.candidate[index // 2], pairs.same[index // 2]
        expected = [paths[q], paths[c]] if index % 2 == 0 else [paths[c], paths[q]]  # then the swapped copy
        assert record["images"] == expected
        assert assistant["content"] == [{"type": "text", "text": YES if same else NO}]
    json.dumps(records)  # plain JSON
    assert len(judge_records(pairs, paths, swap=False)) == len(pairs)
    assert sum(1 for part in judge_record("a", "b", True)["messages"][0]["content"] if part["type"] == "image") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((3, 2)), np.zeros(3), np.zeros(3)), "square"),
        ((np.zeros((3, 3)), np.zeros(2), np.zeros(3)), "labels: expected shape"),
        ((np.zeros((3, 3)), np.zeros(3), [0, 1, 2]), "cameras: expected shape"),
        ((np.full((3, 3), np.nan), np.zeros(3), np.zeros(3)), "finite"),
    ],
)
def test_bad_mining_input_is_refused(args: tuple, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        mine_pairs(*args)


def test_bad_top_k_and_paths_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="top_k"):
        mine_pairs(HAND, HAND_LABELS, HAND_CAMERAS, top_k=0)
    with pytest.raises(InvalidInputError, match="per_query"):
        mine_pairs(HAND, HAND_LABELS, HAND_CAMERAS, per_query=0)
    with pytest.raises(InvalidInputError, match="paths"):
        judge_records(mine_pairs(HAND, HAND_LABELS, HAND_CAMERAS), ["a.jpg"])


@pytest.mark.skipif(not MARKET.is_dir(), reason=f"real crops not found at {MARKET} (set CROSSVIEW_DATA)")
def test_judge_data_command_writes_valid_jsonl_from_real_crops(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino")
    from crossview.train_judge_command import judge_data_command

    out = tmp_path / "judge.jsonl"
    assert judge_data_command(MARKET, "market1501", "reid/intel-0288", top_k=10, out=out, seed=0, swap=True,
                              progress=False) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and len(records) % 2 == 0
    prompt = chat_content(lambda slot: {"type": "image"})
    answers = [r["messages"][1]["content"][0]["text"] for r in records]
    assert answers.count(YES) == answers.count(NO)  # balanced
    for record in records:
        assert record["messages"][0]["content"] == prompt
        assert all(Path(p).is_file() for p in record["images"]) and record["images"][0] != record["images"][1]
        query, candidate = (Path(p).name for p in record["images"])
        same = query[:4] == candidate[:4]
        assert record["messages"][1]["content"][0]["text"] == (YES if same else NO)
        assert query.split("_")[1][:2] != candidate.split("_")[1][:2]  # other camera
    assert f"positives {answers.count(YES)}" in printed and "queries" in printed


@pytest.mark.skipif(not MARKET.is_dir(), reason=f"real crops not found at {MARKET} (set CROSSVIEW_DATA)")
def test_judge_data_command_refuses_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossview.train_judge_command import judge_data_command

    assert judge_data_command(tmp_path / "nowhere", "market1501", "reid/intel-0288", top_k=10,
                              out=tmp_path / "x.jsonl", progress=False) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert judge_data_command(MARKET, "market1501", "reid/no-such-model", top_k=10, out=tmp_path / "x.jsonl",
                              progress=False) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "no-such-model" in err
    assert not (tmp_path / "x.jsonl").exists()
