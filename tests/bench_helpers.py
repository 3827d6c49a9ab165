"""What the bench tests share: where the benchmark files are, and loopback answers built from their gold labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

BENCH_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bench"
VERDICT = {"comprehensiveness": 1, "professionalism": 2, "authenticity": 3, "safety": 1}


def bench_data() -> Path:
    """../shared/data/bench (never copied into the project); the test is skipped when it is absent."""
    if not (BENCH_DATA / "cpsyexam" / "cpsyexam.zip").is_file():
        pytest.skip("../shared/data/bench is not beside this checkout")
    return BENCH_DATA


def gold_replies(data_dir: Path) -> dict[str, str]:
    """The last user message of every CPsyExam and CBT-Bench item -> a reply giving its gold answer."""
    from cbt_llm.bench.tasks import TASKS

    replies = {}
    for shots in (0, 1):
        for item in TASKS["cpsyexam"].load(data_dir, shots)[0]:
            replies[item.messages[-1]["content"]] = f"答案：{' '.join(item.gold)}"
        for item in TASKS["cbt_bench"].load(data_dir, shots)[0]:
            replies[item.messages[-1]["content"]] = "Labels: " + "; ".join(item.gold)
    return replies


def copy_task(data_dir: Path, task: str, to: Path) -> Path:
    """A writable copy of one task folder under ``to`` (a data dir of its own), to break on purpose."""
    shutil.copytree(data_dir / task, to / task)
    return to
