"""The verdict type shared by every layer of the guard: :class:`RiskLevel`, typed :class:`Hit` signals, :class:`Risk`.

Severity policy (what each level means, and what the chat does at it):

* ``crisis`` (fixed reply with the crisis resources; the model is not called): active ideation or intent,
  plans, preparations and goodbyes, questions about means, attempts and overdoses, self-harm acts or
  intent, someone in danger now. A passive wish to be dead (活着没意思, never waking up) is at least
  ``concern`` and may be ``crisis``.
* ``concern`` (the model answers with a safety instruction added to its system prompt, and the resources
  follow the reply): distress without a stated wish to die, hopelessness, someone else at risk, a
  first-person denial, past history, a bare topic word with nobody named.
* ``none``: hyperbole (累死了, "this job is killing me"), talk at a distance, other people's stories,
  games and titles, everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cbt_llm.errors import CbtLlmError


class RiskLevel(str, Enum):
    """none < concern < crisis; a ``str`` so that ``risk.level == "crisis"`` and JSON keep working."""

    NONE = "none"
    CONCERN = "concern"
    CRISIS = "crisis"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:  # as its string, so a level finds the same dict entry as its name
        return hash(self.value)

    @property
    def rank(self) -> int:
        return RANK[self.value]

    @classmethod
    def of(cls, level: "str | RiskLevel") -> "RiskLevel":
        """``level`` as a :class:`RiskLevel`; an unknown name is an error naming the three levels."""
        try:
            return cls(str(level).strip().lower())
        except ValueError:
            raise CbtLlmError(f"unknown risk level {level!r}; expected one of {', '.join(LEVELS)}") from None


LEVELS = ("none", "concern", "crisis")
RANK = {level: i for i, level in enumerate(LEVELS)}

# What a hit's kind means: the rules read crisis wording, but not as the writer's risk now. Such a hit never
# makes crisis, and no other layer (classifier, context) may raise a message the rules set aside past concern.
SET_ASIDE_KINDS = frozenset({"negated", "third_party", "past", "distance", "cue_third_party", "reply", "title", "game"})
# kinds seen and noted but weighing nothing: hyperbole, a cue alone, a set-aside cue
NOTE_KINDS = frozenset({"hyperbole", "cue"})


@dataclass(frozen=True)
class Hit:
    """One signal: which layer and rule saw it, at what level, how it was read (``kind``), and where.

    ``kind`` is ``None`` for wording taken at face value, else one of :data:`SET_ASIDE_KINDS`, ``topic``
    (a bare topic word), ``third_party_emergency``, ``escalated``, ``context``, ``previous_turn``, or a
    note kind. ``span`` is in the normalised text (``(-1, -1)`` when the layer has none).
    """

    layer: str
    rule: str
    level: RiskLevel
    kind: str | None = None
    span: tuple[int, int] = (-1, -1)
    text: str = ""

    @property
    def set_aside(self) -> bool:
        return self.kind in SET_ASIDE_KINDS

    def label(self) -> str:
        """The human-readable reason line: ``rule: text`` or ``kind(rule): text``."""
        head = self.rule if self.kind is None else f"{self.kind}({self.rule})"
        return f"{head}: {self.text}" if self.text else head


@dataclass(frozen=True)
class Risk:
    """The verdict on one message.

    ``level`` is a :class:`RiskLevel` (equal to its string). ``hits`` are the typed signals behind it and
    those set aside; ``reasons`` are the lines for people (``"<rule>: <matched text>"``, prefixed with a
    kind when the rules read it otherwise: ``third_party(...)``, ``negated(...)``, ``topic(...)``, ``past(...)``);
    ``notes`` are signals seen and set aside (hyperbole, distance, titles, games, a failed guard).
    """

    level: RiskLevel
    reasons: tuple[str, ...] = ()
    language: str = "en"
    notes: tuple[str, ...] = ()
    hits: tuple[Hit, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "level", RiskLevel.of(self.level))

    @property
    def is_crisis(self) -> bool:
        return self.level is RiskLevel.CRISIS

    @property
    def set_aside(self) -> bool:
        """True when the rules read crisis wording here as not the writer's risk now (:data:`SET_ASIDE_KINDS`):
        the one definition the guard, the classifier's cap, the trainer and the chat use."""
        return self.level is not RiskLevel.CRISIS and any(h.set_aside for h in self.hits)

    @property
    def third_party_only(self) -> bool:
        """True when every crisis signal is about someone else in an emergency (not the writer)."""
        crisis = [h for h in self.hits if h.level is RiskLevel.CRISIS]
        return bool(crisis) and all(h.kind == "third_party_emergency" for h in crisis)

    def with_notes(self, *notes: str) -> "Risk":
        return Risk(self.level, self.reasons, self.language, (*self.notes, *notes), self.hits)


def raise_level(risk: Risk, level: "str | RiskLevel", reason: "str | Hit") -> Risk:
    """``risk`` at ``level`` if that is higher (never lower), with ``reason`` (a line or a :class:`Hit`) added."""
    level = RiskLevel.of(level)
    if level.rank <= risk.level.rank:
        return risk
    hit = reason if isinstance(reason, Hit) else Hit("guard", str(reason).split(":")[0], level, text="")
    line = reason.label() if isinstance(reason, Hit) else str(reason)
    return Risk(level, (*risk.reasons, line), risk.language, risk.notes, (*risk.hits, hit))
