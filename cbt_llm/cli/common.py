"""What every command module shares: the command records and the parser that reads stage configs as flags."""

from __future__ import annotations

import functools
from argparse import ArgumentDefaultsHelpFormatter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cbt_llm.config import on_command_line


@dataclass(frozen=True)
class Command:
    """A subcommand: the config dataclass its flags fill, and the stage function that takes that config whole."""

    name: str
    arguments: type
    run: Callable[[Any], Any]
    help: str
    description: str | None = None


@dataclass(frozen=True)
class Group:
    """A subcommand with subcommands of its own (``cbt-llm batch submit|poll|ingest``)."""

    name: str
    help: str
    description: str
    commands: tuple[Command, ...]


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
