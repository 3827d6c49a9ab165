"""The CBT-structure score: the paper's 0-2 expert scale, read off the five-step detector.

``cbt_structure_score(text)`` maps the five-step detector of ``cbt_llm.steps`` (the same one the
generator's quality check uses) onto the scale: 2 when all five steps are found in order, 0 when at
most one step is found, 1 otherwise. ``step_coverage`` summarises many answers; ``structure_agreement``
measures agreement with hand labels (``tests/data/cbt_structure_eval.jsonl``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cbt_llm.data.prompts import STEP_KEYS


@dataclass(frozen=True)
class StructureResult:
    """The structure score of one answer and what the detector found."""

    score: int
    present: dict[str, bool]
    in_order: bool

    @property
    def count(self) -> int:
        return sum(self.present.values())


def structure_of(text: str, language: str = "zh") -> StructureResult:
    """Per-step detection (``cbt_llm.steps.detect_steps``) and the 0/1/2 score from it."""
    from cbt_llm.steps import detect_steps

    detection = detect_steps(text or "", language)
    present = {key: bool(detection.present[key]) for key in STEP_KEYS}
    count = sum(present.values())
    if count == len(STEP_KEYS) and detection.in_order:
        score = 2
    elif count <= 1:
        score = 0
    else:
        score = 1
    return StructureResult(score, present, bool(detection.in_order))


def cbt_structure_score(text: str, language: str = "zh") -> int:
    """The paper's CBT-structure scale from the detector: 2 all five steps in order, 0 none or one, else 1."""
    return structure_of(text, language).score


def step_coverage(texts: Iterable[str], language: str = "zh") -> dict:
    """Over many answers: the share with each step, the mean structure score and the score counts."""
    results = [structure_of(t, language) for t in texts]
    n = len(results)
    if not n:
        return {"n": 0, "steps": {key: 0.0 for key in STEP_KEYS}, "structure_mean": 0.0, "scores": {}}
    return {
        "n": n,
        "steps": {key: sum(r.present[key] for r in results) / n for key in STEP_KEYS},
        "structure_mean": sum(r.score for r in results) / n,
        "structure_full": sum(r.score == 2 for r in results) / n,
        "scores": {str(s): c for s, c in sorted(Counter(r.score for r in results).items())},
    }


# ---------------------------------------------------------------------------------------------
# Agreement with hand labels
# ---------------------------------------------------------------------------------------------
def cohen_kappa(gold: Sequence[int], predicted: Sequence[int], labels: Sequence[int] = (0, 1, 2),
                weights: str | None = None) -> float:
    """Cohen's kappa of two raters; ``weights='quadratic'`` for the ordinal (weighted) variant."""
    n = len(gold)
    if n == 0 or n != len(predicted):
        raise ValueError("kappa needs two equally long, non-empty label lists")
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    observed = [[0.0] * k for _ in range(k)]
    for g, p in zip(gold, predicted):
        observed[index[g]][index[p]] += 1 / n
    row = [sum(observed[i]) for i in range(k)]
    col = [sum(observed[i][j] for i in range(k)) for j in range(k)]

    def weight(i: int, j: int) -> float:
        if weights == "quadratic":
            return (i - j) ** 2 / (k - 1) ** 2
        if weights == "linear":
            return abs(i - j) / (k - 1)
        return 0.0 if i == j else 1.0

    disagree_observed = sum(weight(i, j) * observed[i][j] for i in range(k) for j in range(k))
    disagree_expected = sum(weight(i, j) * row[i] * col[j] for i in range(k) for j in range(k))
    if disagree_expected == 0:
        return 1.0 if disagree_observed == 0 else 0.0
    return 1.0 - disagree_observed / disagree_expected


def structure_agreement(path: str | Path, scorer=cbt_structure_score) -> dict:
    """Agreement of ``scorer`` with the hand labels of a JSONL file (``text``, ``label``, optional ``language``).

    Returns accuracy, Cohen's kappa (unweighted and quadratic), the confusion matrix (gold rows,
    predicted columns) and the ids it got wrong.
    """
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    gold = [int(r["label"]) for r in rows]
    predicted = [int(scorer(r["text"], r.get("language", "zh"))) for r in rows]
    confusion = [[0] * 3 for _ in range(3)]
    for g, p in zip(gold, predicted):
        confusion[g][p] += 1
    return {
        "n": len(rows),
        "accuracy": sum(g == p for g, p in zip(gold, predicted)) / len(rows),
        "kappa": cohen_kappa(gold, predicted),
        "kappa_quadratic": cohen_kappa(gold, predicted, weights="quadratic"),
        "confusion": confusion,
        "errors": [{"id": r["id"], "gold": g, "predicted": p} for r, g, p in zip(rows, gold, predicted) if g != p],
    }
