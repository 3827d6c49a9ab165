"""``cbt-llm generate``, ``batch submit|poll|ingest``, ``annotate`` and ``dialogue``: answers, labels and
multi-turn dialogues from a teacher model.

Each command parses its stage's config (``GenerateConfig``, ``BatchConfig``, ``PollConfig``,
``IngestConfig``, ``AnnotateConfig``, ``DialogueConfig``) and hands it whole to the stage function.
"""

from __future__ import annotations

from dataclasses import dataclass

from cbt_llm.cli.common import Command, Group
from cbt_llm.config import option
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV
from cbt_llm.generation.annotate import AnnotateConfig, annotate
from cbt_llm.generation.batch import BatchConfig, IngestConfig, PollConfig, ingest, poll, run_batch, submit
from cbt_llm.generation.dialogue import DialogueConfig, dialogue
from cbt_llm.generation.generate import Estimate, GenerateConfig, GenerateSummary, estimate, generate


@dataclass(kw_only=True)
class GenerateArguments(BatchConfig):
    """``cbt-llm generate``: the stage's config plus the two switches that pick what runs."""

    dry_run: bool = option(False, "validate the input and estimate tokens and cost; send nothing")
    batch: bool = option(False, "use OpenAI's Batch API (half price): write the request file, submit, poll until "
                         "done, ingest (see also 'cbt-llm batch')")


def run_generate(config: GenerateArguments) -> Estimate | GenerateSummary:
    """Answer the questions (or estimate the cost with --dry_run, or go through the Batch API with --batch);
    the summary's ``failure()`` makes the command exit 1 when every question asked failed."""
    if config.dry_run:
        return estimate(config)
    if config.batch:
        return run_batch(config)
    return generate(config)


COMMANDS = (
    Command("generate", GenerateArguments, run_generate,
            help="answer questions with a teacher model over an OpenAI-compatible API",
            description="Ask the teacher for a CBT answer to every question, concurrently, checking each answer's "
                        "five CBT steps, language and length (re-asking up to --max_asks). Writes one JSON line per "
                        "question id with status ok, rejected or failed (a question the server refuses, e.g. as too "
                        "long, fails alone). Safe to kill: run the same command again to skip what is done and retry "
                        "what failed; an output made with another --model, --prompt or --language is refused. Exits 1 "
                        "when every question asked failed. The API key comes from "
                        f"${DEFAULT_API_KEY_ENV} or the variable named by --api_key_env."),
    Group("batch", help="OpenAI Batch API in separate steps: submit, poll, ingest",
          description="submit writes OUT.jsonl.batch-requests.jsonl and submits it (state in OUT.jsonl.batch.json); "
                      "poll checks the batch (--wait until it ends) and downloads the results; ingest checks the "
                      "answers and writes them into OUT.jsonl like generate does.",
          commands=(Command("submit", GenerateConfig, submit, help="write the request file and submit the batch"),
                    Command("poll", PollConfig, poll, help="check the batch and download its results when done"),
                    Command("ingest", IngestConfig, ingest,
                            help="check the downloaded answers and write the records"))),
    Command("annotate", AnnotateConfig, annotate,
            help="label each question's cognitive distortions (fixed taxonomy) with a teacher model",
            description="Copy a records file, asking the teacher to label the ok records' questions with cognitive "
                        "distortions from the taxonomy in cbt_llm.data.prompts.COGNITIVE_DISTORTIONS (stored in "
                        "'distortions'). Resumable like generate."),
    Command("dialogue", DialogueConfig, dialogue,
            help="make multi-turn CBT dialogues with a teacher model (simulate or rewrite)",
            description="simulate (default): for every question the teacher writes a CBT case plan, then plays a "
                        "client simulator and a counsellor in turn until the counsellor closes or --max_rounds; "
                        "rewrite: one request turns each ok single-turn record into a dialogue. Every dialogue is "
                        "checked (turn-taking, rounds and turn length, asking before advising, the five steps across "
                        "the counsellor's turns, no AI meta-talk, one language, the crisis protocol after a crisis "
                        "turn) and written as one JSON line with status ok, rejected or failed. Many dialogues run "
                        "at once (--concurrency); safe to kill: the same command again skips the finished ones."),
)
