"""Contamination check: which benchmark items share text with a training dataset (character n-gram overlap).

Text is compared after NFKC folding, lower-casing and dropping everything but letters and digits,
so spacing and punctuation do not hide a copy. The items' n-grams are indexed (small), then the
training text is streamed past them; an item is flagged when at least ``overlap`` of its n-grams
occur in the training data. bench.json reports, per task, how many items were checked, how many
share any n-gram, how many are flagged, and the flagged ids.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from cbt_llm.bench.tasks import Item
from cbt_llm.data.sources import iter_json_objects
from cbt_llm.errors import CbtLlmError, first_line

_DROP = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    return _DROP.sub("", unicodedata.normalize("NFKC", text).lower())


def ngrams(text: str, n: int) -> set[str]:
    text = normalise(text)
    return {text[i:i + n] for i in range(len(text) - n + 1)}


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def training_texts(path: str | Path) -> Iterator[str]:
    """Every string of a training dataset: a JSONL/JSON file, or a dataset folder (``cbt-llm build``'s) read with
    ``datasets``, all splits of its ``default`` config."""
    path = Path(path).expanduser()
    if path.is_file():
        for _, record in iter_json_objects(path):  # the project's reader: errors name the file and line
            yield from _strings(record)
        return
    if not path.is_dir():
        raise CbtLlmError(f"{path}: no such file or folder (--train_dataset)")
    from datasets import load_dataset

    import cbt_llm  # noqa: F401 - registers cbt_qa

    try:
        loaded = load_dataset(str(path), "default")
    except (FileNotFoundError, ValueError, OSError) as err:
        raise CbtLlmError(f"{path}: cannot load as a dataset folder ({first_line(err)[:200]})") from None
    for split in loaded.values():
        for row in split:
            yield from _strings(dict(row))


def _shared_ngrams(grams: dict[tuple[str, str], set[str]], train_dataset: str, n: int) -> dict[tuple[str, str], int]:
    """How many of each item's n-grams occur somewhere in the training text (streamed, never held whole)."""
    index: dict[str, list[tuple[str, str]]] = {}
    for key, item_grams in grams.items():
        for gram in item_grams:
            index.setdefault(gram, []).append(key)
    seen: set[str] = set()
    for text in training_texts(train_dataset):
        seen.update(g for g in ngrams(text, n) if g in index)
    shared: dict[tuple[str, str], int] = {}
    for gram in seen:
        for key in index[gram]:
            shared[key] = shared.get(key, 0) + 1
    return shared


def contamination(tasks: dict[str, list[Item]], train_dataset: str, n: int = 13, overlap: float = 0.5) -> dict:
    """Per task: items checked, items sharing any n-gram with ``train_dataset``, items flagged, flagged ids."""
    grams = {(task, item.id): ngrams(item.text, n) for task, items in tasks.items() for item in items}
    shared = _shared_ngrams(grams, train_dataset, n)
    report = {"train_dataset": str(train_dataset), "ngram": n, "overlap": overlap, "tasks": {}}
    for task, items in tasks.items():
        share = {item.id: shared.get((task, item.id), 0) / max(len(grams[(task, item.id)]), 1) for item in items}
        flagged = sorted(i for i, s in share.items() if s >= overlap and grams[(task, i)])
        report["tasks"][task] = {"checked": len(items), "any_overlap": sum(1 for s in share.values() if s > 0),
                                 "flagged": len(flagged), "flagged_ids": flagged}
    return report
