"""The layered guard: ``assess_risk(text)`` = rules, then the shipped classifier, then an optional model guard.

Each layer can only raise the level. The rules and the classifier run offline on CPU for every message;
a model guard (a callable, :class:`~cbt_llm.safety.model_guard.OpenAIRiskGuard` or a Qwen3Guard model) is
asked only when the cheaper layers did not already say crisis, and a guard that fails leaves their verdict in
place with a note. :func:`assess_conversation` reads the last few user turns together as well.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Sequence

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.classifier import RiskClassifier, load_classifier
from cbt_llm.safety.lexicon import Lexicon
from cbt_llm.safety.risk import RANK, Risk, raise_level
from cbt_llm.safety.rules import assess_lexicon

CONTEXT_TURNS = 3  # how many recent user turns assess_conversation reads together
# the rules' explicit readings of crisis wording (a denial, someone else, the past, a distant topic) and of
# a supportive reply to someone else's post: the classifier, which cannot see them, may raise such a message
# to concern but not to crisis
SET_ASIDE = ("negated(", "third_party(", "past(", "distance(", "cue_third_party(", "reply(")


def set_aside_by_rules(risk: Risk) -> bool:
    """True when the rules read crisis wording in ``risk`` as a denial, someone else, the past or a distant topic,
    or the message as a supportive reply to someone else."""
    return risk.level != "crisis" and any(r.startswith(SET_ASIDE) for r in (*risk.reasons, *risk.notes))


def as_text(message) -> tuple[str, tuple[str, ...]]:
    """``message`` as text for the guard, with a note when it was not clean text.

    Bytes are decoded as UTF-8 with undecodable bytes replaced, and lone surrogates are replaced too,
    so the valid part of a message is still read (a stray byte must not hide a crisis). Anything that
    is neither text nor bytes is an error.
    """
    if isinstance(message, (bytes, bytearray, memoryview)):
        raw = bytes(message)
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - raw.count("\ufffd".encode())
        return text, ((f"not_text: {bad} bytes that are not UTF-8 were replaced",) if bad else ())
    if not isinstance(message, str):
        raise CbtLlmError(f"assess_risk expects text, got {type(message).__name__}")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        clean = message.encode("utf-8", errors="replace").decode("utf-8")
        return clean, ("not_text: unpaired surrogates were replaced",)
    return message, ()


def _guard_verdict(verdict) -> tuple[str, str]:
    if isinstance(verdict, Risk):
        return verdict.level, "; ".join(verdict.reasons)
    if isinstance(verdict, str):
        return verdict.strip().lower(), ""
    if isinstance(verdict, dict):
        reason = verdict.get("reason") or verdict.get("reasons") or ""
        if isinstance(reason, (list, tuple)):
            reason = "; ".join(map(str, reason))
        return str(verdict.get("level", "")).strip().lower(), str(reason)
    level = getattr(verdict, "level", None)
    if level is not None:
        return str(level).strip().lower(), str(getattr(verdict, "reason", "") or "")
    raise CbtLlmError(f"risk judge returned {type(verdict).__name__}; expected a level, a dict or a Risk")


def _classifier_of(classifier) -> RiskClassifier | None:
    if classifier is False:
        return None
    if classifier is None:
        return load_classifier()
    if isinstance(classifier, RiskClassifier):
        return classifier
    return load_classifier(classifier)


def assess_risk(text: str | bytes, model_guard: Callable | None = None, lexicon: Lexicon | str | Path | None = None,
                classifier: RiskClassifier | str | Path | bool | None = None) -> Risk:
    """Classify one message as none / concern / crisis, with the reasons.

    The rules (``lexicon``) run first; the shipped classifier (``classifier=None``; a path or a
    :class:`RiskClassifier` for another model, ``False`` to switch it off) can raise the level when
    its score passes its tuned threshold, to concern only where the rules read the crisis wording as
    a denial, someone else, the past or a distant topic, or the message as a supportive reply (see
    :data:`SET_ASIDE`). ``model_guard`` is an optional second opinion (a callable taking the text and
    returning a level string, a ``{"level", "reason"}`` dict or a :class:`Risk`; :class:`OpenAIRiskGuard`
    and :class:`ServedQwen3Guard` are two), asked only when the level is not already crisis; it can only
    raise the level. A guard that fails or answers nonsense leaves the verdict in place, with a note
    saying so: the chat must not go down because the guard did. (Its verdict keeps the names it has
    always had: the reason ``judge: ...`` and the note ``judge_error: ...``.)
    """
    text, notes = as_text(text)
    risk = assess_lexicon(text, lexicon)
    if notes:
        risk = Risk(risk.level, risk.reasons, risk.language, (*risk.notes, *notes))
    model = _classifier_of(classifier)
    if model is not None and risk.level != "crisis":
        level, reason = model.verdict(text, risk.language)
        if level == "crisis" and set_aside_by_rules(risk):
            level, reason = "concern", f"{reason} (capped: the rules set the wording aside)"
        risk = raise_level(risk, level, reason)
    if model_guard is None or risk.level == "crisis":
        return risk
    try:
        level, reason = _guard_verdict(model_guard(text))
        if level not in RANK:
            raise CbtLlmError(f"risk judge answered unknown level {level!r}")
    except Exception as err:  # noqa: BLE001 - any guard failure must leave the verdict standing
        return Risk(risk.level, risk.reasons, risk.language, (*risk.notes, f"judge_error: {err}"))
    return raise_level(risk, level, f"judge: {reason}".rstrip(": ") if reason else "judge")


@functools.lru_cache(maxsize=256)
def _offline_cached(text: str) -> Risk:
    """The default offline verdict (bundled rules and classifier), remembered: earlier turns recur every turn."""
    return assess_risk(text)


def recent_user_turns(history: Sequence[dict], turns: int = CONTEXT_TURNS) -> list[str]:
    """The contents of the last ``turns`` user messages in ``history`` (oldest first)."""
    found = [m["content"] for m in history if m.get("role") == "user" and isinstance(m.get("content"), str)]
    return found[-turns:] if turns > 0 else []


def assess_conversation(history: Sequence[dict], message: str | bytes, *, turns: int = CONTEXT_TURNS,
                        model_guard: Callable | None = None, **options) -> Risk:
    """The newest message's risk, raised by what the last few user turns say together.

    A plan told across three messages ("I bought rope" / "the garage has a beam" / "tonight") is crisis
    when read as one text even if no single line is. The last ``turns`` user turns joined are assessed
    with the offline layers (``options`` as for :func:`assess_risk`); when the newest message is what
    makes that verdict higher than every earlier turn alone and the earlier turns together, it raises
    the newest one's level (reason ``context: ...``). A crisis already there before the newest message
    (in the previous user turn, or in the earlier turns together) keeps the newest at least at
    ``concern``: the resources stay in view and the fixed crisis reply is not repeated. ``model_guard`` reads
    the newest message only, so one turn costs one guard call.
    """
    risk = assess_risk(message, model_guard=model_guard, **options)
    earlier = recent_user_turns(history, turns - 1) if turns > 1 else []
    if not earlier or risk.level == "crisis":
        return risk
    offline = _offline_cached if not options else functools.partial(assess_risk, **options)
    alone = [offline(turn).level for turn in earlier]
    together = offline("\n".join(earlier)).level if len(earlier) > 1 else alone[0]
    joined = offline("\n".join([*earlier, as_text(message)[0]]))
    if RANK[joined.level] > max(RANK[risk.level], RANK[together], *(RANK[level] for level in alone)):
        risk = raise_level(risk, joined.level, "context: " + "; ".join(joined.reasons[-3:]))
    elif "crisis" in (alone[-1], together):
        risk = raise_level(risk, "concern", "previous_turn: crisis")
    return risk
