#!/usr/bin/env python
"""Watchlist alerts on real crops: precision and recall at the default threshold as the gallery grows.

    python tools/bench_alerts.py --data ../shared/data/cuhk03_labeled/val --format cuhk03 [--json]

N identities are enrolled from camera A (their images as reference photos, all on the watchlist at the
default threshold); every identity's camera-B images then pass as one tracklet each (the rest are
strangers). Each tracklet is decided as the running system decides: the edge's `EdgeGallery` recall
and `ShortListPolicy` (edge model 0288), the tracklet's best crop as the edge uplinks it (scaled,
JPEG), the hub's `JudgeVerifier` with its default `reid` judge and `DecisionPolicy`, and the alert
rule (confirmed, and P(same) >= the watch threshold). Rows:

- ``calibrated``: P(same) from the zoo's calibrations (what crossview runs);
- ``cosine``: the reference, the same system reading the plain scores (1 - cosine distance, 1 - μ)
  against the same thresholds, as thresholds did before calibration;
- ``stage1-calibrated`` / ``stage1-cosine``: the edge's own score alone (no judge): alert when the
  nearest candidate's stage-1 score reaches the threshold.

N = 1 and 10 are averaged over several random draws of the enrolled people (fixed seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.verification import (
    CandidateEvidence,
    DecisionPolicy,
    GalleryMatrix,
    JudgeVerifier,
    VerifyRequest,
)
from edge.embed_worker import UplinkSettings
from edge.gallery import EdgeGallery, GalleryChange, Identity
from edge.shortlist import ShortListPolicy
from models.calibration import Calibration, calibration_for
from models.embed import create_embedder
from models.evaluation import load_dataset
from models.scores import DEFAULT_WATCH_P_SAME
from models.verify import create_judge


@dataclass(frozen=True)
class Person:
    pid: int
    references: list[np.ndarray]  # camera A crops (BGR)
    reference_vectors: np.ndarray  # (R, D) edge model
    tracklet: np.ndarray  # (D,) camera B tracklet vector (normalised mean), edge model
    uplinked: list[np.ndarray]  # the tracklet's crops as the hub receives them


def _uplinked(image: np.ndarray) -> np.ndarray:
    up = UplinkSettings()
    h, w = image.shape[:2]
    if h > up.max_height:
        image = cv2.resize(image, (max(1, round(w * up.max_height / h)), up.max_height), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, up.jpeg_quality])
    assert ok
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def load_people(root: Path, fmt: str, embedder: object, uplink_crops: int) -> list[Person]:
    split = load_dataset(root, fmt)
    people = []
    for pid in sorted({s.pid for s in split.query} & {s.pid for s in split.gallery}):
        refs = [cv2.imread(str(s.path)) for s in split.query if s.pid == pid]
        track = [cv2.imread(str(s.path)) for s in split.gallery if s.pid == pid]
        ref_vectors = embedder.embed(refs).vectors  # type: ignore[attr-defined]
        mean = embedder.embed(track).vectors.mean(axis=0)  # type: ignore[attr-defined]
        people.append(Person(pid, refs, ref_vectors, mean / np.linalg.norm(mean),
                             [_uplinked(t) for t in track[:uplink_crops]]))
    return people


def run_episode(people: Sequence[Person], enrolled: set[int], edge_fp: str, edge_cal: Calibration,
                verifier: JudgeVerifier, threshold: float, workdir: Path) -> dict[str, tuple[int, int, int]]:
    """Per mode: (alerts, correct alerts, enrolled people alerted correctly)."""
    dim = people[0].tracklet.shape[0]
    with EdgeGallery(workdir / f"gallery-{len(enrolled)}-{min(enrolled)}.db", edge_fp, dim) as gallery:
        upserts = tuple(Identity(str(p.pid), p.reference_vectors.astype(np.float32), str(p.pid), threshold)
                        for p in people if p.pid in enrolled)
        gallery.apply_delta(GalleryChange(0, 1, edge_fp, upserts, full_snapshot=True))
        means = {p.pid: p.reference_vectors.mean(axis=0) for p in people if p.pid in enrolled}
        matrix = GalleryMatrix(tuple(str(k) for k in means),
                               np.stack([v / np.linalg.norm(v) for v in means.values()]).astype(np.float32))
        policy = ShortListPolicy(calibration=edge_cal).with_watchlist({str(k) for k in enrolled})
        refs = {str(p.pid): p.references[:4] for p in people}
        counts = {"full": [0, 0, 0], "stage1": [0, 0, 0]}
        for person in people:
            ids, order, cosine = gallery.recall_scored(person.tracklet)
            candidates = policy.decide(ids, order, edge_cal.p_same(cosine), cosine)
            if not candidates:
                continue
            top = max(candidates, key=lambda c: c.p_same or 0.0)
            if top.p_same is not None and top.p_same >= threshold:
                _count(counts["stage1"], top.identity_id, person.pid, enrolled)
            evidence = [CandidateEvidence(c.identity_id, c.distance, refs[c.identity_id], c.cosine_distance)
                        for c in candidates]
            result = verifier.verify(VerifyRequest(person.uplinked, person.tracklet, evidence, matrix, edge_fp))
            if result.outcome == "confirmed" and result.p_same is not None and result.p_same >= threshold:
                assert result.identity_id is not None
                _count(counts["full"], result.identity_id, person.pid, enrolled)
    return {k: (v[0], v[1], v[2]) for k, v in counts.items()}


def _count(acc: list[int], identity: str, pid: int, enrolled: set[int]) -> None:
    acc[0] += 1
    if identity == str(pid):
        acc[1] += 1
        acc[2] += pid in enrolled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="labelled folder (e.g. cuhk03_labeled/val)")
    parser.add_argument("--format", default="cuhk03", choices=("cuhk03", "market1501"))
    parser.add_argument("--edge-model", default="reid/intel-0288")
    parser.add_argument("--sizes", default="1,10,all", help="enrolled gallery sizes, comma-separated")
    parser.add_argument("--draws", type=int, default=10, help="random draws of the enrolled people for small N")
    parser.add_argument("--threshold", type=float, default=DEFAULT_WATCH_P_SAME, help="the watch threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--uplink-crops", type=int, default=UplinkSettings().crops,
                        help="crops per short list (the edge's uplink_crops)")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    args = parser.parse_args(argv)

    embedder = create_embedder(args.edge_model)
    people = load_people(args.data, args.format, embedder, args.uplink_crops)
    judge = create_judge("reid")
    calibrated = (calibration_for(embedder.fingerprint, "cosine_distance"),
                  JudgeVerifier(judge, DecisionPolicy(), name="reid"))
    plain = (Calibration.uncalibrated(embedder.fingerprint, "cosine_distance"),
             JudgeVerifier(judge, DecisionPolicy(), name="reid",
                           calibration=Calibration.uncalibrated(judge.fingerprint, "judge_mu"),
                           model_calibrations=Calibration.uncalibrated))
    rng = np.random.default_rng(args.seed)
    pids = [p.pid for p in people]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size_text in args.sizes.split(","):
            n = len(pids) if size_text.strip() == "all" else min(int(size_text), len(pids))
            draws = 1 if n == len(pids) else args.draws
            picks = [set(rng.choice(pids, n, replace=False).tolist()) for _ in range(draws)]
            for score, (edge_cal, verifier) in (("calibrated", calibrated), ("cosine", plain)):
                totals = {"full": np.zeros(3), "stage1": np.zeros(3)}
                for enrolled in picks:
                    for mode, c in run_episode(people, enrolled, embedder.fingerprint, edge_cal, verifier,
                                               args.threshold, Path(tmp)).items():
                        totals[mode] += c
                for mode, (alerts, correct, found) in totals.items():
                    rows.append({"enrolled": n, "score": score if mode == "full" else f"stage1-{score}",
                                 "threshold": args.threshold, "draws": draws,
                                 "precision": round(correct / alerts, 4) if alerts else None,
                                 "recall": round(found / (n * draws), 4), "alerts": int(alerts)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'enrolled':>8}  {'score':<18} {'threshold':>9}  {'precision':>9}  {'recall':>6}  alerts")
        for r in rows:
            prec = "-" if r["precision"] is None else f"{r['precision']:.3f}"
            print(f"{r['enrolled']:>8}  {r['score']:<18} {r['threshold']:>9.2f}  {prec:>9}  {r['recall']:>6.3f}  "
                  f"{r['alerts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
