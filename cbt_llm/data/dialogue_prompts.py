"""The multi-turn prompts: a CBT case plan, the client simulator, the counsellor, and the rewrite of one answer.

``simulate`` asks for a plan first, then lets a client simulator (speaking from the question and
description as its intake) and a counsellor (following the plan through the five CBT steps) take
turns; ``rewrite`` turns one single-turn CBT answer into a dialogue with one request. Every prompt is
zh and en and carries a version id that each dialogue record stores, as the single-turn prompts do.
Templates are Jinja text; rendering imports jinja2 only when called.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cbt_llm.data.prompts import CBT_STEPS, COGNITIVE_DISTORTIONS, LANGUAGES, SYSTEM_PROMPT_ZH, SYSTEM_PROMPTS
from cbt_llm.errors import CbtLlmError

VERSION = "v1"
ROLES = ("plan", "client", "counsellor", "rewrite")
# The counsellor ends the session by putting this on its own line; generation strips it from the text.
END_MARK = "[END]"
PLAN_FIELDS = ("automatic_thought", "distortions", "techniques", "goal")
TECHNIQUES: dict[str, tuple[str, str]] = {
    "socratic_questioning": ("Socratic questioning", "苏格拉底式提问"),
    "examining_evidence": ("Examining the evidence", "检验证据"),
    "decatastrophising": ("Decatastrophising", "去灾难化"),
    "behavioural_experiment": ("Behavioural experiment", "行为实验"),
    "activity_scheduling": ("Activity scheduling", "活动安排"),
    "thought_record": ("Thought record", "想法记录"),
    "cognitive_restructuring": ("Cognitive restructuring", "认知重建"),
    "problem_solving": ("Problem solving", "问题解决"),
}

# The system line of the ``dialogue`` config's rows: the counsellor the fine-tuned model is to be.
DIALOGUE_SYSTEM_PROMPTS = {
    "zh": "你是一名经验丰富的心理咨询师，擅长认知行为疗法。请以咨询师的身份与来访者对话：先倾听和提问，"
          "再和对方一起找出并检验困扰背后的想法，最后商量一个小而具体的尝试。每次只说几句话。",
    "en": "You are an experienced counsellor who uses cognitive behavioural therapy. Talk with the client as "
          "their counsellor: listen and ask first, then find and examine the thought behind the distress "
          "together, and agree one small, concrete step. Keep each turn to a few sentences.",
}



def set_on_purpose(system_prompt: str | None) -> bool:
    """Whether a system line was chosen by the user: given, and not the paper's line (the default everywhere)."""
    return system_prompt not in (None, SYSTEM_PROMPT_ZH)


def dialogue_system_prompt(system_prompt: str | None, language: str = "zh") -> str:
    """A dialogue's system line: one set on purpose, else the dialogues' own in ``language`` (the paper's
    single-turn line, the default everywhere, is not a dialogue's)."""
    return system_prompt if set_on_purpose(system_prompt) else DIALOGUE_SYSTEM_PROMPTS[language]


def dataset_configs(spec: str) -> list[str]:
    """The ``cbt_qa`` config names of a recipe's ``dataset_config`` (one name, or several joined by commas), each
    once, in order."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names or len(set(names)) != len(names):
        raise CbtLlmError(f"dataset_config {spec!r}: name one config, or several joined by commas, each once "
                          "(e.g. sft,dialogue)")
    return names


def model_system_prompt(system_prompt: str | None, dataset_config: str | None = "sft", language: str = "zh") -> str:
    """The system line a model trained on ``dataset_config`` with ``system_prompt`` expects for a ``language``
    message: a line set on purpose; else the dialogues' own when it learnt from dialogues alone; else the
    paper's line in that language. Training writes it into the card; predict and the chat send it."""
    if dataset_config and dataset_configs(dataset_config) == ["dialogue"]:
        return dialogue_system_prompt(system_prompt, language)
    return system_prompt if set_on_purpose(system_prompt) else SYSTEM_PROMPTS[language]


def recipe_system_prompts(recipe: Mapping[str, Any]) -> dict[str, str]:
    """:func:`model_system_prompt` per language for an adapter's saved recipe (``training_recipe.yaml``)."""
    return {language: model_system_prompt(recipe.get("system_prompt"), recipe.get("dataset_config"), language)
            for language in LANGUAGES}


_INTAKE = {
    "zh": "问题：{{ question }}\n{% if description %}描述：{{ description }}\n{% endif %}",
    "en": "Question: {{ question }}\n{% if description %}Description: {{ description }}\n{% endif %}",
}
_PLAN_SHAPE = ('{"automatic_thought": "...", "distortions": ["..."], "techniques": ["..."], "goal": "..."}')


def _labels(table: dict[str, tuple[str, str]], language: str) -> str:
    return "、".join(f"{key}（{zh}）" for key, (_, zh) in table.items()) if language == "zh" else \
        ", ".join(f"{key} ({en})" for key, (en, _) in table.items())


def _steps(language: str) -> str:
    if language == "zh":
        return "\n".join(f"{i}. {s.name_zh}：{s.goal_zh}" for i, s in enumerate(CBT_STEPS, 1))
    return "\n".join(f"{i}. {s.name_en}: {s.goal_en}" for i, s in enumerate(CBT_STEPS, 1))


def _templates(language: str) -> dict[str, str]:
    intake = _INTAKE[language]
    if language == "zh":
        return {
            "plan": "你是一名擅长认知行为疗法（CBT）的心理咨询督导。请为下面这位来访者制定一次咨询的 CBT 咨询方案。\n"
                    + intake
                    + "请只输出一个 JSON 对象：automatic_thought（最可能的关键自动思维，用来访者的口吻写一句话）、"
                    f"distortions（认知扭曲标签，从 {_labels(COGNITIVE_DISTORTIONS, 'zh')} 中选一到三个键）、"
                    f"techniques（要用的技术，从 {_labels(TECHNIQUES, 'zh')} 中选两到三个键）、"
                    f"goal（本次会谈的目标，一句话）。格式：\n{_PLAN_SHAPE}\n",
            "client": "请你扮演来访者，正在和一位心理咨询师进行一次文字咨询。你的情况如下：\n" + intake
                      + "要求：用第一人称、口语化地说话，每次只说一到三句；不要一下子把所有事情讲完；"
                      "不要太配合，可以犹豫、反驳或者说“我也知道，可就是做不到”；只说来访者会说的话，"
                      "不要提到你在扮演角色，也不要替咨询师说话。\n"
                      "{% if opening %}现在咨询刚开始，请说出你的第一句话。\n{% endif %}",
            "counsellor": "请你扮演心理咨询师，擅长认知行为疗法，正在和来访者进行一次文字咨询。来访者的求助内容：\n"
                          + intake
                          + "督导为这次会谈制定的方案：\n{{ plan_text }}\n"
                          "请按方案、把认知行为疗法的五个步骤分散在整段对话里：\n" + _steps("zh") + "\n"
                          "要求：每次回复只说两到四句，像真实的咨询对话；前两轮以倾听、共情和提问为主，不要急着给建议；"
                          "先通过提问和来访者一起找到关键想法，再用提问引导对方检验它，然后一起商量一个小而具体的尝试，"
                          "最后给予鼓励并收尾；不要做诊断，不要推荐药物，不要提到你在扮演角色。\n"
                          "这是第 {{ round }} 轮，最多 {{ max_rounds }} 轮。{% if closing %}这一轮必须收尾：总结、鼓励，"
                          "并说明需要时可以寻求更多专业支持。{% endif %}"
                          f"当你完成收尾时，在回复最后单独一行写上 {END_MARK}。\n"
                          "{% if crisis %}注意：来访者刚才表达了自杀、自伤或危及生命的想法。这一轮请不要继续常规的练习或作业，"
                          "先关心对方此刻的安全，明确鼓励对方马上联系身边的人或以下危机资源，并请对方确认现在是否安全：\n"
                          "{{ resources }}\n{% endif %}",
            "rewrite": "下面是一位心理咨询师对来访者提问的单轮回答，它依次包含认知行为疗法的五个步骤。请把它改写成一段"
                       "自然的多轮咨询对话：来访者先开口，双方交替发言，咨询师最后发言；共 4 到 6 轮；咨询师每次只说两到四句，"
                       "前两轮以倾听、共情和提问为主，不要一开始就给建议；五个步骤分散在咨询师的各轮发言里。\n"
                       + intake + "原回答：{{ answer }}\n"
                       "请只输出一个 JSON 对象：plan（对象，含 automatic_thought、distortions、techniques、goal，"
                       f"标签取值同下：distortions 取自 {_labels(COGNITIVE_DISTORTIONS, 'zh')}，techniques 取自 "
                       f"{_labels(TECHNIQUES, 'zh')}）和 messages（数组，每项为 "
                       '{"role": "client" 或 "counsellor", "content": "..."}）。\n',
        }
    return {
        "plan": "You are a CBT supervisor. Write the CBT case plan for one session with the client below.\n" + intake
                + "Reply with one JSON object only: automatic_thought (the most likely key automatic thought, one "
                f"sentence in the client's voice), distortions (one to three keys of {_labels(COGNITIVE_DISTORTIONS, 'en')}), "
                f"techniques (two or three keys of {_labels(TECHNIQUES, 'en')}), goal (the session goal, one "
                f"sentence). Shape:\n{_PLAN_SHAPE}\n",
        "client": "Play the client in a text counselling session. Your situation:\n" + intake
                  + "Speak in the first person, casually, one to three sentences at a time; do not tell everything "
                  "at once; do not be over-cooperative: you may hesitate, push back or say \"I know, but I just "
                  "can't\"; say only what the client would say, never mention playing a role, never speak for "
                  "the counsellor.\n{% if opening %}The session is starting: say your first words.\n{% endif %}",
        "counsellor": "Play a counsellor who uses cognitive behavioural therapy, in a text session with this client:\n"
                      + intake + "The supervisor's plan for this session:\n{{ plan_text }}\n"
                      "Follow the plan and spread the five CBT steps over the whole conversation:\n" + _steps("en")
                      + "\nKeep each reply to two to four sentences, like a real session; in the first two rounds "
                      "listen, validate and ask rather than advise; find the key thought with the client by asking, "
                      "question it together, agree one small concrete step, then encourage and close. Do not "
                      "diagnose, do not recommend medication, never mention playing a role.\n"
                      "This is round {{ round }} of at most {{ max_rounds }}.{% if closing %} Close the session in "
                      "this round: sum up, encourage, and say that more professional support is there if needed."
                      f"{{% endif %}} When you have closed the session, end your reply with {END_MARK} on its own line.\n"
                      "{% if crisis %}Note: the client has just spoken of suicide, self-harm or danger to life. Do not "
                      "go on with exercises or homework in this reply: ask about their safety right now, urge them "
                      "to contact someone near them or these crisis resources now, and ask whether they are safe:\n"
                      "{{ resources }}\n{% endif %}",
        "rewrite": "Below is a counsellor's single answer to a client's question; it walks through the five CBT steps. "
                   "Rewrite it as a natural multi-turn counselling dialogue: the client speaks first, the two "
                   "alternate, the counsellor speaks last; 4 to 6 rounds; two to four sentences per counsellor turn; "
                   "listen, validate and ask in the first two rounds rather than advise; spread the five steps over "
                   "the counsellor's turns.\n" + intake + "Answer: {{ answer }}\n"
                   "Reply with one JSON object only: plan (an object with automatic_thought, distortions (keys of "
                   f"{_labels(COGNITIVE_DISTORTIONS, 'en')}), techniques (keys of {_labels(TECHNIQUES, 'en')}), goal) and "
                   'messages (a list of {"role": "client" or "counsellor", "content": "..."}).\n',
    }


@dataclass(frozen=True)
class DialoguePrompts:
    """The four dialogue prompts of one language and their version id (stored with every dialogue)."""

    language: str
    version: str
    templates: dict[str, str]

    def render(self, role: str, **values) -> str:
        """One prompt filled in (``question`` and ``description`` always; the role's other values as named)."""
        return _compiled(self.templates[role]).render(**values)


@functools.lru_cache(maxsize=16)
def _compiled(template: str):
    """A template compiled once: a dialogue renders its prompts once per turn."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.ChainableUndefined, keep_trailing_newline=True)
    return env.from_string(template)


def get_dialogue_prompts(language: str = "zh") -> DialoguePrompts:
    """The built-in dialogue prompts of ``language`` (``zh`` or ``en``)."""
    if language not in LANGUAGES:
        raise CbtLlmError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    return DialoguePrompts(language, f"dialogue-{language}-{VERSION}", _templates(language))


def plan_text(plan: dict, language: str = "zh") -> str:
    """A plan as the lines the counsellor prompt quotes (labels shown by their names in ``language``)."""
    column = 1 if language == "zh" else 0
    distortions = [COGNITIVE_DISTORTIONS.get(k, (k, k))[column] for k in plan.get("distortions", [])]
    techniques = [TECHNIQUES.get(k, (k, k))[column] for k in plan.get("techniques", [])]
    if language == "zh":
        return (f"- 关键自动思维：{plan.get('automatic_thought', '')}\n- 认知扭曲：{'、'.join(distortions)}\n"
                f"- 技术：{'、'.join(techniques)}\n- 会谈目标：{plan.get('goal', '')}")
    return (f"- Key automatic thought: {plan.get('automatic_thought', '')}\n- Distortions: {', '.join(distortions)}\n"
            f"- Techniques: {', '.join(techniques)}\n- Session goal: {plan.get('goal', '')}")
