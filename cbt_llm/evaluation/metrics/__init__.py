"""The evaluation metrics for Chinese answers, each an ``evaluate.Metric`` subclass made directly.

``evaluate.load("bleu")`` fetches a script from the Hub at run time (which fails offline); these
classes live in the package instead::

    from cbt_llm.evaluation.metrics import Bleu
    Bleu().compute(predictions=[...], references=[...])   # {"bleu": ..., "signature": ...}

Tokenisation per metric: ``Bleu`` sacrebleu ``zh`` (characters); ``ChrF`` characters (no
segmentation); ``JiebaBleu`` (bleu_1..bleu_4), ``Meteor`` and ``Distinct`` jieba words;
``RougeL`` characters; ``BertScore`` the BERT model's own tokenizer.
"""

from cbt_llm.evaluation.metrics._text import characters, jieba_words
from cbt_llm.evaluation.metrics.bertscore import DEFAULT_BERTSCORE_MODEL, BertScore
from cbt_llm.evaluation.metrics.bleu import Bleu, ChrF, JiebaBleu
from cbt_llm.evaluation.metrics.distinct import Distinct, distinct
from cbt_llm.evaluation.metrics.meteor import Meteor, NoWordNet
from cbt_llm.evaluation.metrics.rouge import RougeL, lcs_length, rouge_l

__all__ = ["Bleu", "ChrF", "JiebaBleu", "Meteor", "RougeL", "Distinct", "BertScore", "NoWordNet",
           "DEFAULT_BERTSCORE_MODEL", "jieba_words", "characters", "lcs_length", "rouge_l", "distinct"]
