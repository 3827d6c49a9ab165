import json
import re

import pytest

from cbt_llm.data.prompts import (
    BUILTIN_PROMPTS,
    CBT_STEPS,
    LANGUAGES,
    STEP_KEYS,
    SYSTEM_PROMPT_ZH,
    builtin_prompt_by_version,
    chat_prompt,
    get_prompt,
)
from cbt_llm.errors import CbtLlmError


def test_five_steps_in_paper_order_with_both_names():
    assert [s.name_en for s in CBT_STEPS] == [
        "Validation and empathy",
        "Identify key thought or belief",
        "Pose challenge or reflection",
        "Provide strategy or insight",
        "Encouragement and foresight",
    ]
    assert [s.name_zh for s in CBT_STEPS] == ["验证与共情", "识别关键思维或信念", "提出挑战或反思", "提供策略或见解", "鼓励与展望"]
    assert STEP_KEYS == ("validation", "key_thought", "challenge", "strategy", "encouragement")


def test_system_line_is_the_papers():
    assert SYSTEM_PROMPT_ZH == "你是一名经验丰富的心理咨询师,专长于认知行为疗法, 以心理咨询师的身份回答以下问题。"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", BUILTIN_PROMPTS)
def test_builtin_prompt_lists_the_steps_in_order_and_fills_the_question(name, language):
    prompt = get_prompt(name, language)
    text = prompt.render(question="QUESTION-TEXT", description="DESCRIPTION-TEXT")
    names = [s.name_zh if language == "zh" else s.name_en for s in CBT_STEPS]
    positions = [text.index(n) for n in names]
    assert positions == sorted(positions)
    assert text.index("QUESTION-TEXT") > positions[-1]
    assert "DESCRIPTION-TEXT" in text
    without = prompt.render(question="QUESTION-TEXT")
    assert "描述" not in without and "Description:" not in without
    assert prompt.version == f"{name}-{language}-v1"
    assert builtin_prompt_by_version(prompt.version) == prompt


@pytest.mark.parametrize("language", LANGUAGES)
def test_structured_prompt_asks_for_each_step_as_a_json_field(language):
    prompt = get_prompt("structured", language)
    assert prompt.structured and not get_prompt("paper", language).structured
    shape = json.loads(re.search(r"^\{.*\}$", prompt.template, re.M).group(0))
    assert list(shape) == [*STEP_KEYS, "response"]


def test_paper_prompt_asks_for_one_fluent_answer_without_headings():
    assert "不要写出步骤编号或小标题" in get_prompt("paper", "zh").template
    assert "without step numbers or headings" in get_prompt("paper", "en").template


def test_custom_prompt_file_gets_a_content_version(tmp_path):
    path = tmp_path / "mine.j2"
    path.write_text("请用CBT回答：{{ question }}\n{{ description }}", encoding="utf-8")
    first = get_prompt(str(path))
    assert first.version.startswith("custom-") and first.name == "mine"
    assert first.render("问", "述") == "请用CBT回答：问\n述"
    path.write_text("换一种说法：{{ question }}", encoding="utf-8")
    assert get_prompt(str(path)).version != first.version


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no variables here", "never uses {{ question }}"),
        ("{{ question }} {{ mood }}", "unknown variables: mood"),
        ("{{ question }}\n{% if %}", ":2: prompt template syntax error"),
    ],
)
def test_bad_custom_prompt_files_are_rejected(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CbtLlmError) as err:
        get_prompt(str(path))
    assert str(path) in str(err.value) and message in str(err.value)


def test_unknown_prompt_or_language_is_a_clear_error(tmp_path):
    with pytest.raises(CbtLlmError, match="no such prompt file"):
        get_prompt(str(tmp_path / "missing.txt"))
    with pytest.raises(CbtLlmError, match="unknown language 'fr'"):
        get_prompt("paper", "fr")


def test_chat_prompt_is_system_then_user():
    messages = chat_prompt("标题", "描述")
    assert messages == [
        {"role": "system", "content": SYSTEM_PROMPT_ZH},
        {"role": "user", "content": "标题\n描述"},
    ]
    assert chat_prompt("标题")[1]["content"] == "标题"
