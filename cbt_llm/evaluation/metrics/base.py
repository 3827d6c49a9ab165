"""The base class of the package's metrics: an ``evaluate.Metric`` over string predictions and references."""

from __future__ import annotations

from typing import ClassVar

import datasets
import evaluate

from cbt_llm.evaluation.registry import Column

STRING_FEATURES = datasets.Features({"predictions": datasets.Value("string"),
                                     "references": datasets.Value("string")})
INPUTS = """
Args:
    predictions: list of model answers (str).
    references: list of reference answers (str), one per prediction.
"""


class TextMetric(evaluate.Metric):
    """An ``evaluate.Metric`` with one string prediction and one string reference per example.

    Subclasses set ``DESCRIPTION``, ``CITATION`` and ``COLUMNS`` (the figures ``_compute`` returns, as the
    report shows them) and implement ``_compute``; ``register_metric`` makes ``cbt-llm evaluate`` use them.
    Instances are made directly (``Bleu()``), never loaded from the Hub, and keep their buffer in memory
    by default.
    """

    DESCRIPTION = ""
    CITATION = ""
    COLUMNS: ClassVar[dict[str, Column]] = {}  # result key -> column, in the report's order
    REPRODUCE: ClassVar[tuple[str, ...]] = ()  # the non-figure results that reproduce the figures (a signature)
    REFERENCE_FREE: ClassVar[bool] = False     # True: it ignores the references, so they are scored too

    @classmethod
    def note(cls, settings: dict) -> str | None:
        """A line for report.md about one system's run of this metric (``settings``: its non-figure results)."""
        return None

    def __init__(self, keep_in_memory: bool = True, **kwargs):
        super().__init__(keep_in_memory=keep_in_memory, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(description=self.DESCRIPTION, citation=self.CITATION, inputs_description=INPUTS,
                                   features=STRING_FEATURES)
