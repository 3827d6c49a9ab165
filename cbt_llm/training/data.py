"""The training data of a recipe: one ``cbt_qa`` config, or single-turn and dialogue configs mixed.

``dataset_config: sft`` gives TRL prompt/completion rows (completion-only loss); ``dataset_config: dialogue``
gives ``messages`` rows (system, then client/counsellor turns) for ``assistant_only_loss``; several configs
joined by commas (``sft,dialogue``) are mixed: every row becomes a ``messages`` conversation (a single-turn
row is its prompt followed by its answer) and each split is the concatenation of the configs' splits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cbt_llm.data.dialogue_prompts import dataset_configs, set_on_purpose
from cbt_llm.errors import CbtLlmError

if TYPE_CHECKING:
    from datasets import DatasetDict

    from cbt_llm.training.train import CbtScriptArguments


def load_training_dataset(script_args: CbtScriptArguments) -> DatasetDict:
    """The DatasetDict a recipe trains on, with the recipe's system line (see the module docstring)."""
    from datasets import DatasetDict, concatenate_datasets

    names = dataset_configs(script_args.dataset_config)
    if len(names) > 1 and script_args.dataset_data_files:
        raise CbtLlmError(f"dataset_config {script_args.dataset_config!r} mixes configs, which dataset_data_files "
                          "cannot feed (records and dialogues are different files): build a folder with "
                          "`cbt-llm build --dialogues ...` and name it as dataset_name")
    parts = [_load_config(script_args, name, as_messages=len(names) > 1) for name in names]
    if len(parts) == 1:
        return parts[0]
    splits = dict.fromkeys(split for part in parts for split in part)
    return DatasetDict({split: concatenate_datasets([part[split] for part in parts if split in part])
                        for split in splits})


def _load_config(script_args: CbtScriptArguments, name: str, as_messages: bool) -> DatasetDict:
    """One config's splits: prompt/completion rows (or, with ``as_messages``, conversations), or dialogue rows."""
    from datasets import load_dataset

    import cbt_llm  # noqa: F401 - registers the cbt_qa builder

    kwargs: dict[str, Any] = {"data_files": script_args.dataset_data_files} if script_args.dataset_data_files else {}
    dataset = load_dataset(script_args.dataset_name, name, **kwargs)
    if script_args.dataset_train_split not in dataset:
        raise CbtLlmError(f"dataset {script_args.dataset_name!r} config {name!r} has no split "
                          f"{script_args.dataset_train_split!r} (it has: {', '.join(dataset)})")
    columns = set(next(iter(dataset.values())).column_names)
    system = script_args.system_prompt
    if {"prompt", "completion"} <= columns:
        def with_system_line(row):
            prompt = [{"role": "system", "content": system}, *(m for m in row["prompt"] if m["role"] != "system")]
            return {"messages": prompt + row["completion"]} if as_messages else {"prompt": prompt}

        dataset = dataset.map(with_system_line, desc="system line")
        return dataset.select_columns(["messages"]) if as_messages else dataset
    if "messages" in columns:
        # A dialogue keeps its own system line (the counsellor of a conversation) unless the recipe sets another
        # than the paper's single-turn line, the same rule as the cbt_qa builder's.
        def with_dialogue_system_line(row):
            if not set_on_purpose(system):
                return {"messages": row["messages"]}
            return {"messages": [{"role": "system", "content": system},
                                 *(m for m in row["messages"] if m["role"] != "system")]}

        return dataset.select_columns(["messages"]).map(with_dialogue_system_line, desc="system line")
    raise CbtLlmError(f"dataset {script_args.dataset_name!r} config {name!r} has neither prompt/completion nor "
                      f"messages columns (it has: {', '.join(sorted(columns))})")
