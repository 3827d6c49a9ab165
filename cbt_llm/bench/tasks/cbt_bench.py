"""CBT-Bench level II (Zhang et al., NAACL 2025): label a client's text with CBT concepts; weighted F1.

Three sub-tasks, each a ``NAME_test.json`` with a ``NAME_seed.json`` of examples for few-shot
prompts (in ``DIR/cbt_bench/`` or at the root of the Hub dataset ``CBT-LLM/CBT-Bench``):
cognitive distortions (10 labels), primary core beliefs (3) and fine-grained core beliefs (19),
all multi-label. ``parse_labels`` reads the label names a reply gives (any case, hyphens or not,
"I am" left out, numbered as listed); F1 per label is weighted by the label's support.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from cbt_llm.bench.tasks.base import Item, Source, field_of, hub_file, read_json_file
from cbt_llm.errors import CbtLlmError

NAME = "cbt_bench"
HUB_ID = "CBT-LLM/CBT-Bench"
HEADLINE = "weighted_f1"
PROMPT_VERSION = "cbt-bench-en-v1"
MAX_NEW_TOKENS = 96
SUBTASKS = {
    "distortions": ("distortions", "cognitive distortions", (
        "all-or-nothing thinking", "overgeneralization", "mental filter", "should statements", "labeling",
        "personalization", "magnification", "emotional reasoning", "mind reading", "fortune-telling")),
    "core_major": ("core_belief_major", "primary core beliefs", ("helpless", "unlovable", "worthless")),
    "core_fine": ("core_belief_fine_grained", "fine-grained core beliefs", (
        "I am incompetent", "I am helpless", "I am powerless, weak, vulnerable", "I am a victim", "I am needy",
        "I am trapped", "I am out of control", "I am a failure, loser", "I am defective", "I am unlovable",
        "I am unattractive", "I am undesirable, unwanted", "I am bound to be rejected", "I am bound to be abandoned",
        "I am bound to be alone", "I am worthless, waste", "I am immoral", "I am bad - dangerous, toxic, evil",
        "I don't deserve to live")),
}
SYSTEM = "You are a cognitive behavioural therapist who reads a client's situation and thoughts closely."


def _normal(text: str) -> str:
    text = text.lower().replace("’", "'").replace("‘", "'")
    return " " + " ".join(re.sub(r"[^a-z0-9']+", " ", text).split()) + " "


def _aliases(label: str) -> list[str]:
    """The ways a reply may name ``label``: itself, without "I am", and its first part when that is specific."""
    names = {label}
    short = re.sub(r"^i (am|don't) ", "", label, flags=re.IGNORECASE)
    names.add(short)
    head = re.split(r"[,-]", short)[0].strip()
    if len(head) >= 6:
        names.add(head)
    for name in list(names):
        names.add(re.sub(r"^(a|an) ", "", name))
    if label.endswith("thinking"):
        names.add(label.rsplit(" ", 1)[0])
    if label.endswith("statements"):
        names.add(label[:-1])
    names |= {n.replace("iz", "is").replace("eling", "elling") for n in names}  # British spellings
    return sorted({_normal(n) for n in names}, key=len, reverse=True)


def parse_labels(reply: str, labels: tuple[str, ...]) -> list[str]:
    """The labels a reply names (in ``labels``' order); a reply of only numbers picks them by their listed number."""
    text = _normal(reply or "")
    bare = re.fullmatch(r"[\s\d,;.and]*", (reply or "").lower())
    if bare and re.search(r"\d", reply or ""):
        numbers = {int(n) for n in re.findall(r"\d+", reply)}
        return [label for i, label in enumerate(labels, 1) if i in numbers]
    found = []
    for label in labels:
        if any(alias in text for alias in _aliases(label)):
            found.append(label)
    return found


def _label_scores(label: str, gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Precision, recall, F1 and support of one label over the items."""
    pairs = [(label in g, label in p) for g, p in zip(gold, predicted)]
    tp, fp, fn = pairs.count((True, True)), pairs.count((False, True)), pairs.count((True, False))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}


def weighted_f1(gold: list[list[str]], predicted: list[list[str]], labels: tuple[str, ...]) -> dict:
    """F1 per label over the items, and their mean weighted by each label's gold support (labels never in the
    gold get weight 0); also the micro and macro means, and per-label precision, recall and support."""
    per_label = {label: _label_scores(label, gold, predicted) for label in labels}
    support = sum(v["support"] for v in per_label.values())
    tp, fp, fn = (sum(v[k] for v in per_label.values()) for k in ("tp", "fp", "fn"))
    return {"weighted_f1": sum(v["f1"] * v["support"] for v in per_label.values()) / support if support else 0.0,
            "micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "macro_f1": sum(v["f1"] for v in per_label.values()) / len(labels),
            "per_label": {k: {m: round(v[m], 4) for m in ("precision", "recall", "f1")} | {"support": v["support"]}
                          for k, v in per_label.items()}}


def _client_text(row: dict) -> str:
    return f"Situation: {row['situation'].strip()}\nThoughts: {row['thoughts'].strip()}"


def messages(row: dict, subtask: str, shots: list[dict]) -> list[dict]:
    """System line, the label list, each shot with its labels, then the client's situation and thoughts."""
    key, what, labels = SUBTASKS[subtask]
    listed = "\n".join(f"{i}. {label}" for i, label in enumerate(labels, 1))
    ask = (f"Which of these {what} does the client's thinking show? One or more apply.\n{listed}\n"
           "Answer with the label names only, separated by semicolons.")
    chat = [{"role": "system", "content": SYSTEM}]
    for shot in shots:
        chat += [{"role": "user", "content": f"{_client_text(shot)}\n\n{ask}"},
                 {"role": "assistant", "content": "; ".join(_gold(shot, key, labels, "seed"))}]
    chat.append({"role": "user", "content": f"{_client_text(row)}\n\n{ask}"})
    return chat


def _gold(row: dict, key: str, labels: tuple[str, ...], where: str) -> list[str]:
    value = field_of(row, key, (list, str), where)
    gold = [value] if isinstance(value, str) else value
    known = {label.lower().replace("’", "'"): label for label in labels}
    canonical = []
    for label in gold:
        name = known.get(str(label).lower().replace("’", "'"))
        if name is None:
            raise CbtLlmError(f"{where}: field {key!r} has {label!r}, not one of the {len(labels)} known labels")
        canonical.append(name)
    if not canonical:
        raise CbtLlmError(f"{where}: field {key!r} is empty")
    return canonical


def _rows(folder: Path | None, name: str, source: Source) -> list[dict]:
    path = hub_file(HUB_ID, name, source) if folder is None else folder / name
    rows = read_json_file(path, source, name) if folder is not None else read_json_file(path, Source("", ""), name)
    if not isinstance(rows, list):
        raise CbtLlmError(f"{path}: expected a JSON list of items, got {type(rows).__name__}")
    return rows


def load(data_dir: Path | None, shots: int) -> tuple[list[Item], Source]:
    """The test items of the three sub-tasks (gold: their labels), each with ``shots`` seed examples."""
    folder = None if data_dir is None else data_dir / NAME
    source = Source("hub" if folder is None else "data_dir", HUB_ID if folder is None else str(folder))
    items = []
    for subtask, (key, _, labels) in SUBTASKS.items():
        seeds = _rows(folder, f"{subtask}_seed.json", source)[:shots] if shots else []
        for index, seed in enumerate(seeds):
            _gold(seed, key, labels, f"{source.location}/{subtask}_seed.json item {index}")
        for index, row in enumerate(_rows(folder, f"{subtask}_test.json", source)):
            where = f"{source.location}/{subtask}_test.json item {index}"
            for text_key in ("situation", "thoughts"):
                field_of(row, text_key, str, where)
            gold = _gold(row, key, labels, where)
            items.append(Item(id=f"{subtask}/{field_of(row, 'id', (str, int), where)}",
                              messages=messages(row, subtask, seeds), gold=gold, meta={"subtask": subtask},
                              text=f"{row.get('ori_text') or ''}\n{row['situation']}\n{row['thoughts']}"))
    return items, source


def score(item: Item, reply: str) -> dict:
    """The labels the reply names."""
    return {"labels": parse_labels(reply, SUBTASKS[item.meta["subtask"]][2])}


def aggregate(records: list[dict]) -> dict:
    """Weighted F1 per sub-task, and their mean over the sub-tasks scored (the headline)."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        grouped[r["meta"]["subtask"]].append(r)
    by_subtask = {}
    for subtask, rows in grouped.items():
        labels = SUBTASKS[subtask][2]
        scores = weighted_f1([r["gold"] for r in rows], [r["labels"] for r in rows], labels)
        by_subtask[subtask] = {"n": len(rows), **scores, "no_label": sum(not r["labels"] for r in rows),
                               "predicted": dict(Counter(label for r in rows for label in r["labels"]))}
    mean = sum(v["weighted_f1"] for v in by_subtask.values()) / len(by_subtask) if by_subtask else None
    return {"n": len(records), "weighted_f1": mean, "by_subtask": by_subtask}
