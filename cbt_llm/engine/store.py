"""The JSON Lines file every resumable stage writes: one line per id, crash-safe and resumable.

``JsonlStore.open(retry=ids)`` reads what is there, drops a torn last line, unreadable lines,
duplicate ids (keeping the best status) and the ``failed`` lines about to be retried, by writing
the kept lines to a temporary file that atomically replaces the output. Then ``append`` writes
each new record as one line with a single ``write`` call, so a kill never leaves half a record
that a resume would keep, and an id never appears twice.

A file that is not such output (a README, a JSON array, a CSV: its first line is not a JSON
object, or most of its lines are not records with an id) is refused, never rewritten; a crash
leaves at most a torn last line and the odd bad line, which are repaired. A file ``open`` created
is removed again when nothing was appended to it (a run stopped by a bad key leaves no empty file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cbt_llm.errors import CbtLlmError

STATUS_RANK = {"failed": 0, "rejected": 1, "ok": 2}


def utc_now() -> str:
    """A record timestamp: UTC, to the second, ISO 8601."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ResumeState:
    """What an existing output file held when the run started."""

    records: dict[str, dict] = field(default_factory=dict)
    torn_tail: bool = False
    bad_lines: int = 0
    duplicates: int = 0
    retried_failed: int = 0
    lines: int = 0  # complete, non-blank lines read (records, duplicates and bad lines)


class JsonlStore:
    """An append-only JSON Lines file with one line per id (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._created = self._appended = False

    def read(self, strict: bool = False) -> ResumeState:
        """What the file holds (nothing when it does not exist); with ``strict``, a file that does not
        look like this output (see the module docstring) is refused with a one-line ``CbtLlmError``."""
        state = ResumeState()
        if not self.path.exists():
            return state
        if self.path.is_dir():
            raise CbtLlmError(f"{self.path}: is a directory, expected an output .jsonl file")
        lines = self.path.read_bytes().split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline; else the last write was cut off
        state.torn_tail = tail != b""
        lines = [raw for raw in lines if raw.strip()]
        state.lines = len(lines)
        for raw in lines:
            record = _record(raw)
            if record is None:
                state.bad_lines += 1
                continue
            previous = state.records.get(record["id"])
            if previous is not None:
                state.duplicates += 1
                if STATUS_RANK.get(previous.get("status"), 0) > STATUS_RANK.get(record.get("status"), 0):
                    continue
            state.records[record["id"]] = record
        if strict:
            self._refuse_other_files(lines[0] if lines else tail, state)
        return state

    def _refuse_other_files(self, first: bytes, state: ResumeState) -> None:
        """Raise when the file is not this kind of output: its first line is not a JSON object (a torn
        only line: does not start like one), or more of its lines are unreadable than readable."""
        if state.lines:
            try:
                first_is_object = isinstance(json.loads(first), dict)
            except ValueError:
                first_is_object = False
        else:
            first_is_object = not first.strip() or first.lstrip().startswith(b"{")
        if not first_is_object:
            why = "its first line is not a JSON object"
        elif state.bad_lines > state.lines - state.bad_lines:
            why = f"{state.bad_lines} of its {state.lines} lines are not JSON records with an id"
        else:
            return
        raise CbtLlmError(f"{self.path}: exists and is not a JSON Lines output file ({why}); not touching it: "
                          "choose another --output_file, or move this file away")

    def open(self, retry: set[str] | None = None,
             check: Callable[[dict[str, dict]], None] | None = None) -> ResumeState:
        """Repair and compact the file for resuming, then open it for appending; ``check`` sees the records
        first and may refuse the file (raise) before anything in it is changed."""
        state = self.read(strict=True)
        if check is not None:
            check(state.records)
        retry = retry or set()
        to_retry = {i for i, r in state.records.items() if r.get("status") == "failed" and i in retry}
        state.retried_failed = len(to_retry)
        for record_id in to_retry:
            del state.records[record_id]
        if state.torn_tail or state.bad_lines or state.duplicates or to_retry:
            self._rewrite(state.records.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return state

    def _rewrite(self, records) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            for record in records:
                f.write(_line(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def append(self, record: dict) -> None:
        """Write one record as one line, with a single ``write`` call."""
        self._appended = True
        data = _line(record)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
            if self._created and not self._appended:
                self.path.unlink(missing_ok=True)  # made by open and left empty: leave nothing behind

    def __enter__(self) -> "JsonlStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _record(raw: bytes) -> dict | None:
    """One line as a record with a string ``id``, or None when it is not one."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("id"), str) else None


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_stale_temp_files(path: Path) -> None:
    """Remove temporary files left by a compaction that was killed before its ``os.replace``."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or not _alive(pid):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
