"""Distinct-1/2: lexical diversity of the predictions (no reference used)."""

from __future__ import annotations

from cbt_llm.evaluation.metrics._text import jieba_words, ngrams
from cbt_llm.evaluation.metrics.base import TextMetric
from cbt_llm.evaluation.registry import UNIT, Column


def distinct(texts, n: int) -> float:
    """Distinct n-grams over all n-grams of all texts (jieba words), 0-1; 0 when there are none."""
    grams = [g for text in texts for g in ngrams(jieba_words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


class Distinct(TextMetric):
    """Corpus-level distinct-1 and distinct-2 on jieba words (Li et al., 2016). References are ignored."""

    DESCRIPTION = ("distinct-n: unique n-grams / all n-grams over all predictions pooled, on jieba words; "
                   "a diversity measure that ignores the references. 0-1.")
    CITATION = """@inproceedings{li-etal-2016-diversity,
  title = "A Diversity-Promoting Objective Function for Neural Conversation Models",
  author = "Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill",
  booktitle = "Proceedings of NAACL-HLT", year = "2016"}"""
    COLUMNS = {f"distinct_{n}": Column(f"Dist-{n}", "distinct", "0-1, jieba words, reference-free", panel=UNIT)
               for n in (1, 2)}
    REFERENCE_FREE = True

    def _compute(self, predictions, references):
        return {"distinct_1": distinct(predictions, 1), "distinct_2": distinct(predictions, 2)}
