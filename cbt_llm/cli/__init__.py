"""The ``cbt-llm`` command: one config dataclass per subcommand, parsed as TRL parses its scripts.

Each module here holds a group of commands: a ``@dataclass XxxArguments`` whose fields (with their
``help``) are the flags, and a function that calls the stage's Python API with them and returns the
text to print. ``transformers.HfArgumentParser`` turns the dataclasses into subparsers, so every flag
has both spellings (``--output_dir`` and ``--output-dir``). ``train`` is handed to its own TrlParser.
Nothing heavy is imported until :func:`main` runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from cbt_llm.cli.common import Command
from cbt_llm.config import on_command_line
from cbt_llm.errors import CbtLlmError

# The command groups (``cbt_llm/cli/<group>.py``), in the order ``--help`` lists them; ``train`` follows ``data``.
GROUPS = ("data", "generation", "evaluation", "bench", "hub", "chat", "app")


def command_groups() -> list:
    """The group modules, imported (each holds ``COMMANDS``)."""
    from importlib import import_module

    return [import_module(f"cbt_llm.cli.{name}") for name in GROUPS]


def build_parser():
    """The ``cbt-llm`` parser: one HfArgumentParser subparser per command (imports transformers)."""
    from argparse import ArgumentParser

    from cbt_llm import __version__
    from cbt_llm.cli.common import add_commands, command_parser_class

    parser = ArgumentParser(prog="cbt-llm", allow_abbrev=False, description="CBT-structured mental-health QA: "
                            "data, fine-tuning, evaluation and Hub publishing.")
    parser.add_argument("--version", action="version", version=f"cbt-llm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=command_parser_class())
    first, *rest = command_groups()
    add_commands(commands, first.COMMANDS)
    # `train` hands its arguments to TrlParser (main() dispatches it before parsing): listed here for --help.
    commands.add_parser("train", add_help=False, help="LoRA fine-tuning from a YAML recipe: --config RECIPE "
                        "[--field value ...] (see `cbt-llm train --help`)")
    for group in rest:
        add_commands(commands, group.COMMANDS)
    return parser


def parse_args(argv: Sequence[str]) -> tuple[Command, Any]:
    """``(command, arguments dataclass)`` for a command line; old flag names are translated, with a notice."""
    from cbt_llm.cli.legacy import translate

    namespace = build_parser().parse_args(translate(list(argv)))
    command = namespace.cbt_llm_command
    return command, command.arguments(**{f.name: getattr(namespace, f.name) for f in fields(command.arguments)
                                        if on_command_line(f)})


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors (and a run in which every item failed) print one line to stderr and
    exit 1, without a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from cbt_llm.training.train import cli_main

        return cli_main(argv[1:])
    name = argv[0] if argv else "cbt-llm"
    try:
        command, args = parse_args(argv)
        result = command.run(args)
        print(result if isinstance(result, str) else result.format())
        failure = getattr(result, "failure", None)  # a run summary says when nothing it asked for came back
        if callable(failure) and failure():
            raise CbtLlmError(failure())
    except CbtLlmError as err:
        print(f"cbt-llm {name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
