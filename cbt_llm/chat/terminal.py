"""The terminal chat (``cbt-llm chat``): the notice, then one guarded, streamed turn per line."""

from __future__ import annotations

from typing import Callable

from cbt_llm.chat.backends import EndpointBackend, GenerationSettings, LocalBackend
from cbt_llm.chat.guard import concern_footer, notice, respond_stream
from cbt_llm.errors import CbtLlmError

UI = {
    "zh": {"you": "你> ", "assistant": "助手> ", "help": "输入消息后回车发送；/reset 清空对话，/exit 退出（也可按 Ctrl-D）。",
           "reset": "（对话已清空）", "stopped": "（已停止）", "loading": "正在加载 {what} ……",
           "unknown": "未知命令 {command}；可用：/reset、/exit、/help", "error": "出错了：{error}",
           "bye": "对话结束（{turns} 轮）"},
    "en": {"you": "you> ", "assistant": "assistant> ",
           "help": "Type a message and press Enter; /reset clears the conversation, /exit quits (or Ctrl-D).",
           "reset": "(conversation cleared)", "stopped": "(stopped)", "loading": "Loading {what} ...",
           "unknown": "unknown command {command}; try /reset, /exit or /help", "error": "error: {error}",
           "bye": "chat ended ({turns} turns)"},
}
TRACE_ENV = "CBT_LLM_CHAT_TRACE"  # a file: one JSON line per turn (risk, whether and how the model was called)


class _Counted:
    """Wraps a back-end to count the chunks it yields in the current turn."""

    def __init__(self, backend):
        self.backend, self.chunks, self._active = backend, 0, None

    def __call__(self, messages):
        self._active = self.backend(messages)
        for chunk in self._active:
            self.chunks += 1
            yield chunk

    def close(self) -> None:
        """End the back-end's generation now (its generator's cleanup runs: thread joined, stream closed)."""
        self.backend.stop()
        if self._active is not None:
            self._active.close()


def run_chat(backend, *, language: str = "zh", judge: Callable | None = None, system_prompt: str | None = None,
             input_fn: Callable[[str], str] = input, output=None, trace: str | None = None,
             show_notice: bool = True) -> str:
    """The terminal loop: the not-a-substitute notice, then one guarded turn per line until ``/exit``/EOF/Ctrl-C.

    Each turn goes through :func:`respond_stream` (crisis: the fixed reply, the back-end is not
    called; concern: the model's answer, then the resources) and is printed chunk by chunk as it
    streams. History is trimmed to ``backend.context_tokens - max_new_tokens`` counted with
    ``backend.count_tokens``. ``/reset`` clears the history, ``/help`` lists the commands. Ctrl-C
    during an answer stops it (the resources still follow on a concern turn); at the prompt it ends the
    chat. With ``trace`` (or ``$CBT_LLM_CHAT_TRACE``) a JSON line per turn is appended to that file.
    Returns the closing line.
    """
    import json
    import os
    import sys

    out = output or sys.stdout
    ui = UI.get(language, UI["en"])
    trace = trace or os.environ.get(TRACE_ENV)
    budget = backend.context_tokens - backend.settings.max_new_tokens
    if budget <= 0:
        raise CbtLlmError(f"max_new_tokens ({backend.settings.max_new_tokens}) leaves no room for the conversation "
                          f"in a context window of {backend.context_tokens} tokens")

    def say(text: str = "", end: str = "\n") -> None:
        out.write(text + end)
        out.flush()

    history: list[dict] = []
    turns = 0
    if show_notice:
        say(notice(language))
    say(ui["help"])
    while True:
        try:
            line = input_fn(ui["you"])
        except (EOFError, KeyboardInterrupt):
            say()
            break
        message = line.strip()
        if not message:
            continue
        if message.startswith("/") and " " not in message:
            command = message.lower()
            if command in ("/exit", "/quit"):
                break
            if command == "/reset":
                history.clear()
                say(ui["reset"])
            elif command == "/help":
                say(ui["help"])
            else:
                say(ui["unknown"].format(command=message))
            continue
        counted = _Counted(backend)
        calls_before = backend.calls
        stream = respond_stream(history, message, counted, judge=judge, system_prompt=system_prompt,
                                max_tokens=budget, count_tokens=backend.count_tokens)
        say(ui["assistant"], end="")
        interrupted, error = False, None
        try:
            for chunk in stream:
                out.write(chunk)
                out.flush()
        except KeyboardInterrupt:
            interrupted = True
            counted.close()
            say()
            say(ui["stopped"], end="")
        except CbtLlmError as err:
            error = str(err)
            say()
            say(ui["error"].format(error=error), end="")
        if (interrupted or error) and stream.risk.level == "concern":
            say(concern_footer(stream.language), end="")  # the resources are shown even when the answer is not
        say("\n")
        turns += 1
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": stream.text}]
        if trace:
            record = {"turn": turns, "level": stream.risk.level, "reasons": list(stream.risk.reasons),
                      "model_called": stream.model_called, "backend_calls": backend.calls - calls_before,
                      "chunks": counted.chunks, "messages": len(stream.messages), "interrupted": interrupted,
                      "error": error}
            with open(trace, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return ui["bye"].format(turns=turns)


def chat_main(*, adapter: str | None = None, base: str | None = None, model: str | None = None,
              base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", language: str = "zh",
              settings: GenerationSettings | None = None, context_tokens: int | None = None,
              device: str = "auto", revision: str | None = None, system_prompt: str | None = None,
              judge_model: str | None = None, judge_base_url: str | None = None) -> str:
    """What ``cbt-llm chat`` runs: pick the back-end from the arguments, show the notice, run the loop."""
    import sys

    if model and (adapter or base):
        raise CbtLlmError("give either --adapter/--base (a local model) or --model with --base-url (a served "
                          "model), not both")
    if base_url and not model:
        raise CbtLlmError("--base-url needs --model (the model's name on the server)")
    if not (adapter or base or model):
        raise CbtLlmError("give --adapter DIR|REPO, --base MODEL, or --base-url URL --model NAME")
    if context_tokens is not None and context_tokens <= 0:
        raise CbtLlmError(f"--context-tokens must be positive, got {context_tokens}")
    settings = settings or GenerationSettings()
    try:
        sys.stdout.reconfigure(errors="replace")  # a partial UTF-8 sequence from the model must not end the chat
    except (AttributeError, ValueError):
        pass
    ui = UI.get(language, UI["en"])
    print(notice(language), flush=True)  # before anything slow, so it is the first thing on screen
    judge = None
    if judge_model:
        from cbt_llm.safety import model_guard

        judge = model_guard(judge_model, judge_base_url, api_key_env=api_key_env)
    if model:
        backend = EndpointBackend(model, base_url, settings, api_key_env=api_key_env, context_tokens=context_tokens)
    else:
        print(ui["loading"].format(what=f"adapter {adapter}" if adapter else f"model {base}"), flush=True)
        import warnings

        from transformers.utils import logging as hf_logging

        # keep the terminal for the conversation: no weight-loading bars or deprecation notices
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        warnings.filterwarnings("ignore", category=FutureWarning)
        backend = LocalBackend(adapter, base, settings, device=device, context_tokens=context_tokens,
                               revision=revision)
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    return run_chat(backend, language=language, judge=judge, system_prompt=system_prompt, show_notice=False)
