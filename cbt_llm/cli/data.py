"""``cbt-llm validate`` and ``cbt-llm build``: check a questions or records file, build the dataset folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cbt_llm.cli.common import Command, option, positional
from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
from cbt_llm.data.splits import DEFAULT_SPLIT_RATIOS


@dataclass
class ValidateArguments:
    file: str = positional("path to the file")


def validate(args: ValidateArguments) -> str:
    """How many questions or records the file holds (the first error is raised as a CbtLlmError)."""
    from cbt_llm.data.records import looks_like_records, read_records
    from cbt_llm.data.sources import read_questions

    if looks_like_records(args.file):
        result = read_records([args.file])
        dropped = sum(result.dropped.values())
        reasons = "".join(f", {n} {why}" for why, n in result.dropped.items())
        return f"{args.file}: {len(result.records) + dropped} records ({len(result.records)} usable{reasons})"
    return f"{args.file}: {len(read_questions(args.file))} questions"


@dataclass
class BuildArguments:
    output_dir: str = option(help="folder to write", metavar="DIR")
    input: list[str] | None = option(None, "records .jsonl file(s), e.g. generate's output (default: the bundled "
                                     "sample)", metavar="FILE")
    split_ratios: list[float] = option(list(DEFAULT_SPLIT_RATIOS), "shares of the id-hash split: TRAIN VALIDATION "
                                       "TEST", metavar="SHARE")
    system_prompt: str = option(SYSTEM_PROMPT_ZH, "system line of the sft config (default: the CBT-LLM paper's)")
    pretty_name: str = option("CBT QA", "dataset name shown on the card")
    license: str | None = option(None, "card license (default: apache-2.0 for the sample, other for generated data)")
    questions_source: Literal["psyqa", "other"] | None = option(None, "where the questions came from; psyqa (the "
                                                                "default for --input) adds PsyQA's terms to the card")
    repo_id: str | None = option(None, "Hub repo id to show in the card's usage snippet", metavar="NS/NAME")


def build(args: BuildArguments) -> str:
    """Build the dataset folder; the summary names its sizes, what was dropped and the card."""
    from cbt_llm.data.build import build_dataset

    card = {"pretty_name": args.pretty_name, "license": args.license, "questions_source": args.questions_source}
    if args.repo_id:
        card["repo_id"] = args.repo_id
    result = build_dataset(args.input, args.output_dir, tuple(args.split_ratios), args.system_prompt, card)
    sizes = "; ".join(
        f"{config}: " + ", ".join(f"{split} {n}" for split, n in splits.items())
        for config, splits in result.num_rows.items()
    )
    dropped = ", ".join(f"{n} {why}" for why, n in result.dropped.items()) or "none"
    return f"built {result.output_dir} ({sizes}); dropped: {dropped}; card: {result.output_dir / 'README.md'}"


COMMANDS = (
    Command("validate", ValidateArguments, validate,
            help="check a questions file (PsyQA .json, .jsonl, .csv) or a records .jsonl",
            description="Read a questions or records file, print how many it holds, or the first error with its "
                        "file, line and field. Files whose first record has a 'response' are records."),
    Command("build", BuildArguments, build,
            help="build the cbt_qa dataset folder (parquet per config and split + card)",
            description="Write a dataset folder that plain load_dataset(DIR) and load_dataset(DIR, 'sft') read. "
                        "Without --input, builds from the bundled sample. Records whose status is not 'ok' or whose "
                        "response is empty are dropped and counted."),
)
