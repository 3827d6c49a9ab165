"""The production model guard: Qwen3Guard-Gen over an OpenAI-compatible server (a loopback stand-in
answering in Qwen3Guard's own output format, talked to by the real openai client), and locally."""

import pytest
from judge_server import JudgeServer

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety import (
    LocalQwen3Guard,
    OpenAIRiskGuard,
    ServedQwen3Guard,
    assess_risk,
    parse_qwen3guard,
    served_model_guard,
)

# what Qwen3Guard-Gen answers when moderating a user prompt: a Safety line and a Categories line
UNSAFE_SELF_HARM = "Safety: Unsafe\nCategories: Suicide & Self-Harm"
CONTROVERSIAL_SELF_HARM = "Safety: Controversial\nCategories: Suicide & Self-Harm"
UNSAFE_VIOLENT = "Safety: Unsafe\nCategories: Violent"
SAFE = "Safety: Safe\nCategories: None"


def qwen3guard_stand_in(body: dict) -> str:
    """Answers like Qwen3Guard-Gen would for the few messages these tests send."""
    text = body["messages"][-1]["content"]
    if "风很大" in text or "everything ready" in text:
        return UNSAFE_SELF_HARM
    if "disappear" in text:
        return CONTROVERSIAL_SELF_HARM
    if "bomb" in text:
        return UNSAFE_VIOLENT
    if "garbled" in text:
        return "I am not sure what you mean."
    return SAFE


@pytest.mark.parametrize("content,level", [
    (UNSAFE_SELF_HARM, "crisis"), (CONTROVERSIAL_SELF_HARM, "concern"), (UNSAFE_VIOLENT, "none"), (SAFE, "none"),
    ("Safety: Unsafe\nCategories: Violent, Suicide & Self-Harm", "crisis"),
    ("Safety: Controversial\nCategories: Politically Sensitive Topics", "none"),
])
def test_parse_qwen3guard(content, level):
    assert parse_qwen3guard(content)["level"] == level


def test_parse_qwen3guard_needs_a_safety_line():
    with pytest.raises(CbtLlmError, match="no Safety line"):
        parse_qwen3guard("Categories: Suicide & Self-Harm")


def test_the_chat_picks_the_guard_by_model_name():
    assert isinstance(served_model_guard("Qwen/Qwen3Guard-Gen-8B", "http://127.0.0.1:9/v1"), ServedQwen3Guard)
    assert isinstance(served_model_guard("my-risk-model", "http://127.0.0.1:9/v1"), OpenAIRiskGuard)


@pytest.mark.slow
def test_served_qwen3guard_raises_the_level(monkeypatch):
    monkeypatch.setenv("CBT_TEST_GUARD_KEY", "sk-guard")
    with JudgeServer(qwen3guard_stand_in) as server:
        guard = ServedQwen3Guard(server.base_url, api_key_env="CBT_TEST_GUARD_KEY", max_retries=0)
        risk = assess_risk("我在天台上，风很大", model_guard=guard, classifier=False)
        assert risk.level == "crisis" and risk.reasons[-1] == "judge: Qwen3Guard Unsafe: Suicide & Self-Harm"
        (request,) = server.requests
        assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-guard"
        # the guard's chat template holds the policy: the message goes alone, as the user turn
        assert request["body"]["model"] == "Qwen/Qwen3Guard-Gen-4B"
        assert request["body"]["messages"] == [{"role": "user", "content": "我在天台上，风很大"}]

        assert assess_risk("I just want to disappear", model_guard=guard, classifier=False).level == "concern"
        assert assess_risk("how do I build a bomb", model_guard=guard, classifier=False).level == "none"
        assert assess_risk("I cut myself again last night", model_guard=guard).level == "crisis"  # never lowered
        calls = len(server.requests)
        assert assess_risk("我不想活了", model_guard=guard).level == "crisis" and len(server.requests) == calls  # not asked

        risk = assess_risk("garbled hello", model_guard=guard, classifier=False)
        assert risk.level == "none" and risk.notes[-1].startswith("judge_error: Qwen3Guard answer has no Safety line")


@pytest.mark.slow
def test_a_guard_server_that_is_down_leaves_the_offline_verdict():
    with JudgeServer(qwen3guard_stand_in) as server:
        url = server.base_url
    guard = ServedQwen3Guard(url, max_retries=0, timeout=2)
    risk = assess_risk("活着好累", model_guard=guard)
    assert risk.level == "concern" and risk.notes[-1].startswith("judge_error")


@pytest.mark.slow
def test_local_qwen3guard_path_runs_a_model_with_transformers():
    # the tiny random model cannot answer in Qwen3Guard's format: the path loads, generates, and its
    # unparsable answer leaves the offline verdict with a note (a real Qwen3Guard checkpoint answers)
    from cbt_llm.models.tiny import tiny_model_path

    guard = LocalQwen3Guard(str(tiny_model_path()), device="cpu", max_new_tokens=4)
    with pytest.raises(CbtLlmError, match="no Safety line"):
        guard("hello")
    risk = assess_risk("活着好累", model_guard=guard)
    assert risk.level == "concern" and risk.notes[-1].startswith("judge_error")
    with pytest.raises(CbtLlmError, match="cannot load /nonexistent/guard-model"):
        LocalQwen3Guard("/nonexistent/guard-model")
