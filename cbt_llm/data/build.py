"""``build_dataset(BuildConfig(...))``: write the dataset folder (parquet per config and split, plus the card).

``default`` and ``sft`` come from single-turn records (``--input``, else the bundled sample); the
``dialogue`` config is written when ``--dialogues`` names dialogue files (see ``cbt_llm.data.dialogues``).

The folder is what plain ``load_dataset(DIR)`` reads and what ``cbt-llm push`` uploads as it is.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cbt_llm.config import option
from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
from cbt_llm.data.dialogues import dialogue_sample_path, read_dialogues
from cbt_llm.data.records import RecordSet, read_records
from cbt_llm.data.splits import (
    DEFAULT_SPLIT_RATIOS,
    SPLITS,
    check_split_ratios,
    sample_path,
    split_records,
)
from cbt_llm.errors import CbtLlmError

QUESTION_SOURCES = ("psyqa", "other")  # what --questions_source may say; the bundled sample is "sample"


@dataclass(kw_only=True)
class BuildConfig:
    """What ``build_dataset`` reads, where it writes, and what the dataset card says (``cbt-llm build``)."""

    output_dir: str = option(help="folder to write", metavar="DIR")
    input: list[str] | None = option(None, "records .jsonl file(s), e.g. generate's output (default: the bundled "
                                     "sample)", metavar="FILE")
    split_ratios: list[float] = option(list(DEFAULT_SPLIT_RATIOS), "shares of the id-hash split: TRAIN VALIDATION "
                                       "TEST", metavar="SHARE")
    dialogues: list[str] | None = option(None, "dialogue files or folders for the dialogue config: cbt-llm dialogue's "
                                         "output (.jsonl), SMILECHAT (.json), CPsyCounD (.txt), or 'sample' (the "
                                         "bundled CBT dialogues); mixed as given", metavar="PATH")
    system_prompt: str = option(SYSTEM_PROMPT_ZH, "system line of the sft config (default: the CBT-LLM paper's)")
    pretty_name: str = option("CBT QA", "dataset name shown on the card")
    license: str | None = option(None, "card license (default: apache-2.0 for the sample, other for generated data)")
    questions_source: Literal["psyqa", "other"] | None = option(None, "where the questions came from; psyqa (the "
                                                                "default for --input) adds PsyQA's terms to the card")
    repo_id: str | None = option(None, "Hub repo id to show in the card's usage snippet", metavar="NS/NAME")

    def __post_init__(self):
        self.split_ratios = list(check_split_ratios(self.split_ratios))
        if self.questions_source not in (None, *QUESTION_SOURCES):
            raise CbtLlmError(f"questions_source must be one of {', '.join(QUESTION_SOURCES)}, "
                              f"got {self.questions_source!r}")


@dataclass
class BuildResult:
    """What ``build_dataset`` wrote: the folder, rows per config and split, the dropped counts, the warnings."""

    output_dir: Path
    num_rows: dict[str, dict[str, int]]
    dropped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # a previous build's split files that are no longer made
    dialogues_dropped: Counter = field(default_factory=Counter)

    def format(self) -> str:
        """One line: the folder, its sizes, what was dropped, the card, what was removed and any warning."""
        sizes = "; ".join(f"{config}: " + ", ".join(f"{split} {n}" for split, n in splits.items())
                          for config, splits in self.num_rows.items())
        dropped = ", ".join(f"{n} {why}" for why, n in (self.dropped + self.dialogues_dropped).items()) or "none"
        removed = f"; removed the previous build's {', '.join(self.removed)}" if self.removed else ""
        return (f"built {self.output_dir} ({sizes}); dropped: {dropped}; card: {self.output_dir / 'README.md'}"
                + removed + "".join(f"; warning: {w}" for w in self.warnings))


def _check_output_dir(output_dir: Path) -> None:
    """Refuse a folder that holds something other than a previous build (whose files a build replaces)."""
    from cbt_llm.cards import DATASET_CARD_INPUTS
    from cbt_llm.data.builder import CONFIG_NAMES

    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise CbtLlmError(f"{output_dir} exists and is not a folder")
    visible = {p.name for p in output_dir.iterdir() if not p.name.startswith(".")}
    built = (output_dir / DATASET_CARD_INPUTS).is_file() or (  # or a build from before the card inputs were kept
        visible <= {"README.md", *CONFIG_NAMES} and bool(visible & set(CONFIG_NAMES)))
    if visible and not built:
        raise CbtLlmError(f"{output_dir} is not empty and is not a folder `cbt-llm build` wrote (no "
                          f"{DATASET_CARD_INPUTS}; it holds {', '.join(sorted(visible)[:3])}"
                          f"{', ...' if len(visible) > 3 else ''}): name a new or empty folder")


def _remove_stale_splits(output_dir: Path, written: dict[str, dict[str, tuple[int, int]]]) -> list[str]:
    """Delete the parquet files of a previous build that this one did not write again; their names."""
    from cbt_llm.data.builder import CONFIG_NAMES

    keep = {output_dir / config / f"{split}-00000-of-00001.parquet" for config, parts in written.items()
            for split in parts}
    stale = sorted(p for config in CONFIG_NAMES for p in (output_dir / config).glob("*.parquet") if p not in keep)
    for path in stale:
        path.unlink()
    return [path.relative_to(output_dir).as_posix() for path in stale]


def _warnings(config: BuildConfig, splits: dict[str, dict[str, tuple[int, int]]], num_records: int) -> list[str]:
    """What the card or the folder may say that the user did not mean: PsyQA's terms assumed, a split left empty."""
    warnings = []
    if config.input and config.questions_source is None:
        warnings.append("--questions_source not given: the card says the questions come from PsyQA and carries "
                        "PsyQA's terms; pass --questions_source other if they do not")
    empty = [split for split, ratio in zip(SPLITS, config.split_ratios) if ratio > 0
             and split not in splits.get("default", {})]
    if empty:
        warnings.append(f"no {' and no '.join(empty)} split: none of the {num_records} records landed there (id-hash "
                        f"shares {' / '.join(f'{r:g}' for r in config.split_ratios)}); more records fill it")
    return warnings


def _write_parquet(by_split: dict[str, list[dict]], output_dir: Path, system_prompt: str,
                   configs: tuple[str, ...]) -> dict[str, dict[str, tuple[int, int]]]:
    """``CONFIG/SPLIT-00000-of-00001.parquet`` for every config and non-empty split: config -> split -> (rows, bytes)."""
    import datasets
    import pyarrow.parquet as pq

    from cbt_llm.data.builder import FEATURES, to_row

    splits: dict[str, dict[str, tuple[int, int]]] = {}
    for config in configs:
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
    return splits


def build_dataset(config: BuildConfig) -> BuildResult:
    """Write a dataset folder (``CONFIG/SPLIT-00000-of-00001.parquet`` + ``README.md``) from record files.

    With no ``input`` it builds from the bundled sample. The card's inputs are kept in
    ``.cbt_llm/dataset_card.json`` so that a push renders the same card for its repo. The folder must be
    new, empty or a previous build; a rebuild leaves exactly the new split files (the previous build's
    other parquet files are removed, so a push cannot upload them).
    """
    from cbt_llm.cards import DATASET_CARD_INPUTS, dataset_card_inputs, render_dataset_card
    from cbt_llm.data.builder import QA_CONFIGS

    paths = [Path(p) for p in config.input] if config.input else [sample_path()]
    record_set = read_records(paths)
    if not record_set.records:
        reasons = ", ".join(f"{n} {why}" for why, n in record_set.dropped.items()) or "no records"
        raise CbtLlmError(f"nothing to build from {', '.join(map(str, paths))}: {reasons}")
    output_dir = Path(config.output_dir)
    _check_output_dir(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ratios = tuple(config.split_ratios)
    splits = _write_parquet(split_records(record_set.records, ratios), output_dir, config.system_prompt, QA_CONFIGS)
    dialogue_set = read_dialogue_set(config.dialogues)
    if dialogue_set is not None:
        splits.update(_write_parquet(split_records(dialogue_set.records, ratios), output_dir, config.system_prompt,
                                     ("dialogue",)))
    removed = _remove_stale_splits(output_dir, splits)
    card_inputs = dataset_card_inputs(record_set, splits, config, dialogue_set)
    (output_dir / "README.md").write_text(render_dataset_card(card_inputs), encoding="utf-8")
    inputs_path = output_dir / DATASET_CARD_INPUTS
    inputs_path.parent.mkdir(exist_ok=True)
    inputs_path.write_text(json.dumps(card_inputs, ensure_ascii=False, indent=1), encoding="utf-8")
    num_rows = {name: {split: n for split, (n, _) in parts.items()} for name, parts in splits.items()}
    return BuildResult(output_dir, num_rows, record_set.dropped, _warnings(config, splits, len(record_set.records)),
                       removed, dialogue_set.dropped if dialogue_set is not None else Counter())


def read_dialogue_set(paths: list[str] | None) -> RecordSet | None:
    """The dialogues for the ``dialogue`` config (``sample`` names the bundled ones), or None when none are named."""
    if not paths:
        return None
    dialogue_set = read_dialogues([dialogue_sample_path() if p == "sample" else Path(p) for p in paths])
    if not dialogue_set.records:
        reasons = ", ".join(f"{n} {why}" for why, n in dialogue_set.dropped.items()) or "no dialogues"
        raise CbtLlmError(f"no dialogue to build from {', '.join(paths)}: {reasons}")
    return dialogue_set
