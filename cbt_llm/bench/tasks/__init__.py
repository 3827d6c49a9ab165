"""The benchmark tasks by name: each module loads its items (``load``), scores a reply (``score``) and
sums the scores up (``aggregate``); ``HEADLINE`` names the figure bench.json leads with.

A new task is one module with ``NAME``, ``HUB_ID``, ``HEADLINE``, ``PROMPT_VERSION``, ``MAX_NEW_TOKENS``,
``load(data_dir, shots)``, ``score(item, reply)`` and ``aggregate(records)``, and one line here.
"""

from __future__ import annotations

from types import ModuleType

from cbt_llm.bench.tasks import cbt_bench, cpsycoune, cpsyexam
from cbt_llm.bench.tasks.base import Item, Source
from cbt_llm.errors import CbtLlmError

TASKS: dict[str, ModuleType] = {module.NAME: module for module in (cpsyexam, cpsycoune, cbt_bench)}
JUDGED = {"cpsycoune"}  # tasks whose replies a judge model scores

__all__ = ["TASKS", "JUDGED", "Item", "Source", "task_names", "get_task"]


def task_names(text: str) -> list[str]:
    """The task names of a comma-separated list, checked and without repeats."""
    names = list(dict.fromkeys(name.strip().lower() for name in text.replace(" ", ",").split(",") if name.strip()))
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise CbtLlmError(f"--tasks: unknown task {unknown[0]!r} (known: {', '.join(TASKS)})")
    if not names:
        raise CbtLlmError(f"--tasks is empty (known: {', '.join(TASKS)})")
    return names


def get_task(name: str) -> ModuleType:
    return TASKS[name]
