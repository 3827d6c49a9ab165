"""What every benchmark task shares: an item to ask, the source it was read from, and reading JSON with one-line errors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.errors import CbtLlmError


@dataclass
class Item:
    """One question of a benchmark: its id, the chat messages that ask it, and what scoring needs (``gold``, ``meta``)."""

    id: str
    messages: list[dict]
    gold: Any
    meta: dict = field(default_factory=dict)
    text: str = ""  # the item's own text, for the contamination check


@dataclass
class Source:
    """Where a task's files were read from, with each file's SHA-256 (bench.json records it)."""

    kind: str  # "data_dir" or "hub"
    location: str
    files: dict[str, str] = field(default_factory=dict)  # relative name -> sha256

    def add(self, name: str, data: bytes) -> None:
        self.files[name] = hashlib.sha256(data).hexdigest()


def parse_json(data: bytes, where: str) -> Any:
    """``data`` as JSON, or one ``CbtLlmError`` line naming ``where`` and the line of the error."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise CbtLlmError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise CbtLlmError(f"{where}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


def read_json_file(path: Path, source: Source, name: str) -> Any:
    """A JSON file of a task folder, recorded in ``source``; a missing file is one clear line."""
    if not path.is_file():
        raise CbtLlmError(f"{path}: no such file (the authors' release layout has it; see --data_dir)")
    data = path.read_bytes()
    source.add(name, data)
    return parse_json(data, str(path))


def field_of(row: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``row[key]`` checked to be of ``kind``; otherwise one line naming the item and the field."""
    if not isinstance(row, dict):
        raise CbtLlmError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if key not in row:
        raise CbtLlmError(f"{where}: missing field {key!r}")
    value = row[key]
    if not isinstance(value, kind):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise CbtLlmError(f"{where}: field {key!r} should be {names}, got {type(value).__name__}")
    return value


def hub_file(repo_id: str, filename: str, source: Source) -> Path:
    """One file of a Hub dataset repo through ``huggingface_hub`` (cached), recorded in ``source``."""
    from huggingface_hub import hf_hub_download

    from cbt_llm.hub.client import hub_errors

    with hub_errors("download a benchmark file from", repo_id, "dataset"):
        path = Path(hf_hub_download(repo_id, filename, repo_type="dataset"))
    source.add(filename, path.read_bytes())
    return path
