"""What every card shares: where its Jinja template is, and the one helper that splices a marked section."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_LINE_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")


def template_path(folder: str, name: str) -> Path:
    """A card template: package data in an installed wheel, the top-level folder in a source checkout."""
    packaged = resources.files("cbt_llm") / folder / name
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / folder / name
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(f"card template {folder}/{name} is missing from the cbt_llm installation")


def replace_section(text: str, section: str, start: str, end: str, before: str | None = None) -> str:
    """``text`` with ``section`` (which begins with the marker ``start`` and ends with ``end``) in place.

    A section already between the markers is replaced, so editing a card twice gives one section; a
    new one goes in front of ``before`` (a heading, with its leading newline) when the text has it,
    else at the end.
    """
    if start in text and end in text:
        return text[:text.index(start)] + section + text[text.index(end) + len(end):]
    if before and before in text:
        return text.replace(before, f"\n{section}\n{before}", 1)
    return f"{text.rstrip()}\n\n{section}\n"


def table_cell(value: object) -> str:
    """``value`` as the text of one Markdown table cell: ``|`` escaped and line breaks made spaces, so that a
    system name, model name or label cannot split its row or end the table (GFM reads ``\\|`` as ``|``, in
    code spans too)."""
    return _LINE_BREAKS.sub(" ", str(value)).replace("|", "\\|")
