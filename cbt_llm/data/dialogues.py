"""Dialogue records (the ``dialogue`` config's rows) from our own JSON Lines and two public corpora's releases.

A dialogue record is ``id``, ``question``, ``messages`` (user = client, assistant = counsellor: the
client speaks first and the counsellor last), ``plan`` (the CBT case plan, empty fields when none) and
``source`` (a short label: ``sample``, ``smilechat``, ``cpsycound``, or ``MODE:MODEL`` for generated ones).
``read_dialogues`` reads, by file type, so that users can mix corpora in one dataset:

* ``.jsonl``: dialogue records, e.g. ``cbt-llm dialogue``'s output (lines not ``ok`` are dropped);
* ``.json``: a SMILECHAT release file (a JSON list of ``{"role": "client"|"counselor", "content"}`` turns);
* ``.txt``: a CPsyCounD release file (one utterance per paragraph, ``来访者：`` or ``心理咨询师：`` first);
* a folder: every such file in it, in name order.

Consecutive turns of one speaker are joined, and a client turn after the counsellor's last is dropped
(nothing in it to learn from). Pure Python, no heavy imports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cbt_llm.data.dialogue_prompts import PLAN_FIELDS, TECHNIQUES
from cbt_llm.data.prompts import COGNITIVE_DISTORTIONS, LANGUAGES
from cbt_llm.data.records import RecordSet, gather, iter_json_lines
from cbt_llm.data.sources import Location, SourceError, json_type, optional_text, read_text, require_text

SUFFIXES = (".jsonl", ".json", ".txt")
EMPTY_PLAN = {"automatic_thought": "", "distortions": [], "techniques": [], "goal": ""}
_SMILE_ROLES = {"client": "user", "counselor": "assistant", "counsellor": "assistant"}
_CPSYCOUN_SPEAKERS = {"来访者": "user", "心理咨询师": "assistant", "咨询师": "assistant"}
_CPSYCOUN_TURN = re.compile(r"^\s*(来访者|心理咨询师|咨询师)\s*[：:]\s*")


def dialogue_sample_path() -> Path:
    """The bundled CBT dialogues written for this project (JSON Lines, package data)."""
    from cbt_llm.data.splits import sample_path

    return sample_path().with_name("cbt_dialogue_sample.jsonl")


def join_turns(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """Consecutive turns of one speaker joined; a counsellor opening and a client turn at the end dropped."""
    joined: list[dict[str, str]] = []
    for turn in turns:
        if joined and joined[-1]["role"] == turn["role"]:
            joined[-1] = {"role": turn["role"], "content": joined[-1]["content"] + "\n" + turn["content"]}
        else:
            joined.append(dict(turn))
    while joined and joined[0]["role"] != "user":
        joined.pop(0)
    while joined and joined[-1]["role"] != "assistant":
        joined.pop()
    return joined


def parse_plan(value: Any, loc: Location) -> dict[str, Any]:
    """A case plan object, its labels keys of the taxonomies (``COGNITIVE_DISTORTIONS``, ``TECHNIQUES``)."""
    if value is None:
        return dict(EMPTY_PLAN)
    if not isinstance(value, dict):
        raise loc.error(f"must be an object with {', '.join(PLAN_FIELDS)}, got {json_type(value)}", "plan")
    plan = {"automatic_thought": optional_text(value, "automatic_thought", loc), "goal": optional_text(value, "goal", loc)}
    for name, known in (("distortions", COGNITIVE_DISTORTIONS), ("techniques", TECHNIQUES)):
        labels = value.get(name) or []
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise loc.error("must be a list of strings", f"plan.{name}")
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise loc.error(f"unknown label {unknown[0]!r}; expected one of {', '.join(known)}", f"plan.{name}")
        plan[name] = list(labels)
    return {name: plan[name] for name in PLAN_FIELDS}


def parse_messages(value: Any, loc: Location) -> list[dict[str, str]]:
    """The turns of a record: a list of ``{"role": "user"|"assistant", "content"}`` (a leading system turn is
    left out: the dataset adds its own)."""
    if not isinstance(value, list):
        raise loc.error(f"must be a list of turns, got {json_type(value)}", "messages")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or turn.get("role") not in ("system", "user", "assistant"):
            raise loc.error(f"turn {i} must be an object with role system, user or assistant", "messages")
        if not isinstance(turn.get("content"), str) or not turn["content"].strip():
            raise loc.error(f"turn {i} has no text (content)", "messages")
        if turn["role"] != "system":
            turns.append({"role": turn["role"], "content": turn["content"].strip()})
    return turns


def source_label(value: Any, loc: Location) -> str:
    """A record's ``source`` as the dataset's label: a string as it is; generation's object as ``MODE:MODEL``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return f"{value.get('mode') or 'generated'}:{value.get('model') or 'unknown'}"
    raise loc.error(f"must be a string or an object, got {json_type(value)}", "source")


def parse_dialogue(obj: dict, loc: Location) -> tuple[dict[str, Any], str | None]:
    """Validate one dialogue record line; returns it in the dataset's schema and why it is dropped (or None)."""
    record = {
        "id": require_text(obj, "id", loc) if not isinstance(obj.get("id"), int) else str(obj["id"]),
        "question": require_text(obj, "question", loc),
        "language": obj.get("language") or "zh",
        "messages": join_turns(parse_messages(obj.get("messages"), loc)),
        "plan": parse_plan(obj.get("plan"), loc),
        "source": source_label(obj.get("source"), loc),
    }
    if record["language"] not in LANGUAGES:
        raise loc.error(f"must be one of {', '.join(LANGUAGES)}, got {record['language']!r}", "language")
    status = obj.get("status", "ok")
    if status != "ok":
        return record, f"status {status}"
    if not record["messages"]:
        return record, "no client and counsellor turns"
    return record, None


def _corpus_record(corpus: str, path: Path, turns: list[dict[str, str]]) -> tuple[dict[str, Any], str | None]:
    messages = join_turns(turns)
    question = next((t["content"] for t in messages if t["role"] == "user"), "")
    record = {"id": f"{corpus}-{path.stem}", "question": question, "language": "zh", "messages": messages,
              "plan": dict(EMPTY_PLAN), "source": corpus}
    return record, None if messages else "no client and counsellor turns"


def read_smilechat(path: str | Path) -> tuple[dict[str, Any], str | None]:
    """One SMILECHAT release file (a JSON list of client/counselor turns) as a dialogue record."""
    path = Path(path)
    try:
        turns = json.loads(read_text(path))
    except ValueError as err:
        raise SourceError(path, f"is not JSON: {err}") from None
    if not isinstance(turns, list):
        raise SourceError(path, f"expected a SMILECHAT dialogue (a JSON list of turns), got {json_type(turns)}")
    messages = []
    for i, turn in enumerate(turns):
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in _SMILE_ROLES or not isinstance(turn.get("content"), str):
            raise SourceError(path, "must be an object with role client or counselor and a content string",
                              index=i, field="role")
        if turn["content"].strip():
            messages.append({"role": _SMILE_ROLES[role], "content": turn["content"].strip()})
    return _corpus_record("smilechat", path, messages)


def read_cpsycound(path: str | Path) -> tuple[dict[str, Any], str | None]:
    """One CPsyCounD release file (paragraphs that start with 来访者： or 心理咨询师：) as a dialogue record."""
    path = Path(path)
    messages = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        match = _CPSYCOUN_TURN.match(line)
        if match is None:
            if not messages:
                raise SourceError(path, "expected a turn starting with 来访者： or 心理咨询师：", line=number)
            messages[-1]["content"] += "\n" + line.strip()  # a paragraph break inside one utterance
            continue
        messages.append({"role": _CPSYCOUN_SPEAKERS[match.group(1)], "content": line[match.end():].strip()})
    return _corpus_record("cpsycound", path, [m for m in messages if m["content"]])


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if not path.is_file():
        raise SourceError(path, "no such file or folder")
    if path.suffix.lower() not in SUFFIXES:
        raise SourceError(path, f"unknown dialogue file type {path.suffix or '(none)'!r}; use .jsonl (dialogue "
                                "records), .json (SMILECHAT) or .txt (CPsyCounD)")
    return [path]


def iter_dialogues(path: str | Path) -> Iterator[tuple[Location, dict[str, Any], str | None]]:
    """Every dialogue of a file or folder (see the module docstring) with its location and drop reason."""
    for file in _files(Path(path)):
        suffix = file.suffix.lower()
        if suffix == ".jsonl":
            for loc, obj in iter_json_lines(file):
                yield (loc, *parse_dialogue(obj, loc))
        else:
            reader = read_smilechat if suffix == ".json" else read_cpsycound
            yield (Location(str(file), 1), *reader(file))


def read_dialogues(paths: list[str | Path]) -> RecordSet:
    """Read dialogue files and folders in order; ids must be unique across all of them."""
    return gather(item for path in paths for item in iter_dialogues(path))
