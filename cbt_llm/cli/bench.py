"""``cbt-llm bench``: score a model on public counselling and CBT benchmarks (``BenchConfig`` handed to ``bench``)."""

from __future__ import annotations

from cbt_llm.bench import BenchConfig, bench
from cbt_llm.cli.common import Command

COMMANDS = (
    Command("bench", BenchConfig, bench,
            help="score a model on CPsyExam, CPsyCounE and CBT-Bench (accuracy, judge scores, weighted F1)",
            description="Asks a local model (--model_name_or_path/--adapter, batched) or a served one (--base_url "
                        "--model) every item of the chosen --tasks, read from --data_dir in the authors' layout or "
                        "from the benchmarks' Hub datasets; one JSON line per item in OUT/records (rerun to resume). "
                        "CPsyCounE turns are scored by --judge_model. Writes OUT/bench.json, bench.md and bench.png, "
                        "checks overlap with --train_dataset, and puts the scores in a local adapter's model card."),
)
