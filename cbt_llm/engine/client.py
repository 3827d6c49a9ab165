"""A reusable asynchronous request engine for OpenAI-compatible APIs (OpenAI, vLLM, transformers serve, ...).

``RequestEngine.request(payload)`` sends one request body (a chat-completions payload by
default) and returns the response JSON, taking care of everything a long, paid run needs:

* a concurrency limit (requests in flight),
* optional requests-per-minute and tokens-per-minute limits,
* a shared, adaptive rate limit learned from 429 answers and ``Retry-After``: the whole client
  pauses for the server's ``Retry-After`` and then paces requests at a rate estimated from what
  the server accepted, creeping back up while no 429 comes (AIMD), so that with no rate flag at
  all throughput settles near the server's limit without a storm of 429s,
* retries with exponential backoff and full jitter for 5xx, timeouts and dropped connections,
  honouring ``Retry-After`` when a 5xx carries one, with a bounded number of attempts,
* a request the server refuses as invalid (400, 413, 422: too long for the model's context, a
  bad field) fails alone at once with the server's message (``RequestFailed``, not retried), so
  one bad item does not stop a run; only a long streak of them with no success between (a
  flag that spoils every request) stops it,
* fatal errors (401/403 key, 404 or unknown model, wrong URL, exhausted quota) raise
  ``FatalAPIError`` at once with a one-line message, so the caller stops the run.

The API key is only held by the underlying ``openai`` client and is scrubbed from every error
message. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV, openai_client, scrub
from cbt_llm.errors import CbtLlmError, first_line
from cbt_llm.engine.ratelimit import AdaptiveRateLimiter, parse_retry_after

DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_MAX_RATE_LIMITED = 50   # 429s one request may see before it fails; the run as a whole slows down first
DEFAULT_MAX_INVALID_IN_A_ROW = 20  # requests refused as invalid, with no success between, before the run stops
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
INVALID_REQUEST_STATUS = {400, 413, 422}  # this request is refused (too long, a bad field): it fails alone
MODEL_ERROR_CODES = {"model_not_found", "invalid_model", "model_not_available", "unknown_model"}
_MODEL_ERROR = re.compile(r"\b(unknown|invalid|unsupported) model\b|\bno such model\b|\bmodel not found\b|"
                          r"\bmodel\s+(\S+\s+)?(does not exist|not found|is not supported)", re.IGNORECASE)
MESSAGE_LIMIT = 240  # characters of a server's message kept in a reason or an error


class FatalAPIError(CbtLlmError):
    """An error no retry can fix (bad key, unknown model, wrong URL): the run stops."""

    def about(self, item_id: str) -> "FatalAPIError":
        """The same error naming the item (question id) it was raised for."""
        return FatalAPIError(f"question {item_id}: {self}")


class RequestFailed(Exception):
    """A request that still failed after its attempts; ``reason`` says why (for the record's ``reason``)."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason, self.attempts = reason, attempts


@dataclass
class Response:
    """A successful response: the JSON body plus how it went."""

    body: dict
    attempts: int
    latency: float


@dataclass
class EngineStats:
    """Counters over the engine's lifetime."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    errors: Counter = field(default_factory=Counter)  # "429", "500", "timeout", "connection", ...
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RequestEngine:
    """Send OpenAI-compatible requests concurrently with shared rate control and retries.

    ``endpoint`` is the path under the base URL (``/chat/completions`` by default); payloads are
    sent as JSON and responses returned as parsed JSON. Use as an async context manager, or call
    ``aclose()``.
    """

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, concurrency: int = 16,
                 rpm: float | None = None, tpm: float | None = None, timeout: float = 120.0,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, max_rate_limited: int = DEFAULT_MAX_RATE_LIMITED,
                 max_invalid_in_a_row: int = DEFAULT_MAX_INVALID_IN_A_ROW, backoff_base: float = 0.5,
                 backoff_max: float = 30.0, endpoint: str = "/chat/completions"):
        import openai

        httpx = _httpx()

        if concurrency < 1:
            raise CbtLlmError(f"concurrency must be at least 1, got {concurrency}")
        self._api_key = api_key
        self.base_url = base_url
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.max_attempts, self.max_rate_limited = max_attempts, max_rate_limited
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.timeout = timeout
        self.limiter = AdaptiveRateLimiter(rpm, tpm)
        self.stats = EngineStats()
        self.max_invalid_in_a_row = max_invalid_in_a_row
        self._invalid_in_a_row = 0
        self._semaphore = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
        self._http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=httpx.Timeout(timeout, connect=10.0))
        self._client = openai_client(base_url, asynchronous=True, api_key=api_key or "", max_retries=0,
                                     timeout=timeout, http_client=self._http)
        self._openai = openai

    async def __aenter__(self) -> "RequestEngine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _where(self) -> str:
        return str(self._client.base_url).rstrip("/") + self.endpoint

    def _fatal(self, err: Exception, status: int | None) -> FatalAPIError:
        message = server_message(err, self._api_key)
        where = self._where()
        if status in (401, 403):
            hint = (f"the server rejected the API key; set it in {DEFAULT_API_KEY_ENV} or name another variable "
                    "with --api_key_env")
        elif status == 404 or status in INVALID_REQUEST_STATUS:  # the latter: a 400 naming an unknown model
            hint = "model or endpoint not found; check --model and --base_url"
        elif status == 429:
            hint = "quota exhausted; check the account's plan and billing"
        else:
            hint = "unrecoverable error"
        return FatalAPIError(f"{where}: HTTP {status}: {hint} ({message})")

    async def request(self, payload: dict, *, estimated_tokens: int = 0) -> Response:
        """Send one payload with retries; returns the response or raises ``RequestFailed``/``FatalAPIError``."""
        tries = _Tries()
        started = time.monotonic()
        while True:
            async with self._semaphore:
                sent_at = await self.limiter.acquire(estimated_tokens)
                tries.attempts += 1
                self.stats.sent += 1
                outcome = await self._attempt(payload, estimated_tokens, sent_at, tries)
                if isinstance(outcome, dict):
                    return Response(outcome, tries.attempts, time.monotonic() - started)
            if outcome.rate_limited:  # a 429: wait (alone, or with everyone in acquire) and go again
                if outcome.wait:
                    await asyncio.sleep(outcome.wait)
                continue
            tries.failures += 1
            if tries.failures >= self.max_attempts:
                self.stats.failed += 1
                raise RequestFailed(f"{outcome.reason} (after {tries.attempts} attempts)", tries.attempts)
            self.stats.retries += 1
            await asyncio.sleep(outcome.wait if outcome.wait is not None else self._backoff(tries.failures))

    async def _attempt(self, payload: dict, estimated_tokens: int, sent_at: float, tries: _Tries) -> dict | _Retry:
        """Send once: the response body, or why to try again and after how long (fatal errors raise)."""
        openai = self._openai
        try:
            body = await self._client.post(self.endpoint, body=payload, cast_to=object)
        except openai.APIStatusError as err:
            return self._status_error(err, sent_at, tries)
        except openai.APITimeoutError:
            self.stats.errors["timeout"] += 1
            return _Retry(f"timed out after {self.timeout:g} s")
        except openai.APIConnectionError as err:
            self.stats.errors["connection"] += 1
            return _Retry(f"connection error: {scrub(first_line(err), self._api_key)}")
        if not isinstance(body, dict):
            self.stats.errors["bad response"] += 1
            return _Retry("response is not a JSON object")
        self.stats.succeeded += 1
        self._invalid_in_a_row = 0
        usage = body.get("usage") or {}
        prompt_tokens, completion_tokens = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        if estimated_tokens:
            self.limiter.settle_tokens(estimated_tokens, prompt_tokens + completion_tokens)
        return body

    def _status_error(self, err: Exception, sent_at: float, tries: _Tries) -> _Retry:
        """An HTTP error answer: a 429 to wait out, a 5xx to retry, an invalid request that fails alone
        (``RequestFailed``), or a fatal error raised at once."""
        status = err.status_code
        headers = err.response.headers if err.response is not None else None
        if status == 429 and _error_code(err) != "insufficient_quota":
            return self._rate_limited(sent_at, parse_retry_after(headers), tries)
        if status in INVALID_REQUEST_STATUS and not _names_unknown_model(err):
            self._invalid(err, status, tries)
        if status not in RETRYABLE_STATUS or status == 429:
            raise self._fatal(err, status) from None
        self.stats.errors[str(status)] += 1
        return _Retry(f"HTTP {status}: {server_message(err, self._api_key)}", parse_retry_after(headers))

    def _invalid(self, err: Exception, status: int, tries: _Tries) -> None:
        """This request was refused as invalid: it fails now (no retry can change it); a streak of
        ``max_invalid_in_a_row`` with no success between means every request is refused, and stops the run."""
        self.stats.errors[str(status)] += 1
        self.stats.failed += 1
        self._invalid_in_a_row += 1
        message = server_message(err, self._api_key)
        if self._invalid_in_a_row >= self.max_invalid_in_a_row:
            raise FatalAPIError(f"{self._where()}: HTTP {status}: the server refused {self._invalid_in_a_row} "
                                f"requests in a row as invalid; check --model, --max_new_tokens and the other "
                                f"request flags ({message})") from None
        raise RequestFailed(f"HTTP {status}: {message}", tries.attempts) from None

    def _rate_limited(self, sent_at: float, retry_after: float | None, tries: _Tries) -> _Retry:
        """A 429: does not use up an attempt; the limiter decides who waits (``RequestFailed`` after too many)."""
        tries.limited += 1
        self.stats.errors["429"] += 1
        own_wait = self.limiter.on_rate_limited(sent_at, retry_after, tries.limited)
        if tries.limited >= self.max_rate_limited:
            self.stats.failed += 1
            raise RequestFailed(f"HTTP 429 rate limited {tries.limited} times", tries.attempts) from None
        self.stats.retries += 1
        return _Retry("HTTP 429 rate limited", own_wait, rate_limited=True)


@dataclass
class _Tries:
    """One request's counters: attempts sent, 429s seen, other failed attempts."""

    attempts: int = 0
    limited: int = 0
    failures: int = 0


@dataclass
class _Retry:
    """Why an attempt failed and how long to wait before the next (None: the backoff decides)."""

    reason: str
    wait: float | None = None
    rate_limited: bool = False  # a 429, which does not use up an attempt


T = TypeVar("T")


async def for_each(items: Iterable[T], handle: Callable[[T], Awaitable[None]], workers: int) -> None:
    """Await ``handle(item)`` for every item, at most ``workers`` at once.

    Workers take items from one shared iterator, so a long input is never turned into thousands of
    tasks at once. The first exception (a fatal API error) cancels the other workers and is raised.
    """
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await handle(item)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
    try:
        pending = set(tasks)
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in finished:
                if task.exception() is not None:
                    raise task.exception()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _httpx():
    """The HTTP library the installed ``openai`` is built on (``httpx``, or its successor ``httpx2``)."""
    from openai import _base_client

    return getattr(_base_client, "httpx2", None) or getattr(_base_client, "httpx")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def server_message(err: Exception, secret: str | None = None, limit: int = MESSAGE_LIMIT) -> str:
    """The server's own message of an ``openai`` error on one line (whitespace folded), the key scrubbed,
    cut at a word boundary after ``limit`` characters."""
    body = getattr(err, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else body
    text = inner.get("message") if isinstance(inner, dict) else inner
    if not isinstance(text, str) or not text.strip():
        text = first_line(err, limit=10 * limit)
    return shorten(scrub(" ".join(text.split()), secret), limit)


def shorten(text: str, limit: int) -> str:
    """``text`` cut at the last word boundary before ``limit`` characters, with "..." when cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:") + " ..."


def _names_unknown_model(err: Exception) -> bool:
    """Whether a 400/422 says the model is unknown (a fatal error, not one bad request)."""
    return _error_code(err) in MODEL_ERROR_CODES or bool(_MODEL_ERROR.search(server_message(err)))


def _error_code(err: Exception) -> str | None:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return inner["code"]
    return getattr(err, "code", None) if isinstance(getattr(err, "code", None), str) else None
