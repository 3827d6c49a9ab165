"""Where each record goes: train/validation/test from a hash of its id, and the bundled sample files."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

from cbt_llm.errors import CbtLlmError

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_RATIOS = (0.8, 0.1, 0.1)


def sample_path() -> Path:
    """The bundled sample records (JSON Lines), shipped as package data."""
    return Path(str(resources.files("cbt_llm") / "data" / "sample" / "cbt_qa_sample.jsonl"))


def sample_questions_path() -> Path:
    """A few bundled questions without answers (JSON Lines), for trying the generator."""
    return sample_path().with_name("questions.jsonl")


def check_split_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    """Three non-negative train/validation/test shares that add up to 1."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise CbtLlmError(f"split ratios must be three non-negative numbers adding up to 1, got {ratios}")
    return ratios  # type: ignore[return-value]


def split_of(record_id: str, ratios: tuple[float, float, float] = DEFAULT_SPLIT_RATIOS) -> str:
    """The split of a record, from a SHA-256 of its id: stable across runs, machines and dataset sizes."""
    position = int.from_bytes(hashlib.sha256(record_id.encode("utf-8")).digest()[:8], "big") / 2**64
    if position < ratios[0]:
        return "train"
    if position < ratios[0] + ratios[1]:
        return "validation"
    return "test"


def split_records(records: list[dict[str, Any]], ratios: tuple[float, float, float]) -> dict[str, list[dict]]:
    """Group records by their id-hash split, in file order."""
    by_split: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for record in records:
        by_split[split_of(record["id"], ratios)].append(record)
    return by_split
