"""METEOR on jieba-segmented Chinese, offline (nltk without the WordNet corpus)."""

from __future__ import annotations

from cbt_llm.evaluation.metrics._text import jieba_words
from cbt_llm.evaluation.metrics.base import TextMetric
from cbt_llm.evaluation.registry import UNIT, Column


class NoWordNet:
    """A stand-in for nltk's WordNet reader: no synonyms for any word.

    nltk's ``meteor_score`` takes the WordNet reader as an argument. WordNet is English-only (it
    has no Chinese synsets) and its corpus download is not available offline, so METEOR here
    matches exact words first, then Porter stems (which only changes Latin words), and never
    synonyms. This is the usual practice for Chinese METEOR without a Chinese synonym resource.
    """

    def synsets(self, *args, **kwargs):
        return []


class Meteor(TextMetric):
    """Mean sentence METEOR (nltk, alpha 0.9, beta 3, gamma 0.5) on jieba words, 0-1."""

    DESCRIPTION = ("METEOR (nltk.translate.meteor_score) per answer on jieba-segmented words, averaged. "
                   "Matching: exact words, then Porter stems (Latin words only); no WordNet synonyms "
                   "(there are none for Chinese, and the corpus download is not used). 0-1.")
    CITATION = """@inproceedings{banerjee-lavie-2005-meteor,
  title = "{METEOR}: An Automatic Metric for {MT} Evaluation with Improved Correlation with Human Judgments",
  author = "Banerjee, Satanjeev and Lavie, Alon", year = "2005",
  booktitle = "Proceedings of the ACL Workshop on Intrinsic and Extrinsic Evaluation Measures"}"""
    COLUMNS = {"meteor": Column("METEOR", "meteor", "0-1, jieba words, exact+stem matching", panel=UNIT)}

    def _compute(self, predictions, references):
        from nltk.translate.meteor_score import meteor_score

        wordnet = NoWordNet()
        scores = []
        for prediction, reference in zip(predictions, references):
            hyp, ref = jieba_words(prediction), jieba_words(reference)
            scores.append(meteor_score([ref], hyp, wordnet=wordnet) if hyp and ref else 0.0)
        return {"meteor": float(sum(scores) / len(scores)) if scores else 0.0}
