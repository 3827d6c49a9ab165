"""Scoring the guard on a labelled JSONL file, one layer at a time and combined: ``python -m cbt_llm.safety --eval``.

A row needs ``text`` and ``label`` (none / concern / crisis; ``benign`` reads as none) and may carry
``category``, ``language`` or ``lang``, ``source`` and ``orig_label`` (the dataset's own label): the report
breaks the figures down by language, by source and, when rows carry ``orig_label``, by severity in each
language (:func:`severity_of`: active risk, a passive wish, none ...), with the figures the guard is held
to (crisis -> crisis, crisis -> concern or crisis, none -> crisis, none -> concern or crisis).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.guard import LAYERS as LAYER_NAMES
from cbt_llm.safety.guard import assess_risk, run_layers
from cbt_llm.safety.lexicon import Lexicon, detect_language
from cbt_llm.safety.risk import LEVELS, RANK, Risk

LAYERS = ("rules", "classifier", "combined")
_LABEL_ALIASES = {"benign": "none"}
# PsySUICIDE's labels of active risk; 被动自杀意图 alone is a passive wish
ACTIVE_LABELS = ("主动自杀意图", "自杀计划", "自杀准备行为", "自杀未遂", "自伤行为", "自伤意图")
PASSIVE_LABELS = ("被动自杀意图",)


def severity_of(gold: str, orig_label: str) -> str:
    """The severity a row is scored under: ``active`` / ``passive`` for PsySUICIDE's crisis labels (active wins
    when a row has both), else the gold label (an English crisis row is ``crisis``); '' without ``orig_label``."""
    if not orig_label:
        return ""
    if gold == "none":
        return "none"
    if any(label in orig_label for label in ACTIVE_LABELS):
        return "active"
    if any(label in orig_label for label in PASSIVE_LABELS):
        return "passive"
    return gold


@dataclass(frozen=True)
class LabelledMessage:
    """One row of an evaluation file."""

    text: str
    gold: str
    category: str
    language: str
    source: str
    severity: str = ""  # from the row's orig_label (:func:`severity_of`); '' when it has none


def read_labelled(path: str | Path) -> list[LabelledMessage]:
    """The rows of a labelled JSONL file; a bad row is an error naming the file, line and field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CbtLlmError(f"{path}: cannot read evaluation file: {err.strerror}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, gold = row["text"], row["label"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CbtLlmError(f"{path}:{number}: expected a JSON object with text and label") from None
        gold = _LABEL_ALIASES.get(gold, gold)
        if gold not in RANK:
            raise CbtLlmError(f"{path}:{number}: label {gold!r} is not one of {', '.join(LEVELS)} (or benign)")
        if not isinstance(text, str):
            raise CbtLlmError(f"{path}:{number}: text must be a string")
        language = row.get("language") or row.get("lang") or detect_language(text)
        rows.append(LabelledMessage(text, gold, str(row.get("category", gold)), language,
                                    str(row.get("source", path.name)).split(" (")[0],
                                    severity_of(gold, str(row.get("orig_label") or ""))))
    if not rows:
        raise CbtLlmError(f"{path}: no labelled messages")
    return rows


def _rate(hits: int, n: int) -> str:
    return f"{hits / n:.3f} ({hits}/{n})" if n else "-"


def _group_keys(results) -> list[tuple[str, str]]:
    """(group name, how to pick its rows): each language, each source, each language's severities."""
    languages = sorted({m.language for m, _ in results})
    keys = [(lang, ("language", lang)) for lang in languages]
    keys += [(src, ("source", src)) for src in sorted({m.source for m, _ in results})]
    keys += [(f"{lang} {sev}", ("severity", lang, sev)) for lang in languages
             for sev in sorted({m.severity for m, _ in results if m.language == lang and m.severity})]
    return keys


def _picks(message: LabelledMessage, how: tuple) -> bool:
    if how[0] == "severity":
        return message.language == how[1] and message.severity == how[2]
    return getattr(message, how[0]) == how[1]


def group_figures(results) -> list[tuple[str, str, str, str, str]]:
    """Per language, per source and per severity of ``(message, predicted level)`` pairs: (group,
    crisis -> crisis, crisis -> concern or crisis, none -> crisis, none -> concern or crisis), each as
    "rate (hits/n)"; a severity row counts its own rows in the crisis columns."""
    out = []
    for name, how in _group_keys(results):
        rows = [(m.gold, str(p)) for m, p in results if _picks(m, how)]
        flagged = [p for g, p in rows if g == "crisis" or (how[0] == "severity" and how[2] not in ("none", ""))]
        benign = [p for g, p in rows if g == "none"]
        out.append((name, _rate(flagged.count("crisis"), len(flagged)), _rate(sum(p != "none" for p in flagged),
                    len(flagged)), _rate(benign.count("crisis"), len(benign)),
                    _rate(sum(p != "none" for p in benign), len(benign))))
    return out


def group_table(results) -> str:
    """:func:`group_figures` as a Markdown table."""
    lines = ["| group | crisis -> crisis | crisis -> concern or crisis | none -> crisis | none -> concern or crisis |",
             "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in group_figures(results)]
    return "\n".join(lines)


@dataclass(frozen=True)
class EvalReport:
    """What one layer said on a labelled file: the confusion table and the per-group figures."""

    layer: str
    confusion: dict  # gold label -> predicted label -> count
    total: int
    crisis_recall: float
    benign_crisis_rate: float  # share of messages not labelled crisis that were flagged crisis
    accuracy: float
    errors: tuple  # (gold, predicted, category, text, reasons)
    by_category: dict  # category -> (correct, total)
    results: tuple  # (message, predicted level) for every row

    def table(self) -> str:
        """A Markdown confusion table plus the headline numbers."""
        head = "| gold \\ predicted | " + " | ".join(LEVELS) + " | total |"
        lines = [head, "|---" * (len(LEVELS) + 2) + "|"]
        for gold in LEVELS:
            row = self.confusion.get(gold, {})
            lines.append(f"| {gold} | " + " | ".join(str(row.get(p, 0)) for p in LEVELS)
                         + f" | {sum(row.values())} |")
        benign = sum(sum(self.confusion.get(g, {}).values()) for g in LEVELS if g != "crisis")
        lines += ["", f"messages: {self.total}; crisis recall: {self.crisis_recall:.3f}; "
                  f"benign flagged crisis: {self.benign_crisis_rate:.3f} "
                  f"({round(self.benign_crisis_rate * benign)} of {benign}); exact-level accuracy: {self.accuracy:.3f}"]
        return "\n".join(lines)

    def groups(self) -> list[tuple[str, str, str, str, str]]:
        """Per language, source and severity: see :func:`group_figures`."""
        return group_figures(self.results)

    def group_table(self) -> str:
        """:meth:`groups` as a Markdown table."""
        return group_table(self.results)


def layer_function(layer: str, lexicon=None, classifier=None, judge: Callable | None = None) -> Callable[[str], Risk]:
    """``text -> Risk`` for one layer by its registered name (:data:`cbt_llm.safety.guard.LAYERS`): ``rules``,
    ``classifier`` alone, ``judge`` (the model guard alone, with a judge), or ``combined`` (every layer: rules +
    classifier, and ``judge`` when one is given)."""
    options = {"lexicon": lexicon, "classifier": classifier, "model_guard": judge}
    if layer == "combined":
        return lambda text: run_layers(text, None, **options)
    name = "model_guard" if layer == "judge" else layer
    if name not in LAYER_NAMES or (name == "model_guard" and judge is None):
        raise CbtLlmError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)} (or judge with a judge)")
    return lambda text: run_layers(text, (name,), **options)


def evaluate(path: str | Path, layer: str = "combined", lexicon: Lexicon | str | Path | None = None,
             classifier=None, judge: Callable | None = None) -> EvalReport:
    """Run one layer of the guard over a labelled JSONL file and build the report."""
    assess = layer_function(layer, lexicon, classifier, judge)
    confusion = {g: Counter() for g in LEVELS}
    errors, by_category, results = [], {}, []
    for message in read_labelled(path):
        risk = assess(message.text)
        confusion[message.gold][str(risk.level)] += 1
        results.append((message, str(risk.level)))
        ok, n = by_category.get(message.category, (0, 0))
        by_category[message.category] = (ok + (risk.level == message.gold), n + 1)
        if risk.level != message.gold:
            errors.append((message.gold, risk.level, message.category, message.text, risk.reasons))
    total = len(results)
    crisis_n = sum(confusion["crisis"].values())
    benign_n = total - crisis_n
    return EvalReport(
        layer=layer,
        confusion={g: dict(c) for g, c in confusion.items()},
        total=total,
        crisis_recall=confusion["crisis"]["crisis"] / crisis_n if crisis_n else float("nan"),
        benign_crisis_rate=(confusion["none"]["crisis"] + confusion["concern"]["crisis"]) / benign_n if benign_n else 0.0,
        accuracy=sum(confusion[g][g] for g in LEVELS) / total,
        errors=tuple(errors),
        by_category=by_category,
        results=tuple(results),
    )


def evaluate_lexicon(path: str | Path, lexicon: Lexicon | str | Path | None = None,
                     judge: Callable | None = None) -> EvalReport:
    """The rules alone (with ``judge`` when given) on a labelled file: the pre-classifier report."""
    if judge is None:
        return evaluate(path, "rules", lexicon)
    return evaluate(path, "combined", lexicon, classifier=False, judge=judge)


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m cbt_llm.safety --eval FILE``: every layer alone and combined; ``... TEXT``: one verdict each."""
    parser = argparse.ArgumentParser(prog="python -m cbt_llm.safety", description=main.__doc__)
    parser.add_argument("text", nargs="*", help="messages to assess")
    parser.add_argument("--eval", metavar="FILE", help="labelled JSONL (text, label, optional category/lang/source)")
    parser.add_argument("--layer", choices=LAYERS, action="append", help="only these layers (default: all)")
    parser.add_argument("--lexicon", metavar="YAML", help="a lexicon file instead of the bundled one")
    parser.add_argument("--classifier", metavar="JSON", help="a classifier file instead of the bundled one")
    parser.add_argument("--errors", action="store_true", help="with --eval, list the misclassified messages")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.eval:
            for layer in args.layer or LAYERS:
                report = evaluate(args.eval, layer, lexicon=args.lexicon, classifier=args.classifier)
                print(f"## {layer}{' (rules + classifier)' if layer == 'combined' else ''}\n")
                print(report.table() + "\n\n" + report.group_table() + "\n")
                if args.errors:
                    for gold, predicted, category, text, reasons in report.errors:
                        print(f"- gold {gold}, got {predicted} [{category}]: {text}  {list(reasons)}")
                    print()
        for text in args.text:
            risk = assess_risk(text, lexicon=args.lexicon, classifier=args.classifier)
            print(json.dumps({"text": text, "level": risk.level, "reasons": risk.reasons,
                              "language": risk.language, "notes": risk.notes}, ensure_ascii=False))
        if not args.eval and not args.text:
            parser.print_usage()
            return 2
    except CbtLlmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
