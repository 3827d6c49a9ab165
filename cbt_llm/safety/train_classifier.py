"""Train the shipped risk classifier (dev time only; numpy, no other dependency).

``python -m cbt_llm.safety.train_classifier --dev ../shared/data/crisis_real/dev.jsonl``

Data: the project's own labelled messages (``tests/data/safety_eval.jsonl`` and
``tests/data/safety_train.jsonl``) and the externally labelled dev split of ``crisis_real``, read
from where it lies (its rows are never copied into the project; the trained weights ship, with the
sources credited in the README). ``crisis_real/test.jsonl`` is never read here.

Two logistic heads (crisis against the rest; concern or crisis against none) with L2, fitted by
full-batch Adam. Thresholds are chosen per language on out-of-fold scores of the dev rows (k-fold
cross-validation, so no row is scored by a model that saw it), combined with the rules, recall first:
the lowest crisis threshold whose benign -> crisis rate stays under ``--max-benign-crisis`` (per language:
zh 4 %, where the target is crisis recall itself; en 2 %, where the target is concern-or-crisis and the
benign -> crisis rate is the tighter limit), and the lowest risk threshold whose benign -> concern-or-crisis
rate stays under ``--max-benign-risk``.

In Chinese the crisis head learns mostly crisis against none (``--crisis-concern-weight zh=0.3,en=1``): the
project's own zh concern rows (distress without a stated wish to die, 活着好累) weigh 0.3 as its negatives.
PsySUICIDE's crisis label covers passive ideation told as a distress narrative, and at full weight those
rows taught the head to miss it (out-of-fold dev zh AUC 0.87 at 1, 0.88 at 0.3, 0.89 at 0).

``--dev`` takes more than one file: further externally labelled real messages (never ``test.jsonl``) join
dev in training and in choosing the thresholds. ``--learning-curve`` trains nothing: it prints the crisis
head's out-of-fold dev figures when each fit sees only a share of dev, to tell whether more real labelled
rows would still move it.
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
from cbt_llm.safety.classifier import FEATURE_VERSION, features
from cbt_llm.safety.evaluation import LabelledMessage, group_table, read_labelled
from cbt_llm.safety.guard import set_aside_by_rules
from cbt_llm.safety.lexicon import detect_language
from cbt_llm.safety.risk import RANK
from cbt_llm.safety.rules import assess_lexicon

ROOT = Path(__file__).resolve().parents[2]
HEADS = {"crisis": ("crisis",), "risk": ("concern", "crisis")}
THRESHOLDS = [i / 100 for i in range(5, 100)]  # the grid every threshold is chosen from


@dataclass
class TrainArgs:
    """Command-line options of the trainer."""

    dev: list[Path]  # externally labelled real messages: crisis_real/dev.jsonl, and any more such files
    own: list = field(default_factory=lambda: [ROOT / "tests/data/safety_eval.jsonl",
                                               ROOT / "tests/data/safety_train.jsonl"])
    output: Path = Path(__file__).with_name("classifier.json")
    buckets: int = 1 << 18
    l2: float = 1e-4
    steps: int = 400
    folds: int = 5
    dev_weight: float = 2.0
    max_benign_crisis: dict = field(default_factory=lambda: {"zh": 0.04, "en": 0.02})
    max_benign_risk: float = 0.10
    crisis_concern_weight: dict = field(default_factory=lambda: {"zh": 0.3, "en": 1.0})
    seed: int = 0


class Design:
    """Rows of hashed features as flat numpy arrays (a CSR matrix without scipy), L2-normalised."""

    def __init__(self, rows: list[list[int]]):
        import numpy as np

        self.n = len(rows)
        self.lengths = np.array([len(r) for r in rows], dtype=np.int64)
        self.indices = np.array([i for r in rows for i in r], dtype=np.int64)
        self.values = np.repeat(1.0 / np.sqrt(np.maximum(self.lengths, 1)), self.lengths)
        self.row_of = np.repeat(np.arange(self.n), self.lengths)

    def take(self, keep) -> "Design":
        """The rows at positions ``keep``."""
        import numpy as np

        sub = Design([])
        mask = np.isin(self.row_of, keep)
        remap = np.full(self.n, -1)
        remap[keep] = np.arange(len(keep))
        sub.n, sub.lengths = len(keep), self.lengths[keep]
        sub.indices, sub.values, sub.row_of = self.indices[mask], self.values[mask], remap[self.row_of[mask]]
        order = np.argsort(sub.row_of, kind="stable")
        sub.indices, sub.values, sub.row_of = sub.indices[order], sub.values[order], sub.row_of[order]
        return sub

    def dot(self, w):
        import numpy as np

        return np.bincount(self.row_of, weights=w[self.indices] * self.values, minlength=self.n)

    def tdot(self, g, size: int):
        import numpy as np

        return np.bincount(self.indices, weights=g[self.row_of] * self.values, minlength=size)


def fit_head(x: Design, y, weight, size: int, l2: float, steps: int):
    """Weights and bias of one L2 logistic regression, by full-batch Adam on the weighted log loss."""
    import numpy as np

    w, b = np.zeros(size), 0.0
    m, v, mb, vb = np.zeros(size), np.zeros(size), 0.0, 0.0
    total = weight.sum()
    for t in range(1, steps + 1):
        p = 1.0 / (1.0 + np.exp(-(x.dot(w) + b)))
        g = weight * (p - y) / total
        gw, gb = x.tdot(g, size) + l2 * w, g.sum()
        m, v = 0.9 * m + 0.1 * gw, 0.999 * v + 0.001 * gw * gw
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        lr = 0.05 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w -= lr * m / (np.sqrt(v) + 1e-8)
        b -= lr * mb / (np.sqrt(vb) + 1e-8)
    return w, b


def _weights(messages: list[LabelledMessage], y, is_dev, dev_weight: float, own_concern: dict | None):
    """Each row weighs ``dev_weight`` if it is from dev, times a class-balancing factor per head.

    ``own_concern`` (the crisis head) scales the project's own concern rows per language, and leaves out
    every dev concern row: in PsySUICIDE that label is "exploring suicide", worded like ideation.
    """
    import numpy as np

    base = np.where(is_dev, dev_weight, 1.0)
    if own_concern is not None:
        concern = np.array([m.gold == "concern" for m in messages])
        scale = np.array([own_concern.get(m.language, 1.0) for m in messages])
        base = np.where(concern, np.where(is_dev, 0.0, base * scale), base)
    pos = base[y == 1].sum()
    neg = base[y == 0].sum()
    return base * np.where(y == 1, 0.5 / pos, 0.5 / neg) * len(messages)


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


def choose_threshold(scores, gold: list[str], rules: list, positive: tuple, cap: float) -> tuple[float, dict]:
    """Recall first: the lowest threshold whose benign (gold none) flag rate, rules OR classifier, is <= ``cap``.

    ``rules`` are the rules' verdicts; as in :func:`~cbt_llm.safety.guard.assess_risk`, the classifier
    does not raise to crisis what the rules set aside.
    """
    best = None
    blocked = [positive == ("crisis",) and set_aside_by_rules(r) for r in rules]
    for t in THRESHOLDS:
        flagged = [r.level in positive or (s >= t and not b) for s, r, b in zip(scores, rules, blocked)]
        benign = [f for f, g in zip(flagged, gold) if g == "none"]
        crisis = [f for f, g in zip(flagged, gold) if g == "crisis"]
        rate = sum(benign) / max(len(benign), 1)
        if rate <= cap:
            best = (t, {"crisis_flagged": round(sum(crisis) / max(len(crisis), 1), 3), "benign_flagged": round(rate, 3),
                        "crisis_n": len(crisis), "benign_n": len(benign)})
            break
    if best is None:
        raise CbtLlmError(f"no threshold keeps benign flags under {cap}")
    return best


def out_of_fold_level(rules, crisis: float, risk: float, thresholds: dict, language: str) -> str:
    """The combined verdict ``assess_risk`` gives, from the rules' verdict and the two head scores."""
    level = rules.level
    if level != "crisis" and crisis >= thresholds["crisis"][language]:
        return "concern" if set_aside_by_rules(rules) else "crisis"
    if RANK[level] < RANK["concern"] and risk >= thresholds["risk"][language]:
        return "concern"
    return level


class TrainingRows(NamedTuple):
    """What the trainer fits on: the real (dev) messages first, then the project's own."""

    dev: list[LabelledMessage]
    own: list[LabelledMessage]
    messages: list[LabelledMessage]  # dev + own
    is_dev: object  # numpy bool array over messages
    x: Design
    per_file: dict  # real file -> how many messages it gave


def _training_rows(args: TrainArgs) -> TrainingRows:
    """Read every real and own file once and hash its messages' features."""
    import numpy as np

    per_path = {Path(path): read_labelled(path) for path in args.dev}
    dev = [m for messages in per_path.values() for m in messages]
    own = [m for path in args.own for m in read_labelled(path)]
    messages = dev + own
    return TrainingRows(dev, own, messages, np.array([i < len(dev) for i in range(len(messages))]),
                        Design([features(m.text, args.buckets) for m in messages]),
                        {f"{path.parent.name}/{path.name}": len(rows) for path, rows in per_path.items()})


def out_of_fold(x: Design, y, weight, fold, args: TrainArgs, keep=None):
    """Every row's score from the head fitted on the other folds; only rows where ``keep`` is true are fitted on."""
    import numpy as np

    scores = np.zeros(x.n)
    for k in range(args.folds):
        fit_rows = (fold != k) if keep is None else (fold != k) & keep
        train_idx, test_idx = np.where(fit_rows)[0], np.where(fold == k)[0]
        w, b = fit_head(x.take(train_idx), y[train_idx], weight[train_idx], args.buckets, args.l2, args.steps)
        scores[test_idx] = 1.0 / (1.0 + np.exp(-(x.take(test_idx).dot(w) + b)))
    return scores


def _auc(positive, negative) -> float:
    """The chance that a positive row scores above a negative one (ties count half)."""
    import numpy as np

    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def learning_curve(args: TrainArgs, fractions: tuple = (0.0, 0.25, 0.5, 0.75, 1.0), repeats: int = 3) -> list[dict]:
    """Out-of-fold dev figures of the crisis head (alone, no rules) when each training fold keeps only a
    random ``fraction`` of its dev rows and all the project's own: whether more real data would still help.

    Per language: the crisis-vs-benign AUC, and the crisis recall at the lowest threshold whose
    benign -> crisis rate stays under ``args.max_benign_crisis``; each figure is a mean over ``repeats`` fold draws.
    """
    import numpy as np

    dev, _, messages, is_dev, x, _ = _training_rows(args)
    y = np.array([m.gold == "crisis" for m in messages], dtype=float)
    weight = _weights(messages, y, is_dev, args.dev_weight, args.crisis_concern_weight)
    groups = {language: ([i for i, m in enumerate(dev) if m.language == language and m.gold == "crisis"],
                         [i for i, m in enumerate(dev) if m.language == language and m.gold == "none"])
              for language in args.max_benign_crisis}
    rows = []
    for fraction in fractions:
        figures: dict = {}
        for repeat in range(repeats):
            rng = np.random.default_rng(args.seed + repeat)
            fold = np.array(_fold_ids(messages, args.folds, args.seed + repeat))
            keep = ~is_dev | (rng.random(len(messages)) < fraction)
            scores = out_of_fold(x, y, weight, fold, args, keep)
            figures.setdefault("dev_rows_fitted", []).append((keep & is_dev).sum() * (args.folds - 1) / args.folds)
            for language, cap in args.max_benign_crisis.items():
                pos, neg = scores[groups[language][0]], scores[groups[language][1]]
                cut = min((t for t in THRESHOLDS if (neg >= t).mean() <= cap), default=1.0)
                figures.setdefault(f"{language}/auc", []).append(_auc(pos, neg))
                figures.setdefault(f"{language}/recall", []).append(float((pos >= cut).mean()))
        rows.append({"fraction": fraction, **{key: float(np.mean(v)) for key, v in figures.items()}})
    return rows


def train(args: TrainArgs) -> dict:
    """Fit, cross-validate, choose thresholds, refit on everything; return the JSON to ship."""
    import numpy as np

    dev, own, messages, is_dev, x, per_file = _training_rows(args)
    rules = [assess_lexicon(m.text) for m in messages]
    fold = np.array(_fold_ids(messages, args.folds, args.seed))
    heads, oof = {}, {}
    for head, positive in HEADS.items():
        y = np.array([m.gold in positive for m in messages], dtype=float)
        weight = _weights(messages, y, is_dev, args.dev_weight,
                          args.crisis_concern_weight if head == "crisis" else None)
        oof[head] = out_of_fold(x, y, weight, fold, args)
        heads[head] = fit_head(x, y, weight, args.buckets, args.l2, args.steps)
    thresholds, figures = {"crisis": {}, "risk": {}}, {}
    for language in ("zh", "en"):
        rows = [i for i in range(len(dev)) if dev[i].language == language]
        gold = [dev[i].gold for i in rows]
        for head, cap, positive in (("crisis", args.max_benign_crisis[language], ("crisis",)),
                                    ("risk", args.max_benign_risk, ("concern", "crisis"))):
            t, fig = choose_threshold([oof[head][i] for i in rows], gold, [rules[i] for i in rows], positive, cap)
            thresholds[head][language], figures[f"{language}/{head}"] = t, fig
    levels = [out_of_fold_level(rules[i], oof["crisis"][i], oof["risk"][i], thresholds, detect_language(dev[i].text))
              for i in range(len(dev))]
    print("rules + classifier on the dev rows, classifier scores out of fold:\n"
          + group_table(list(zip(dev, levels))) + "\n")
    used = np.unique(x.indices)
    index = array("I", used.tolist())
    data = {
        "feature_version": FEATURE_VERSION,
        "buckets": args.buckets,
        "index": base64.b64encode(index.tobytes()).decode(),
        "heads": {head: {"bias": float(b), "thresholds": thresholds[head],
                         "weights": base64.b64encode(array("f", w[used].tolist()).tobytes()).decode()}
                  for head, (w, b) in heads.items()},
        "card": {
            "trained_on": {**{f"{name} (not shipped)": count for name, count in per_file.items()},
                           **{Path(p).name: sum(1 for m in own if m.source == Path(p).name) for p in args.own}},
            "sources": "PsySUICIDE (Qiu et al., EMNLP 2024, MIT); Reddit C-SSRS (Gaur et al., WWW 2019, CC BY); "
                       "Reddit Mental Health Dataset (Low et al., JMIR 2020, CC BY 4.0); cbt-llm's own messages",
            "thresholds_chosen_on": f"{args.folds}-fold out-of-fold scores of the dev rows, with the rules, recall first "
                                    "(benign -> crisis <= " + ", ".join(f"{k} {v}" for k, v in args.max_benign_crisis.items())
                                    + f"; benign -> concern or crisis <= {args.max_benign_risk})",
            "crisis_head_concern_rows": "dev ones left out; the project's own weighted "
                                        + ", ".join(f"{k} {v}" for k, v in args.crisis_concern_weight.items()),
            "cross_validated_dev": figures,
            "settings": {"l2": args.l2, "steps": args.steps, "dev_weight": args.dev_weight, "seed": args.seed},
        },
    }
    return data


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
    lines = ["| share of dev fitted | dev rows per fit | " + " | ".join(
        f"{lang} AUC | {lang} recall at {caps[lang]:.0%} benign" for lang in languages) + " |",
        "|---" * (2 + 2 * len(languages)) + "|"]
    for row in rows:
        lines.append(f"| {row['fraction']:.2f} | {row['dev_rows_fitted']:.0f} | " + " | ".join(
            f"{row[lang + '/auc']:.3f} | {row[lang + '/recall']:.3f}" for lang in languages) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train and write the classifier JSON; print the cross-validated dev figures behind the thresholds."""
    parser = argparse.ArgumentParser(prog="python -m cbt_llm.safety.train_classifier", description=__doc__.split("\n")[0])
    parser.add_argument("--dev", type=Path, nargs="+", required=True,
                        help="crisis_real/dev.jsonl, and any more files of externally labelled real messages")
    defaults = TrainArgs(dev=[])
    parser.add_argument("--output", type=Path, default=defaults.output)
    for name in ("l2", "dev_weight", "max_benign_risk"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=getattr(defaults, name))
    parser.add_argument("--max-benign-crisis", type=_per_language, default=defaults.max_benign_crisis,
                        help="benign -> crisis cap per language, e.g. zh=0.04,en=0.02")
    parser.add_argument("--crisis-concern-weight", type=_per_language, default=defaults.crisis_concern_weight,
                        help="weight of the project's own concern rows as crisis-head negatives, e.g. zh=0.3,en=1")
    for name in ("steps", "folds", "seed"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--learning-curve", action="store_true",
                        help="print out-of-fold dev figures of the crisis head fitted on growing shares of dev, write nothing")
    ns = parser.parse_args(argv)
    curve = vars(ns).pop("learning_curve")
    args = TrainArgs(**vars(ns))
    if curve:
        print(curve_table(learning_curve(args), args.max_benign_crisis))
        return 0
    data = train(args)
    args.output.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({h: data["heads"][h]["thresholds"] for h in data["heads"]}))
    print(json.dumps(data["card"]["cross_validated_dev"], indent=1))
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
