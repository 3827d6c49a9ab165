"""BERTScore F1 with bert-score, on a Chinese BERT by default; a local model folder works offline."""

from __future__ import annotations

import threading

from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.metrics.base import TextMetric

DEFAULT_BERTSCORE_MODEL = "bert-base-chinese"
_SCORERS: dict = {}
_LOCK = threading.Lock()


def load_scorer(model: str = DEFAULT_BERTSCORE_MODEL, num_layers: int | None = None, batch_size: int = 32,
                device: str | None = None):
    """A cached ``bert_score.BERTScorer`` for a Hub model name or a local folder.

    bert-score knows the best layer of well-known models (``bert-base-chinese``: 8); for any other
    model or folder without ``num_layers`` the last layer is used. A tokenizer without a length
    limit is capped at the model's ``max_position_embeddings`` (longer answers are truncated,
    as bert-score does with bert-base-chinese's 512 tokens).
    """
    key = (model, num_layers, batch_size, device)
    with _LOCK:
        if key in _SCORERS:
            return _SCORERS[key]
        try:
            from bert_score import BERTScorer
            from bert_score.utils import model2layers
        except ImportError:
            raise CbtLlmError("BERTScore needs the bert-score package: pip install 'cbt-llm[eval]', or leave "
                              "BERTScore out (--no-bertscore)") from None

        try:
            if num_layers is None and model not in model2layers:
                from transformers import AutoConfig

                num_layers = AutoConfig.from_pretrained(model).num_hidden_layers
            scorer = BERTScorer(model_type=model, num_layers=num_layers, batch_size=batch_size, device=device)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CbtLlmError(f"BERTScore model {model!r} could not be loaded ({first[:200]}); pass a local model "
                              "folder (--bertscore-model DIR) or leave BERTScore out (--no-bertscore)") from None
        limit = getattr(scorer._model.config, "max_position_embeddings", 512)
        if scorer._tokenizer.model_max_length > limit:
            scorer._tokenizer.model_max_length = limit
        _SCORERS[key] = scorer
        return scorer


class BertScore(TextMetric):
    """Mean BERTScore precision, recall and F1 (bert-score, no baseline rescaling), 0-1.

    ``BertScore(model="bert-base-chinese", num_layers=None)``; ``model`` may be a local folder.
    """

    DESCRIPTION = ("BERTScore (bert-score): greedy cosine matching of contextual token embeddings from a BERT "
                   "layer (bert-base-chinese, layer 8 by default; its WordPiece tokenizer splits Chinese into "
                   "characters). Raw scores, no baseline rescaling. 0-1.")
    CITATION = """@inproceedings{zhang2020bertscore,
  title = {BERTScore: Evaluating Text Generation with BERT},
  author = {Zhang, Tianyi and Kishore, Varsha and Wu, Felix and Weinberger, Kilian Q. and Artzi, Yoav},
  booktitle = {International Conference on Learning Representations}, year = {2020}}"""

    def __init__(self, model: str = DEFAULT_BERTSCORE_MODEL, num_layers: int | None = None, batch_size: int = 32,
                 device: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model_name, self.num_layers, self.batch_size, self.device = model, num_layers, batch_size, device

    def _compute(self, predictions, references):
        if not predictions:
            return {"bertscore_precision": 0.0, "bertscore_recall": 0.0, "bertscore_f1": 0.0}
        scorer = load_scorer(self.model_name, self.num_layers, self.batch_size, self.device)
        # an empty answer would make bert-score warn and score it 0; a lone space keeps the shapes right
        precision, recall, f1 = scorer.score([p or " " for p in predictions], [r or " " for r in references])
        return {"bertscore_precision": float(precision.mean()), "bertscore_recall": float(recall.mean()),
                "bertscore_f1": float(f1.mean())}
