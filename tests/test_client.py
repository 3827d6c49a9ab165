"""The request engine: retries, 429s, fatal errors and the counters, on scripted replies (fast) and against the
loopback chat server (slow): shared backoff, timeouts, dropped connections."""

import asyncio

import openai
import pytest
from chat_server import ChatServer

from cbt_llm.engine.client import FatalAPIError, RequestEngine, RequestFailed, _httpx
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV
from cbt_llm.engine.ratelimit import parse_retry_after

PAYLOAD = {"model": "test-model", "messages": [{"role": "user", "content": "你好"}]}


def run(coro):
    return asyncio.run(coro)


async def send_all(server, n, **engine_options):
    engine_options.setdefault("concurrency", 8)
    engine_options.setdefault("backoff_base", 0.05)
    async with RequestEngine(base_url=server.base_url, api_key="sk-test-secret-key", **engine_options) as engine:
        results = await asyncio.gather(*(engine.request({**PAYLOAD, "messages": [{"role": "user", "content": f"q{i}"}]})
                                         for i in range(n)), return_exceptions=True)
    return engine, results


def test_parse_retry_after():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "Wed, 25 Nov 2026 00:00:10 GMT"}, now=1795564800.0) == 10.0
    assert parse_retry_after({}) is None and parse_retry_after({"retry-after": "soon"}) is None


@pytest.mark.slow
def test_retries_500_dropped_connections_and_timeouts():
    with ChatServer() as server:
        server.script.extend(["500", "drop", "slow", "500"])
        server.slow_latency = 3.0
        engine, results = run(send_all(server, 4, concurrency=1, timeout=1.0))
        assert all(not isinstance(r, Exception) for r in results), results
        assert server.stats.answered == 4
        assert engine.stats.errors == {"500": 2, "connection": 1, "timeout": 1}
        assert engine.stats.retries == 4 and engine.stats.sent == 8
        assert results[0].body["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_attempts_are_bounded():
    with ChatServer(p500=1.0) as server:
        engine, results = run(send_all(server, 1, max_attempts=3))
        assert isinstance(results[0], RequestFailed)
        assert "HTTP 500" in results[0].reason and "after 3 attempts" in results[0].reason
        assert server.stats.requests == 3


@pytest.mark.slow
def test_an_isolated_429_delays_only_its_own_request_and_not_for_the_whole_retry_after():
    # a stray 429 from a server that is not limiting as a whole: no client-wide pause, and the
    # request is retried after a short backoff, not the 30 s the server asked for
    with ChatServer(retry_after=30, send_retry_after_ms=True) as server:
        server.script.extend(["429"])
        engine, results = run(asyncio.wait_for(send_all(server, 4, concurrency=4), timeout=20))
        assert not any(isinstance(r, Exception) for r in results)
        assert engine.stats.errors["429"] == 1 and server.stats.answered == 4
        assert engine.limiter.rate_limit_events == 0 and engine.limiter.pause_until == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("status,words", [(401, "API key"), (404, "not found")])
def test_fatal_errors_raise_at_once_without_the_key(status, words):
    with ChatServer(status=status) as server:
        engine, results = run(send_all(server, 3))
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors and all(isinstance(e, FatalAPIError) for e in errors)
        assert words in str(errors[0]) and f"HTTP {status}" in str(errors[0])
        assert "sk-test-secret-key" not in str(errors[0])
        assert server.stats.auth_headers == {"Bearer sk-test-secret-key"}


BODY = {"choices": [{"message": {"content": "好"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
REQUEST = _httpx().Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def status_error(status: int, code: str | None = None, headers: dict | None = None,
                 message: str | None = None) -> openai.APIStatusError:
    body = {"error": {"message": message or f"server says {status}", "code": code}}
    response = _httpx().Response(status, request=REQUEST, headers=headers or {}, json=body)
    return openai.APIStatusError(f"Error code: {status} - {body['error']['message']}", response=response,
                                 body=body["error"])


def scripted_engine(replies: list, **engine_options) -> RequestEngine:
    """An engine whose server is a list of replies (a body, or an exception to raise); no socket is opened."""
    engine = RequestEngine(base_url="http://127.0.0.1:9/v1", api_key="sk-test-secret-key", backoff_base=0.0,
                           **engine_options)

    async def post(path, *, body, cast_to):
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    engine._client.post = post
    return engine


def scripted(replies: list, **engine_options) -> tuple[RequestEngine, object]:
    """``scripted_engine`` and the response to one request."""
    engine = scripted_engine(replies, **engine_options)
    return engine, asyncio.run(asyncio.wait_for(engine.request(PAYLOAD), timeout=10))


def test_failed_attempts_are_retried_and_counted():
    engine, response = scripted([status_error(500, headers={"retry-after-ms": "0"}),
                                 openai.APITimeoutError(request=REQUEST),
                                 openai.APIConnectionError(request=REQUEST), ["not", "an", "object"], BODY])
    assert response.body == BODY and response.attempts == 5
    assert engine.stats.errors == {"500": 1, "timeout": 1, "connection": 1, "bad response": 1}
    assert (engine.stats.sent, engine.stats.retries, engine.stats.succeeded, engine.stats.failed) == (5, 4, 1, 0)
    assert (engine.stats.prompt_tokens, engine.stats.completion_tokens) == (7, 3)


def test_429s_do_not_use_up_attempts_but_are_bounded():
    engine, response = scripted([status_error(429, headers={"retry-after-ms": "0"})] * 2 + [BODY], max_attempts=1)
    assert response.attempts == 3 and engine.stats.errors == {"429": 2} and engine.stats.retries == 2
    with pytest.raises(RequestFailed, match="^HTTP 429 rate limited 2 times$"):
        scripted([status_error(429, headers={"retry-after-ms": "0"})] * 2, max_rate_limited=2)
    with pytest.raises(RequestFailed, match=r"^HTTP 500: .*server says 500 \(after 2 attempts\)$"):
        scripted([status_error(500)] * 2, max_attempts=2)


@pytest.mark.parametrize("status,code,hint", [
    (401, None, f"the server rejected the API key; set it in {DEFAULT_API_KEY_ENV} or name another variable with "
                "--api_key_env"),
    (404, None, "model or endpoint not found; check --model and --base_url"),
    (400, "model_not_found", "model or endpoint not found; check --model and --base_url"),
    (429, "insufficient_quota", "quota exhausted; check the account's plan and billing"),
])
def test_fatal_errors_name_the_current_flags(status, code, hint):
    with pytest.raises(FatalAPIError) as caught:
        scripted([status_error(status, code)])
    assert str(caught.value).startswith(f"http://127.0.0.1:9/v1/chat/completions: HTTP {status}: {hint} (")


TOO_LONG = ("This model's maximum context length is 8192 tokens. However, your messages resulted in 17000000 "
            "tokens.\nPlease reduce the length of the messages.")


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_request_refused_as_invalid_fails_alone_at_once_with_the_servers_message(status):
    # one question too long for the model's context must not stop the run: this request fails, once
    with pytest.raises(RequestFailed) as caught:
        scripted([status_error(status, "context_length_exceeded", message=TOO_LONG), BODY])
    assert caught.value.reason == (f"HTTP {status}: This model's maximum context length is 8192 tokens. However, "
                                   "your messages resulted in 17000000 tokens. Please reduce the length of the "
                                   "messages.")
    assert caught.value.attempts == 1


def test_a_400_naming_an_unknown_model_is_still_fatal():
    for error in (status_error(400, "model_not_found"), status_error(400, message="The model `gtp-4o` does not exist."),
                  status_error(422, message="Unknown model: gtp-4o")):
        with pytest.raises(FatalAPIError, match="model or endpoint not found; check --model"):
            scripted([error])


def test_a_streak_of_invalid_requests_stops_the_run_and_a_success_resets_it():
    invalid = status_error(400, "invalid_value", message="max_tokens is too large: 10000000")
    engine = scripted_engine([invalid, invalid, BODY, invalid, invalid, invalid], max_invalid_in_a_row=3)

    async def send_one_by_one(n: int) -> list:
        results = []
        for _ in range(n):
            try:
                results.append(await engine.request(PAYLOAD))
            except Exception as err:  # noqa: BLE001 - the test looks at which
                results.append(err)
        return results

    results = asyncio.run(send_one_by_one(6))
    assert [type(r).__name__ for r in results] == ["RequestFailed", "RequestFailed", "Response", "RequestFailed",
                                                   "RequestFailed", "FatalAPIError"]
    assert str(results[-1]) == ("http://127.0.0.1:9/v1/chat/completions: HTTP 400: the server refused 3 requests in "
                                "a row as invalid; check --model, --max_new_tokens and the other request flags "
                                "(max_tokens is too large: 10000000)")
    assert engine.stats.errors == {"400": 5} and engine.stats.failed == 5


@pytest.mark.parametrize("status", [401, 404, 500])
def test_errors_are_one_line_even_when_the_server_writes_several(status):
    text = "Incorrect API key provided: sk-test-secret-key.\nYou can find your API key at\n\nhttps://example.com"
    if status == 500:
        with pytest.raises(RequestFailed) as caught:
            scripted([status_error(500, message=text)] * 2, max_attempts=2)
    else:
        with pytest.raises(FatalAPIError) as caught:
            scripted([status_error(status, message=text)])
    message = caught.value.reason if status == 500 else str(caught.value)
    assert "\n" not in message and "sk-test-secret-key" not in message
    assert "Incorrect API key provided: ***. You can find your API key at https://example.com" in message


def test_a_long_server_message_is_cut_at_a_word_boundary():
    from cbt_llm.engine.client import MESSAGE_LIMIT, server_message

    words = " ".join(f"word{i}" for i in range(200))
    message = server_message(status_error(400, message=words))
    assert len(message) <= MESSAGE_LIMIT + 4 and message.endswith(" ...")
    assert all(w.startswith("word") and w[4:].isdigit() for w in message[:-4].split())  # whole words only
