"""CBT QA records (the ``default`` schema) read from JSON Lines, validated, and sorted into kept and dropped.

Generation writes these records; the ``cbt_qa`` builder and ``cbt-llm build`` read them. This
module stays free of heavy imports so the generator can use it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.data.prompts import COGNITIVE_DISTORTIONS, STEP_KEYS
from cbt_llm.data.sources import (
    IdRegistry,
    Location,
    SourceError,
    _iter_json_lines,
    iter_json_objects,
    json_type,
    optional_text,
    read_text,
    record_id,
    require_text,
    string_list,
)

SOURCE_TEXT_FIELDS = ("model", "prompt_version", "created_at", "finish_reason")
SOURCE_COUNT_FIELDS = ("prompt_tokens", "completion_tokens")
STATUSES = ("ok", "rejected", "failed")


@dataclass
class RecordSet:
    """Records kept for the dataset plus a count of the ones dropped, by reason."""

    records: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


def _steps(obj: dict, loc: Location) -> dict[str, str]:
    value = obj.get("steps")
    if value is None:
        return {key: "" for key in STEP_KEYS}
    if not isinstance(value, dict):
        raise loc.error("must be an object with the keys " + ", ".join(STEP_KEYS), "steps")
    unknown = sorted(set(value) - set(STEP_KEYS))
    if unknown:
        raise loc.error(f"unknown step keys {unknown}; expected " + ", ".join(STEP_KEYS), "steps")
    return {key: optional_text(value, key, loc) for key in STEP_KEYS}


def _source(obj: dict, loc: Location) -> dict[str, Any]:
    value = obj.get("source")
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise loc.error("must be an object", "source")
    source: dict[str, Any] = {name: optional_text(value, name, loc) for name in SOURCE_TEXT_FIELDS}
    for name in SOURCE_COUNT_FIELDS:
        count = value.get(name)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise loc.error(f"source.{name} must be a non-negative integer, got {count!r}", "source")
        source[name] = count
    return source


def _distortions(obj: dict, loc: Location) -> list[str]:
    """The distortion labels, each a key of the taxonomy (``COGNITIVE_DISTORTIONS``, what ``cbt-llm annotate`` writes)."""
    labels = list(string_list(obj, "distortions", loc))
    unknown = [label for label in labels if label not in COGNITIVE_DISTORTIONS]
    if unknown:
        raise loc.error(f"unknown label {unknown[0]!r}; expected keys of the taxonomy: "
                        + ", ".join(COGNITIVE_DISTORTIONS), "distortions")
    return labels


def parse_record(obj: dict, loc: Location) -> tuple[dict[str, Any], str | None]:
    """Validate one record; returns it in the ``default`` schema and why it is dropped (or None)."""
    question = require_text(obj, "question", loc)
    description = optional_text(obj, "description", loc)
    response = optional_text(obj, "response", loc)
    status = obj.get("status", "ok")
    if status not in STATUSES:
        raise loc.error(f"must be one of {', '.join(STATUSES)}, got {status!r}", "status")
    record = {
        "id": record_id(obj, loc, question, description),
        "question": question,
        "description": description,
        "keywords": list(string_list(obj, "keywords", loc)),
        "response": response,
        "steps": _steps(obj, loc),
        "distortions": _distortions(obj, loc),
        "source": _source(obj, loc),
    }
    if status != "ok":
        return record, f"status {status}"
    if not response:
        return record, "empty response"
    return record, None


def read_records(paths: Iterable[str | Path]) -> RecordSet:
    """Read record files in order; ids must be unique across all of them."""
    return gather((loc, *parse_record(obj, loc)) for path in paths for loc, obj in iter_json_objects(path))


def gather(items: Iterable[tuple[Location, dict[str, Any], str | None]]) -> RecordSet:
    """Parsed records (with their location and the reason each is dropped, or None) sorted into kept and
    dropped; an id seen twice is an error naming both places."""
    result = RecordSet()
    ids = IdRegistry()
    for loc, record, reason in items:
        ids.add(record["id"], loc)
        if reason is None:
            result.records.append(record)
        else:
            result.dropped[reason] += 1
    return result


def iter_json_lines(path: str | Path, torn_hint: str = "") -> Iterator[tuple[Location, dict]]:
    """The JSON objects of a JSON Lines file whatever its name, each with its location; anything else is a
    ``SourceError`` naming the file and line: no such file, bad UTF-8, NUL bytes, an empty file, a JSON
    array, a line that is not one JSON object, or a last line cut off while being written (``torn_hint``
    is added to that message: how to repair the file)."""
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body.startswith(b"["):
        raise SourceError(path, "is a JSON array; expected JSON Lines (one JSON object per line)",
                          line=data.count(b"\n", 0, len(data) - len(body)) + 1)
    if data and not data.endswith(b"\n") and not _parses(data.rsplit(b"\n", 1)[-1]):
        raise SourceError(path, "the last line is cut off (no newline at the end and not a whole JSON object): "
                                "the file was cut off while being written" + torn_hint, line=data.count(b"\n") + 1)
    text = read_text(path)
    if "\x00" in text:
        raise SourceError(path, "holds NUL bytes (left by a crash or a disk fault); this line is not JSON",
                          line=text.count("\n", 0, text.index("\x00")) + 1)
    for loc, value in _iter_json_lines(str(path), text):
        if not isinstance(value, dict):
            raise loc.error(f"expected a JSON object, got {json_type(value)}")
        yield loc, value


def _parses(line: bytes) -> bool:
    """Whether a line is blank or one whole JSON value in UTF-8."""
    if not line.strip():
        return True
    try:
        json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return False
    return True


def looks_like_records(path: str | Path) -> bool:
    """True when a JSON file's first object has a ``response`` field (records, not questions)."""
    if Path(path).suffix.lower() not in (".json", ".jsonl", ".ndjson"):
        return False
    first = next(iter_json_objects(path), None)
    return first is not None and "response" in first[1]
