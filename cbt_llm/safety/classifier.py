"""The learned layer: hashed clause features and a linear model, shipped as ``classifier.json``.

Pure Python at inference (``zlib.crc32`` hashing, an ``array`` of weights): no numpy, no torch, a few
milliseconds a message. The normalised text (:func:`cbt_llm.safety.lexicon.normalize`, hyperbole masked)
is cut into clauses; each clause gives character 1- to 3-grams, Latin words and word pairs, and pinyin
syllable pairs (so 紫砂, ``zisha`` and 自杀 share features). A message is read clause by clause: each
clause alone and each clause with its neighbours is one window, and the highest score over the windows
counts, so a crisis line inside a long ordinary paragraph is never averaged away. Each clause is hashed
once and a window joins its clauses' sets, so the cost is linear in the length.

Two logistic heads score every window: ``crisis`` (crisis against the rest) and ``risk`` (concern or
crisis against none); each has a threshold per language chosen on out-of-fold scores (see
:mod:`cbt_llm.safety.train_classifier` and the README's safety section).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
import zlib
from array import array
from itertools import accumulate
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.lexicon import load_lexicon, normalize
from cbt_llm.safety.normalize import first_readings, pinyin_syllables
from cbt_llm.safety.rules import mask_hyperbole

FEATURE_VERSION = 3
NEIGHBOURS = 1  # clauses on each side read with a clause
WHOLE = 1500  # features up to which a message is also scored whole (about the 500 characters trained on)
MIN_ALONE = 8  # features a clause needs to be scored alone (about three characters): a lone 了 says nothing
_CLAUSE_END = re.compile(r"[。！？!?\n；;，,：:、]+|\.(?=\s|$)|…+|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])")
_LATIN_TOKEN = re.compile(r"[a-z0-9]+")


def prepared(text: str) -> str:
    """What the classifier reads: the lexicon's normalised text with hyperbole blanked (累死了 reads as nothing)."""
    lexicon = load_lexicon()
    return mask_hyperbole(normalize(text, lexicon), lexicon, [])


def clauses(norm: str) -> list[str]:
    """The clauses of a normalised text (sentence ends, commas, colons, a space between Chinese characters)."""
    return [c for c in (part.strip() for part in _CLAUSE_END.split(norm)) if c]


def clause_keys(clause: str) -> set[str]:
    """The feature names of one clause (before hashing): character n-grams as they are, ``w``/``b`` Latin words
    and word pairs, ``p`` pinyin syllable pairs."""
    n = len(clause)
    keys = set(clause)
    keys.update([clause[i:i + 2] for i in range(n - 1)])
    keys.update([clause[i:i + 3] for i in range(n - 2)])
    keys.discard(" ")
    if any("a" <= ch <= "z" for ch in clause):
        words = _LATIN_TOKEN.findall(clause)
        keys.update(f"w{w}" for w in words)
        keys.update(f"b{a} {b}" for a, b in zip(words, words[1:]))
        syllables = pinyin_syllables(clause)
    else:
        first = first_readings()
        syllables = [first[ch] for ch in clause if ch in first]
    keys.update(["p" + a + " " + b for a, b in zip(syllables, syllables[1:])])
    return keys


def clause_features(norm: str, buckets: int) -> list[list[int]]:
    """One sorted list of hashed feature indices per clause of ``norm`` (a prepared text); each distinct feature
    name is hashed once per text."""
    seen: dict = {}

    def index(key: str) -> int:
        found = seen.get(key)
        if found is None:
            found = seen[key] = zlib.crc32(key.encode("utf-8", "replace")) % buckets
        return found
    return [sorted({index(k) for k in clause_keys(c)}) for c in clauses(norm)]


def windows(units: list[list[int]], neighbours: int = NEIGHBOURS) -> list[range]:
    """Which clauses form each window a message is scored on: the whole message when it is short (at most
    ``2 * neighbours + 1`` clauses), else each clause with its ``neighbours`` on each side (and the whole message
    too while it is no longer than those trained on); and, when there is more than one clause, each clause of
    some length alone (a crisis line is not diluted by the clauses around it)."""
    n = len(units)
    if not n:
        return []
    joined = [range(n)] if n <= 2 * neighbours + 1 else [range(max(0, i - neighbours), min(n, i + neighbours + 1))
                                                            for i in range(n)]
    if n > 2 * neighbours + 1 and sum(map(len, units)) <= WHOLE:
        joined.insert(0, range(n))  # a message as long as those trained on is also read whole, as in training
    alone = [range(i, i + 1) for i in range(n) if len(units[i]) >= MIN_ALONE] if n > 1 else []
    return joined + alone


def window_features(units: list[list[int]], neighbours: int = NEIGHBOURS) -> list[list[int]]:
    """Each window's feature indices: its clauses' lists joined (a feature in two clauses counts twice)."""
    return [[i for c in window for i in units[c]] for window in windows(units, neighbours)]


def features(text: str, buckets: int) -> list[int]:
    """The feature indices of a whole message (every clause's, joined): what training fits on."""
    return [i for unit in clause_features(prepared(text), buckets) for i in unit]


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

    def window_scores(self, idx: list[int]) -> dict:
        """``{"crisis": p, "risk": p}`` for one window's feature indices."""
        if not idx:
            return {head: 0.0 for head in self.weights}
        norm = 1.0 / math.sqrt(len(idx))
        return {head: _sigmoid(self.bias[head] + norm * sum(w[i] for i in idx)) for head, w in self.weights.items()}

    def scores(self, text: str, prepared_text: str | None = None) -> dict:
        """``{"crisis": p, "risk": p}``: the highest probability of each head over the clause windows.

        Each clause's weight sum is taken once and a window adds its clauses' sums, so the cost is linear in
        the length. ``prepared_text`` is :func:`prepared` of ``text`` when the caller has it already (the guard).
        """
        norm = prepared(text) if prepared_text is None else prepared_text
        units = clause_features(norm, self.buckets)
        spans = [w for w in windows(units)]
        sizes = list(accumulate((len(u) for u in units), initial=0))
        spans = [w for w in spans if sizes[w.stop] > sizes[w.start]]
        best = {head: 0.0 for head in self.weights}
        for head, w in self.weights.items():
            sums = list(accumulate((sum(w[i] for i in unit) for unit in units), initial=0.0))
            if spans:  # the highest logit over the windows: one sigmoid per head
                top = max((sums[s.stop] - sums[s.start]) / math.sqrt(sizes[s.stop] - sizes[s.start]) for s in spans)
                best[head] = _sigmoid(self.bias[head] + top)
        return best

    def verdict(self, text: str, language: str, prepared_text: str | None = None) -> tuple[str, str]:
        """(level, reason) for ``text`` written in ``language``: crisis, concern or none by the thresholds."""
        scores = self.scores(text, prepared_text)
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
