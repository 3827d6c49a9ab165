"""The evaluation metrics for Chinese answers, each an ``evaluate.Metric`` subclass made directly, registered by name.

``evaluate.load("bleu")`` fetches a script from the Hub at run time (which fails offline); these
classes live in the package instead::

    from cbt_llm.evaluation.metrics import Bleu
    Bleu().compute(predictions=[...], references=[...])   # {"bleu": ..., "signature": ...}

Tokenisation per metric: ``Bleu`` sacrebleu ``zh`` (characters); ``ChrF`` characters (no
segmentation); ``JiebaBleu`` (bleu_1..bleu_4), ``Meteor`` and ``Distinct`` jieba words;
``RougeL`` characters; ``BertScore`` the BERT model's own tokenizer.

A new metric is one file here (a ``TextMetric`` with its ``COLUMNS``) and one line below; ``cbt-llm
evaluate`` then computes it and reports its columns (``cbt_llm.evaluation.registry``).
"""

from cbt_llm.evaluation.metrics._text import characters, jieba_words
from cbt_llm.evaluation.metrics.base import TextMetric
from cbt_llm.evaluation.metrics.bertscore import DEFAULT_BERTSCORE_MODEL, BertScore
from cbt_llm.evaluation.metrics.bleu import Bleu, ChrF, JiebaBleu
from cbt_llm.evaluation.metrics.distinct import Distinct, distinct
from cbt_llm.evaluation.metrics.meteor import Meteor, NoWordNet
from cbt_llm.evaluation.metrics.rouge import RougeL, lcs_length, rouge_l
from cbt_llm.evaluation.registry import register_metric

# in the order of the report's columns
register_metric("bleu", Bleu)
register_metric("chrf", ChrF)
register_metric("jieba_bleu", JiebaBleu)
register_metric("meteor", Meteor)
register_metric("rouge_l", RougeL)
register_metric("distinct", Distinct)
register_metric("bertscore", BertScore)

__all__ = ["Bleu", "ChrF", "JiebaBleu", "Meteor", "RougeL", "Distinct", "BertScore", "NoWordNet", "TextMetric",
           "DEFAULT_BERTSCORE_MODEL", "jieba_words", "characters", "lcs_length", "rouge_l", "distinct"]
