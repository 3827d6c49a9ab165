"""The learned layer: hashed character n-grams and a linear model, shipped as ``classifier.json``.

Pure Python at inference (``zlib.crc32`` hashing, an ``array`` of weights): no numpy, no torch, a
few milliseconds a message. Two logistic heads score every message: ``crisis`` (crisis against the
rest) and ``risk`` (concern or crisis against none); each has a threshold per language chosen on
cross-validated predictions (see :mod:`cbt_llm.safety.train_classifier` and the README's safety
section for the data it was trained on and its figures). Long messages are read in overlapping
windows and the highest score counts, so a crisis line inside a long text is not averaged away.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
import zlib
from array import array
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.lexicon import load_lexicon, normalize
from cbt_llm.safety.rules import mask_hyperbole

FEATURE_VERSION = 2
WINDOW = 500  # characters per window; training messages are at most this long
_LATIN_TOKEN = re.compile(r"[a-z0-9]+")


def features(text: str, buckets: int) -> list[int]:
    """The sorted distinct bucket indices of ``text``'s features (binary bag, hashed with CRC-32).

    Character 1- to 4-grams of the normalised text (the lexicon's normalisation: NFKC, lower case,
    traditional to simplified) with the lexicon's hyperbole spans blanked (累死了 and "killing me"
    read the same to both layers), plus Latin word unigrams and bigrams.
    """
    lexicon = load_lexicon()
    norm = mask_hyperbole(normalize(text, lexicon), lexicon, [])
    grams = {norm[i:i + n] for n in (1, 2, 3, 4) for i in range(len(norm) - n + 1)}
    keys = [f"c{g}" for g in grams if g.strip()]
    words = _LATIN_TOKEN.findall(norm)
    keys += [f"w{w}" for w in set(words)]
    keys += [f"b{a} {b}" for a, b in set(zip(words, words[1:]))]
    return sorted({zlib.crc32(k.encode("utf-8", "replace")) % buckets for k in keys})


def windows(text: str, size: int = WINDOW) -> list[str]:
    """``text`` itself when short, else overlapping windows of ``size`` characters (half a window apart)."""
    if len(text) <= size:
        return [text]
    step = size // 2
    return [text[i:i + size] for i in range(0, len(text) - step, step)]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class RiskClassifier:
    """A trained two-head linear classifier; build it with :func:`load_classifier`."""

    path: str
    buckets: int
    weights: dict  # head -> array('f') of length buckets
    bias: dict  # head -> float
    thresholds: dict  # head -> {language: threshold}
    card: dict  # what it was trained on, how the thresholds were chosen, figures

    def scores(self, text: str) -> dict:
        """``{"crisis": p, "risk": p}``: the highest probability of each head over the text's windows."""
        best = {head: 0.0 for head in self.weights}
        for chunk in windows(text):
            idx = features(chunk, self.buckets)
            if not idx:
                continue
            norm = 1.0 / math.sqrt(len(idx))
            for head, w in self.weights.items():
                p = _sigmoid(self.bias[head] + norm * sum(w[i] for i in idx))
                best[head] = max(best[head], p)
        return best

    def verdict(self, text: str, language: str) -> tuple[str, str]:
        """(level, reason) for ``text`` written in ``language``: crisis, concern or none by the thresholds."""
        scores = self.scores(text)
        for head, level in (("crisis", "crisis"), ("risk", "concern")):
            threshold = self.thresholds[head].get(language, self.thresholds[head]["en"])
            if scores[head] >= threshold:
                return level, f"classifier: {head} {scores[head]:.2f} >= {threshold:.2f}"
        return "none", ""


def _decode(blob: str, n: int, where: str) -> array:
    values = array("f")
    values.frombytes(base64.b64decode(blob))
    if len(values) != n:
        raise CbtLlmError(f"{where}: expected {n} values, found {len(values)}")
    return values


def parse_classifier(data: dict, where: str) -> RiskClassifier:
    """A :class:`RiskClassifier` from the JSON written by the trainer (sparse weights, base64 float32)."""
    try:
        if data["feature_version"] != FEATURE_VERSION:
            raise CbtLlmError(f"{where}: feature_version {data['feature_version']} is not {FEATURE_VERSION}")
        buckets = int(data["buckets"])
        index = array("I")
        index.frombytes(base64.b64decode(data["index"]))
        weights, bias = {}, {}
        for head, spec in data["heads"].items():
            dense = array("f", bytes(4 * buckets))
            for i, value in zip(index, _decode(spec["weights"], len(index), f"{where}: {head}")):
                dense[i] = value
            weights[head], bias[head] = dense, float(spec["bias"])
        thresholds = {head: dict(spec["thresholds"]) for head, spec in data["heads"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise CbtLlmError(f"{where}: not a cbt-llm risk classifier ({type(err).__name__}: {err})") from None
    if set(weights) != {"crisis", "risk"}:
        raise CbtLlmError(f"{where}: needs the heads crisis and risk, found {sorted(weights)}")
    return RiskClassifier(where, buckets, weights, bias, thresholds, dict(data.get("card", {})))


def load_classifier(path: str | Path | None = None) -> RiskClassifier:
    """The shipped classifier (``cbt_llm/safety/classifier.json``) or one at ``path``; loaded once per file."""
    return _load_classifier(None if path is None else str(path))


@functools.lru_cache(maxsize=4)
def _load_classifier(path: str | None) -> RiskClassifier:
    where = path or "cbt_llm/safety/classifier.json"
    try:
        if path is None:
            text = (resources.files("cbt_llm.safety") / "classifier.json").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
    except OSError as err:
        raise CbtLlmError(f"{where}: cannot read the risk classifier: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise CbtLlmError(f"{where}: invalid JSON at line {err.lineno}: {err.msg}") from None
    return parse_classifier(data, where)
