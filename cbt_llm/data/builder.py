"""The ``cbt_qa`` builder: a ``datasets`` builder with a ``default``, an ``sft`` and a ``dialogue`` config.

``load_dataset("cbt_qa")`` reads the bundled sample, ``load_dataset("cbt_qa", data_files=...)``
the record files named; ``load_dataset("cbt_qa", "dialogue")`` the bundled CBT dialogues, and with
``data_files`` dialogue files of any kind ``cbt_llm.data.dialogues`` reads (ours, SMILECHAT, CPsyCounD); ``cbt_llm.data.registration`` makes the name known to ``datasets``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.builder import Key

from cbt_llm.data import records
from cbt_llm.data.dialogue_prompts import dialogue_system_prompt
from cbt_llm.data.dialogues import dialogue_sample_path, read_dialogues
from cbt_llm.data.prompts import STEP_KEYS, SYSTEM_PROMPT_ZH, chat_prompt
from cbt_llm.data.records import read_records
from cbt_llm.data.splits import DEFAULT_SPLIT_RATIOS, check_split_ratios, sample_path, split_records
from cbt_llm.errors import CbtLlmError

BUILDER_NAME = "cbt_qa"
CONFIG_NAMES = ("default", "sft", "dialogue")
QA_CONFIGS = ("default", "sft")  # made from single-turn records; "dialogue" from dialogue files

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
    "dialogue": datasets.Features(
        {
            "id": datasets.Value("string"),
            "messages": _MESSAGES,
            "plan": {
                "automatic_thought": datasets.Value("string"),
                "distortions": datasets.List(datasets.Value("string")),
                "techniques": datasets.List(datasets.Value("string")),
                "goal": datasets.Value("string"),
            },
            "question": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    ),
}


def to_row(record: dict[str, Any], config: str, system_prompt: str = SYSTEM_PROMPT_ZH) -> dict[str, Any]:
    """One record as a row of the given config."""
    if config == "default":
        return record
    if config == "dialogue":
        system = dialogue_system_prompt(system_prompt, record.get("language", "zh"))
        return {"id": record["id"], "messages": [{"role": "system", "content": system}, *record["messages"]],
                "plan": record["plan"], "question": record["question"], "source": record["source"]}
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
        system_prompt: the system line of the ``sft`` config's prompt (default: the paper's); of the ``dialogue``
            config's messages when set to another line (default: ``DIALOGUE_SYSTEM_PROMPTS`` in the dialogue's language).
    """

    split_ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS
    system_prompt: str = SYSTEM_PROMPT_ZH


class CbtQa(datasets.GeneratorBasedBuilder):
    """CBT QA records from JSON Lines files (the bundled sample by default), split by a hash of the id."""

    BUILDER_CONFIG_CLASS = CbtQaConfig
    BUILDER_CONFIGS = [
        CbtQaConfig(name="default", description="One row per record: question, description, CBT answer, steps."),
        CbtQaConfig(name="sft", description="Conversational prompt/completion rows for TRL's SFTTrainer."),
        CbtQaConfig(name="dialogue", description="Multi-turn CBT dialogues: system, then client (user) and "
                                                 "counsellor (assistant) turns, with the case plan."),
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
        by_split = split_records(self._read(files), ratios)
        return [datasets.SplitGenerator(name=split, gen_kwargs={"records": rows})
                for split, rows in by_split.items() if rows]

    def _read(self, files: list[str]) -> list[dict[str, Any]]:
        """The config's records; with no files named (the sample), the dialogue config reads its own sample."""
        if self.config.name != "dialogue":
            return read_records(files).records
        if [Path(f).resolve() for f in files] == [sample_path().resolve()]:
            files = [str(dialogue_sample_path())]
        return read_dialogues(files).records

    def _generate_examples(self, records: list[dict[str, Any]]):
        for index, record in enumerate(records):
            yield Key(0, index), to_row(record, self.config.name, self.config.system_prompt)
