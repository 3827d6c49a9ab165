"""Question sources: PsyQA's JSON array, JSON Lines and CSV, read into validated ``Question`` records.

Every error names the file, the line (and array index for JSON arrays) and the field, so a
bad row in a 20,000-question file is found at once. A question and its description may hold
``MAX_INPUT_CHARS`` characters together: a pasted file or log is caught here, not by a teacher
model answering HTTP 400 after the run has started.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbt_llm.errors import CbtLlmError

FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_KEYWORD_SPLIT = re.compile(r"[,，、;；]")
# Characters of question + description: 50x PsyQA's longest (about 400), about 20,000 tokens of Chinese,
# which leaves room for the teacher prompt and a full answer in a 32k-token context.
MAX_INPUT_CHARS = 20_000


class SourceError(CbtLlmError):
    """Bad input data; the message reads ``FILE:LINE: [index N] field 'F': what is wrong``."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, index: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.index, self.field = str(path), line, index, field
        where = self.path + (f":{line}" if line is not None else "")
        parts = [f"{where}:"]
        if index is not None:
            parts.append(f"[index {index}]")
        if field is not None:
            parts.append(f"field '{field}':")
        parts.append(message)
        super().__init__(" ".join(parts))


@dataclass(frozen=True)
class Location:
    """Where an item sits in its file, for error messages."""

    path: str
    line: int
    index: int | None = None

    def error(self, message: str, field: str | None = None) -> SourceError:
        return SourceError(self.path, message, line=self.line, index=self.index, field=field)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" + (f" [index {self.index}]" if self.index is not None else "")


@dataclass(frozen=True)
class Question:
    """One question to answer: PsyQA's title, description and keywords under a stable id."""

    id: str
    question: str
    description: str = ""
    keywords: tuple[str, ...] = ()


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def read_text(path: str | Path) -> str:
    """Read a UTF-8 file (BOM allowed), with an error naming the line of the first bad byte."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(path, "no such file") from None
    except IsADirectoryError:
        raise SourceError(path, "is a directory, expected a file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        if err.reason == "unexpected end of data":
            raise SourceError(path, "truncated last line (the file ends inside a UTF-8 character); "
                                    "the file was cut off while being written", line=line) from None
        raise SourceError(path, f"bytes are not valid UTF-8 (byte 0x{data[err.start]:02x}); "
                                "save the file as UTF-8", line=line) from None
    if not text.strip():
        raise SourceError(path, "file is empty")
    return text


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _iter_json_array(path: str, text: str) -> Iterator[tuple[Location, Any]]:
    """Yield each element of a top-level JSON array with the line it starts on."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text).end()
    if text[pos] != "[":
        try:
            value, _ = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise SourceError(path, f"invalid JSON: {err.msg} (column {err.colno})", line=err.lineno) from None
        raise SourceError(path, f"top-level JSON value is {json_type(value)}, expected an array of records "
                                "(use .jsonl for one record per line)", line=_line_of(text, pos))
    pos = ws.match(text, pos + 1).end()
    index = 0
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise SourceError(path, f"invalid JSON: {err.msg} (column {err.colno})",
                                  line=err.lineno, index=index) from None
            yield Location(path, _line_of(text, pos), index), value
            index += 1
            pos = ws.match(text, end).end()
            if text.startswith(",", pos):
                pos = ws.match(text, pos + 1).end()
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                what = "end of file" if pos >= len(text) else repr(text[pos])
                raise SourceError(path, f"invalid JSON: expected ',' or ']' after array element, found {what}",
                                  line=_line_of(text, pos), index=index - 1)
    rest = ws.match(text, pos).end()
    if rest < len(text):
        raise SourceError(path, "invalid JSON: extra data after the top-level array", line=_line_of(text, rest))


def _iter_json_lines(path: str, text: str) -> Iterator[tuple[Location, Any]]:
    """Yield each non-blank JSON Lines record; a bad last line without a newline is reported as truncated."""
    lines = text.splitlines()
    ends_with_newline = text.endswith(("\n", "\r"))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines) and not ends_with_newline:
                raise SourceError(path, f"truncated last line (no newline at end and invalid JSON: {err.msg}); "
                                        "the file was cut off while being written", line=number) from None
            raise SourceError(path, f"invalid JSON: {err.msg} (column {err.colno})", line=number) from None
        yield Location(path, number), value


def iter_json_objects(path: str | Path) -> Iterator[tuple[Location, dict]]:
    """Yield the JSON objects of a ``.json`` array or a ``.jsonl`` file, each with its location."""
    kind = _format_of(path)
    if kind == "csv":
        raise SourceError(path, "expected a .json or .jsonl file of records")
    text = read_text(path)
    items = _iter_json_array(str(path), text) if kind == "json" else _iter_json_lines(str(path), text)
    for loc, value in items:
        if not isinstance(value, dict):
            raise loc.error(f"expected a JSON object, got {json_type(value)}")
        yield loc, value


def _iter_csv(path: str | Path) -> Iterator[tuple[Location, dict]]:
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or "question" not in [name.strip() for name in reader.fieldnames]:
        raise SourceError(path, f"CSV header has no 'question' column (found: {reader.fieldnames})", line=1)
    start = reader.line_num + 1
    try:
        for row in reader:
            row = {(key or "").strip(): value for key, value in row.items()}
            yield Location(str(path), start), row
            start = reader.line_num + 1
    except csv.Error as err:
        raise SourceError(path, f"invalid CSV: {err}", line=reader.line_num) from None


def _format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SourceError(path, f"unknown file type {suffix or '(none)'!r}; use .json (PsyQA), .jsonl or .csv")
    return FORMATS[suffix]


def require_text(obj: dict, field: str, loc: Location) -> str:
    """A required string field that is not blank."""
    if field not in obj or obj[field] is None:
        raise loc.error("is missing", field)
    value = obj[field]
    if not isinstance(value, str):
        raise loc.error(f"must be a string, got {json_type(value)}", field)
    if not value.strip():
        raise loc.error("is blank", field)
    return value.strip()


def optional_text(obj: dict, field: str, loc: Location) -> str:
    """An optional string field; missing or null reads as ``""``."""
    value = obj.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise loc.error(f"must be a string, got {json_type(value)}", field)
    return value.strip()


def string_list(obj: dict, field: str, loc: Location) -> tuple[str, ...]:
    """A list of strings, or PsyQA's comma-separated string; blanks are dropped."""
    value = obj.get(field)
    if value is None:
        return ()
    if isinstance(value, str):
        items = _KEYWORD_SPLIT.split(value)
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
    else:
        raise loc.error("must be a list of strings or a comma-separated string", field)
    return tuple(item.strip() for item in items if item.strip())


def record_id(obj: dict, loc: Location, question: str, description: str) -> str:
    """The stable id: ``id``, else PsyQA's ``questionID``, else a hash of question and description."""
    for field in ("id", "questionID"):
        value = obj.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise loc.error(f"must be a string or an integer, got {json_type(value)}", field)
        if not str(value).strip():
            raise loc.error("is blank", field)
        return str(value).strip()
    return hashlib.sha256(f"{question}\n{description}".encode("utf-8")).hexdigest()[:16]


def check_input_length(question: str, description: str, loc: Location) -> None:
    """Refuse a question whose text with its description is over ``MAX_INPUT_CHARS`` characters."""
    total = len(question) + len(description)
    if total > MAX_INPUT_CHARS:
        field = "question" if len(question) > len(description) else "description"
        raise loc.error(f"question and description are {total:,} characters together, over the limit of "
                        f"{MAX_INPUT_CHARS:,} (no teacher prompt holds that much); shorten it or leave it out", field)


class IdRegistry:
    """Remembers where each id was first seen, to report duplicates with both places."""

    def __init__(self) -> None:
        self._seen: dict[str, Location] = {}

    def add(self, id_: str, loc: Location) -> None:
        if id_ in self._seen:
            raise loc.error(f"duplicate id {id_!r} (first seen at {self._seen[id_]})", "id")
        self._seen[id_] = loc


def iter_questions(path: str | Path) -> Iterator[Question]:
    """Yield validated questions from a PsyQA ``.json`` array, a ``.jsonl`` or a ``.csv`` file."""
    items = _iter_csv(path) if _format_of(path) == "csv" else iter_json_objects(path)
    ids = IdRegistry()
    for loc, obj in items:
        question = require_text(obj, "question", loc)
        description = optional_text(obj, "description", loc)
        check_input_length(question, description, loc)
        id_ = record_id(obj, loc, question, description)
        ids.add(id_, loc)
        yield Question(id_, question, description, string_list(obj, "keywords", loc))


def read_questions(path: str | Path) -> list[Question]:
    """Read and validate a whole questions file."""
    return list(iter_questions(path))
