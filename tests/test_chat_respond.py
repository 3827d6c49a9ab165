"""respond(): the crisis guard around the model, streaming, history trimming and the notice."""

import pytest

from cbt_llm.chat import (
    CONCERN_INSTRUCTION,
    EndpointBackend,
    Reply,
    build_messages,
    notice,
    respond,
    respond_stream,
    trim_history,
)
from cbt_llm.data.prompts import SYSTEM_PROMPT_EN, SYSTEM_PROMPT_ZH
from cbt_llm.engine.endpoints import estimate_tokens
from cbt_llm.errors import CbtLlmError
from chat_server import ChatServer


class Model:
    """A stand-in for the chat model that records every call."""

    def __init__(self, answer="模型的回答", stream=False):
        self.calls, self.answer, self.stream = [], answer, stream

    def __call__(self, messages):
        self.calls.append(messages)
        if self.stream:
            return iter(self.answer.split("|"))
        return self.answer


@pytest.mark.parametrize("message,number,language", [
    ("我不想活了，药都准备好了", "12356", "zh"),
    ("我刚才吃了一整瓶安眠药", "12356", "zh"),
    ("I'm going to kill myself tonight", "988", "en"),
    ("I cut myself again last night", "988", "en"),
])
def test_crisis_turn_never_calls_the_model(message, number, language):
    model = Model()
    reply = respond([], message, model)
    assert isinstance(reply, Reply)
    assert reply.risk.level == "crisis" and reply.model_called is False and model.calls == []
    assert number in reply.text
    if language == "zh":
        assert "120" in reply.text and "findahelpline" in reply.text
    else:
        assert "911" in reply.text and "findahelpline.com" in reply.text


def test_someone_else_in_an_emergency_gets_the_emergency_reply():
    model = Model()
    reply = respond([], "my brother took a whole bottle of pills", model)
    assert reply.risk.level == "crisis" and not model.calls
    assert reply.text.startswith("This sounds like an emergency") and "911" in reply.text
    own = respond([], "I took a whole bottle of pills", model)
    assert own.text.startswith("I'm really glad you told me")


def test_concern_turn_calls_the_model_and_appends_resources():
    model = Model("先深呼吸，我们一起看看发生了什么。")
    reply = respond([{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好，我在。"}],
                    "最近活着好累，每天都在哭", model)
    assert reply.risk.level == "concern" and reply.model_called
    (messages,) = model.calls
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT_ZH + "\n\n" + CONCERN_INSTRUCTION["zh"]}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "最近活着好累，每天都在哭"
    assert reply.text.startswith("先深呼吸，我们一起看看发生了什么。")
    assert reply.text.index("12356") > len("先深呼吸")


def test_none_turn_returns_the_model_answer_unchanged():
    model = Model("Here is one way to prepare for the interview.")
    reply = respond([], "How do I calm down before a job interview?", model)
    assert reply.risk.level == "none" and reply.model_called
    assert reply.text == "Here is one way to prepare for the interview."
    assert model.calls[0][0]["content"] == SYSTEM_PROMPT_EN


def test_streaming_yields_chunks_and_the_footer_last():
    model = Model("I hear| how heavy| this feels.", stream=True)
    stream = respond_stream([], "I feel completely hopeless about everything", model)
    assert stream.risk.level == "concern"
    assert model.calls == []  # nothing is generated until the caller reads the stream
    chunks = list(stream)
    assert chunks[:3] == ["I hear", " how heavy", " this feels."]
    assert "988" in chunks[-1] and len(chunks) == 4
    assert stream.text == "".join(chunks) and stream.model_called
    assert stream.reply() == Reply(stream.text, stream.risk, True)


def test_crisis_stream_is_one_fixed_chunk():
    model = Model(stream=True)
    stream = respond_stream([], "我想自杀", model)
    chunks = list(stream)
    assert len(chunks) == 1 and "12356" in chunks[0] and model.calls == [] and not stream.model_called


def test_crisis_in_the_previous_turn_keeps_resources_in_view():
    history = [{"role": "user", "content": "我不想活了"}, {"role": "assistant", "content": "（危机回复）"}]
    model = Model("谢谢你愿意继续说。")
    reply = respond(history, "嗯，我刚刚打了电话", model)
    assert reply.risk.level == "concern" and "previous_turn: crisis" in reply.risk.reasons
    assert reply.model_called and "12356" in reply.text
    assert respond([], "嗯，我刚刚打了电话", Model()).risk.level == "none"


def test_language_override_and_history_system_line():
    model = Model("ok")
    reply = respond([{"role": "system", "content": "custom system"}], "I want to die", model, language="zh")
    assert "12356" in reply.text and "988" not in reply.text
    respond([{"role": "system", "content": "custom system"}], "hello", model, language="zh")
    assert model.calls[-1][0] == {"role": "system", "content": "custom system"}


def test_bad_inputs_are_user_errors():
    with pytest.raises(CbtLlmError):
        respond([], "", Model())
    with pytest.raises(CbtLlmError):
        respond([{"role": "bot", "content": "x"}], "hi", Model())
    with pytest.raises(CbtLlmError):
        respond([], "hi", "not callable")
    with pytest.raises(CbtLlmError, match="None"):
        respond([], "hi", lambda messages: None)
    with pytest.raises(CbtLlmError, match="chunks"):
        respond([], "hi", lambda messages: iter([b"bytes"]))


# ------------------------------------------------------------------------------------------- trimming
def _turns(n):
    out = []
    for i in range(n):
        out += [{"role": "user", "content": f"question {i} " + "x" * 36},
                {"role": "assistant", "content": f"answer {i} " + "y" * 36}]
    return out


def test_trim_keeps_the_system_line_and_the_newest_turns():
    messages = [{"role": "system", "content": "S" * 40}, *_turns(10), {"role": "user", "content": "now"}]
    trimmed = trim_history(messages, max_tokens=80)
    assert trimmed[0] == messages[0]
    assert trimmed[-1] == {"role": "user", "content": "now"}
    assert trimmed[1]["role"] == "user" and len(trimmed) < len(messages)
    assert trimmed[1:] == messages[len(messages) - (len(trimmed) - 1):]  # a suffix: the newest turns
    assert sum(estimate_tokens(m["content"]) + 4 for m in trimmed) <= 80
    assert trim_history(messages, max_tokens=100_000) == messages


def test_trim_keeps_the_current_turn_even_over_budget_and_takes_a_counter():
    messages = [{"role": "system", "content": "sys"}, *_turns(2), {"role": "user", "content": "z" * 1000}]
    assert trim_history(messages, max_tokens=10) == [messages[0], messages[-1]]
    by_words = trim_history(messages, max_tokens=38, count_tokens=lambda s: len(s.split()))  # 5 + 4*7 + 5
    assert by_words == messages
    assert trim_history(messages, max_tokens=37, count_tokens=lambda s: len(s.split())) == [messages[0], *messages[3:]]
    with pytest.raises(CbtLlmError):
        trim_history(messages, max_tokens=0)


def test_respond_trims_what_the_model_sees():
    model = Model("ok")
    respond(_turns(20), "最近睡不好怎么办", model, max_tokens=120)
    sent = model.calls[0]
    assert sent[0]["role"] == "system" and sent[1]["role"] == "user" and sent[-1]["content"] == "最近睡不好怎么办"
    assert len(sent) < 42


def test_estimate_tokens_and_build_messages():
    assert estimate_tokens("你好") == 2 and estimate_tokens("abcdefgh") == 1 and estimate_tokens("I am so tired") == 5
    messages = build_messages([], "hi", "en")
    assert messages == [{"role": "system", "content": SYSTEM_PROMPT_EN}, {"role": "user", "content": "hi"}]


def test_notice_says_it_is_not_a_substitute():
    assert "不能替代" in notice("zh") and "12356" in notice("zh")
    assert "not a substitute" in notice("en") and "988" in notice("en")


# ----------------------------------------------------------------------------------- the layered guard
def _history(*user_turns):
    out = []
    for turn in user_turns:
        out += [{"role": "user", "content": turn}, {"role": "assistant", "content": "嗯，我在听。"}]
    return out


def test_a_plan_told_across_three_turns_never_reaches_the_model():
    model = Model()
    history = _history("最近很累", "地点也选好了")
    reply = respond(history, "就等今晚", model)
    assert reply.risk.level == "crisis" and not reply.model_called and model.calls == []
    assert "12356" in reply.text and any(r.startswith("context: ") for r in reply.risk.reasons)
    assert respond([], "就等今晚", model).model_called  # the same line alone is not a crisis
    stream = respond_stream(history, "就等今晚", model, context_turns=1)  # context switched off
    assert stream.risk.level != "crisis"


def test_a_crisis_only_the_classifier_sees_never_reaches_the_model():
    model = Model()
    reply = respond([], "方法我已经想好了", model)
    assert reply.risk.level == "crisis" and reply.risk.reasons[-1].startswith("classifier:")
    assert model.calls == [] and "12356" in reply.text


def test_a_100000_character_message_and_non_text_bytes_get_a_clear_reply():
    model = Model()
    long = ("我今天和朋友去爬山了，风景很好。" * 7000)[:99_995] + "我不想活了"
    reply = respond([], long, model)
    assert reply.risk.level == "crisis" and model.calls == [] and "12356" in reply.text
    reply = respond([], b"\xff\xfe I want to die", model)
    assert reply.risk.level == "crisis" and model.calls == []
    reply = respond([], bytes(range(128, 256)) + "最近睡得不好".encode(), model)
    assert reply.model_called and model.calls[-1][-1]["content"].endswith("最近睡得不好")


def test_only_a_concern_turn_gains_the_safety_instruction():
    model = Model("嗯，我在听。")
    respond([], "今天天气不错，出去走了走", model)
    respond([], "I keep crying and I feel hopeless, nothing helps", model)
    respond([], "我朋友说她想自杀，我该怎么办", model)
    plain, concern, someone_else = (calls[0]["content"] for calls in model.calls)
    assert plain == SYSTEM_PROMPT_ZH and CONCERN_INSTRUCTION["en"] in concern and concern.startswith(SYSTEM_PROMPT_EN)
    assert "no information about methods" in concern and "thoughts of suicide" in concern
    # someone else's words (the rules set them aside): the model is asked to check on the writer too
    assert CONCERN_INSTRUCTION["zh"] in someone_else and "别人" in someone_else


@pytest.mark.slow
def test_a_concern_turn_reaches_the_served_model_with_the_safety_instruction():
    with ChatServer() as server:
        backend = EndpointBackend("cbt-test", server.base_url, max_retries=0)
        reply = respond([], "最近活着好累，每天都在哭", backend)
        assert reply.risk.level == "concern" and reply.model_called
        (sent,) = server.stats.received
        assert sent[0]["role"] == "system" and sent[0]["content"].endswith(CONCERN_INSTRUCTION["zh"])
        assert "不要提供任何关于方法" in sent[0]["content"] and sent[-1]["content"] == "最近活着好累，每天都在哭"
        assert "12356" in reply.text.split("——")[-1]  # the resources follow the model's answer
        respond([], "周末去公园散步了", backend)
        assert CONCERN_INSTRUCTION["zh"] not in server.stats.received[-1][0]["content"]
        assert respond([], "我已经把药都吃了", backend).model_called is False and len(server.stats.received) == 2
