"""``cbt-llm generate``, ``batch submit|poll|ingest`` and ``annotate``: answers and labels from a teacher model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cbt_llm.cli.common import Command, EndpointArguments, Group, option, values


@dataclass(kw_only=True)
class GenerationArguments(EndpointArguments):
    input: str = option(help="questions: PsyQA .json, .jsonl or .csv", metavar="QUESTIONS")
    output_file: str = option(help="records file (resumable)", metavar="OUT.jsonl")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")
    prompt: str = option("paper", "paper (fluent answer), structured (JSON per step) or a Jinja template FILE")
    language: Literal["zh", "en"] = option("zh", "prompt and answer language")
    limit: int | None = option(None, "only the first N questions", metavar="N")
    temperature: float = option(0.7, "sampling temperature")
    top_p: float | None = option(None, "nucleus sampling")
    max_tokens: int | None = option(None, "answer length cap in tokens", metavar="N")
    seed: int | None = option(None, "sampling seed, where the server supports it")
    max_asks: int = option(3, "answers asked per question before one failing the quality check is kept as "
                           "rejected", metavar="N")
    price_input: float | None = option(None, "price per million prompt tokens", metavar="USD")
    price_output: float | None = option(None, "price per million completion tokens", metavar="USD")

    def options(self) -> dict[str, Any]:
        """``generate``'s keyword options (everything but input, output and model)."""
        return {name: value for name, value in values(self, GenerationArguments).items()
                if name not in ("input", "output_file", "model")}


@dataclass(kw_only=True)
class GenerateArguments(GenerationArguments):
    dry_run: bool = option(False, "validate the input and estimate tokens and cost; send nothing")
    batch: bool = option(False, "use OpenAI's Batch API (half price): write the request file, submit, poll until "
                         "done, ingest (see also 'cbt-llm batch')")
    poll_interval: float = option(30.0, "seconds between batch polls", metavar="S")


def generate(args: GenerateArguments) -> str:
    """Answer the questions (or estimate the cost with --dry_run, or go through the Batch API with --batch)."""
    if args.dry_run:
        from cbt_llm.generation.generate import estimate

        return estimate(args.input, args.output_file, prompt=args.prompt, language=args.language, limit=args.limit,
                        max_tokens=args.max_tokens, price_input=args.price_input,
                        price_output=args.price_output).format()
    if args.batch:
        from cbt_llm.generation.batch import run_batch

        return run_batch(args.input, args.output_file, args.model, poll_interval=args.poll_interval,
                         **args.options()).format()
    from cbt_llm.generation.generate import generate as generate_answers

    return generate_answers(args.input, args.output_file, args.model, **args.options()).format()


def submit(args: GenerationArguments) -> str:
    """Write the Batch API request file and submit it."""
    from cbt_llm.generation.batch import submit as submit_batch

    return submit_batch(args.input, args.output_file, args.model, **args.options()).format()


@dataclass
class PollArguments:
    output_file: str = option(help="the output file given to submit", metavar="OUT.jsonl")
    wait: bool = option(False, "keep polling until the batch ends")
    poll_interval: float = option(30.0, "seconds between polls", metavar="S")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the API key", metavar="NAME")


def poll(args: PollArguments) -> str:
    """Check the batch; download its results when it is done."""
    from cbt_llm.generation.batch import poll as poll_batch

    return poll_batch(args.output_file, wait=args.wait, interval=args.poll_interval,
                      api_key_env=args.api_key_env).format()


@dataclass
class IngestArguments:
    output_file: str = option(help="the output file given to submit", metavar="OUT.jsonl")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")


def ingest(args: IngestArguments) -> str:
    """Check the downloaded answers and write the records."""
    from cbt_llm.generation.batch import ingest as ingest_batch

    return ingest_batch(args.output_file, progress=args.progress).format()


@dataclass(kw_only=True)
class AnnotateArguments(EndpointArguments):
    input: str = option(help="generate's output", metavar="RECORDS.jsonl")
    output_file: str = option(help="labelled records (resumable)", metavar="OUT.jsonl")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")
    language: Literal["zh", "en"] = option("zh", "prompt language")
    temperature: float = option(0.0, "sampling temperature")
    max_tokens: int = option(200, "label answer cap", metavar="N")


def annotate(args: AnnotateArguments) -> str:
    """Label the ok records' questions with cognitive distortions."""
    from cbt_llm.generation.annotate import annotate as annotate_records

    return annotate_records(args.input, args.output_file, args.model, language=args.language,
                            temperature=args.temperature, max_tokens=args.max_tokens, progress=args.progress,
                            **args.endpoint()).format()


COMMANDS = (
    Command("generate", GenerateArguments, generate,
            help="answer questions with a teacher model over an OpenAI-compatible API",
            description="Ask the teacher for a CBT answer to every question, concurrently, checking each answer's "
                        "five CBT steps, language and length (re-asking up to --max_asks). Writes one JSON line per "
                        "question id with status ok, rejected or failed. Safe to kill: run the same command again to "
                        "skip what is done and retry what failed. The API key comes from $OPENAI_API_KEY or the "
                        "variable named by --api_key_env."),
    Group("batch", help="OpenAI Batch API in separate steps: submit, poll, ingest",
          description="submit writes OUT.jsonl.batch-requests.jsonl and submits it (state in OUT.jsonl.batch.json); "
                      "poll checks the batch (--wait until it ends) and downloads the results; ingest checks the "
                      "answers and writes them into OUT.jsonl like generate does.",
          commands=(Command("submit", GenerationArguments, submit, help="write the request file and submit the batch"),
                    Command("poll", PollArguments, poll, help="check the batch and download its results when done"),
                    Command("ingest", IngestArguments, ingest,
                            help="check the downloaded answers and write the records"))),
    Command("annotate", AnnotateArguments, annotate,
            help="label each question's cognitive distortions (fixed taxonomy) with a teacher model",
            description="Copy a records file, asking the teacher to label the ok records' questions with cognitive "
                        "distortions from the taxonomy in cbt_llm.data.prompts.COGNITIVE_DISTORTIONS (stored in "
                        "'distortions'). Resumable like generate."),
)
