"""What every stage that talks to an OpenAI-compatible server shares.

The API key from an environment variable, one client factory (sync or async), one translation of
``openai`` errors into one-line ``CbtLlmError``s with the key scrubbed, the reply text of a chat
completion, JSON values inside a model's reply, and a tokenizer-free token estimate. Generation,
evaluation, the chat and the safety judge all use these; ``openai`` is imported only when a client
is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from cbt_llm.errors import CbtLlmError, first_line

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
PER_MESSAGE_TOKENS = 4  # role markers and separators a chat template adds around each message


def resolve_api_key(api_key_env: str = DEFAULT_API_KEY_ENV, base_url: str | None = None) -> str | None:
    """The API key from the environment variable ``api_key_env``.

    Local servers (a ``--base_url``) often need no key; then ``None`` is returned and a placeholder
    is sent. Against the default OpenAI endpoint a missing key is an error.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env or ""):
        raise CbtLlmError("--api_key_env must be the name of an environment variable (letters, digits, _), "
                          "not the key itself")
    key = os.environ.get(api_key_env, "").strip()
    if key:
        return key
    if base_url:
        return None
    raise CbtLlmError(f"no API key: set the environment variable {api_key_env} "
                      "(or name another variable with --api_key_env), or pass --base_url for a local server")


def openai_client(base_url: str | None = None, api_key_env: str = DEFAULT_API_KEY_ENV, *, asynchronous: bool = False,
                  api_key: str | None = None, **options: Any):
    """An ``openai.OpenAI`` (or ``AsyncOpenAI``) for ``base_url``, keyed from ``api_key_env``.

    ``api_key`` skips the environment lookup (the caller resolved it); a keyless local server gets a
    placeholder. ``options`` go to the client (``timeout``, ``max_retries``, ``http_client``).
    """
    import openai

    if api_key is None:
        api_key = resolve_api_key(api_key_env, base_url)
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(api_key=api_key or "no-key", base_url=base_url, **options)


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (an API key) replaced, so it can be shown or logged."""
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


@contextlib.contextmanager
def api_errors(what: str, secret: str | None = None) -> Iterator[None]:
    """Turn an ``openai`` error inside the block into a one-line ``CbtLlmError`` that starts with ``what``."""
    import openai

    try:
        yield
    except openai.APIStatusError as err:
        hint = {401: "the server rejected the API key", 403: "the key may not do this",
                404: "model, file or endpoint not found", 429: "rate limited or out of quota"}.get(err.status_code, "")
        raise CbtLlmError(f"{what}: HTTP {err.status_code}" + (f" ({hint})" if hint else "")
                          + f": {scrub(first_line(err), secret)}") from None
    except openai.APIConnectionError as err:
        raise CbtLlmError(f"{what}: cannot reach the server: {scrub(first_line(err), secret)}") from None
    except openai.OpenAIError as err:
        raise CbtLlmError(f"{what}: {scrub(first_line(err), secret)}") from None


def answer_of(body: dict) -> tuple[str, str | None]:
    """The assistant text and finish reason of a chat-completions response body."""
    try:
        choice = body["choices"][0]
    except (KeyError, IndexError, TypeError):
        return "", None
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return (content if isinstance(content, str) else ""), choice.get("finish_reason")


_DECODER = json.JSONDecoder()


def json_values(text: str | None) -> Iterator[dict | list]:
    """Each top-level JSON object or array in a model's reply, first to last.

    Code fences, chatter and broken fragments around them are skipped, so ```json ... ``` blocks,
    "Here is the result: {...}" and two objects in a row all work.
    """
    text = text or ""
    position = 0
    while True:
        starts = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        yield value
        position = end


def json_object(text: str | None) -> dict | None:
    """The first JSON object in a model's reply, or None."""
    return next((value for value in json_values(text) if isinstance(value, dict)), None)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: about one token per CJK character and 1.3 per other word."""
    cjk = len(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]", text))
    words = len(re.findall(r"[A-Za-z0-9]+", text))
    other = len(re.findall(r"[^\sA-Za-z0-9\u3400-\u9fff\uf900-\ufaff]", text))
    return cjk + round(1.3 * words) + other // 2


def estimate_message_tokens(messages: Iterable[dict]) -> int:
    """:func:`estimate_tokens` over chat messages, with each message's template overhead."""
    return sum(estimate_tokens(m["content"]) + PER_MESSAGE_TOKENS for m in messages)
