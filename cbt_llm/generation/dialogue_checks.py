"""The checks every generated CBT dialogue passes before it is kept: ``check_dialogue(messages, language)``.

Roles alternate, the client first and the counsellor last; the number of rounds and each turn's length
are within bounds; the counsellor asks before advising (a question in the first turn, no advice block in
the first rounds, and a share of turns that ask); the five CBT steps are covered across the counsellor's
turns (``cbt_llm.steps.detect_steps`` on each turn); no AI meta-talk; one language. The crisis guard
(``cbt_llm.safety.assess_risk``) reads every client turn: a dialogue whose client reaches crisis is kept
only when the next counsellor turn follows the crisis protocol (crisis resources, no therapy as usual),
and then it may end there, short of the rounds and steps of a session. Pure Python; no model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cbt_llm.crisis import crisis_resources
from cbt_llm.data.prompts import STEP_KEYS
from cbt_llm.steps import asks, detect_steps, language_share, steps_covered

_META = re.compile(
    r"作为(一个|一名)?(AI|人工智能|语言模型|AI助手)|我(只)?是(一个)?(AI|人工智能|语言模型|程序)|人工智能助手|角色扮演|"
    r"扮演(来访者|咨询师|心理咨询师)|模拟(的)?(对话|咨询)|\[END\]|"
    r"\bas an ai\b|\blanguage model\b|\bi(?:'m| am) (?:just )?an ai\b|\brole[- ]?play|\bsimulated (?:session|dialogue)",
    re.IGNORECASE,
)
# Where help is right now: a hotline or emergency number (the bundled resources' numbers count too).
_RESOURCE = re.compile(r"热线|急救|报警|紧急|危机干预|110|120|hotline|helpline|emergency|crisis line|988|911|999",
                       re.IGNORECASE)
# Therapy as usual: the techniques and homework a crisis reply must leave for later.
_AS_USUAL = re.compile(r"行为实验|想法记录|作业|检验(一下)?证据|认知扭曲|灾难化|非黑即白|活动安排|"
                       r"behaviou?ral experiment|thought record|homework|cognitive distortion|catastrophi|"
                       r"examine the evidence|activity schedul", re.IGNORECASE)


@dataclass(frozen=True)
class DialogueCheckConfig:
    """Bounds of ``check_dialogue``; lengths are characters for zh and words for en."""

    min_rounds: int = 3
    max_rounds: int = 12
    max_turn_zh: int = 260
    max_turn_en: int = 160
    min_question_share: float = 0.4
    ask_first_rounds: int = 1  # the counsellor's first N turns give no advice block
    min_language_share: float = 0.6


DEFAULT_DIALOGUE_CHECK = DialogueCheckConfig()


@dataclass
class DialogueCheck:
    """The verdict on one dialogue and the figures the summary and the card report."""

    reasons: list[str] = field(default_factory=list)
    rounds: int = 0
    question_share: float = 0.0
    steps: list[str] = field(default_factory=list)
    crisis_turn: int | None = None

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def figures(self) -> dict[str, Any]:
        """What a record keeps in ``checks``."""
        return {"rounds": self.rounds, "question_share": round(self.question_share, 3), "steps": self.steps,
                "crisis_turn": self.crisis_turn}


def _length(text: str, language: str) -> int:
    return len(re.sub(r"\s+", "", text)) if language == "zh" else len(text.split())


def role_reasons(messages: list[dict[str, str]]) -> list[str]:
    """Who speaks when: only client and counsellor turns, the client first and the counsellor last, alternating."""
    roles = [m.get("role") for m in messages]
    if not roles:
        return ["no turns"]
    reasons = []
    if roles[0] != "user":
        reasons.append("client does not speak first")
    if roles[-1] != "assistant":
        reasons.append("counsellor does not speak last")
    stray = next((i for i, r in enumerate(roles) if r not in ("user", "assistant")), None)
    if stray is not None:
        reasons.append(f"turn {stray + 1} has role {roles[stray]!r}")
    repeat = next((i for i in range(1, len(roles)) if roles[i] == roles[i - 1]), None)
    if repeat is not None:
        reasons.append(f"roles do not alternate (turn {repeat + 1})")
    return reasons


def crisis_reasons(messages: list[dict[str, str]], language: str) -> tuple[list[str], int | None]:
    """The crisis guard on every client turn; the first crisis turn's number (1-based) and, when the next
    counsellor turn does not follow the crisis protocol, why."""
    from cbt_llm.safety import assess_risk

    numbers = [r.contact for r in crisis_resources()]
    for i, turn in enumerate(messages):
        if turn["role"] != "user" or assess_risk(turn["content"]).level != "crisis":
            continue
        reply = messages[i + 1]["content"] if i + 1 < len(messages) and messages[i + 1]["role"] == "assistant" else ""
        missing = [] if reply and (_RESOURCE.search(reply) or any(n in reply for n in numbers)) else ["no crisis resources"]
        as_usual = ["therapy as usual"] if _AS_USUAL.search(reply) else []
        if missing or as_usual:
            return [f"crisis in client turn {i + 1} not answered with the crisis protocol "
                    f"({', '.join(missing + as_usual)})"], i + 1
        return [], i + 1
    return [], None


def _advises(text: str, language: str) -> bool:
    """An advice block: the turn offers strategies, or walks through three or more steps at once."""
    found = detect_steps(text, language)
    return found.present["strategy"] or found.count >= 3


def _asking_reasons(counsellor: list[str], language: str, config: DialogueCheckConfig) -> tuple[list[str], float]:
    """The counsellor asks before advising: a question in turn 1, no advice block early, enough questions."""
    reasons = []
    asked = [asks(text) for text in counsellor]
    share = sum(asked) / len(asked) if asked else 0.0
    if counsellor and not asked[0]:
        reasons.append("counsellor does not ask in its first turn")
    lecture = next((i for i, text in enumerate(counsellor[:config.ask_first_rounds]) if _advises(text, language)),
                   None)
    if lecture is not None:
        reasons.append(f"counsellor lectures in turn {lecture + 1} (advice before asking)")
    if counsellor and share < config.min_question_share:
        reasons.append(f"counsellor asks in too few turns ({share:.0%} < {config.min_question_share:.0%})")
    return reasons, share


def _text_reasons(messages: list[dict[str, str]], language: str, config: DialogueCheckConfig,
                  crisis_reply: int | None = None) -> list[str]:
    """Lengths, meta-talk and language, turn by turn; the reply to a crisis turn (number ``crisis_reply``) may be
    longer: it lists the crisis resources."""
    reasons = []
    limit = config.max_turn_zh if language == "zh" else config.max_turn_en
    unit = "chars" if language == "zh" else "words"
    for i, turn in enumerate(messages, 1):
        text = turn.get("content") or ""
        if not text.strip():
            reasons.append(f"turn {i} is empty")
        elif turn.get("role") == "assistant" and i != crisis_reply and _length(text, language) > limit:
            reasons.append(f"counsellor turn {i} too long ({_length(text, language)} > {limit} {unit})")
        if _META.search(text):
            reasons.append(f"AI meta-talk in turn {i}")
    whole = "\n".join(m.get("content") or "" for m in messages)
    share = language_share(whole, language)
    if whole.strip() and share < config.min_language_share:
        reasons.append(f"wrong language (only {share:.0%} {language})")
    return reasons


def check_dialogue(messages: list[dict[str, str]], language: str = "zh",
                   config: DialogueCheckConfig = DEFAULT_DIALOGUE_CHECK) -> DialogueCheck:
    """Check one dialogue's turns (user = client, assistant = counsellor; no system turn), see the module docstring."""
    check = DialogueCheck(reasons=role_reasons(messages))
    counsellor = [m["content"] for m in messages if m.get("role") == "assistant" and m.get("content")]
    check.rounds = len(counsellor)
    crisis, check.crisis_turn = crisis_reasons(messages, language)
    ended_in_crisis = check.crisis_turn is not None and not crisis and check.crisis_turn + 1 == len(messages)
    if not ended_in_crisis and not config.min_rounds <= check.rounds <= config.max_rounds:
        check.reasons.append(f"{check.rounds} rounds, outside {config.min_rounds}-{config.max_rounds}")
    asking, check.question_share = _asking_reasons(counsellor, language, config)
    check.steps = steps_covered(counsellor, language)
    if not ended_in_crisis:
        check.reasons += asking
        if len(check.steps) < len(STEP_KEYS):
            check.reasons.append("steps not covered: " + ", ".join(k for k in STEP_KEYS if k not in check.steps))
    crisis_reply = None if check.crisis_turn is None else check.crisis_turn + 1
    check.reasons += _text_reasons(messages, language, config, crisis_reply) + crisis
    return check
