"""Re-ID evaluation: dataset loaders, ranking (re-ranked, two-stage), metrics and reports.

    >>> from models.evaluation import evaluate, format_table
    >>> print(format_table(evaluate(Path("cuhk03_labeled/val"), "cuhk03", "reid/intel-0288")))  # doctest: +SKIP
"""

from models.evaluation.cache import EmbeddingCache
from models.evaluation.datasets import (
    FORMATS,
    DatasetError,
    ReIdSplit,
    Sample,
    Unit,
    detect_format,
    load_cuhk03,
    load_dataset,
    load_market1501,
    load_mars,
)
from models.evaluation.report import describe, format_table, plot_cmc, to_json_dict
from models.evaluation.run import RERANK_MODES, EvalResult, evaluate, evaluate_many
from models.metrics import RankMetrics

__all__ = [
    "FORMATS", "RERANK_MODES", "DatasetError", "EmbeddingCache", "EvalResult", "RankMetrics", "ReIdSplit",
    "Sample", "Unit", "describe", "detect_format", "evaluate", "evaluate_many", "format_table",
    "load_cuhk03", "load_dataset", "load_market1501", "load_mars", "plot_cmc", "to_json_dict",
]
