"""The chat tab: streaming answers with every user turn through the crisis guard (``respond_stream``).

The guard decides, the page only shows: a crisis turn gets the fixed reply with crisis lines and the
back-end is never called; a concern turn gets the model's answer followed by the resources. The
conversation lives in the browser session only; with ``trace_file`` one JSON line per turn records
what the guard decided (no message text), like the terminal chat's trace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from cbt_llm.app.texts import shown_as_text, ui
from cbt_llm.chat import history_budget, respond_stream
from cbt_llm.crisis import format_crisis_resources
from cbt_llm.errors import CbtLlmError


class GuardedChat:
    """One chat turn per call for the page: the guarded stream as successive chatbot states.

    ``backend`` is a ``cbt_llm.chat`` back-end (or any callable ``messages -> text chunks`` with
    ``calls``, ``context_tokens``, ``count_tokens``, ``settings`` and optionally ``system_prompts``, the lines its
    adapter was trained with); ``model_guard`` is handed to the guard (it can only raise the level). The page's history is a list of ``{"role", "content"}`` messages
    kept in the session.
    """

    def __init__(self, backend, *, trace_file: str | Path | None = None, model_guard: Callable | None = None):
        self.backend, self.model_guard = backend, model_guard
        self.trace_file = Path(trace_file) if trace_file else None
        self._lock = threading.Lock()  # trace lines from concurrent sessions stay whole
        self.budget = history_budget(backend)

    def turn(self, message: str, history: list[dict], language: str = "zh") -> Iterator[tuple[list[dict], str]]:
        """Yield ``(messages to show, text left in the input box)`` as the reply streams; the last one is final."""
        message = (message or "").strip()
        history = list(history or [])
        if not message:
            yield history, ""
            return
        calls_before = self.backend.calls
        stream = respond_stream(history, message, self.backend, model_guard=self.model_guard,
                                system_prompt=getattr(self.backend, "system_prompts", None),
                                max_tokens=self.budget, count_tokens=self.backend.count_tokens)
        shown = history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        yield shown, ""
        error = None
        try:
            for _ in stream:
                shown[-1] = {"role": "assistant", "content": stream.text}
                yield shown, ""
        except CbtLlmError as err:
            error = str(err)
            parts = [stream.text, ui(language)["error"].format(error=error)]
            if stream.risk.level == "concern":  # the resources are shown even when the answer is not
                parts.append(format_crisis_resources(stream.language))
            shown[-1] = {"role": "assistant", "content": "\n\n".join(filter(None, parts))}
            yield shown, ""
        finally:
            self._trace(len(history) // 2 + 1, stream, self.backend.calls - calls_before, error)

    def _trace(self, turn: int, stream, backend_calls: int, error: str | None) -> None:
        if self.trace_file is None:
            return
        record = {"turn": turn, "level": stream.risk.level, "reasons": list(stream.risk.reasons),
                  "model_called": stream.model_called, "backend_calls": backend_calls,
                  "messages": len(stream.messages), "error": error}
        with self._lock, open(self.trace_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def add_chat_tab(gr, chat: GuardedChat | None, description: str | None, language) -> None:
    """The chat tab (call inside ``gr.Blocks``): conversation, input, send and reset.

    ``language`` is the page's language switch. The send event is the API endpoint ``/chat``
    (``message -> conversation``, streaming) and reset is ``/reset``, for ``gradio_client``. Every message
    is shown as text (:func:`~cbt_llm.app.texts.shown_as_text`: no HTML, no image, links only for web
    addresses), so ``/chat`` returns it in that escaped form; the session keeps the words as they were.
    """
    text = ui(language.value)
    with gr.Tab(text["chat_tab"], id="chat") as tab:
        status = gr.Markdown(text["model"].format(what=description) if chat else text["no_model"],
                             elem_id="chat-model")
        chatbot = gr.Chatbot(label=text["chatbot"], height=460, elem_id="chatbot", latex_delimiters=[],
                             allow_tags=False)  # the messages are shown as text: see shown_as_text
        with gr.Row():
            box = gr.Textbox(placeholder=text["input"], show_label=False, scale=5, elem_id="chat-input",
                             interactive=chat is not None)
            send = gr.Button(text["send"], variant="primary", scale=1, elem_id="chat-send",
                             interactive=chat is not None)
            reset = gr.Button(text["reset"], scale=1, elem_id="chat-reset")
        history = gr.State([])  # inside the tab: a component between tabs confuses Gradio's tab bar

    def turn(message, past, lang):
        for shown, left in chat.turn(message, past, lang):
            yield shown_as_text(shown), shown, left  # the page shows text; the session keeps what was said

    def clear():
        return [], [], ""

    def relabel(lang):
        text = ui(lang)
        return (gr.update(label=text["chat_tab"]), text["model"].format(what=description) if chat
                else text["no_model"], gr.update(label=text["chatbot"]), gr.update(placeholder=text["input"]),
                gr.update(value=text["send"]), gr.update(value=text["reset"]))

    events = []
    if chat is not None:
        events.append(send.click(turn, [box, history, language], [chatbot, history, box], api_name="chat",
                                 concurrency_id="model"))
        events.append(box.submit(turn, [box, history, language], [chatbot, history, box],
                                 api_visibility="private", concurrency_id="model"))
    reset.click(clear, None, [chatbot, history, box], api_name="reset", cancels=events)
    chatbot.clear(clear, None, [chatbot, history, box], api_visibility="private", cancels=events)  # its bin icon
    language.change(relabel, [language], [tab, status, chatbot, box, send, reset], api_visibility="private")
