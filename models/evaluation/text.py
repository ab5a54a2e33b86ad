"""Text → image evaluation on Market-1501 crops with the identity-level attribute labels (issue 15).

One run gives:
- per-attribute accuracy of the attribute model (probability >= 0.5 vs the label) and of the colour
  reader (upper / lower colour name vs the labelled one) on every crop of the set;
- text → image retrieval: one description per identity, written from its labels by `describe`
  (a fixed template) and parsed by the operators' parser, ranked over every crop of the set (a
  text query has no image of its own, so query/ gallery/ train/ folders are one gallery) — the
  attribute scores with the cross-modal re-ranking on Re-ID vectors, the attribute scores alone,
  a random ranking (mean of RANDOM_TRIALS seeded shuffles) and an oracle that scores with the
  true labels (the ceiling of the attribute vocabulary); with a text-image model also its cosines
  mixed into the attribute scores (re-ranked, as an edge ranks) and its cosines alone.
Score ties are broken by one seeded shuffle of the gallery, the same for every method: the oracle
ties every identity with the same labels, and index order would favour low identity numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.attributes.query import parse_description
from models.attributes.scoring import ProfileTable, description_scores, rank_by_description
from models.attributes.types import ATTRIBUTE_NAMES, AttributeProfile, ColourReading, TextQuery
from models.errors import require
from models.evaluation.datasets import DatasetError, image_files, market_name
from models.images import read_bgr
from models.zoo.spec import DEFAULT_TEXT_IMAGE_WEIGHT

RANDOM_TRIALS = 200
TEXT_IMAGE_METHOD = "attributes + text-image + re-rank"
TEXT_IMAGE_STAGE_ONE = "attributes + text-image"  # without Re-ID vectors: nothing to re-rank with
_SEED = 0
_UPPER_COLOURS = {"upblack": "black", "upwhite": "white", "upred": "red", "uppurple": "purple",
                  "upyellow": "yellow", "upgray": "grey", "upblue": "blue", "upgreen": "green"}
_LOWER_COLOURS = {"downblack": "black", "downwhite": "white", "downpink": "pink", "downpurple": "purple",
                  "downyellow": "yellow", "downgray": "grey", "downblue": "blue", "downgreen": "green",
                  "downbrown": "brown"}
_FIELDS = ("gender", "hair", "up", "down", "clothes", "hat", "backpack", "bag", "handbag")
_FOLDERS = ("query", "bounding_box_test", "bounding_box_train")


@dataclass(frozen=True)
class IdentityLabels:
    """One identity's labels in this project's vocabulary (colours None where none is labelled)."""

    pid: int
    attributes: tuple[bool, ...]  # ATTRIBUTE_NAMES order
    upper: str | None
    lower: str | None
    dress: bool = False  # lower-body clothing labelled "dress" (a skirt or dress), not "pants"

    def attribute(self, name: str) -> bool:
        return self.attributes[ATTRIBUTE_NAMES.index(name)]


def labels_from_fields(pid: int, values: Mapping[str, int]) -> IdentityLabels:
    """Market-1501 attribute fields (1 = no / first value, 2 = yes / second) → IdentityLabels."""
    missing = [f for f in (*_FIELDS, *_UPPER_COLOURS, *_LOWER_COLOURS) if f not in values]
    if missing:
        raise DatasetError(f"attribute labels of identity {pid}: missing fields {missing}")
    yes = {name: int(values[name]) == 2 for name in (*_FIELDS, *_UPPER_COLOURS, *_LOWER_COLOURS)}
    dress = not yes["clothes"]  # clothes: dress 1, pants 2
    attributes = {
        "male": int(values["gender"]) == 1, "bag": yes["bag"] or yes["handbag"], "backpack": yes["backpack"],
        "hat": yes["hat"], "long_sleeves": int(values["up"]) == 1,
        "long_trousers": int(values["down"]) == 1 and not dress, "long_hair": yes["hair"],
        "coat_jacket": False,  # not labelled: never described, and not scored
    }
    upper = next((colour for name, colour in _UPPER_COLOURS.items() if yes[name]), None)
    lower = next((colour for name, colour in _LOWER_COLOURS.items() if yes[name]), None)
    return IdentityLabels(pid, tuple(attributes[n] for n in ATTRIBUTE_NAMES), upper, lower, dress)


def load_market_attributes(path: Path) -> dict[int, IdentityLabels]:
    """Identity → labels, from `market_attribute.mat` (both its train and test structs)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"--text-labels: no such file {path}")
    sio = require("scipy.io")
    out: dict[int, IdentityLabels] = {}
    try:
        root = sio.loadmat(str(path))["market_attribute"][0, 0]
        for split in ("train", "test"):
            struct = root[split][0, 0]
            pids = [int(np.asarray(v).ravel()[0]) for v in struct["image_index"].ravel()]
            columns = {name: struct[name].ravel() for name in struct.dtype.names if name != "image_index"}
            for i, pid in enumerate(pids):
                out[pid] = labels_from_fields(pid, {name: values[i] for name, values in columns.items()})
    except DatasetError:
        raise
    except (sio.matlab.MatReadError, OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise DatasetError(f"{path}: expected Market-1501's market_attribute.mat ({exc})") from None
    return out


def describe(labels: IdentityLabels) -> str:
    """The fixed template, e.g. "woman, long hair, red long-sleeved top, black skirt, no backpack,
    with a bag, no hat" (coat_jacket is not labelled, so never mentioned)."""
    a = labels.attribute
    top = "long-sleeved top" if a("long_sleeves") else "t-shirt"
    bottom = "skirt" if labels.dress else ("trousers" if a("long_trousers") else "shorts")
    parts = ["man" if a("male") else "woman", "long hair" if a("long_hair") else "short hair",
             f"{labels.upper} {top}" if labels.upper else top,
             f"{labels.lower} {bottom}" if labels.lower else bottom]
    parts += [f"with a {name}" if a(name) else f"no {name}" for name in ("backpack", "bag", "hat")]
    return ", ".join(parts)


def oracle_profile(labels: IdentityLabels) -> AttributeProfile:
    """A profile that is certain of the true labels (the scoring clips 0/1 to its floor)."""
    return AttributeProfile(
        probabilities={n: float(v) for n, v in zip(ATTRIBUTE_NAMES, labels.attributes, strict=True)},
        upper=None if labels.upper is None else ColourReading(labels.upper, 1.0),
        lower=None if labels.lower is None else ColourReading(labels.lower, 1.0))


def retrieval_metrics(scores: np.ndarray, text_pids: np.ndarray, gallery_pids: np.ndarray,
                      tie_order: np.ndarray | None = None) -> dict[str, float]:
    """R1, R5 and mAP of (T, G) text-to-image scores (higher = better); ties broken by `tie_order`
    (a permutation of the gallery; index order when None)."""
    n_gallery = scores.shape[1]
    perm = np.arange(n_gallery) if tie_order is None else np.asarray(tie_order)
    ranks1, ranks5, aps = [], [], []
    for row, pid in zip(scores, text_pids, strict=True):
        order = perm[np.argsort(-row[perm], kind="stable")]
        hits = gallery_pids[order] == pid
        if not hits.any():
            continue
        positions = np.flatnonzero(hits)
        ranks1.append(positions[0] < 1)
        ranks5.append(positions[0] < 5)
        aps.append(float(np.mean(np.arange(1, len(positions) + 1) / (positions + 1))))
    if not aps:
        raise DatasetError("text retrieval: no description has a matching gallery crop")
    return {"rank1": float(np.mean(ranks1)), "rank5": float(np.mean(ranks5)), "mAP": float(np.mean(aps))}


@dataclass
class TextEvalResult:
    dataset: str
    n_crops: int
    n_identities: int
    methods: dict[str, dict[str, float]]  # method → rank1 / rank5 / mAP
    attribute_accuracy: dict[str, float]  # attribute or "upper_colour" / "lower_colour" → accuracy
    descriptions: dict[int, str] = field(default_factory=dict)
    ignored_words: int = 0
    # with a text-image model: percentiles of its text-image cosines, description vs crops of the same
    # identity ("same_p5", "same_p50", "same_p95") and of the others ("other_…"): where to set --cosine-range
    text_image_cosines: dict[str, float] = field(default_factory=dict)


def _crops(root: Path, labels: Mapping[int, IdentityLabels]) -> list[tuple[Path, int]]:
    crops = []
    for folder in _FOLDERS:
        if (root / folder).is_dir():
            for path in image_files(root / folder):
                pid, _ = market_name(path)
                if pid > 0:
                    crops.append((path, pid))
    if not crops:
        raise DatasetError(f"{root}: no labelled Market-1501 crops in {', '.join(_FOLDERS)}")
    unlabelled = sorted({pid for _, pid in crops if pid not in labels})
    if unlabelled:
        raise DatasetError(f"--text-labels: no labels for identities {unlabelled[:10]}")
    return crops



Recognize = Callable[[Sequence[np.ndarray]], list[AttributeProfile]]
Embed = Callable[[Sequence[np.ndarray]], np.ndarray]
EncodeText = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class TextImageTowers:
    """A text-image model as the evaluation uses it: its image tower, its text tower, its stage-one weight."""

    embed_images: Embed
    encode_text: EncodeText
    weight: float
    cosine_range: tuple[float, float]


def evaluate_text(root: Path, labels: Mapping[int, IdentityLabels], recognize: Recognize, embed: Embed | None,
                  *, progress: bool = True, k: int = 10, weight: float = 0.1,
                  text_image: TextImageTowers | None = None) -> TextEvalResult:
    """Run the whole evaluation on the Market-1501 folder `root` (see the module docstring)."""
    crops = _crops(Path(root), labels)
    images, pids = [], np.array([pid for _, pid in crops])
    for path, _ in tqdm(crops, desc="read crops", unit="img", disable=not progress, leave=False):
        images.append(read_bgr(path, DatasetError))
    profiles: list[AttributeProfile] = []
    for start in tqdm(range(0, len(images), 64), desc="attributes", disable=not progress, leave=False):
        profiles += recognize(images[start:start + 64])
    vectors = None if embed is None else np.asarray(embed(images), np.float32)

    truth = [labels[int(pid)] for pid in pids]
    accuracy = {name: float(np.mean([(p.probabilities[name] >= 0.5) == t.attribute(name)
                                     for p, t in zip(profiles, truth, strict=True)]))
                for name in ATTRIBUTE_NAMES if name != "coat_jacket"}
    for part in ("upper", "lower"):
        pairs = [(p.colour(part), getattr(t, part)) for p, t in zip(profiles, truth, strict=True)
                 if getattr(t, part) is not None]
        accuracy[f"{part}_colour"] = float(np.mean([r is not None and r.name == c for r, c in pairs]))

    identities = sorted(set(pids.tolist()))
    descriptions = {pid: describe(labels[pid]) for pid in identities}
    queries: list[TextQuery] = [parse_description(descriptions[pid]) for pid in identities]
    text_pids = np.array(identities)
    n = len(profiles)
    tie_order = np.random.default_rng(_SEED).permutation(n)
    table = ProfileTable.from_profiles(profiles)  # once: every query and method ranks the same profiles

    def full_scores(query: TextQuery, image_vectors: np.ndarray | None, cosine: np.ndarray | None = None
                    ) -> np.ndarray:
        mixing = {} if text_image is None else {"text_image_weight": text_image.weight,
                                                "text_image_range": text_image.cosine_range}
        idx, final = rank_by_description(query, table, image_vectors, top_k=n, k=k, weight=weight,
                                         text_image_cosine=cosine, **mixing)
        out = np.empty(n)
        out[idx] = final
        return out

    methods, cosine_bands = {}, {}
    if text_image is not None:
        image_side = np.asarray(text_image.embed_images(images), np.float32)
        cosines = np.asarray(text_image.encode_text([q.text for q in queries]), np.float32) @ image_side.T
        methods[TEXT_IMAGE_METHOD if vectors is not None else TEXT_IMAGE_STAGE_ONE] = retrieval_metrics(
            np.stack([full_scores(q, vectors, c) for q, c in zip(queries, cosines, strict=True)]),
            text_pids, pids, tie_order)
        methods["text-image alone"] = retrieval_metrics(cosines.astype(np.float64), text_pids, pids, tie_order)
        same = text_pids[:, None] == pids[None, :]
        for side, values in (("same", cosines[same]), ("other", cosines[~same])):
            cosine_bands.update({f"{side}_p{q}": float(np.percentile(values, q)) for q in (5, 50, 95)})
    if vectors is not None:
        methods["attributes + re-rank"] = retrieval_metrics(
            np.stack([full_scores(q, vectors) for q in queries]), text_pids, pids, tie_order)
    methods["attributes"] = retrieval_metrics(
        np.stack([full_scores(q, None) for q in queries]), text_pids, pids, tie_order)
    rng = np.random.default_rng(_SEED + 1)
    trials = [retrieval_metrics(rng.random((len(queries), n)), text_pids, pids) for _ in range(RANDOM_TRIALS)]
    methods["random"] = {key: float(np.mean([t[key] for t in trials])) for key in trials[0]}
    oracle = ProfileTable.from_profiles([oracle_profile(t) for t in truth])
    methods["oracle (true labels)"] = retrieval_metrics(
        np.stack([description_scores(q, oracle) for q in queries]), text_pids, pids, tie_order)
    return TextEvalResult(dataset=Path(root).name, n_crops=n, n_identities=len(identities), methods=methods,
                          attribute_accuracy=accuracy, descriptions=descriptions,
                          ignored_words=sum(len(q.ignored) for q in queries), text_image_cosines=cosine_bands)


def to_text_json(result: TextEvalResult) -> dict:
    main = (result.methods.get(TEXT_IMAGE_METHOD) or result.methods.get(TEXT_IMAGE_STAGE_ONE)
            or result.methods.get("attributes + re-rank", result.methods["attributes"]))
    extra = {} if "text-image alone" not in result.methods else {
        "text_image_only_rank1": result.methods["text-image alone"]["rank1"],
        "text_image_only_mAP": result.methods["text-image alone"]["mAP"],
        "without_text_image_rank1": result.methods.get("attributes + re-rank", result.methods["attributes"])["rank1"]}
    return {
        "dataset": result.dataset, "n_crops": result.n_crops, "n_identities": result.n_identities,
        "text_rank1": main["rank1"], "text_rank5": main["rank5"], "text_mAP": main["mAP"],
        "stage_one_rank1": result.methods["attributes"]["rank1"],
        "stage_one_mAP": result.methods["attributes"]["mAP"],
        "random_rank1": result.methods["random"]["rank1"], "random_mAP": result.methods["random"]["mAP"],
        "oracle_rank1": result.methods["oracle (true labels)"]["rank1"],
        "oracle_mAP": result.methods["oracle (true labels)"]["mAP"],
        "attribute_accuracy": result.attribute_accuracy, **extra,
        **({"text_image_cosines": result.text_image_cosines} if result.text_image_cosines else {}),
    }


def format_text_table(result: TextEvalResult) -> str:
    width = max(24, *(len(name) + 2 for name in result.methods))
    lines = [f"text → image on {result.dataset}: {result.n_identities} identities, one description each, "
             f"over {result.n_crops} crops (too few for a precise figure)",
             f"{'method':<{width}}{'R1':>8}{'R5':>8}{'mAP':>8}"]
    for name, m in result.methods.items():
        lines.append(f"{name:<{width}}{m['rank1']:>8.3f}{m['rank5']:>8.3f}{m['mAP']:>8.3f}")
    bands = result.text_image_cosines
    if bands:
        lines.append("text-image cosines, p5 / p50 / p95: same identity "
                     f"{bands['same_p5']:.3f} / {bands['same_p50']:.3f} / {bands['same_p95']:.3f}, others "
                     f"{bands['other_p5']:.3f} / {bands['other_p50']:.3f} / {bands['other_p95']:.3f} "
                     f"(--cosine-range {bands['other_p50']:.2f},{bands['same_p95']:.2f} would read the others' "
                     "median as 0 and the same identity's p95 as 1)")
    lines.append(f"accuracy on {result.n_crops} crops (attribute model; colour reader):")
    lines += [f"  {name:<16}{acc:.3f}" for name, acc in result.attribute_accuracy.items()]
    return "\n".join(lines)


def run_text_evaluation(data: Path, fmt: str, labels_path: Path, reid_model: str | None = "reid/intel-0288",
                        *, attribute_model: str = "attributes/intel-0230", progress: bool = True,
                        text_image_model: str | None = None,
                        text_image_weight: float = DEFAULT_TEXT_IMAGE_WEIGHT) -> TextEvalResult:
    """`crossview eval --text-labels`: load the labels and the models, then `evaluate_text`.
    `reid_model` gives the Re-ID vectors of the cross-modal re-ranking (None: stage one only);
    `text_image_model` a registered text-image model mixed in with `text_image_weight`."""
    if fmt not in ("market1501", "auto"):
        raise DatasetError(f"--text-labels: expected --format market1501 (the labels are Market-1501's), got {fmt!r}")
    from models.attributes.recognizer import AttributeRecognizer
    from models.embed import create_embedder

    labels = load_market_attributes(Path(labels_path))
    recognizer = AttributeRecognizer(attribute_model)
    embed = None
    if reid_model:
        embedder = create_embedder(reid_model, None, batch_size=32)

        def embed(images: Sequence[np.ndarray]) -> np.ndarray:
            return embedder.embed(images).vectors

    towers = None
    if text_image_model:
        from models.attributes.text_image import TextImageEncoder

        encoder = TextImageEncoder(text_image_model, weight=text_image_weight, num_threads=None)
        towers = TextImageTowers(lambda images: encoder.image.embed(images).vectors, encoder.encode_text,
                                 encoder.weight, encoder.cosine_range)
    return evaluate_text(Path(data), labels, recognizer.recognize, embed, progress=progress, text_image=towers)
