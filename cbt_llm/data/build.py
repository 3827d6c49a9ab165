"""``build_dataset``: write the dataset folder (parquet per config and split, plus the card).

The folder is what plain ``load_dataset(DIR)`` reads and what ``cbt-llm push`` uploads as it is.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
from cbt_llm.data.records import read_records
from cbt_llm.data.splits import (
    DEFAULT_SPLIT_RATIOS,
    check_split_ratios,
    sample_path,
    split_records,
)
from cbt_llm.errors import CbtLlmError


@dataclass
class BuildResult:
    """What ``build_dataset`` wrote: the folder, rows per config and split, and the dropped counts."""

    output_dir: Path
    num_rows: dict[str, dict[str, int]]
    dropped: Counter = field(default_factory=Counter)


def build_dataset(
    inputs: list[str | Path] | None = None,
    output_dir: str | Path = "cbt_qa",
    split_ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS,
    system_prompt: str = SYSTEM_PROMPT_ZH,
    card: dict[str, Any] | None = None,
) -> BuildResult:
    """Write a dataset folder (``CONFIG/SPLIT-00000-of-00001.parquet`` + ``README.md``) from record files.

    With no inputs it builds from the bundled sample. ``card`` holds extra fields for the dataset
    card (see ``cbt_llm.cards.dataset_card_inputs``); the card's inputs are kept in
    ``.cbt_llm/dataset_card.json`` so that a push renders the same card for its repo.
    """
    import datasets
    import pyarrow.parquet as pq

    from cbt_llm.cards import (
        DATASET_CARD_INPUTS,
        dataset_card_inputs,
        render_dataset_card,
    )
    from cbt_llm.data.builder import CONFIG_NAMES, FEATURES, to_row

    split_ratios = check_split_ratios(split_ratios)
    paths = [Path(p) for p in inputs] if inputs else [sample_path()]
    record_set = read_records(paths)
    if not record_set.records:
        reasons = ", ".join(f"{n} {why}" for why, n in record_set.dropped.items()) or "no records"
        raise CbtLlmError(f"nothing to build from {', '.join(map(str, paths))}: {reasons}")
    by_split = split_records(record_set.records, split_ratios)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for config in CONFIG_NAMES:
        splits[config] = {}
        for split, rows in by_split.items():
            if not rows:
                continue
            table = datasets.Dataset.from_list([to_row(r, config, system_prompt) for r in rows],
                                               features=FEATURES[config], split=split)
            target = output_dir / config / f"{split}-00000-of-00001.parquet"
            target.parent.mkdir(exist_ok=True)
            pq.write_table(table.data.table, target)  # keeps the features in the schema metadata
            splits[config][split] = (len(table), target.stat().st_size)
    card_inputs = dataset_card_inputs(record_set, splits, split_ratios, system_prompt, from_sample=not inputs,
                                      **(card or {}))
    (output_dir / "README.md").write_text(render_dataset_card(card_inputs), encoding="utf-8")
    inputs_path = output_dir / DATASET_CARD_INPUTS
    inputs_path.parent.mkdir(exist_ok=True)
    inputs_path.write_text(json.dumps(card_inputs, ensure_ascii=False, indent=1), encoding="utf-8")
    num_rows = {config: {split: n for split, (n, _) in parts.items()} for config, parts in splits.items()}
    return BuildResult(output_dir, num_rows, record_set.dropped)
