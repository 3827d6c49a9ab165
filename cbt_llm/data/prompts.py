"""The CBT prompts: the five steps, the teacher prompts (paper and structured, zh and en) and the system line.

Every prompt carries a version id that generation stores with each record, so a dataset says
exactly which wording produced it. Templates are Jinja text with ``{{ question }}`` and
``{{ description }}``; users can pass their own template file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cbt_llm.errors import CbtLlmError


@dataclass(frozen=True)
class CbtStep:
    """One of the five CBT steps, with the record key used for it in ``steps``."""

    key: str
    name_en: str
    name_zh: str
    goal_en: str
    goal_zh: str


CBT_STEPS: tuple[CbtStep, ...] = (
    CbtStep(
        "validation",
        "Validation and empathy",
        "验证与共情",
        "show that you understand and sympathise with the asker's feelings, and create a sense of safety",
        "表达对来访者处境和感受的理解与共情，让对方感到被接纳、安全",
    ),
    CbtStep(
        "key_thought",
        "Identify key thought or belief",
        "识别关键思维或信念",
        "find the automatic thought, cognitive distortion or core belief most likely behind the distress",
        "找出困扰背后最可能的自动思维、认知扭曲或核心信念，并温和地指出来",
    ),
    CbtStep(
        "challenge",
        "Pose challenge or reflection",
        "提出挑战或反思",
        "ask open questions that invite the asker to examine and reconsider that thought",
        "提出开放式问题，邀请来访者检验证据、换个角度重新审视这个想法",
    ),
    CbtStep(
        "strategy",
        "Provide strategy or insight",
        "提供策略或见解",
        "offer practical, concrete strategies that fit the asker's situation",
        "结合来访者的具体情况，给出切实可行的策略或新的理解",
    ),
    CbtStep(
        "encouragement",
        "Encouragement and foresight",
        "鼓励与展望",
        "encourage trying the strategies, note that this is a beginning, and that further support can help",
        "鼓励来访者尝试这些方法，说明改变是一个开始、需要时间，必要时可以寻求更多支持",
    ),
)
STEP_KEYS: tuple[str, ...] = tuple(step.key for step in CBT_STEPS)
LANGUAGES = ("zh", "en")

# The counselling system line used for fine-tuning, verbatim from the CBT-LLM paper.
SYSTEM_PROMPT_ZH = "你是一名经验丰富的心理咨询师,专长于认知行为疗法, 以心理咨询师的身份回答以下问题。"
SYSTEM_PROMPT_EN = (
    "You are an experienced psychological counsellor who specialises in cognitive behavioural "
    "therapy. Answer the following question as a counsellor."
)
SYSTEM_PROMPTS = {"zh": SYSTEM_PROMPT_ZH, "en": SYSTEM_PROMPT_EN}


def _steps_list(language: str) -> str:
    if language == "zh":
        return "\n".join(f"{i}. {s.name_zh}：{s.goal_zh}。" for i, s in enumerate(CBT_STEPS, 1))
    return "\n".join(f"{i}. {s.name_en}: {s.goal_en}." for i, s in enumerate(CBT_STEPS, 1))


_INTRO = {
    "zh": (
        "你是一名经验丰富的心理咨询师，擅长认知行为疗法（CBT）。下面是一位来访者在心理咨询平台上的提问。"
        "请以心理咨询师的身份，写一篇流畅、自然、温暖的回答，回答要依次贯穿认知行为疗法的五个步骤：\n"
    ),
    "en": (
        "You are an experienced psychological counsellor who specialises in cognitive behavioural therapy "
        "(CBT). Below is a question someone posted on a mental-health support platform. Write one fluent, "
        "natural and warm answer as their counsellor that walks through the five steps of CBT in order:\n"
    ),
}
_FLUENT_RULE = {
    "zh": "请把五个步骤自然地融合成一篇连贯的回答，不要写出步骤编号或小标题，不要做诊断，也不要推荐药物。\n",
    "en": (
        "Weave the five steps into one coherent answer without step numbers or headings; do not diagnose "
        "and do not recommend medication.\n"
    ),
}
_JSON_SHAPE = "{" + ", ".join(f'"{key}": "..."' for key in STEP_KEYS) + ', "response": "..."}'
_JSON_RULE = {
    "zh": (
        "请只输出一个 JSON 对象，不要输出其他内容。对象包含六个字符串字段："
        + "、".join(f"{s.key}（{s.name_zh}）" for s in CBT_STEPS)
        + "，以及 response：把五段内容按顺序连成一篇流畅的完整回答（不写步骤编号或小标题）。"
        f"不要做诊断，也不要推荐药物。格式：\n{_JSON_SHAPE}\n"
    ),
    "en": (
        "Reply with one JSON object and nothing else. It has six string fields: "
        + ", ".join(f"{s.key} ({s.name_en})" for s in CBT_STEPS)
        + ", and response: the five parts joined, in order, into one fluent answer without step numbers "
        f"or headings. Do not diagnose and do not recommend medication. Shape:\n{_JSON_SHAPE}\n"
    ),
}
_QUESTION_BLOCK = {
    "zh": "\n问题：{{ question }}\n{% if description %}描述：{{ description }}\n{% endif %}",
    "en": "\nQuestion: {{ question }}\n{% if description %}Description: {{ description }}\n{% endif %}",
}


def _teacher_prompt(language: str, rule: dict[str, str]) -> str:
    return _INTRO[language] + _steps_list(language) + "\n" + rule[language] + _QUESTION_BLOCK[language]


BUILTIN_PROMPTS = ("paper", "structured")


@dataclass(frozen=True)
class PromptTemplate:
    """A teacher prompt: a Jinja template over ``question`` and ``description`` plus its version id."""

    name: str
    language: str
    version: str
    template: str
    structured: bool = False

    def render(self, question: str, description: str = "") -> str:
        """Fill in one question; an empty description leaves its line out of the built-in prompts."""
        return _compile(self.template).render(question=question, description=description)


def _compile(template: str):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template)


def get_prompt(spec: str = "paper", language: str = "zh", structured: bool = False) -> PromptTemplate:
    """Return a built-in prompt (``paper`` or ``structured``) or load a template file.

    A file's version id is ``custom-`` plus a hash of its text, so editing the file changes the id.
    ``structured`` marks a custom file as asking for the JSON shape of the structured prompt.
    """
    if language not in LANGUAGES:
        raise CbtLlmError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    if spec == "paper":
        return PromptTemplate("paper", language, f"paper-{language}-v1", _teacher_prompt(language, _FLUENT_RULE))
    if spec == "structured":
        template = _teacher_prompt(language, _JSON_RULE)
        return PromptTemplate("structured", language, f"structured-{language}-v1", template, structured=True)
    return load_prompt_file(spec, language, structured)


def load_prompt_file(path: str | Path, language: str = "zh", structured: bool = False) -> PromptTemplate:
    """Read a user's Jinja prompt file and check that it uses ``{{ question }}``."""
    import jinja2
    from jinja2 import meta

    path = Path(path)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no such prompt file (built-in prompts: {', '.join(BUILTIN_PROMPTS)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CbtLlmError(f"{path}: prompt file is not valid UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        names = meta.find_undeclared_variables(jinja2.Environment().parse(text))
    except jinja2.TemplateSyntaxError as err:
        raise CbtLlmError(f"{path}:{err.lineno}: prompt template syntax error: {err.message}") from None
    if "question" not in names:
        raise CbtLlmError(f"{path}: prompt template never uses {{{{ question }}}}")
    unknown = sorted(names - {"question", "description"})
    if unknown:
        raise CbtLlmError(f"{path}: prompt template uses unknown variables: {', '.join(unknown)}")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return PromptTemplate(path.stem, language, f"custom-{digest}", text, structured)


def builtin_prompt_by_version(version: str) -> PromptTemplate | None:
    """Find the built-in prompt that has this version id, to quote it in a dataset card."""
    for name in BUILTIN_PROMPTS:
        for language in LANGUAGES:
            prompt = get_prompt(name, language)
            if prompt.version == version:
                return prompt
    return None


def user_message(question: str, description: str = "") -> str:
    """The user turn shown to the fine-tuned model: the question, then the description if any."""
    return f"{question}\n{description}" if description else question


def chat_prompt(question: str, description: str = "", system_prompt: str = SYSTEM_PROMPT_ZH) -> list[dict]:
    """System line plus user turn, as conversational messages (the ``prompt`` of the ``sft`` config)."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_message(question, description)},
    ]


# The fixed taxonomy for ``distortions`` labels (Beck/Burns); the card shows the names.
COGNITIVE_DISTORTIONS: dict[str, tuple[str, str]] = {
    "all_or_nothing": ("All-or-nothing thinking", "非黑即白"),
    "overgeneralization": ("Overgeneralisation", "以偏概全"),
    "mental_filter": ("Mental filter", "心理过滤"),
    "disqualifying_positive": ("Disqualifying the positive", "否定积极面"),
    "mind_reading": ("Mind reading", "读心术"),
    "fortune_telling": ("Fortune telling", "预言未来"),
    "catastrophizing": ("Catastrophising", "灾难化"),
    "emotional_reasoning": ("Emotional reasoning", "情绪化推理"),
    "should_statements": ("Should statements", "“应该”思维"),
    "labeling": ("Labelling", "贴标签"),
    "personalization": ("Personalisation", "个人化"),
}
