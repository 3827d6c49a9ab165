"""Evaluation on dialogues: each counsellor turn answered after the reference history, read back as dialogues.

``turn_rows(dialogues)`` makes one row per counsellor turn of each ``dialogue``-config dialogue: id
``<dialogue id>#<n>`` (its n-th counsellor turn), the ``history`` before it (client and counsellor turns)
and the reference turn as ``response``. ``predict --dataset_config dialogue`` answers each row with the
model's system line and that history: the reference history, not the model's own earlier turns, so every
system answers the same situations (as CPsyCounE and the dialogue-corpus papers score turns).
``evaluate --dataset_config dialogue`` scores each turn against the reference turn with every metric and,
grouping the turns back by dialogue, adds :func:`dialogue_figures`: turns per dialogue, the share of turns
that ask, the share of dialogues whose first turn asks, and the CBT steps covered across a dialogue's turns
(the figures ``cbt_llm.generation.dialogue_checks`` holds generated dialogues to, from ``cbt_llm.steps``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from cbt_llm.data.prompts import STEP_KEYS

TURN_MARK = "#"


def turn_rows(dialogues: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per counsellor turn: ``id`` (``<dialogue id>#<n>``), ``history`` (the turns before it, no
    system line) and ``response`` (the reference turn)."""
    rows = []
    for dialogue in dialogues:
        turns = [dict(m) for m in dialogue["messages"] if m["role"] != "system"]
        counsellor = 0
        for index, turn in enumerate(turns):
            if turn["role"] == "assistant":
                counsellor += 1
                rows.append({"id": f"{dialogue['id']}{TURN_MARK}{counsellor}", "history": turns[:index],
                             "response": turn["content"]})
    return rows


def _dialogue_and_turn(turn_id: str) -> tuple[str, int]:
    dialogue, _, number = turn_id.rpartition(TURN_MARK)
    return (dialogue, int(number)) if dialogue and number.isdigit() else (turn_id, 0)


def dialogues_of(turns: Mapping[str, str]) -> dict[str, list[str]]:
    """The counsellor turns (turn id -> text) grouped by dialogue, each dialogue's turns in order."""
    grouped: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for turn_id, text in turns.items():
        dialogue, number = _dialogue_and_turn(turn_id)
        grouped[dialogue].append((number, text))
    return {dialogue: [text for _, text in sorted(numbered)] for dialogue, numbered in sorted(grouped.items())}


def _language(turns: list[str]) -> str:
    """zh when most of the turns' letters are CJK (Latin words counted as words), else en."""
    from cbt_llm.steps import language_share

    return "zh" if language_share("\n".join(turns), "zh") >= 0.5 else "en"


def dialogue_figures(turns: Mapping[str, str], language: str | None = None) -> dict[str, Any]:
    """Over the dialogues of ``turns`` (turn id -> counsellor text): how many, turns per dialogue, the share
    of turns with a question, the share of dialogues whose first turn asks, the mean number of the five
    steps covered across a dialogue's turns, the share covering all five, and each step's share. Each
    dialogue is read in ``language``, by default its own (zh or en, from its text)."""
    from cbt_llm.steps import asks, steps_covered

    dialogues = list(dialogues_of(turns).values())
    n = len(dialogues)
    if not n:
        return {"dialogues": 0}
    texts = [text for dialogue in dialogues for text in dialogue]
    covered = [set(steps_covered(dialogue, language or _language(dialogue))) for dialogue in dialogues]
    return {
        "dialogues": n,
        "turns": len(texts) / n,
        "question_share": sum(asks(text) for text in texts) / len(texts),
        "asks_first": sum(asks(dialogue[0]) for dialogue in dialogues) / n,
        "steps_covered": sum(len(steps) for steps in covered) / n,
        "all_steps": sum(len(steps) == len(STEP_KEYS) for steps in covered) / n,
        "steps": {key: sum(key in steps for steps in covered) / n for key in STEP_KEYS},
    }
