"""``cbt-llm validate`` and ``cbt-llm build``: check a questions or records file, build the dataset folder."""

from __future__ import annotations

from dataclasses import dataclass

from cbt_llm.cli.common import Command
from cbt_llm.config import positional
from cbt_llm.data.build import BuildConfig, build_dataset


@dataclass
class ValidateArguments:
    """``cbt-llm validate FILE``: a check of one file, not a pipeline stage, so it has no stage config."""

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


COMMANDS = (
    Command("validate", ValidateArguments, validate,
            help="check a questions file (PsyQA .json, .jsonl, .csv) or a records .jsonl",
            description="Read a questions or records file, print how many it holds, or the first error with its "
                        "file, line and field. Files whose first record has a 'response' are records."),
    Command("build", BuildConfig, build_dataset,
            help="build the cbt_qa dataset folder (parquet per config and split + card)",
            description="Write a dataset folder that plain load_dataset(DIR) and load_dataset(DIR, 'sft') read. "
                        "Without --input, builds from the bundled sample. Records whose status is not 'ok' or whose "
                        "response is empty are dropped and counted."),
)
