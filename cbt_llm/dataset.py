"""The ``cbt_qa`` dataset: a ``datasets`` builder with ``default`` and ``sft`` configs, and ``build_dataset``.

Splits come from a hash of each record's id, so rebuilding with more records never moves one
between splits and the test set never leaks into training. ``build_dataset`` writes the folder
(parquet per config and split plus a card) that plain ``load_dataset(DIR)`` reads and that is
pushed to the Hub as it is.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets.builder import Key

from . import prompts, records
from .errors import CbtLlmError
from .prompts import STEP_KEYS, SYSTEM_PROMPT_ZH, chat_prompt
from .records import read_records

BUILDER_NAME = "cbt_qa"
CONFIG_NAMES = ("default", "sft")
SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_RATIOS = (0.8, 0.1, 0.1)

_MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
FEATURES = {
    "default": datasets.Features(
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "description": datasets.Value("string"),
            "keywords": datasets.List(datasets.Value("string")),
            "response": datasets.Value("string"),
            "steps": {key: datasets.Value("string") for key in STEP_KEYS},
            "distortions": datasets.List(datasets.Value("string")),
            "source": {
                **{name: datasets.Value("string") for name in records.SOURCE_TEXT_FIELDS},
                **{name: datasets.Value("int64") for name in records.SOURCE_COUNT_FIELDS},
            },
        }
    ),
    "sft": datasets.Features({"id": datasets.Value("string"), "prompt": _MESSAGES, "completion": _MESSAGES}),
}


def sample_path() -> Path:
    """The bundled sample records (JSON Lines), shipped as package data."""
    return Path(str(resources.files("cbt_llm") / "data" / "sample" / "cbt_qa_sample.jsonl"))


def sample_questions_path() -> Path:
    """A few bundled questions without answers (JSON Lines), for trying the generator."""
    return sample_path().with_name("questions.jsonl")


def check_split_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    """Three non-negative train/validation/test shares that add up to 1."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise CbtLlmError(f"split ratios must be three non-negative numbers adding up to 1, got {ratios}")
    return ratios  # type: ignore[return-value]


def split_of(record_id: str, ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS) -> str:
    """The split of a record, from a SHA-256 of its id: stable across runs, machines and dataset sizes."""
    position = int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:8], "big") / 2**64
    if position < ratios[0]:
        return "train"
    if position < ratios[0] + ratios[1]:
        return "validation"
    return "test"


def split_records(records: list[dict[str, Any]], ratios: tuple[float, float, float]) -> dict[str, list[dict]]:
    """Group records by their id-hash split, in file order."""
    by_split: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for record in records:
        by_split[split_of(record["id"], ratios)].append(record)
    return by_split


def to_row(record: dict[str, Any], config: str, system_prompt: str = SYSTEM_PROMPT_ZH) -> dict[str, Any]:
    """One record as a row of the given config."""
    if config == "default":
        return record
    return {
        "id": record["id"],
        "prompt": chat_prompt(record["question"], record["description"], system_prompt),
        "completion": [{"role": "assistant", "content": record["response"]}],
    }


@dataclass
class CbtQaConfig(datasets.BuilderConfig):
    """BuilderConfig for cbt_qa.

    Args:
        split_ratios: train/validation/test shares for the id-hash split.
        system_prompt: the system line of the ``sft`` config's prompt (default: the paper's).
    """

    split_ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS
    system_prompt: str = SYSTEM_PROMPT_ZH


class CbtQa(datasets.GeneratorBasedBuilder):
    """CBT QA records from JSON Lines files (the bundled sample by default), split by a hash of the id."""

    BUILDER_CONFIG_CLASS = CbtQaConfig
    BUILDER_CONFIGS = [
        CbtQaConfig(name="default", description="One row per record: question, description, CBT answer, steps."),
        CbtQaConfig(name="sft", description="Conversational prompt/completion rows for TRL's SFTTrainer."),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.config.description, features=FEATURES[self.config.name])

    def _split_generators(self, dl_manager):
        if not self.config.data_files:
            raise CbtLlmError("cbt_qa needs record files: pass data_files=..., data_dir=..., or nothing for the sample")
        files = [path for split_files in dl_manager.download(self.config.data_files).values() for path in split_files]
        # Read and validate here, once, so a bad file fails with its own message before any split is written.
        # A split that gets no records (a zero ratio, or very few records) is left out, as in build_dataset.
        # (datasets sets config kwargs with setattr, so the ratios are checked here, not in __post_init__.)
        ratios = check_split_ratios(self.config.split_ratios)
        by_split = split_records(read_records(files).records, ratios)
        return [datasets.SplitGenerator(name=split, gen_kwargs={"records": rows})
                for split, rows in by_split.items() if rows]

    def _generate_examples(self, records: list[dict[str, Any]]):
        for index, record in enumerate(records):
            yield Key(0, index), to_row(record, self.config.name, self.config.system_prompt)


def _module_hash() -> str:
    """Hash of the code that shapes the rows, so the datasets cache is rebuilt when it changes."""
    source = "".join(inspect.getsource(module) for module in (prompts, records, inspect.getmodule(CbtQa)))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _dataset_module(data_files, data_dir: str | None, download_config) -> Any:
    """What ``load_dataset("cbt_qa", ...)`` builds from: only the files the caller named, else the sample."""
    from datasets.data_files import DataFilesDict, sanitize_patterns
    from datasets.load import DatasetModule

    if data_files is not None:
        patterns = sanitize_patterns(data_files)
    elif data_dir is not None:
        patterns = {"train": ["**/*.jsonl"]}
    else:
        patterns = {"train": [str(sample_path())]}
    base_path = str(Path(data_dir or ".").expanduser().resolve())
    files = DataFilesDict.from_patterns(patterns, download_config=download_config, base_path=base_path)
    return DatasetModule(__name__, _module_hash(), {"data_files": files, "dataset_name": BUILDER_NAME})


def register() -> None:
    """Register ``cbt_qa`` with ``load_dataset`` through the packaged-module table of ``datasets``.

    For a packaged name, ``datasets`` would collect data files from the current directory when
    the caller names none; the factory installed here makes ``cbt_qa`` use the bundled sample instead.
    """
    try:
        from datasets import load as hf_load

        table = hf_load._PACKAGED_DATASETS_MODULES
        base_factory = hf_load.PackagedDatasetModuleFactory
        base_factory.get_module  # noqa: B018 - the method this registration wraps
    except (ImportError, AttributeError) as err:
        raise CbtLlmError(
            f"datasets {datasets.__version__} no longer has the loader internals that register "
            f"load_dataset('{BUILDER_NAME}') ({err}); load a built folder with load_dataset(DIR) instead, "
            "or install a datasets release this cbt-llm supports"
        ) from None
    table[BUILDER_NAME] = (__name__, _module_hash())
    if getattr(base_factory, "handles_cbt_qa", False):
        return

    class PackagedFactoryWithCbtQa(base_factory):
        handles_cbt_qa = True

        def get_module(self):
            if self.name != BUILDER_NAME:
                return super().get_module()
            return _dataset_module(self.data_files, self.data_dir, self.download_config)

    hf_load.PackagedDatasetModuleFactory = PackagedFactoryWithCbtQa


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
    card (see ``cbt_llm.cards.render_dataset_card``).
    """
    from .cards import render_dataset_card

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
    card_text = render_dataset_card(record_set, splits, split_ratios, system_prompt,
                                    from_sample=not inputs, **(card or {}))
    (output_dir / "README.md").write_text(card_text, encoding="utf-8")
    num_rows = {config: {split: n for split, (n, _) in parts.items()} for config, parts in splits.items()}
    return BuildResult(output_dir, num_rows, record_set.dropped)
