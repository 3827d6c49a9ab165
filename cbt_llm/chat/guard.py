"""The chat turn behind a crisis guard: ``respond(history, message, generate) -> Reply``.

Every user turn goes through :func:`cbt_llm.safety.assess_risk` before any model sees it:

* ``crisis``: a fixed, caring reply in the message's language with the crisis resources; ``generate``
  is never called (a model must not improvise here). Someone else in an emergency gets a variant
  that puts the emergency numbers first.
* ``concern``: the model answers with a short safety instruction added to its system prompt
  (:data:`CONCERN_INSTRUCTION`: acknowledge, ask gently and directly about thoughts of suicide or
  self-harm, give no means information), then the resources are appended.
* ``none``: the model's answer as it is.

The risk is read over the last few user turns as well as the newest one
(:func:`cbt_llm.safety.assess_conversation`): a plan told across several messages is caught, and a
crisis in the previous user turn keeps the next turn at least at ``concern``, so the resources stay
in view while the conversation goes on.

``generate`` is any callable that takes the chat messages (system line, trimmed history, user turn)
and returns the answer as a string or as an iterator of text chunks (streaming). :func:`respond_stream`
yields chunks as they come; :func:`respond` is built on it. Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

from cbt_llm.crisis import format_crisis_resources
from cbt_llm.data.prompts import SYSTEM_PROMPTS
from cbt_llm.engine.endpoints import PER_MESSAGE_TOKENS, estimate_tokens
from cbt_llm.errors import CbtLlmError
from cbt_llm.safety import CONTEXT_TURNS, Risk, assess_conversation, detect_language
from cbt_llm.safety.guard import as_text

NOTICE = {
    "zh": (
        "提示：这是一个由AI模型生成回答的心理健康自助工具，内容仅供参考，不能替代专业的心理咨询、诊断或治疗。"
        "如果你有伤害自己的想法或正处于危险中，请立即拨打全国心理援助热线 12356，或报警 110 / 急救 120。"
    ),
    "en": (
        "Note: this is a self-help tool whose answers are written by an AI model. It is not a substitute for "
        "professional counselling, diagnosis or treatment. If you are thinking about hurting yourself or are in "
        "danger, call or text 988 (US), your local emergency number, or find a line at https://findahelpline.com."
    ),
}

CRISIS_REPLY = {
    "zh": (
        "听到你这样说，我真的很担心你。你愿意说出来，这很重要，你不需要一个人扛着这些。\n"
        "如果你有伤害自己的想法，或者已经做了伤害自己的事，请现在就联系能马上帮到你的人：\n"
        "{resources}\n"
        "如果你已经服了药、受了伤，或者觉得自己马上会有危险，请立刻拨打急救电话（中国大陆 120，香港 999，台湾 119）。\n"
        "如果可以，请告诉一个你信任的人你现在的情况，请他/她陪着你；也请先把药物、刀具等可能伤害自己的东西放到远离你的地方。\n"
        "我只是一个AI程序，没办法替你打电话求助，但热线里的人可以陪你度过现在。你愿意现在就联系他们吗？"
    ),
    "en": (
        "I'm really glad you told me, and I'm worried about your safety right now. You don't have to go "
        "through this alone.\n"
        "Please reach out now to someone who can help right away:\n"
        "{resources}\n"
        "If you have already taken something, hurt yourself, or feel you might act on these thoughts soon, call "
        "your local emergency number now (911 in the US).\n"
        "If you can, tell someone you trust what is going on and ask them to stay with you, and put distance "
        "between yourself and anything you could use to hurt yourself.\n"
        "I'm an AI program and can't call anyone for you, but the people on these lines can be with you right "
        "now. Would you be willing to contact one of them now?"
    ),
}

EMERGENCY_REPLY = {
    "zh": (
        "这听起来是紧急情况。如果对方已经服药、受伤、失去意识或随时可能伤害自己，请马上拨打急救电话"
        "（中国大陆 120 或 110，香港 999，台湾 119 或 110），不要等待，也尽量不要让对方一个人待着。\n"
        "{resources}\n"
        "打电话时说清楚地址、对方服了什么或伤在哪里、大概多久以前。把药物、刀具等危险物品拿开。"
        "你也在承受很大的压力，等对方安全以后，也请照顾好自己。"
    ),
    "en": (
        "This sounds like an emergency. If the person has taken something, is injured, unconscious or about to "
        "hurt themselves, call your local emergency number now (911 in the US) and don't wait; try not to leave "
        "them alone.\n"
        "{resources}\n"
        "Tell the dispatcher where you are, what was taken or how they are hurt, and roughly when. Move pills, "
        "blades and other dangerous things out of reach. This is a lot to carry: once they are safe, please look "
        "after yourself too."
    ),
}

CONCERN_FOOTER = {
    "zh": "\n\n——\n如果你或你关心的人感到难以承受、有伤害自己的念头，可以随时联系：\n{resources}",
    "en": (
        "\n\n---\nIf you, or someone you care about, feel overwhelmed or have thoughts of self-harm, "
        "you can reach out any time:\n{resources}"
    ),
}


# Added to the system prompt on a concern turn (the severity policy in cbt_llm.safety.risk). When the rules set the
# crisis wording aside (someone else, a denial, the past: Risk.set_aside), the question is asked about that too.
CONCERN_INSTRUCTION = {
    "zh": (
        "安全提示：用户这条消息可能流露出痛苦或与自杀、自伤有关的内容。请先共情地回应对方的感受；"
        "温和而直接地询问对方现在是否有自杀或伤害自己的想法；不要提供任何关于方法、药物剂量或地点的信息；"
        "鼓励对方联系信任的人或心理援助热线。"
    ),
    "en": (
        "Safety note: the user's message may show distress or touch on suicide or self-harm. Acknowledge their "
        "feelings first; ask gently and directly whether they are having thoughts of suicide or of hurting "
        "themselves; give no information about methods, doses or places; encourage them to reach someone they "
        "trust or a crisis line."
    ),
}
SET_ASIDE_INSTRUCTION = {
    "zh": "如果对方谈的是别人或过去的经历，也请关心对方自己现在是否安全。",
    "en": "If they are talking about someone else or about the past, also ask how they themselves are doing now.",
}


def safety_instruction(language: str, risk: Risk) -> str:
    """The instruction a concern turn adds to the system prompt (``risk`` says whether the rules set wording aside)."""
    language = language if language in CONCERN_INSTRUCTION else "en"
    extra = " " + SET_ASIDE_INSTRUCTION[language] if risk.set_aside else ""
    return CONCERN_INSTRUCTION[language] + extra


def notice(language: str = "zh") -> str:
    """The short not-a-substitute notice the chat shows at the start."""
    return NOTICE.get(language, NOTICE["en"])


def crisis_reply(language: str = "zh", risk: Risk | None = None) -> str:
    """The fixed crisis reply (the emergency variant when only someone else is in danger)."""
    language = language if language in CRISIS_REPLY else "en"
    template = EMERGENCY_REPLY if risk is not None and risk.third_party_only else CRISIS_REPLY
    return template[language].format(resources=format_crisis_resources(language))


def concern_footer(language: str = "zh") -> str:
    """What follows the model's answer on a ``concern`` turn."""
    language = language if language in CONCERN_FOOTER else "en"
    return CONCERN_FOOTER[language].format(resources=format_crisis_resources(language))


# --------------------------------------------------------------------------------------------- history
def trim_history(messages: list[dict], max_tokens: int, count_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """Keep the leading system message(s) and as many of the newest turns as fit in ``max_tokens``.

    The last message (the current user turn) is always kept, even on its own over budget. The kept
    turns never start with an assistant message (chat templates expect a user turn first).
    ``count_tokens`` is any ``str -> int`` (for a tokenizer: ``lambda s: len(tok.encode(s))``);
    the default is :func:`estimate_tokens`.
    """
    if max_tokens <= 0:
        raise CbtLlmError(f"max_tokens must be positive, got {max_tokens}")
    count = count_tokens or estimate_tokens
    messages = list(messages)
    lead = 0
    while lead < len(messages) and messages[lead].get("role") == "system":
        lead += 1
    system, turns = messages[:lead], messages[lead:]
    if not turns:
        return system
    budget = max_tokens - sum(count(m["content"]) + PER_MESSAGE_TOKENS for m in system)
    kept = [turns[-1]]
    budget -= count(turns[-1]["content"]) + PER_MESSAGE_TOKENS
    for message in reversed(turns[:-1]):
        cost = count(message["content"]) + PER_MESSAGE_TOKENS
        if cost > budget:
            break
        kept.append(message)
        budget -= cost
    kept.reverse()
    while len(kept) > 1 and kept[0].get("role") != "user":
        kept.pop(0)
    return system + kept


def _check_history(history: Iterable[dict]) -> list[dict]:
    checked = []
    for i, message in enumerate(history or []):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                or not isinstance(message.get("content"), str):
            raise CbtLlmError(f"history[{i}] must be a dict with role system/user/assistant and text content")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def build_messages(history: Iterable[dict], message: str, language: str = "zh",
                   system_prompt: str | Mapping[str, str] | None = None, max_tokens: int | None = None,
                   count_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """System line + history + the user turn, trimmed to ``max_tokens`` when given.

    A system message at the start of ``history`` wins over ``system_prompt`` (one line, or a line per language:
    a backend's ``system_prompts``, the lines its adapter was trained with); otherwise the counselling system
    line of ``language`` is used.
    """
    history = _check_history(history)
    if isinstance(system_prompt, Mapping):
        system_prompt = system_prompt.get(language)
    if history and history[0]["role"] == "system":
        system, history = history[0], history[1:]
    else:
        system = {"role": "system", "content": system_prompt or SYSTEM_PROMPTS.get(language, SYSTEM_PROMPTS["en"])}
    messages = [system, *[m for m in history if m["role"] != "system"], {"role": "user", "content": message}]
    return trim_history(messages, max_tokens, count_tokens) if max_tokens else messages


# ----------------------------------------------------------------------------------------------- reply
@dataclass(frozen=True)
class Reply:
    """What the chat shows for one user turn."""

    text: str
    risk: Risk
    model_called: bool


class ReplyStream:
    """One turn as a stream of text chunks. The risk is known before the first chunk.

    Iterate it to get the chunks (for a terminal: print each as it comes); afterwards ``text`` holds
    the whole reply. ``reply()`` drains what is left and returns a :class:`Reply`.
    """

    def __init__(self, risk: Risk, language: str, messages: list[dict], generate: Callable):
        self.risk = risk
        self.language = language
        self.messages = messages
        self.model_called = False
        self.text = ""
        self._generate = generate
        self._chunks = self._run()

    def _run(self) -> Iterator[str]:
        if self.risk.level == "crisis":
            yield crisis_reply(self.language, self.risk)
            return
        self.model_called = True
        result = self._generate(self.messages)
        if isinstance(result, str):
            result = [result]
        elif result is None:
            raise CbtLlmError("generate returned None; expected text or an iterator of text chunks")
        for chunk in result:
            if not isinstance(chunk, str):
                raise CbtLlmError(f"generate yielded {type(chunk).__name__}; expected text chunks")
            if chunk:
                yield chunk
        if self.risk.level == "concern":
            yield concern_footer(self.language)

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            self.text += chunk
            yield chunk

    def reply(self) -> Reply:
        for _ in self:
            pass
        return Reply(self.text, self.risk, self.model_called)


def respond_stream(history: Iterable[dict], message: str, generate: Callable, language: str | None = None, *,
                   model_guard: Callable | None = None, system_prompt: str | Mapping[str, str] | None = None,
                   max_tokens: int | None = None, count_tokens: Callable[[str], int] | None = None, lexicon=None,
                   classifier=None, context_turns: int = CONTEXT_TURNS) -> ReplyStream:
    """Assess ``message`` now and return a :class:`ReplyStream` that generates lazily when iterated.

    ``language`` (``zh``/``en``) fixes the reply's language and system line; by default both follow
    the message. ``max_tokens`` trims the history (system line and newest turns kept) before
    ``generate`` sees it. The risk is read over the last ``context_turns`` user turns as well as
    ``message``; ``model_guard``, ``lexicon`` and ``classifier`` are passed to :func:`assess_risk` (a model
    guard can only raise the level). On a concern turn the system line gains :func:`safety_instruction`. A message that is bytes is decoded (bad bytes replaced) before anything else.
    """
    if isinstance(message, (bytes, bytearray)):
        message = as_text(message)[0]
    if not isinstance(message, str) or not message.strip():
        raise CbtLlmError("message must be non-empty text")
    if not callable(generate):
        raise CbtLlmError("generate must be a callable taking the chat messages")
    history = _check_history(history)
    risk = assess_conversation(history, message, turns=context_turns, model_guard=model_guard, lexicon=lexicon,
                               classifier=classifier)
    language = language or detect_language(message)
    messages = build_messages(history, message, language, system_prompt, max_tokens, count_tokens)
    if risk.level == "concern":
        system = messages[0]
        messages[0] = {"role": "system", "content": f"{system['content']}\n\n{safety_instruction(language, risk)}"}
    return ReplyStream(risk, language, messages, generate)


def respond(history: Iterable[dict], message: str, generate: Callable, language: str | None = None, **options) -> Reply:
    """One chat turn behind the crisis guard; see :func:`respond_stream` for the options."""
    return respond_stream(history, message, generate, language, **options).reply()
