"""Stage configs: one dataclass per pipeline stage, each option declared once, read by the API and the CLI alike.

A stage takes its config whole, as ``SFTTrainer`` takes ``SFTConfig``: ``generate(GenerateConfig(...))``.
Fields are made with :func:`option`, whose ``help`` is what ``HfArgumentParser`` shows for the flag, so
the ``cbt-llm`` command parses the same dataclass the Python API builds. A field made with
:func:`python_only` exists only for the Python API (a nested config, a callable). State a stage saves
(batch state, run settings) is the config written with :func:`config_to_dict` and read back typed with
:func:`config_from_dict`, so nothing is dropped on the way. Nothing heavy is imported here.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, TypeVar

from cbt_llm.errors import CbtLlmError

C = TypeVar("C")


def option(default: Any = MISSING, help: str = "", **metadata: Any) -> Any:
    """A config field that is also the flag ``--name`` / ``--name-with-dashes``; without a default it is required."""
    if isinstance(default, list):
        return field(default_factory=default.copy, metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def positional(help: str, **metadata: Any) -> Any:
    """A required config field given on the command line without a flag (``cbt-llm validate FILE``)."""
    return field(metadata={"help": help, "positional": True, **metadata})


def python_only(default: Any = MISSING, *, default_factory: Any = MISSING, help: str = "") -> Any:
    """A config field the Python API sets and the command line does not show (a nested config, say)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help, "cli": False})


def on_command_line(config_field: dataclasses.Field) -> bool:
    """Whether the CLI parses this field (every field but the :func:`python_only` ones)."""
    return config_field.init and config_field.metadata.get("cli", True)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-ready values (nested configs become dicts)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """``cls`` built back from :func:`config_to_dict`'s output, nested configs included; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CbtLlmError(f"{where or cls.__name__}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = config_from_dict(hint, value, f"{where or cls.__name__}.{name}")
        values[name] = value
    return cls(**values)


@dataclass(kw_only=True)
class DatasetConfig:
    """Which questions (and references) a stage reads."""

    dataset: str = option("cbt_qa", "cbt_qa (the bundled sample, or --data_files), a folder from `cbt-llm build`, "
                          "or a Hub dataset id")
    data_files: list[str] | None = option(None, "records .jsonl file(s) for cbt_qa", metavar="FILE")
    dataset_config: str = option("default", "default (single-turn questions), or dialogue (each counsellor turn of "
                                 "each dialogue, after the dialogue's history)", metavar="NAME")

    def __post_init__(self) -> None:
        if self.dataset_config not in ("default", "dialogue"):
            raise CbtLlmError(f"--dataset_config must be default or dialogue, got {self.dataset_config!r}")


@dataclass(kw_only=True)
class SplitConfig(DatasetConfig):
    """A split of a dataset."""

    split: str = option("test", "split to answer")
