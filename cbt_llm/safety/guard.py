"""The layered guard: ``assess_risk(text)`` = rules, then the shipped classifier, then an optional model guard.

Each layer can only raise the level. The rules and the classifier run offline on CPU for every message;
a model guard (a callable, :class:`~cbt_llm.safety.model_guard.OpenAIRiskGuard` or a Qwen3Guard model) is
asked only when the cheaper layers did not already say crisis, and a guard that fails leaves their verdict in
place with a note. :func:`assess_conversation` reads the last few user turns together as well.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.classifier import RiskClassifier, load_classifier
from cbt_llm.safety.lexicon import Lexicon, detect_language
from cbt_llm.safety.risk import RANK, Hit, Risk, RiskLevel, raise_level
from cbt_llm.safety.rules import read_rules

CONTEXT_TURNS = 3  # how many recent user turns assess_conversation reads together


def set_aside_by_rules(risk: Risk) -> bool:
    """True when the rules read crisis wording in ``risk`` as a denial, someone else, the past, a distant topic, a
    title or a game, or the message as a supportive reply: then no other layer raises it past concern
    (:attr:`Risk.set_aside`, the one definition)."""
    return risk.set_aside


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


@dataclass
class GuardRun:
    """One message on its way through the layers: the text, the options, and what earlier layers left."""

    text: str
    lexicon: Lexicon | str | Path | None = None
    classifier: RiskClassifier | str | Path | bool | None = None
    model_guard: Callable | None = None
    prepared: str | None = None  # the rules' normalised text, which the shipped classifier reads too
    notes: tuple = field(default_factory=tuple)


def rules_layer(run: GuardRun, risk: Risk) -> Risk:
    """The lexicon rules (the first layer: its verdict replaces the empty one)."""
    found, norm = read_rules(run.text, run.lexicon)
    run.prepared = norm if run.lexicon is None else None
    return Risk(found.level, (*risk.reasons, *found.reasons), found.language, (*found.notes, *risk.notes),
                (*risk.hits, *found.hits))


def classifier_layer(run: GuardRun, risk: Risk) -> Risk:
    """The learned classifier; capped at concern where the rules set the wording aside."""
    model = _classifier_of(run.classifier)
    if model is None or risk.is_crisis:
        return risk
    level, reason = model.verdict(run.text, risk.language, run.prepared)
    if level == "none":
        return risk
    if level == "crisis" and risk.set_aside:
        level, reason = "concern", f"{reason} (capped: the rules set the wording aside)"
    return raise_level(risk, level, Hit("classifier", reason, RiskLevel(level)))


def model_guard_layer(run: GuardRun, risk: Risk) -> Risk:
    """The optional model guard, asked only below crisis; a failure leaves the verdict with a note."""
    if run.model_guard is None or risk.is_crisis:
        return risk
    try:
        level, reason = _guard_verdict(run.model_guard(run.text))
        if level not in RANK:
            raise CbtLlmError(f"risk judge answered unknown level {level!r}")
    except Exception as err:  # noqa: BLE001 - any guard failure must leave the verdict standing
        return risk.with_notes(f"judge_error: {err}")
    line = f"judge: {reason}" if reason else "judge"
    return raise_level(risk, level, Hit("model_guard", line, RiskLevel(level)))


# Layers by name, run in this order; each sees the verdict so far and may only raise it. A judge model, a second
# classifier or a site's own check is one more entry (``register_layer``).
LAYERS: dict[str, Callable[[GuardRun, Risk], Risk]] = {
    "rules": rules_layer, "classifier": classifier_layer, "model_guard": model_guard_layer}


def register_layer(name: str, layer: Callable[[GuardRun, Risk], Risk]) -> None:
    """Add (or replace) a layer: ``layer(run, risk) -> Risk`` runs after those registered before it."""
    if not callable(layer):
        raise CbtLlmError(f"guard layer {name!r} must be callable")
    LAYERS[name] = layer


def run_layers(text: str | bytes, names: Sequence[str] | None = None, **options) -> Risk:
    """``text`` through the named layers (all registered ones by default); ``options`` fill :class:`GuardRun`."""
    clean, notes = as_text(text)
    run = GuardRun(clean, **options)
    risk = Risk(RiskLevel.NONE, language=detect_language(clean), notes=notes)
    for name in names or list(LAYERS):
        if name not in LAYERS:
            raise CbtLlmError(f"unknown guard layer {name!r}; registered: {', '.join(LAYERS)}")
        risk = LAYERS[name](run, risk)
    return risk


def assess_risk(text: str | bytes, model_guard: Callable | None = None, lexicon: Lexicon | str | Path | None = None,
                classifier: RiskClassifier | str | Path | bool | None = None) -> Risk:
    """Classify one message as none / concern / crisis, with the reasons and the typed hits.

    Every registered layer runs in turn (:data:`LAYERS`): the rules (``lexicon``), the shipped classifier
    (``classifier=None``; a path or a :class:`RiskClassifier` for another model, ``False`` to switch it off),
    which can raise the level when its score passes its tuned threshold (to concern only where the rules
    set the wording aside, :attr:`Risk.set_aside`), and ``model_guard``, an optional second opinion (a
    callable taking the text and returning a level string, a ``{"level", "reason"}`` dict or a :class:`Risk`;
    :class:`OpenAIRiskGuard` and :class:`ServedQwen3Guard` are two), asked only below crisis. A guard that
    fails or answers nonsense leaves the verdict in place, with a note (``judge_error: ...``): the chat must
    not go down because the guard did.
    """
    return run_layers(text, None, model_guard=model_guard, lexicon=lexicon, classifier=classifier)


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
