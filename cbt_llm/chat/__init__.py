"""The chat behind the crisis guard.

* :mod:`.guard`: one turn, ``respond(history, message, generate) -> Reply`` (and ``respond_stream``),
  the fixed crisis reply, the concern footer, the not-a-substitute notice, history trimming;
* :mod:`.backends`: :class:`LocalBackend` (an adapter or base model with transformers) and
  :class:`EndpointBackend` (any OpenAI-compatible server), with :class:`GenerationSettings`, and
  :class:`ChatModelConfig` (which back-end and guard model the chat and the app use);
* :mod:`.terminal`: ``cbt-llm chat`` (:class:`ChatConfig`, :func:`chat_main`, :func:`run_chat`).

Nothing heavy is imported here: torch, transformers and openai load when a back-end is built.
"""

from cbt_llm.chat.backends import (DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, ENDPOINT_CONTEXT_TOKENS,
                                   ChatModelConfig, EndpointBackend, GenerationSettings, LocalBackend, history_budget,
                                   load_chat_model)
from cbt_llm.chat.guard import (CONCERN_FOOTER, CONCERN_INSTRUCTION, CRISIS_REPLY, EMERGENCY_REPLY, NOTICE, Reply,
                                ReplyStream, build_messages, concern_footer, crisis_reply, notice, respond,
                                respond_stream, safety_instruction, trim_history)
from cbt_llm.chat.terminal import TRACE_ENV, UI, ChatConfig, chat_main, run_chat

__all__ = [
    "CONCERN_FOOTER", "CONCERN_INSTRUCTION", "CRISIS_REPLY", "DEFAULT_MAX_NEW_TOKENS", "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_P", "EMERGENCY_REPLY", "ENDPOINT_CONTEXT_TOKENS", "NOTICE", "TRACE_ENV", "UI", "ChatConfig", "ChatModelConfig",
    "EndpointBackend", "GenerationSettings", "LocalBackend", "Reply", "ReplyStream", "build_messages", "chat_main",
    "concern_footer", "crisis_reply", "history_budget", "load_chat_model", "notice", "respond", "respond_stream",
    "run_chat", "safety_instruction", "trim_history",
]
