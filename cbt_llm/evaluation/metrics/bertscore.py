"""BERTScore F1 with bert-score, on a Chinese BERT by default; a local model folder works offline."""

from __future__ import annotations

import threading
from pathlib import Path

from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.metrics.base import TextMetric
from cbt_llm.evaluation.registry import UNIT, Column

DEFAULT_BERTSCORE_MODEL = "bert-base-chinese"
# Hub models of bert-score's layer table, recognised in a local folder by their config (saved copies
# keep no Hub name): the architecture fields of the model's config.json.
KNOWN_CONFIGS = {"bert-base-chinese": {"model_type": "bert", "vocab_size": 21128, "hidden_size": 768,
                                       "num_hidden_layers": 12}}
_SCORERS: dict = {}
_LOCK = threading.Lock()


def _load_error(model: str, err: Exception) -> CbtLlmError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CbtLlmError(f"BERTScore model {model!r} could not be loaded ({first[:200]}); pass a local model "
                       "folder (--bertscore_model DIR) or leave BERTScore out (--no_bertscore)")


def bertscore_layer(model: str, num_layers: int | None = None) -> int:
    """The layer BERTScore reads: ``num_layers`` when given; else bert-score's tuned layer for the model
    (``bert-base-chinese``: 8), found by its Hub name or, for a local folder, by its config's model
    type and shape; else the model's last layer."""
    from bert_score.utils import model2layers

    if num_layers is not None:
        return num_layers
    folder = Path(model).expanduser()
    if model in model2layers and not folder.is_dir():
        return model2layers[model]
    if not folder.is_dir() and (model.startswith((".", "~", "/")) or model.count("/") > 1):
        raise _load_error(model, FileNotFoundError(f"no such folder: {folder}"))
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model).to_dict()
    except (OSError, ValueError) as err:
        raise _load_error(model, err) from None
    for name, fields in KNOWN_CONFIGS.items():
        if all(config.get(key) == value for key, value in fields.items()):
            return model2layers[name]
    return config["num_hidden_layers"]


def load_scorer(model: str = DEFAULT_BERTSCORE_MODEL, num_layers: int | None = None, batch_size: int = 32,
                device: str | None = None):
    """A cached ``bert_score.BERTScorer`` for a Hub model name or a local folder, at ``bertscore_layer``.

    A tokenizer without a length limit is capped at the model's ``max_position_embeddings``, so
    answers are truncated to 510 tokens plus [CLS] and [SEP] with bert-base-chinese, as bert-score does.
    """
    key = (model, num_layers, batch_size, device)
    with _LOCK:
        if key in _SCORERS:
            return _SCORERS[key]
        try:
            from bert_score import BERTScorer
        except ImportError:
            raise CbtLlmError("BERTScore needs the bert-score package: pip install 'cbt-llm[eval]', or leave "
                              "BERTScore out (--no_bertscore)") from None

        layer = bertscore_layer(model, num_layers)
        try:
            scorer = BERTScorer(model_type=model, num_layers=layer, batch_size=batch_size, device=device)
        except (OSError, ValueError) as err:
            raise _load_error(model, err) from None
        limit = getattr(scorer._model.config, "max_position_embeddings", 512)
        if scorer._tokenizer.model_max_length > limit:
            scorer._tokenizer.model_max_length = limit
        _SCORERS[key] = scorer
        return scorer


class BertScore(TextMetric):
    """Mean BERTScore precision, recall and F1 (bert-score, no baseline rescaling), 0-1.

    ``BertScore(model="bert-base-chinese", num_layers=None)``; ``model`` may be a local folder. The
    result also names the model, the layer, bert-score's hash of the settings, and how many answers
    were empty (scored 0: bert-score cannot encode an empty text).
    """

    DESCRIPTION = ("BERTScore (bert-score): greedy cosine matching of contextual token embeddings from a BERT "
                   "layer (bert-base-chinese, layer 8 by default; its WordPiece tokenizer splits Chinese into "
                   "characters). Raw scores, no baseline rescaling. Empty answers score 0. 0-1.")
    CITATION = """@inproceedings{zhang2020bertscore,
  title = {BERTScore: Evaluating Text Generation with BERT},
  author = {Zhang, Tianyi and Kishore, Varsha and Wu, Felix and Weinberger, Kilian Q. and Artzi, Yoav},
  booktitle = {International Conference on Learning Representations}, year = {2020}}"""
    COLUMNS = {"bertscore_f1": Column("BERTScore F1", "bertscore", "0-1, raw (not rescaled)", panel=UNIT,
                                      short="BERTScore")}
    REPRODUCE = ("model", "num_layers", "hash")

    @classmethod
    def note(cls, settings: dict) -> str | None:
        empty = settings.get("empty_predictions")
        return f"{empty} empty answers, scored 0 by BERTScore" if empty else None

    def __init__(self, model: str = DEFAULT_BERTSCORE_MODEL, num_layers: int | None = None, batch_size: int = 32,
                 device: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model_name, self.num_layers, self.batch_size, self.device = model, num_layers, batch_size, device

    def _compute(self, predictions, references):
        scorer = load_scorer(self.model_name, self.num_layers, self.batch_size, self.device)
        scored = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
        sums = [0.0, 0.0, 0.0]
        if scored:
            for index, values in enumerate(scorer.score([predictions[i] for i in scored],
                                                        [references[i] for i in scored])):
                sums[index] = float(values.sum())
        n = max(len(predictions), 1)
        return {"bertscore_precision": sums[0] / n, "bertscore_recall": sums[1] / n, "bertscore_f1": sums[2] / n,
                "model": self.model_name, "num_layers": scorer.num_layers, "hash": scorer.hash,
                "empty_predictions": sum(1 for p in predictions if not p.strip()),
                "empty_references": sum(1 for r in references if not r.strip())}
