"""Crisis resources (hotlines and emergency numbers) kept as data, shown in cards and chat.

Each entry in ``data/crisis_resources.json`` names its region, language and source. Add an entry only
with a number you can cite; the chat's fixed crisis reply and the cards list them in file order.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

REGION_NAMES = {
    "zh": {"CN": "中国大陆", "HK": "香港", "TW": "台湾", "US": "美国", "INT": "其他地区"},
    "en": {"CN": "Mainland China", "HK": "Hong Kong", "TW": "Taiwan", "US": "US", "INT": "Elsewhere"},
}


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


@functools.lru_cache(maxsize=1)
def _all_resources() -> tuple[CrisisResource, ...]:
    text = (resources.files("cbt_llm") / "data" / "crisis_resources.json").read_text(encoding="utf-8")
    return tuple(CrisisResource(**entry) for entry in json.loads(text))


def crisis_resources(language: str | None = None, region: str | None = None) -> list[CrisisResource]:
    """The bundled resources: all of them, or those in one language and/or one region (``CN``, ``HK`` ...)."""
    return [entry for entry in _all_resources()
            if (language is None or entry.language == language) and (region is None or entry.region == region)]


def format_crisis_resources(language: str = "zh", regions: list[str] | tuple[str, ...] | None = None) -> str:
    """The resources for ``language`` as a bulleted list with region labels, for the chat's replies.

    ``regions`` keeps only those regions (in the file's order). A language with no entries falls back
    to the English list, so there is always something to call. A web address is followed by a space, so
    that no Markdown renderer or terminal takes the region label (a full-width bracket in Chinese) into
    the link.
    """
    entries = crisis_resources(language) or crisis_resources("en")
    if regions:
        entries = [e for e in entries if e.region in regions] or entries
    names = REGION_NAMES.get(language, REGION_NAMES["en"])
    sep = "：" if language == "zh" else ": "
    lines = []
    for entry in entries:
        where = names.get(entry.region, entry.region)
        label = f"（{where}）" if language == "zh" else f" ({where})"
        space = " " if "://" in entry.contact and not label.startswith(" ") else ""
        lines.append(f"- {entry.name}{sep}{entry.contact}{space}{label}")
    return "\n".join(lines)
