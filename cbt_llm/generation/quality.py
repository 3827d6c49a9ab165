"""Quality checks for generated CBT answers.

``check_answer`` decides whether a teacher answer is kept: non-empty, not a refusal, in the
expected language, within length bounds, and walking through the five CBT steps in order. In
free-text mode the step detector of ``cbt_llm.steps`` finds the steps in fluent text; in structured
mode each JSON field is checked on its own. Near-duplicate answers are found by
``cbt_llm.generation.dedup``. Pure Python; no model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cbt_llm.data.prompts import STEP_KEYS
from cbt_llm.engine.endpoints import json_object
from cbt_llm.steps import detect_steps, language_share

_REFUSAL = re.compile(
    r"作为(一个|一名)?(AI|人工智能|语言模型|AI助手)|我(只)?是(一个)?(AI|人工智能|语言模型)|"
    r"(抱歉|对不起)[，,]?\s*我(无法|不能)(回答|提供|帮助|协助)|我无法(回答|提供)(这个|此类|该)|"
    r"\bas an ai\b|\bas a language model\b|\bi(?:'m| am) (?:just )?an ai\b|"
    r"\bi(?:'m| am) sorry,? but i (?:can(?:'|no)t|am unable to)\b|\bi (?:can(?:'|no)t|am unable to) "
    r"(?:help|assist|provide|answer) (?:with )?(?:this|that)\b",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*(#{1,6}\s|(步骤|第[一二三四五12345]步|step\s*\d)[：:\s])", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class QualityConfig:
    """Bounds for ``check_answer``; lengths are characters for zh and words for en."""

    min_length_zh: int = 200
    max_length_zh: int = 4000
    min_length_en: int = 120
    max_length_en: int = 2000
    min_step_length: int = 8
    min_language_share: float = 0.6


DEFAULT_QUALITY = QualityConfig()


@dataclass
class QualityResult:
    """The verdict on one answer: ``ok`` plus the reasons it failed, and the parsed steps."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    response: str = ""
    steps: dict[str, str] = field(default_factory=lambda: {key: "" for key in STEP_KEYS})

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _length(text: str, language: str) -> int:
    return len(re.sub(r"\s+", "", text)) if language == "zh" else len(text.split())


def _common_checks(text: str, language: str, config: QualityConfig) -> list[str]:
    reasons = []
    if not text.strip():
        return ["empty answer"]
    head = text[:300]
    if _REFUSAL.search(head) or (_length(text, language) < 2 * _min_length(language, config) and _REFUSAL.search(text)):
        reasons.append("refusal")
    share = language_share(text, language)
    if share < config.min_language_share:
        reasons.append(f"wrong language (only {share:.0%} {language})")
    length = _length(text, language)
    unit = "chars" if language == "zh" else "words"
    if length < _min_length(language, config):
        reasons.append(f"too short ({length} < {_min_length(language, config)} {unit})")
    maximum = config.max_length_zh if language == "zh" else config.max_length_en
    if length > maximum:
        reasons.append(f"too long ({length} > {maximum} {unit})")
    return reasons


def _min_length(language: str, config: QualityConfig) -> int:
    return config.min_length_zh if language == "zh" else config.min_length_en


def check_answer(text: str, language: str = "zh", structured: bool = False, finish_reason: str | None = None,
                 config: QualityConfig = DEFAULT_QUALITY) -> QualityResult:
    """Check one teacher answer; structured answers are parsed from JSON into ``steps`` and ``response``."""
    text = text or ""
    reasons: list[str] = []
    if finish_reason == "length":
        reasons.append("cut off (finish_reason=length; raise --max_new_tokens)")
    if structured:
        steps, response, parse_reasons = parse_structured(text)
        if parse_reasons:
            return QualityResult(False, reasons + parse_reasons, text.strip())
        for key in STEP_KEYS:
            value = steps[key]
            if not value:
                reasons.append(f"step {key} empty")
            elif _length(value, language) < (config.min_step_length if language == "zh" else 3):
                reasons.append(f"step {key} too short")
            elif language_share(value, language) < config.min_language_share:
                reasons.append(f"step {key} in the wrong language")
        reasons += _common_checks(response, language, config)
        return QualityResult(not reasons, reasons, response, steps)
    response = text.strip()
    reasons += _common_checks(response, language, config)
    if response and "refusal" not in reasons:
        detection = detect_steps(response, language)
        if detection.missing:
            reasons.append("missing steps: " + ", ".join(detection.missing))
        elif not detection.in_order:
            reasons.append("steps out of order")
    return QualityResult(not reasons, reasons, response)


def parse_structured(text: str) -> tuple[dict[str, str], str, list[str]]:
    """Read the structured prompt's JSON object (code fences and chatter allowed) into steps and response."""
    empty = {key: "" for key in STEP_KEYS}
    obj = json_object(text)
    if obj is None:
        return empty, "", ["structured answer is not a JSON object"]
    steps = {}
    for key in STEP_KEYS:
        value = obj.get(key, "")
        steps[key] = value.strip() if isinstance(value, str) else ""
    response = obj.get("response")
    if not isinstance(response, str) or not response.strip():
        response = "\n\n".join(steps[key] for key in STEP_KEYS if steps[key])
    return steps, response.strip(), []
