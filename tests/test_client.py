"""The request engine against the loopback chat server: retries, shared backoff, rate limits, fatal errors."""

import asyncio

import pytest
from chat_server import ChatServer

from cbt_llm.engine.client import FatalAPIError, RequestEngine, RequestFailed
from cbt_llm.engine.ratelimit import parse_retry_after

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

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


def test_attempts_are_bounded():
    with ChatServer(p500=1.0) as server:
        engine, results = run(send_all(server, 1, max_attempts=3))
        assert isinstance(results[0], RequestFailed)
        assert "HTTP 500" in results[0].reason and "after 3 attempts" in results[0].reason
        assert server.stats.requests == 3


def test_an_isolated_429_delays_only_its_own_request_and_not_for_the_whole_retry_after():
    # a stray 429 from a server that is not limiting as a whole: no client-wide pause, and the
    # request is retried after a short backoff, not the 30 s the server asked for
    with ChatServer(retry_after=30, send_retry_after_ms=True) as server:
        server.script.extend(["429"])
        engine, results = run(asyncio.wait_for(send_all(server, 4, concurrency=4), timeout=20))
        assert not any(isinstance(r, Exception) for r in results)
        assert engine.stats.errors["429"] == 1 and server.stats.answered == 4
        assert engine.limiter.rate_limit_events == 0 and engine.limiter.pause_until == 0.0


@pytest.mark.parametrize("status,words", [(401, "API key"), (404, "not found"), (400, "invalid")])
def test_fatal_errors_raise_at_once_without_the_key(status, words):
    with ChatServer(status=status) as server:
        engine, results = run(send_all(server, 3))
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors and all(isinstance(e, FatalAPIError) for e in errors)
        assert words in str(errors[0]) and f"HTTP {status}" in str(errors[0])
        assert "sk-test-secret-key" not in str(errors[0])
        assert server.stats.auth_headers == {"Bearer sk-test-secret-key"}
