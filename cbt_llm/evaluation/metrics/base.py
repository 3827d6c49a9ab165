"""The base class of the package's metrics: an ``evaluate.Metric`` over string predictions and references."""

from __future__ import annotations

import datasets
import evaluate

STRING_FEATURES = datasets.Features({"predictions": datasets.Value("string"),
                                     "references": datasets.Value("string")})
INPUTS = """
Args:
    predictions: list of model answers (str).
    references: list of reference answers (str), one per prediction.
"""


class TextMetric(evaluate.Metric):
    """An ``evaluate.Metric`` with one string prediction and one string reference per example.

    Subclasses set ``DESCRIPTION`` and ``CITATION`` and implement ``_compute``. Instances are made
    directly (``Bleu()``), never loaded from the Hub, and keep their buffer in memory by default.
    """

    DESCRIPTION = ""
    CITATION = ""

    def __init__(self, keep_in_memory: bool = True, **kwargs):
        super().__init__(keep_in_memory=keep_in_memory, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(description=self.DESCRIPTION, citation=self.CITATION, inputs_description=INPUTS,
                                   features=STRING_FEATURES)
