"""What every server-facing stage shares: JSON in model replies, one client factory, one-line API errors."""

import pytest
from chat_server import ChatServer

from cbt_llm.engine.endpoints import api_errors, json_object, json_values, openai_client
from cbt_llm.errors import CbtLlmError


@pytest.mark.parametrize("reply,expected", [
    ('{"a": 1}', [{"a": 1}]),
    ('```json\n{"a": 1}\n```', [{"a": 1}]),
    ('Here you go: {"a": "x}y"} and also [1, 2]. Done.', [{"a": "x}y"}, [1, 2]]),
    ('{"a": 1}{"b": {"c": [2]}}', [{"a": 1}, {"b": {"c": [2]}}]),
    ('{"broken": } then {"ok": true}', [{"ok": True}]),
    ("no json here", []),
    ("", []),
    (None, []),
])
def test_json_values_finds_each_top_level_value(reply, expected):
    assert list(json_values(reply)) == expected


def test_json_object_skips_arrays_and_returns_the_first_object():
    assert json_object('labels: ["x"] then {"level": "none"} {"level": "crisis"}') == {"level": "none"}
    assert json_object("[1]") is None


@pytest.mark.slow
def test_api_errors_turns_an_openai_failure_into_one_line_without_the_key(monkeypatch):
    monkeypatch.setenv("CBT_TEST_KEY", "sk-secret-test-key-123")
    with ChatServer(status=401) as server:
        client = openai_client(server.base_url, "CBT_TEST_KEY", max_retries=0)
        with pytest.raises(CbtLlmError) as caught:
            with api_errors("list models", client.api_key):
                client.models.list()
    message = str(caught.value)
    assert message.startswith("list models: HTTP 401 (the server rejected the API key)")
    assert "\n" not in message and "sk-secret-test-key-123" not in message


def test_api_errors_names_an_unreachable_server():
    client = openai_client("http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout=5)
    with pytest.raises(CbtLlmError, match="^poll: cannot reach the server"):
        with api_errors("poll"):
            client.models.list()


def test_batch_submit_against_a_rejecting_server_is_one_line_not_a_traceback(tmp_path, cli):
    from cbt_llm.data.splits import sample_questions_path

    with ChatServer(status=401) as server:
        result = cli("batch", "submit", "--input", sample_questions_path(), "--output_file", tmp_path / "out.jsonl",
                     "--model", "m", "--base_url", server.base_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "batch submit: HTTP 401" in result.stderr
