"""Crisis resources (hotlines and emergency numbers) kept as data, shown in cards and chat."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class CrisisResource:
    """One place to get help now, with where the entry comes from."""

    region: str
    language: str
    name: str
    contact: str
    source: str

    def __str__(self) -> str:
        return f"{self.name}: {self.contact}"


def crisis_resources(language: str | None = None) -> list[CrisisResource]:
    """The bundled resources, all of them or those in one language."""
    text = (resources.files("cbt_llm") / "data" / "crisis_resources.json").read_text(encoding="utf-8")
    entries = [CrisisResource(**entry) for entry in json.loads(text)]
    return [entry for entry in entries if language is None or entry.language == language]
