"""The verdict type shared by every layer of the guard: levels none < concern < crisis, and :class:`Risk`."""

from __future__ import annotations

from dataclasses import dataclass

from cbt_llm.errors import CbtLlmError

LEVELS = ("none", "concern", "crisis")
RANK = {level: i for i, level in enumerate(LEVELS)}


@dataclass(frozen=True)
class Risk:
    """The verdict on one message.

    ``reasons`` are the signals behind the level, as ``"<rule>: <matched text>"`` with a prefix when a
    rule changed the weight (``third_party(...)``, ``third_party_emergency(...)``, ``negated(...)``,
    ``topic(...)``, ``past(...)``, ``judge``). ``notes`` are signals that were seen and set aside
    (hyperbole, distance, negated concern), for reviewing the lexicon.
    """

    level: str
    reasons: tuple[str, ...] = ()
    language: str = "en"
    notes: tuple[str, ...] = ()

    @property
    def is_crisis(self) -> bool:
        return self.level == "crisis"

    @property
    def third_party_only(self) -> bool:
        """True when every crisis reason is about someone else in an emergency (not the writer)."""
        crisis = [r for r in self.reasons if not r.startswith(("third_party(", "negated(", "topic(", "past("))]
        return bool(crisis) and all(r.startswith("third_party_emergency(") for r in crisis)


def raise_level(risk: Risk, level: str, reason: str) -> Risk:
    """``risk`` at ``level`` if that is higher (never lower), with ``reason`` added."""
    if level not in RANK:
        raise CbtLlmError(f"unknown risk level {level!r}; expected one of {', '.join(LEVELS)}")
    if RANK[level] <= RANK[risk.level]:
        return risk
    return Risk(level, (*risk.reasons, reason), risk.language, risk.notes)

