"""Train the shipped risk classifier (dev time only; numpy, no other dependency).

``python -m cbt_llm.safety.train_classifier --dev ../shared/data/crisis_real/dev.jsonl ../shared/data/crisis_real/train.jsonl``

Data: the project's own labelled messages (``tests/data/safety_eval.jsonl``, ``safety_train.jsonl`` and
the benign look-alikes of ``safety_train_lookalikes.jsonl``) and externally labelled real messages
(``crisis_real`` dev and train), read from where they lie (their rows are never copied into the project;
the trained weights ship, with the sources credited in the README). ``crisis_real/test.jsonl`` is never
read here. Every message is also fitted in a few variants (:mod:`cbt_llm.safety.augment`: neutral text
around it, punctuation and spacing changed) that share its fold.

Two logistic heads (crisis against the rest; concern or crisis against none) with L2, fitted by
full-batch Adam on whole messages. Scores are read as the guard reads them: the highest over the clause
windows (:func:`cbt_llm.safety.classifier.window_features`). Thresholds are chosen per language on
out-of-fold scores of the real rows (k-fold, so no row is scored by a model that saw it or a variant of
it), combined with the rules, recall first: the lowest crisis threshold whose benign -> crisis rate stays
under ``--max-benign-crisis``, and the lowest risk threshold whose benign -> concern-or-crisis rate stays
under ``--max-benign-risk``. The crisis head leaves the real concern rows out (PsySUICIDE's "exploring
suicide" is worded like ideation) and weighs the project's own concern rows ``--crisis-concern-weight``.

``--learning-curve`` trains nothing: it prints the crisis head's out-of-fold figures on the real rows when
each fit sees only a share of them, to tell whether more real labelled rows would still move it.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.augment import variants
from cbt_llm.safety.classifier import FEATURE_VERSION, clause_features, prepared, window_features
from cbt_llm.safety.evaluation import LabelledMessage, group_table, read_labelled
from cbt_llm.safety.lexicon import detect_language
from cbt_llm.safety.linear import Design, fit_head
from cbt_llm.safety.risk import RANK, Risk
from cbt_llm.safety.rules import assess_lexicon

ROOT = Path(__file__).resolve().parents[2]
HEADS = {"crisis": ("crisis",), "risk": ("concern", "crisis")}
THRESHOLDS = [i / 100 for i in range(5, 100)]  # the grid every threshold is chosen from


@dataclass
class TrainArgs:
    """Command-line options of the trainer."""

    dev: list[Path]  # externally labelled real messages: crisis_real/dev.jsonl and train.jsonl (never test)
    own: list = field(default_factory=lambda: [ROOT / "tests/data/safety_eval.jsonl",
                                               ROOT / "tests/data/safety_train.jsonl",
                                               ROOT / "tests/data/safety_train_lookalikes.jsonl"])
    output: Path = Path(__file__).with_name("classifier.json")
    buckets: int = 1 << 18
    l2: float = 1e-5
    steps: int = 300
    folds: int = 5
    dev_weight: float = 2.0
    augment: int = 2  # variants per message
    augment_weight: float = 0.5
    max_benign_crisis: dict = field(default_factory=lambda: {"zh": 0.025, "en": 0.02})
    max_benign_risk: float = 0.08
    max_own_benign_crisis: float = 0.03  # the project's own benign look-alikes flagged crisis, out of fold
    crisis_concern_weight: dict = field(default_factory=lambda: {"zh": 0.3, "en": 1.0})
    seed: int = 0


def _weights(rows: TrainingRows, y, args: TrainArgs, own_concern: dict | None):
    """Each fitted row weighs ``dev_weight`` if real, ``augment_weight`` more if a variant, times a class-balancing
    factor. ``own_concern`` (the crisis head) scales the project's own concern rows per language and leaves out
    every real concern row."""
    import numpy as np

    real = rows.is_real[rows.source]
    base = np.where(real, args.dev_weight, 1.0) * np.where(rows.is_variant, args.augment_weight, 1.0)
    if own_concern is not None:
        concern = np.array([m.gold == "concern" for m in rows.fitted])
        scale = np.array([own_concern.get(m.language, 1.0) for m in rows.fitted])
        base = np.where(concern, np.where(real, 0.0, base * scale), base)
    pos, neg = base[y == 1].sum(), base[y == 0].sum()
    return base * np.where(y == 1, 0.5 / pos, 0.5 / neg) * len(y)


def _fold_ids(messages: list[LabelledMessage], folds: int, seed: int) -> list[int]:
    """A fold per row, stratified by (source, label) so each fold holds every group."""
    rng = random.Random(seed)
    groups: dict = {}
    for i, m in enumerate(messages):
        groups.setdefault((m.source, m.gold), []).append(i)
    fold = [0] * len(messages)
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for j, i in enumerate(members):
            fold[i] = j % folds
    return fold


def choose_threshold(scores, gold: list[str], rules: list[Risk], positive: tuple, cap: float) -> tuple[float, dict]:
    """Recall first: the lowest threshold whose benign (gold none) flag rate, rules OR classifier, is <= ``cap``.

    ``rules`` are the rules' verdicts; as in the guard, the classifier does not raise to crisis what the
    rules set aside (:attr:`Risk.set_aside`).
    """
    blocked = [positive == ("crisis",) and r.set_aside for r in rules]
    for t in THRESHOLDS:
        flagged = [r.level in positive or (s >= t and not b) for s, r, b in zip(scores, rules, blocked)]
        benign = [f for f, g in zip(flagged, gold) if g == "none"]
        crisis = [f for f, g in zip(flagged, gold) if g == "crisis"]
        rate = sum(benign) / max(len(benign), 1)
        if rate <= cap:
            return t, {"crisis_flagged": round(sum(crisis) / max(len(crisis), 1), 3), "benign_flagged": round(rate, 3),
                       "crisis_n": len(crisis), "benign_n": len(benign)}
    raise CbtLlmError(f"no threshold keeps benign flags under {cap}")


def out_of_fold_level(rules: Risk, crisis: float, risk: float, thresholds: dict, language: str) -> str:
    """The combined verdict the guard gives, from the rules' verdict and the two head scores."""
    level = rules.level
    if level != "crisis" and crisis >= thresholds["crisis"][language]:
        return "concern" if rules.set_aside else "crisis"
    if RANK[level] < RANK["concern"] and risk >= thresholds["risk"][language]:
        return "concern"
    return str(level)


class TrainingRows(NamedTuple):
    """What the trainer fits and scores: the real messages first, then the project's own, then the variants."""

    real: list[LabelledMessage]
    messages: list[LabelledMessage]  # real + own
    is_real: object  # numpy bool array over messages
    fitted: list[LabelledMessage]  # messages, their variants, then the windows of long benign messages
    source: object  # numpy array: the message each fitted row comes from
    is_variant: object  # numpy bool array over fitted: a variant or a window, not a message itself
    x: Design  # whole-message features of the fitted rows
    windows: Design  # the clause windows of the messages, as the guard reads them
    window_of: object  # numpy array: the message each window belongs to
    per_file: dict  # real file -> how many messages it gave


def _variants(messages: list[LabelledMessage], args: TrainArgs) -> list[tuple[int, LabelledMessage]]:
    """(source message, variant) pairs: ``args.augment`` variants of each message."""
    rng = random.Random(args.seed)
    return [(i, v) for i, m in enumerate(messages) for v in variants(m, rng, args.augment)] if args.augment else []


def _windows(messages: list[LabelledMessage], units: list) -> tuple[list, list]:
    """Every message's clause windows as (message, window), and those of benign messages of more than one clause
    (negatives as the guard will read them)."""
    windows = [(i, w) for i in range(len(messages)) for w in window_features(units[i])]
    return windows, [(i, w) for i, w in windows if messages[i].gold == "none" and len(units[i]) > 1]


def _read_all(args: TrainArgs) -> tuple[dict, list[LabelledMessage], list[LabelledMessage]]:
    """The real files' rows per file, the real rows, and the real rows followed by the project's own."""
    per_path = {Path(path): read_labelled(path) for path in args.dev}
    real = [m for messages in per_path.values() for m in messages]
    return per_path, real, real + [m for path in args.own for m in read_labelled(path)]


def _training_rows(args: TrainArgs) -> TrainingRows:
    """Read every real and own file once, add the variants and the clause windows of benign messages, and hash
    their features."""
    import numpy as np

    per_path, real, messages = _read_all(args)
    extra = _variants(messages, args)
    fitted = messages + [v for _, v in extra]
    units = [clause_features(prepared(m.text), args.buckets) for m in fitted]
    windows, benign = _windows(messages, units)
    rows = [[i for unit in u for i in unit] for u in units] + [w for _, w in benign]
    source = list(range(len(messages))) + [i for i, _ in extra] + [i for i, _ in benign]
    return TrainingRows(real, messages, np.arange(len(messages)) < len(real), fitted + [messages[i] for i, _ in benign],
                        np.array(source), np.arange(len(source)) >= len(messages), Design(rows),
                        Design([w for _, w in windows]), np.array([i for i, _ in windows]),
                        {f"{path.parent.name}/{path.name}": len(found) for path, found in per_path.items()})


def _window_max(rows: TrainingRows, w, b, messages) -> object:
    """Each of ``messages``' score: the highest over its clause windows."""
    import numpy as np

    mask = np.isin(rows.window_of, messages)
    picked = np.where(mask)[0]
    scores = 1.0 / (1.0 + np.exp(-(rows.windows.take(picked).dot(w) + b)))
    best = np.zeros(len(rows.messages))
    np.maximum.at(best, rows.window_of[picked], scores)
    return best[messages]


def out_of_fold(rows: TrainingRows, y, weight, fold, args: TrainArgs, keep=None):
    """Every message's score from the head fitted on the other folds (variants go with their message);
    only messages where ``keep`` is true are fitted on."""
    import numpy as np

    scores = np.zeros(len(rows.messages))
    fit_fold = fold[rows.source]
    for k in range(args.folds):
        fit = (fit_fold != k) if keep is None else (fit_fold != k) & keep[rows.source]
        train_idx, test_idx = np.where(fit)[0], np.where(fold == k)[0]
        w, b = fit_head(rows.x.take(train_idx), y[train_idx], weight[train_idx], args.buckets, args.l2, args.steps)
        scores[test_idx] = _window_max(rows, w, b, test_idx)
    return scores


def _auc(positive, negative) -> float:
    """The chance that a positive row scores above a negative one (ties count half)."""
    import numpy as np

    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def _curve_point(rows: TrainingRows, args: TrainArgs, fraction: float, repeat: int, groups: dict) -> dict:
    """One fold draw of the learning curve: AUC and recall at the benign cap per language."""
    import numpy as np

    y = np.array([m.gold == "crisis" for m in rows.fitted], dtype=float)
    weight = _weights(rows, y, args, args.crisis_concern_weight)
    rng = np.random.default_rng(args.seed + repeat)
    fold = np.array(_fold_ids(rows.messages, args.folds, args.seed + repeat))
    keep = ~rows.is_real | (rng.random(len(rows.messages)) < fraction)
    scores = out_of_fold(rows, y, weight, fold, args, keep)
    point = {"real_rows_fitted": (keep & rows.is_real).sum() * (args.folds - 1) / args.folds}
    for language, cap in args.max_benign_crisis.items():
        pos, neg = scores[groups[language][0]], scores[groups[language][1]]
        cut = min((t for t in THRESHOLDS if (neg >= t).mean() <= cap), default=1.0)
        point[f"{language}/auc"], point[f"{language}/recall"] = _auc(pos, neg), float((pos >= cut).mean())
    return point


def learning_curve(args: TrainArgs, fractions: tuple = (0.0, 0.25, 0.5, 0.75, 1.0), repeats: int = 2) -> list[dict]:
    """Out-of-fold figures of the crisis head (alone, no rules) on the real rows when each training fold keeps only
    a random ``fraction`` of its real rows and all the project's own: whether more real data would still help.

    Per language: the crisis-vs-benign AUC, and the crisis recall at the lowest threshold whose benign -> crisis
    rate stays under ``args.max_benign_crisis``; each figure is a mean over ``repeats`` fold draws.
    """
    import numpy as np

    rows = _training_rows(args)
    groups = {language: ([i for i, m in enumerate(rows.real) if m.language == language and m.gold == "crisis"],
                         [i for i, m in enumerate(rows.real) if m.language == language and m.gold == "none"])
              for language in args.max_benign_crisis}
    out = []
    for fraction in fractions:
        points = [_curve_point(rows, args, fraction, repeat, groups) for repeat in range(repeats)]
        out.append({"fraction": fraction, **{key: float(np.mean([p[key] for p in points])) for key in points[0]}})
    return out


def _own_floor(rows: TrainingRows, scores, language: str, cap: float) -> float:
    """The lowest crisis threshold that flags at most ``cap`` of the project's own benign messages in ``language``
    (look-alikes written to be hard: games, titles, hyperbole, short shapes), out of fold."""
    own = [scores[i] for i in range(len(rows.real), len(rows.messages))
           if rows.messages[i].gold == "none" and rows.messages[i].language == language]
    return min((t for t in THRESHOLDS if sum(s >= t for s in own) <= cap * len(own)), default=THRESHOLDS[-1])


def _thresholds(rows: TrainingRows, oof: dict, rules: list[Risk], args: TrainArgs) -> tuple[dict, dict]:
    """Per language and head, the threshold chosen on the real rows' out-of-fold scores, with its figures; a crisis
    threshold is raised further if it would flag more than ``args.max_own_benign_crisis`` of the project's own
    benign look-alikes."""
    thresholds, figures = {"crisis": {}, "risk": {}}, {}
    for language in ("zh", "en"):
        idx = [i for i, m in enumerate(rows.real) if m.language == language]
        gold = [rows.real[i].gold for i in idx]
        for head, cap, positive in (("crisis", args.max_benign_crisis[language], ("crisis",)),
                                    ("risk", args.max_benign_risk, ("concern", "crisis"))):
            t, fig = choose_threshold([oof[head][i] for i in idx], gold, [rules[i] for i in idx], positive, cap)
            if head == "crisis":
                t = max(t, _own_floor(rows, oof[head], language, args.max_own_benign_crisis))
            thresholds[head][language], figures[f"{language}/{head}"] = t, fig
    return thresholds, figures


def out_of_fold_report(rows: TrainingRows, oof: dict, rules: list[Risk], thresholds: dict) -> str:
    """Rules + classifier on each real file's rows, classifier scores out of fold, per group (and severity)."""
    levels = [out_of_fold_level(rules[i], oof["crisis"][i], oof["risk"][i], thresholds, detect_language(m.text))
              for i, m in enumerate(rows.real)]
    tables, start = [], 0
    for name, count in rows.per_file.items():
        pairs = list(zip(rows.real[start:start + count], levels[start:start + count]))
        tables.append(f"{name}:\n{group_table(pairs)}")
        start += count
    return "\n\n".join(tables)


def train(args: TrainArgs) -> dict:
    """Fit, cross-validate, choose thresholds, refit on everything; return the JSON to ship."""
    import numpy as np

    rows = _training_rows(args)
    rules = [assess_lexicon(m.text) for m in rows.messages]
    fold = np.array(_fold_ids(rows.messages, args.folds, args.seed))
    heads, oof = {}, {}
    for head, positive in HEADS.items():
        y = np.array([m.gold in positive for m in rows.fitted], dtype=float)
        weight = _weights(rows, y, args, args.crisis_concern_weight if head == "crisis" else None)
        oof[head] = out_of_fold(rows, y, weight, fold, args)
        heads[head] = fit_head(rows.x, y, weight, args.buckets, args.l2, args.steps)
    thresholds, figures = _thresholds(rows, oof, rules, args)
    print("rules + classifier on the real rows, classifier scores out of fold:\n"
          + out_of_fold_report(rows, oof, rules, thresholds) + "\n")
    used = np.unique(rows.x.indices)
    return {
        "feature_version": FEATURE_VERSION,
        "buckets": args.buckets,
        "index": base64.b64encode(array("I", used.tolist()).tobytes()).decode(),
        "heads": {head: {"bias": float(b), "thresholds": thresholds[head],
                         "weights": base64.b64encode(array("f", w[used].tolist()).tobytes()).decode()}
                  for head, (w, b) in heads.items()},
        "card": _card(args, rows, figures),
    }


def _card(args: TrainArgs, rows: TrainingRows, figures: dict) -> dict:
    own = rows.messages[len(rows.real):]
    return {
        "trained_on": {**{f"{name} (not shipped)": count for name, count in rows.per_file.items()},
                       **{Path(p).name: sum(1 for m in own if m.source == Path(p).name) for p in args.own}},
        "sources": "PsySUICIDE (Qiu et al., EMNLP 2024, MIT); Reddit C-SSRS (Gaur et al., WWW 2019, CC BY); "
                   "Reddit Mental Health Dataset (Low et al., JMIR 2020, CC BY 4.0); cbt-llm's own messages",
        "augmentation": f"{args.augment} variants per message (neutral text around it, punctuation, spacing), "
                        f"weight {args.augment_weight}",
        "thresholds_chosen_on": f"{args.folds}-fold out-of-fold scores of the real rows, with the rules, recall first "
                                "(benign -> crisis <= " + ", ".join(f"{k} {v}" for k, v in args.max_benign_crisis.items())
                                + f"; benign -> concern or crisis <= {args.max_benign_risk})",
        "crisis_head_concern_rows": "real ones left out; the project's own weighted "
                                    + ", ".join(f"{k} {v}" for k, v in args.crisis_concern_weight.items()),
        "cross_validated_real": figures,
        "settings": {"l2": args.l2, "steps": args.steps, "dev_weight": args.dev_weight, "seed": args.seed},
    }


def _per_language(spec: str) -> dict:
    """``"zh=0.04,en=0.02"`` as ``{"zh": 0.04, "en": 0.02}``; both languages must be given."""
    try:
        values = {lang.strip(): float(value) for lang, value in (part.split("=") for part in spec.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LANG=NUMBER pairs like zh=0.04,en=0.02, got {spec!r}") from None
    if set(values) != {"zh", "en"}:
        raise argparse.ArgumentTypeError(f"give a number for zh and for en, got {spec!r}")
    return values


def curve_table(rows: list[dict], caps: dict) -> str:
    """:func:`learning_curve` as a Markdown table."""
    languages = list(caps)
    lines = ["| share of real rows fitted | real rows per fit | " + " | ".join(
        f"{lang} AUC | {lang} recall at {caps[lang] * 100:g}% benign" for lang in languages) + " |",
        "|---" * (2 + 2 * len(languages)) + "|"]
    for row in rows:
        lines.append(f"| {row['fraction']:.2f} | {row['real_rows_fitted']:.0f} | " + " | ".join(
            f"{row[lang + '/auc']:.3f} | {row[lang + '/recall']:.3f}" for lang in languages) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train and write the classifier JSON; print the cross-validated dev figures behind the thresholds."""
    parser = argparse.ArgumentParser(prog="python -m cbt_llm.safety.train_classifier", description=__doc__.split("\n")[0])
    parser.add_argument("--dev", type=Path, nargs="+", required=True,
                        help="crisis_real/dev.jsonl and train.jsonl (never test.jsonl): externally labelled real messages")
    defaults = TrainArgs(dev=[])
    parser.add_argument("--output", type=Path, default=defaults.output)
    for name in ("l2", "dev_weight", "max_benign_risk", "augment_weight", "max_own_benign_crisis"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=getattr(defaults, name))
    parser.add_argument("--max-benign-crisis", type=_per_language, default=defaults.max_benign_crisis,
                        help="benign -> crisis cap per language, e.g. zh=0.04,en=0.02")
    parser.add_argument("--crisis-concern-weight", type=_per_language, default=defaults.crisis_concern_weight,
                        help="weight of the project's own concern rows as crisis-head negatives, e.g. zh=0.3,en=1")
    for name in ("steps", "folds", "seed", "augment"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--learning-curve", action="store_true",
                        help="print out-of-fold figures of the crisis head fitted on growing shares of the real rows, write nothing")
    ns = parser.parse_args(argv)
    curve = vars(ns).pop("learning_curve")
    args = TrainArgs(**vars(ns))
    if curve:
        print(curve_table(learning_curve(args), args.max_benign_crisis))
        return 0
    data = train(args)
    args.output.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({h: data["heads"][h]["thresholds"] for h in data["heads"]}))
    print(json.dumps(data["card"]["cross_validated_real"], indent=1))
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
