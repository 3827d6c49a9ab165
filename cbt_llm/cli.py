"""The ``cbt-llm`` command: parses arguments and calls the same functions as the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import CbtLlmError


def _validate(args: argparse.Namespace) -> str:
    from .records import looks_like_records, read_records
    from .sources import read_questions

    if looks_like_records(args.file):
        result = read_records([args.file])
        dropped = sum(result.dropped.values())
        reasons = "".join(f", {n} {why}" for why, n in result.dropped.items())
        return f"{args.file}: {len(result.records) + dropped} records ({len(result.records)} usable{reasons})"
    return f"{args.file}: {len(read_questions(args.file))} questions"


def _build(args: argparse.Namespace) -> str:
    from .dataset import build_dataset

    card = {"pretty_name": args.pretty_name, "license": args.license, "questions_source": args.questions_source}
    if args.repo_id:
        card["repo_id"] = args.repo_id
    result = build_dataset(args.input, args.output, tuple(args.split_ratios), args.system_prompt, card)
    sizes = "; ".join(
        f"{config}: " + ", ".join(f"{split} {n}" for split, n in splits.items())
        for config, splits in result.num_rows.items()
    )
    dropped = ", ".join(f"{n} {why}" for why, n in result.dropped.items()) or "none"
    return f"built {result.output_dir} ({sizes}); dropped: {dropped}; card: {result.output_dir / 'README.md'}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per pipeline stage."""
    from .dataset import DEFAULT_SPLIT_RATIOS
    from .prompts import SYSTEM_PROMPT_ZH

    parser = argparse.ArgumentParser(prog="cbt-llm", description="CBT-structured mental-health QA: data, "
                                     "fine-tuning, evaluation and Hub publishing.")
    parser.add_argument("--version", action="version", version=f"cbt-llm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check a questions file (PsyQA .json, .jsonl, .csv) or a records .jsonl",
        description="Read a questions or records file, print how many it holds, or the first error "
                    "with its file, line and field. Files whose first record has a 'response' are records.")
    validate.add_argument("file", help="path to the file")
    validate.set_defaults(run=_validate)

    build = commands.add_parser(
        "build", help="build the cbt_qa dataset folder (parquet per config and split + card)",
        description="Write a dataset folder that plain load_dataset(DIR) and load_dataset(DIR, 'sft') read. "
                    "Without --input, builds from the bundled sample. Records whose status is not 'ok' "
                    "or whose response is empty are dropped and counted.")
    build.add_argument("--input", nargs="+", metavar="FILE", help="records .jsonl file(s), e.g. generate's output")
    build.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    build.add_argument("--split-ratios", nargs=3, type=float, default=list(DEFAULT_SPLIT_RATIOS),
                       metavar=("TRAIN", "VALIDATION", "TEST"), help="shares of the id-hash split (default: 0.8 0.1 0.1)")
    build.add_argument("--system-prompt", default=SYSTEM_PROMPT_ZH, help="system line of the sft config "
                       "(default: the CBT-LLM paper's)")
    build.add_argument("--pretty-name", default="CBT QA", help="dataset name shown on the card")
    build.add_argument("--license", help="card license (default: apache-2.0 for the sample, other for generated data)")
    build.add_argument("--questions-source", choices=("psyqa", "other"), help="where the questions came from; "
                       "psyqa (the default for --input) adds PsyQA's terms to the card")
    build.add_argument("--repo-id", help="Hub repo id to show in the card's usage snippet")
    build.set_defaults(run=_build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line to stderr and exit 1, without a traceback."""
    args = build_parser().parse_args(argv)
    try:
        print(args.run(args))
    except CbtLlmError as err:
        print(f"cbt-llm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
