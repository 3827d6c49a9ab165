"""What every command module shares: the command records, field helpers and the argument groups that recur."""

from __future__ import annotations

import functools
from argparse import ArgumentDefaultsHelpFormatter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from cbt_llm.config import on_command_line, option, positional  # noqa: F401 - re-exported for the command modules


@dataclass(frozen=True)
class Command:
    """A subcommand: its arguments dataclass, and the function that runs it and returns the text to print."""

    name: str
    arguments: type
    run: Callable[[Any], str]
    help: str
    description: str | None = None


@dataclass(frozen=True)
class Group:
    """A subcommand with subcommands of its own (``cbt-llm batch submit|poll|ingest``)."""

    name: str
    help: str
    description: str
    commands: tuple[Command, ...]


def values(args: Any, group: type) -> dict[str, Any]:
    """The values of ``args`` for the fields of ``group`` (a dataclass it extends), by name."""
    return {f.name: getattr(args, f.name) for f in fields(group)}


class HelpFormatter(ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where there is one the help does not already explain."""

    def _get_help_string(self, action):
        if action.default is None or action.required or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


@functools.cache
def command_parser_class() -> type:
    """``HfArgumentParser`` that also knows positional fields (transformers is imported here, not at import)."""
    from transformers import HfArgumentParser

    class CommandParser(HfArgumentParser):
        # HfArgumentParser makes every field a --flag; this per-field hook is where a field marked
        # ``positional`` becomes a plain argument instead (tests/test_cli.py runs every command's --help).
        @staticmethod
        def _parse_dataclass_field(parser, dataclass_field):
            metadata = dict(dataclass_field.metadata)
            if not on_command_line(dataclass_field):
                return
            if metadata.pop("positional", False):
                parser.add_argument(dataclass_field.name, **metadata)
            else:
                HfArgumentParser._parse_dataclass_field(parser, dataclass_field)

    return CommandParser


def add_commands(subparsers, commands: tuple[Command | Group, ...]) -> None:
    """Add each command (a parser over its dataclass) or group (a parser with its own subcommands)."""
    for command in commands:
        if isinstance(command, Group):
            parser = subparsers.add_parser(command.name, help=command.help, description=command.description)
            add_commands(parser.add_subparsers(dest="action", required=True, metavar="ACTION"), command.commands)
            continue
        parser = subparsers.add_parser(command.name, dataclass_types=[command.arguments], help=command.help,
                                       description=command.description or command.help, allow_abbrev=False,
                                       formatter_class=HelpFormatter)
        parser.set_defaults(cbt_llm_command=command)


@dataclass(kw_only=True)
class ServerArguments:
    """An OpenAI-compatible server; the key is read from an environment variable, never from a flag."""

    base_url: str | None = option(None, "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default: "
                                  "OpenAI, or $OPENAI_BASE_URL)", metavar="URL")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the API key; the key itself is never "
                              "taken from a flag", metavar="NAME")
    concurrency: int = option(16, "requests in flight", metavar="N")
    timeout: float = option(120.0, "seconds per request", metavar="S")
    max_attempts: int = option(6, "attempts per request for 5xx, timeouts and dropped connections", metavar="N")


@dataclass(kw_only=True)
class EndpointArguments(ServerArguments):
    """A model on an OpenAI-compatible server, with optional rate caps (``EndpointConfig`` plus the model)."""

    model: str = option(help="model name on the server (e.g. gpt-4o-mini)")
    rpm: float | None = option(None, "requests-per-minute cap (the client still slows down by itself when the "
                               "server answers 429)", metavar="N")
    tpm: float | None = option(None, "tokens-per-minute cap", metavar="N")

    def endpoint(self) -> dict[str, Any]:
        """The ``EndpointConfig`` fields, for the stage functions' ``**endpoint``."""
        return {name: value for name, value in values(self, EndpointArguments).items() if name != "model"}


@dataclass(kw_only=True)
class DatasetArguments:
    """Which questions (and references) a stage reads."""

    dataset: str = option("cbt_qa", "cbt_qa (the bundled sample, or --data_files), a folder from `cbt-llm build`, "
                          "or a Hub dataset id")
    data_files: list[str] | None = option(None, "records .jsonl file(s) for cbt_qa", metavar="FILE")


@dataclass(kw_only=True)
class SplitArguments(DatasetArguments):
    """A split of a dataset."""

    split: str = option("test", "split to answer")
