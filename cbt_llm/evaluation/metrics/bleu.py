"""BLEU and chrF with sacrebleu (0-100), and BLEU-1..4 on jieba words."""

from __future__ import annotations

from cbt_llm.evaluation.metrics._text import jieba_words
from cbt_llm.evaluation.metrics.base import TextMetric
from cbt_llm.evaluation.registry import HUNDRED, Column

SACREBLEU_CITATION = """@inproceedings{post-2018-call,
  title = "A Call for Clarity in Reporting {BLEU} Scores", author = "Post, Matt",
  booktitle = "Proceedings of the Third Conference on Machine Translation", year = "2018"}"""


class Bleu(TextMetric):
    """Corpus BLEU from sacrebleu with its ``zh`` tokenizer (each Chinese character a token), 0-100."""

    DESCRIPTION = ("Corpus-level BLEU (sacrebleu, 4-gram, brevity penalty, tokenize='zh': every CJK character "
                   "is one token, non-Chinese runs use the 13a rules). 0-100.")
    CITATION = SACREBLEU_CITATION
    COLUMNS = {"bleu": Column("BLEU", "bleu", "0-100, sacrebleu tokenize=zh (characters)", ".2f", HUNDRED)}
    REPRODUCE = ("signature",)

    def _compute(self, predictions, references):
        from sacrebleu.metrics import BLEU

        metric = BLEU(tokenize="zh")
        result = metric.corpus_score(list(predictions), [list(references)])
        return {"bleu": float(result.score), "signature": str(metric.get_signature())}


class ChrF(TextMetric):
    """Corpus chrF (character 6-grams, beta 2, whitespace ignored) from sacrebleu, 0-100."""

    DESCRIPTION = ("Corpus-level chrF (sacrebleu defaults: character n-grams up to 6, beta=2, whitespace removed; "
                   "needs no word segmentation, so it suits Chinese as is). 0-100.")
    CITATION = SACREBLEU_CITATION
    COLUMNS = {"chrf": Column("chrF", "chrf", "0-100, sacrebleu character 6-grams", ".2f", HUNDRED)}
    REPRODUCE = ("signature",)

    def _compute(self, predictions, references):
        from sacrebleu.metrics import CHRF

        metric = CHRF()
        result = metric.corpus_score(list(predictions), [list(references)])
        return {"chrf": float(result.score), "signature": str(metric.get_signature())}


class JiebaBleu(TextMetric):
    """Cumulative corpus BLEU-1..4 on jieba words (sacrebleu on the space-joined words), 0-100.

    BLEU-n is the brevity-penalised geometric mean of the 1..n-gram precisions over the whole
    corpus, computed by sacrebleu with ``tokenize='none'`` after jieba segmentation, so it counts
    words where ``bleu`` counts characters.
    """

    DESCRIPTION = ("Cumulative corpus BLEU-1, BLEU-2, BLEU-3 and BLEU-4 on jieba-segmented words (sacrebleu, "
                   "tokenize='none', max_ngram_order=n). 0-100.")
    CITATION = SACREBLEU_CITATION
    COLUMNS = {f"bleu_{n}": Column(f"BLEU-{n}", "bleu", "0-100, jieba words", ".2f", HUNDRED) for n in range(1, 5)}

    def _compute(self, predictions, references, max_order: int = 4):
        from sacrebleu.metrics import BLEU

        hyps = [" ".join(jieba_words(p)) for p in predictions]
        refs = [" ".join(jieba_words(r)) for r in references]
        scores = {}
        for n in range(1, max_order + 1):
            # effective_order keeps a short corpus from scoring 0 just because it has no n-gram of order n
            metric = BLEU(tokenize="none", max_ngram_order=n, effective_order=True)
            scores[f"bleu_{n}"] = float(metric.corpus_score(hyps, [refs]).score)
        return scores
