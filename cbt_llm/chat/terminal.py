"""The terminal chat (``cbt-llm chat``): the notice, then one guarded, streamed turn per line.

:class:`ChatConfig` is the command's one set of options (the flags are its fields); :func:`chat_main`
takes it whole, builds the back-end and the guard model it names, and runs :func:`run_chat`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, Literal

from cbt_llm.chat.backends import ChatModelConfig, history_budget
from cbt_llm.chat.guard import concern_footer, notice, respond_stream
from cbt_llm.config import option
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
# Terminal escape sequences (ECMA-48): CSI, the string commands OSC/DCS/SOS/PM/APC, then any other ESC pair.
ESCAPE_SEQUENCE = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*"
                             r"(?:\x07|\x1b\\|\x9c)|\x1b[ -/]*[0-OQ-WYZ\\`-~]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline (so also CR and ESC), DEL, C1
HELD_BACK = 256  # at most this much of an unfinished escape sequence waits for the next chunk


@dataclass(kw_only=True)
class ChatConfig(ChatModelConfig):
    """``cbt-llm chat``: the model to talk to (local or served), its sampling, the guard model, and the
    language of the terminal."""

    language: Literal["zh", "en"] = option("zh", "language of the notice and prompts (replies follow each "
                                           "message's language)")
    system_prompt: str | None = option(None, "system line (default: the line the adapter was trained with, else the "
                                       "counselling line of the message's language)", metavar="TEXT")

    def __post_init__(self):
        super().__post_init__()
        if not (self.adapter or self.model_name_or_path or self.model):
            raise CbtLlmError("give --adapter DIR|REPO, --model_name_or_path MODEL, or --base_url URL --model NAME")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: escape sequences and control characters removed, newlines and
    tabs kept (a model cannot move the cursor, recolour, retitle the window or write the clipboard)."""
    return CONTROL.sub("", ESCAPE_SEQUENCE.sub("", text.replace("\r\n", "\n")))


class TerminalText:
    """:func:`printable` for a stream: an escape sequence cut between two chunks is held back until it is whole."""

    def __init__(self):
        self.pending = ""

    def feed(self, chunk: str) -> str:
        """The printable part of what has come so far."""
        text, self.pending = self.pending + chunk, ""
        start = max(text.rfind("\x1b"), *(text.rfind(c) for c in "\x90\x98\x9b\x9d\x9e\x9f"))
        if start >= 0 and len(text) - start <= HELD_BACK and not ESCAPE_SEQUENCE.match(text, start):
            text, self.pending = text[:start], text[start:]
        return printable(text)

    def flush(self) -> str:
        """What was held back, made printable (an unfinished sequence loses its control characters)."""
        text, self.pending = self.pending, ""
        return printable(text)


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


class _Terminal:
    """The loop's state (history, turn count, trace file) and its jobs: read a line, run a /command, run a turn."""

    def __init__(self, backend, language: str, out, trace: str | None, **respond_options):
        self.budget = history_budget(backend)
        self.backend, self.out, self.trace = backend, out, trace
        self.ui = UI.get(language, UI["en"])
        self.respond_options = respond_options
        self.history: list[dict] = []
        self.turns = 0

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def read(self, input_fn: Callable[[str], str]) -> str | None:
        """The next line, stripped; None at EOF or Ctrl-C."""
        try:
            return input_fn(self.ui["you"]).strip()
        except (EOFError, KeyboardInterrupt):
            self.say()
            return None

    def command(self, message: str) -> bool:
        """Run ``/reset``, ``/help`` (or say the command is unknown); False for ``/exit`` and ``/quit``."""
        command = message.lower()
        if command in ("/exit", "/quit"):
            return False
        if command == "/reset":
            self.history.clear()
            self.say(self.ui["reset"])
        elif command == "/help":
            self.say(self.ui["help"])
        else:
            self.say(self.ui["unknown"].format(command=message))
        return True

    def turn(self, message: str) -> None:
        """One guarded turn, printed as it streams; the resources follow a concern turn even when it was cut."""
        counted = _Counted(self.backend)
        calls_before = self.backend.calls
        stream = respond_stream(self.history, message, counted, max_tokens=self.budget,
                                count_tokens=self.backend.count_tokens, **self.respond_options)
        self.say(self.ui["assistant"], end="")
        interrupted, error = self._show(stream, counted)
        if (interrupted or error) and stream.risk.level == "concern":
            self.say(concern_footer(stream.language), end="")  # the resources are shown even when the answer is not
        self.say("\n")
        self.turns += 1
        self.history += [{"role": "user", "content": message}, {"role": "assistant", "content": stream.text}]
        self._trace({"turn": self.turns, "level": stream.risk.level, "reasons": list(stream.risk.reasons),
                     "model_called": stream.model_called, "backend_calls": self.backend.calls - calls_before,
                     "chunks": counted.chunks, "messages": len(stream.messages), "interrupted": interrupted,
                     "error": error})

    def _show(self, stream, counted: _Counted) -> tuple[bool, str | None]:
        """Print the chunks as text (:class:`TerminalText`); ``(interrupted by Ctrl-C, error text)``."""
        text = TerminalText()
        try:
            for chunk in stream:
                self.out.write(text.feed(chunk))
                self.out.flush()
        except KeyboardInterrupt:
            counted.close()
            self.say(text.flush())
            self.say(self.ui["stopped"], end="")
            return True, None
        except CbtLlmError as err:
            self.say(text.flush())
            self.say(printable(self.ui["error"].format(error=str(err))), end="")
            return False, str(err)
        self.say(text.flush(), end="")
        return False, None

    def _trace(self, record: dict) -> None:
        if self.trace:
            with open(self.trace, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")


def run_chat(backend, *, language: str = "zh", model_guard: Callable | None = None, system_prompt: str | None = None,
             input_fn: Callable[[str], str] = input, output=None, trace: str | None = None,
             show_notice: bool = True) -> str:
    """The terminal loop: the not-a-substitute notice, then one guarded turn per line until ``/exit``/EOF/Ctrl-C.

    Each turn goes through :func:`respond_stream` (crisis: the fixed reply, the back-end is not
    called; concern: the model's answer, then the resources) and is printed chunk by chunk as it
    streams; ``model_guard`` is handed to the guard (it can only raise the level). History is trimmed
    to ``backend.context_tokens - max_new_tokens`` counted with ``backend.count_tokens``. ``/reset``
    clears the history, ``/help`` lists the commands. Ctrl-C during an answer stops it (the resources
    still follow on a concern turn); at the prompt it ends the chat. With ``trace`` (or
    ``$CBT_LLM_CHAT_TRACE``) a JSON line per turn is appended to that file. Without ``system_prompt`` the lines
    the back-end's adapter was trained with (``backend.system_prompts``, when it has them) are sent. Returns the
    closing line.
    """
    trained = getattr(backend, "system_prompts", None)
    terminal = _Terminal(backend, language, output or sys.stdout, trace or os.environ.get(TRACE_ENV),
                         model_guard=model_guard, system_prompt=system_prompt or trained)
    if show_notice:
        terminal.say(notice(language))
    terminal.say(terminal.ui["help"])
    while (message := terminal.read(input_fn)) is not None:
        if message.startswith("/") and " " not in message:
            if not terminal.command(message):
                break
        elif message:
            terminal.turn(message)
    return terminal.ui["bye"].format(turns=terminal.turns)


def _keep_the_terminal_readable() -> None:
    """A partial UTF-8 sequence from the model must not end the chat, and input() gets line editing."""
    try:
        sys.stdout.reconfigure(errors="replace")
    except (AttributeError, ValueError):
        pass
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass


def _quiet_transformers() -> None:
    """Keep the terminal for the conversation: no weight-loading bars or deprecation notices."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def chat_main(config: ChatConfig) -> str:
    """What ``cbt-llm chat`` runs: the notice, the back-end and guard model ``config`` names, then the loop."""
    _keep_the_terminal_readable()
    print(notice(config.language), flush=True)  # before anything slow, so it is the first thing on screen
    model_guard = config.guard()
    if not config.model:
        what = f"adapter {config.adapter}" if config.adapter else f"model {config.model_name_or_path}"
        print(UI.get(config.language, UI["en"])["loading"].format(what=what), flush=True)
        _quiet_transformers()
    return run_chat(config.backend(), language=config.language, model_guard=model_guard,
                    system_prompt=config.system_prompt, show_notice=False)
