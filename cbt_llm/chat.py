"""The chat turn behind a crisis guard: ``respond(history, message, generate) -> Reply``.

Every user turn goes through :func:`cbt_llm.safety.assess_risk` before any model sees it:

* ``crisis``: a fixed, caring reply in the message's language with the crisis resources; ``generate``
  is never called (a model must not improvise here). Someone else in an emergency gets a variant
  that puts the emergency numbers first.
* ``concern``: the model answers, then the resources are appended.
* ``none``: the model's answer as it is.

A crisis in the previous user turn keeps the next turn at least at ``concern``, so the resources stay
in view while the conversation goes on.

``generate`` is any callable that takes the chat messages (system line, trimmed history, user turn)
and returns the answer as a string or as an iterator of text chunks (streaming). :func:`respond_stream`
yields chunks as they come; :func:`respond` is built on it. Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from cbt_llm.crisis import format_crisis_resources
from cbt_llm.data.prompts import SYSTEM_PROMPTS
from cbt_llm.endpoints import PER_MESSAGE_TOKENS, estimate_tokens
from cbt_llm.errors import CbtLlmError, first_line
from cbt_llm.safety import (
    Risk,
    assess_lexicon,
    assess_risk,
    detect_language,
    raise_level,
)

NOTICE = {
    "zh": (
        "提示：这是一个由AI模型生成回答的心理健康自助工具，内容仅供参考，不能替代专业的心理咨询、诊断或治疗。"
        "如果你有伤害自己的想法或正处于危险中，请立即拨打全国心理援助热线 12356，或报警 110 / 急救 120。"
    ),
    "en": (
        "Note: this is a self-help tool whose answers are written by an AI model. It is not a substitute for "
        "professional counselling, diagnosis or treatment. If you are thinking about hurting yourself or are in "
        "danger, call or text 988 (US), your local emergency number, or find a line at https://findahelpline.com."
    ),
}

CRISIS_REPLY = {
    "zh": (
        "听到你这样说，我真的很担心你。你愿意说出来，这很重要，你不需要一个人扛着这些。\n"
        "如果你有伤害自己的想法，或者已经做了伤害自己的事，请现在就联系能马上帮到你的人：\n"
        "{resources}\n"
        "如果你已经服了药、受了伤，或者觉得自己马上会有危险，请立刻拨打急救电话（中国大陆 120，香港 999，台湾 119）。\n"
        "如果可以，请告诉一个你信任的人你现在的情况，请他/她陪着你；也请先把药物、刀具等可能伤害自己的东西放到远离你的地方。\n"
        "我只是一个AI程序，没办法替你打电话求助，但热线里的人可以陪你度过现在。你愿意现在就联系他们吗？"
    ),
    "en": (
        "I'm really glad you told me, and I'm worried about your safety right now. You don't have to go "
        "through this alone.\n"
        "Please reach out now to someone who can help right away:\n"
        "{resources}\n"
        "If you have already taken something, hurt yourself, or feel you might act on these thoughts soon, call "
        "your local emergency number now (911 in the US).\n"
        "If you can, tell someone you trust what is going on and ask them to stay with you, and put distance "
        "between yourself and anything you could use to hurt yourself.\n"
        "I'm an AI program and can't call anyone for you, but the people on these lines can be with you right "
        "now. Would you be willing to contact one of them now?"
    ),
}

EMERGENCY_REPLY = {
    "zh": (
        "这听起来是紧急情况。如果对方已经服药、受伤、失去意识或随时可能伤害自己，请马上拨打急救电话"
        "（中国大陆 120 或 110，香港 999，台湾 119 或 110），不要等待，也尽量不要让对方一个人待着。\n"
        "{resources}\n"
        "打电话时说清楚地址、对方服了什么或伤在哪里、大概多久以前。把药物、刀具等危险物品拿开。"
        "你也在承受很大的压力，等对方安全以后，也请照顾好自己。"
    ),
    "en": (
        "This sounds like an emergency. If the person has taken something, is injured, unconscious or about to "
        "hurt themselves, call your local emergency number now (911 in the US) and don't wait; try not to leave "
        "them alone.\n"
        "{resources}\n"
        "Tell the dispatcher where you are, what was taken or how they are hurt, and roughly when. Move pills, "
        "blades and other dangerous things out of reach. This is a lot to carry: once they are safe, please look "
        "after yourself too."
    ),
}

CONCERN_FOOTER = {
    "zh": "\n\n——\n如果你或你关心的人感到难以承受、有伤害自己的念头，可以随时联系：\n{resources}",
    "en": (
        "\n\n---\nIf you, or someone you care about, feel overwhelmed or have thoughts of self-harm, "
        "you can reach out any time:\n{resources}"
    ),
}


def notice(language: str = "zh") -> str:
    """The short not-a-substitute notice the chat shows at the start."""
    return NOTICE.get(language, NOTICE["en"])


def crisis_reply(language: str = "zh", risk: Risk | None = None) -> str:
    """The fixed crisis reply (the emergency variant when only someone else is in danger)."""
    language = language if language in CRISIS_REPLY else "en"
    template = EMERGENCY_REPLY if risk is not None and risk.third_party_only else CRISIS_REPLY
    return template[language].format(resources=format_crisis_resources(language))


def concern_footer(language: str = "zh") -> str:
    """What follows the model's answer on a ``concern`` turn."""
    language = language if language in CONCERN_FOOTER else "en"
    return CONCERN_FOOTER[language].format(resources=format_crisis_resources(language))


# --------------------------------------------------------------------------------------------- history
def trim_history(messages: list[dict], max_tokens: int, count_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """Keep the leading system message(s) and as many of the newest turns as fit in ``max_tokens``.

    The last message (the current user turn) is always kept, even on its own over budget. The kept
    turns never start with an assistant message (chat templates expect a user turn first).
    ``count_tokens`` is any ``str -> int`` (for a tokenizer: ``lambda s: len(tok.encode(s))``);
    the default is :func:`estimate_tokens`.
    """
    if max_tokens <= 0:
        raise CbtLlmError(f"max_tokens must be positive, got {max_tokens}")
    count = count_tokens or estimate_tokens
    messages = list(messages)
    lead = 0
    while lead < len(messages) and messages[lead].get("role") == "system":
        lead += 1
    system, turns = messages[:lead], messages[lead:]
    if not turns:
        return system
    budget = max_tokens - sum(count(m["content"]) + PER_MESSAGE_TOKENS for m in system)
    kept = [turns[-1]]
    budget -= count(turns[-1]["content"]) + PER_MESSAGE_TOKENS
    for message in reversed(turns[:-1]):
        cost = count(message["content"]) + PER_MESSAGE_TOKENS
        if cost > budget:
            break
        kept.append(message)
        budget -= cost
    kept.reverse()
    while len(kept) > 1 and kept[0].get("role") != "user":
        kept.pop(0)
    return system + kept


def _check_history(history: Iterable[dict]) -> list[dict]:
    checked = []
    for i, message in enumerate(history or []):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                or not isinstance(message.get("content"), str):
            raise CbtLlmError(f"history[{i}] must be a dict with role system/user/assistant and text content")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def build_messages(history: Iterable[dict], message: str, language: str = "zh", system_prompt: str | None = None,
                   max_tokens: int | None = None, count_tokens: Callable[[str], int] | None = None) -> list[dict]:
    """System line + history + the user turn, trimmed to ``max_tokens`` when given.

    A system message at the start of ``history`` wins over ``system_prompt``; otherwise the
    counselling system line of ``language`` is used.
    """
    history = _check_history(history)
    if history and history[0]["role"] == "system":
        system, history = history[0], history[1:]
    else:
        system = {"role": "system", "content": system_prompt or SYSTEM_PROMPTS.get(language, SYSTEM_PROMPTS["en"])}
    messages = [system, *[m for m in history if m["role"] != "system"], {"role": "user", "content": message}]
    return trim_history(messages, max_tokens, count_tokens) if max_tokens else messages


# ----------------------------------------------------------------------------------------------- reply
@dataclass(frozen=True)
class Reply:
    """What the chat shows for one user turn."""

    text: str
    risk: Risk
    model_called: bool


class ReplyStream:
    """One turn as a stream of text chunks. The risk is known before the first chunk.

    Iterate it to get the chunks (for a terminal: print each as it comes); afterwards ``text`` holds
    the whole reply. ``reply()`` drains what is left and returns a :class:`Reply`.
    """

    def __init__(self, risk: Risk, language: str, messages: list[dict], generate: Callable):
        self.risk = risk
        self.language = language
        self.messages = messages
        self.model_called = False
        self.text = ""
        self._generate = generate
        self._chunks = self._run()

    def _run(self) -> Iterator[str]:
        if self.risk.level == "crisis":
            yield crisis_reply(self.language, self.risk)
            return
        self.model_called = True
        result = self._generate(self.messages)
        if isinstance(result, str):
            result = [result]
        elif result is None:
            raise CbtLlmError("generate returned None; expected text or an iterator of text chunks")
        for chunk in result:
            if not isinstance(chunk, str):
                raise CbtLlmError(f"generate yielded {type(chunk).__name__}; expected text chunks")
            if chunk:
                yield chunk
        if self.risk.level == "concern":
            yield concern_footer(self.language)

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            self.text += chunk
            yield chunk

    def reply(self) -> Reply:
        for _ in self:
            pass
        return Reply(self.text, self.risk, self.model_called)


def _previous_user_turn(history: list[dict]) -> str | None:
    for message in reversed(history):
        if message["role"] == "user":
            return message["content"]
    return None


def respond_stream(history: Iterable[dict], message: str, generate: Callable, language: str | None = None, *,
                   judge: Callable | None = None, system_prompt: str | None = None, max_tokens: int | None = None,
                   count_tokens: Callable[[str], int] | None = None, lexicon=None) -> ReplyStream:
    """Assess ``message`` now and return a :class:`ReplyStream` that generates lazily when iterated.

    ``language`` (``zh``/``en``) fixes the reply's language and system line; by default both follow
    the message. ``max_tokens`` trims the history (system line and newest turns kept) before
    ``generate`` sees it. ``judge`` is passed to :func:`assess_risk` (it can only raise the level).
    """
    if not isinstance(message, str) or not message.strip():
        raise CbtLlmError("message must be non-empty text")
    if not callable(generate):
        raise CbtLlmError("generate must be a callable taking the chat messages")
    history = _check_history(history)
    risk = assess_risk(message, judge=judge, lexicon=lexicon)
    previous = _previous_user_turn(history)
    if previous is not None and risk.level == "none" and assess_lexicon(previous, lexicon).level == "crisis":
        risk = raise_level(risk, "concern", "previous_turn: crisis")
    language = language or detect_language(message)
    messages = build_messages(history, message, language, system_prompt, max_tokens, count_tokens)
    return ReplyStream(risk, language, messages, generate)


def respond(history: Iterable[dict], message: str, generate: Callable, language: str | None = None, **options) -> Reply:
    """One chat turn behind the crisis guard; see :func:`respond_stream` for the options."""
    return respond_stream(history, message, generate, language, **options).reply()


# ------------------------------------------------------------------------------------ model back-ends
# A back-end is a callable ``messages -> iterator of text chunks`` (the ``generate`` of respond_stream)
# with ``calls`` (how many times it asked the model), ``context_tokens`` (the context window, in
# tokens), ``count_tokens(text)`` (what history trimming counts with), ``describe()`` and ``stop()``
# (ask a running generation to end early, e.g. after Ctrl-C). torch, transformers, peft and openai are
# imported when a back-end is built, so ``import cbt_llm.chat`` stays light.

DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9
ENDPOINT_CONTEXT_TOKENS = 8192  # endpoint mode: the assumed context window when --context-tokens is not given


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings shared by the back-ends; ``temperature`` 0 means greedy decoding."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float | None = DEFAULT_TOP_P
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise CbtLlmError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise CbtLlmError(f"temperature must be 0 or more, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise CbtLlmError(f"top_p must be in (0, 1], got {self.top_p}")


class LocalBackend:
    """A model on this machine: an adapter (folder or Hub repo id) on its base, or a plain ``base`` model.

    ``adapter`` alone loads with :func:`cbt_llm.hub.load_adapter` (tokenizer from the adapter when it
    ships one); ``adapter`` with ``base`` puts the adapter on that base instead of the one in its
    config; ``base`` alone chats with the base model. ``base`` may be the tiny model's name
    (``cbt-llm/tiny-random-llama``). Tokens stream with transformers' ``TextIteratorStreamer`` from
    ``generate`` running in a thread. The context window is the model's ``max_position_embeddings``
    (or the tokenizer's ``model_max_length`` when smaller) unless ``context_tokens`` is given.
    """

    def __init__(self, adapter: str | None = None, base: str | None = None,
                 settings: GenerationSettings | None = None, *, device: str = "auto",
                 context_tokens: int | None = None, revision: str | None = None):
        if not adapter and not base:
            raise CbtLlmError("give an adapter (folder or Hub repo id) or a base model")
        import threading

        import torch

        from cbt_llm.models.tiny import resolve_model_name

        self.settings = settings or GenerationSettings()
        self.adapter, self.base = adapter, base
        self.calls = 0
        self._stop = threading.Event()  # one per generation, so a late stop never ends the next one
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs = {"device_map": "auto"} if device == "cuda" else {}
        base_path = resolve_model_name(base) if base else None
        try:
            if adapter and not base:
                from cbt_llm.hub import load_adapter

                model, tokenizer = load_adapter(adapter, revision=revision, **kwargs)
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
                tokenizer = None
                if adapter:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, adapter, revision=revision)
                    try:
                        tokenizer = AutoTokenizer.from_pretrained(adapter, revision=revision)
                    except (OSError, ValueError):
                        tokenizer = None  # the adapter ships no tokenizer: use the base's
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(base_path)
        except CbtLlmError:
            raise
        except (OSError, ValueError) as err:
            raise CbtLlmError(f"cannot load {adapter or base}: {first_line(err)}") from None
        if not tokenizer.chat_template:
            raise CbtLlmError(f"the tokenizer of {adapter or base} has no chat template; use an instruct/chat "
                              "model or an adapter trained with `cbt-llm train` (it saves one)")
        if "device_map" not in kwargs:
            model.to(device)
        model.eval()
        self.model, self.tokenizer = model, tokenizer
        limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 10_000_000]
        self.context_tokens = context_tokens or (min(limits) if limits else 2048)

    def describe(self) -> str:
        if self.adapter:
            return f"adapter {self.adapter}" + (f" on {self.base}" if self.base else "")
        return f"model {self.base}"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def stop(self) -> None:
        self._stop.set()

    def __call__(self, messages: list[dict]) -> Iterator[str]:
        import threading

        from transformers import (
            StoppingCriteria,
            StoppingCriteriaList,
            TextIteratorStreamer,
            set_seed,
        )

        self._stop = stop = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        tokenizer, settings = self.tokenizer, self.settings
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True).to(self.model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p} \
            if settings.temperature > 0 else {"do_sample": False, "temperature": None, "top_p": None}
        options = dict(**inputs, streamer=streamer, max_new_tokens=settings.max_new_tokens,
                       stopping_criteria=StoppingCriteriaList([_Stop()]),
                       pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                       else tokenizer.eos_token_id, **sampling)
        failure: list[BaseException] = []

        def run():
            try:
                self.model.generate(**options)
            except BaseException as err:  # noqa: BLE001 - handed to the reading thread below
                failure.append(err)
                streamer.end()

        if settings.seed is not None:
            set_seed(settings.seed + self.calls)
        self.calls += 1
        thread = threading.Thread(target=run, name="cbt-llm-generate", daemon=True)
        thread.start()
        try:
            for text in streamer:
                if text:
                    yield text
        finally:
            stop.set()  # ends generation early when the reader stopped (Ctrl-C, closed generator)
            thread.join()
        if failure:
            raise CbtLlmError(f"generation failed: {first_line(failure[0])}")


class EndpointBackend:
    """A served model behind any OpenAI-compatible chat-completions API, streamed with the openai client.

    The key comes from the environment variable ``api_key_env`` (default ``OPENAI_API_KEY``), never
    from an argument; a local server given by ``base_url`` gets a placeholder when the variable is
    unset. The tokenizer is not known here, so history is trimmed with :func:`estimate_tokens` (one
    token per CJK character and 1.3 per other word) against ``context_tokens`` (default
    :data:`ENDPOINT_CONTEXT_TOKENS`).
    """

    def __init__(self, model: str, base_url: str | None = None, settings: GenerationSettings | None = None, *,
                 api_key_env: str = "OPENAI_API_KEY", context_tokens: int | None = None, timeout: float = 120.0,
                 max_retries: int = 2):
        import os

        try:
            import openai
        except ImportError:
            raise CbtLlmError("endpoint mode needs the openai package: pip install openai") from None
        self._openai = openai
        self.model, self.base_url = model, base_url
        self.settings = settings or GenerationSettings()
        self.context_tokens = context_tokens or ENDPOINT_CONTEXT_TOKENS
        self.calls = 0
        self._response = None
        api_key = os.environ.get(api_key_env) or ("EMPTY" if base_url else None)
        if not api_key:
            raise CbtLlmError(f"set {api_key_env} to the API key (or give --base-url for a local server)")
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    def describe(self) -> str:
        return f"model {self.model}" + (f" at {self.base_url}" if self.base_url else "")

    count_tokens = staticmethod(estimate_tokens)

    def stop(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing a half-read stream must not fail the chat
                pass

    def __call__(self, messages: list[dict]) -> Iterator[str]:
        openai, settings = self._openai, self.settings
        options = {"max_tokens": settings.max_new_tokens, "temperature": settings.temperature}
        if settings.top_p is not None:
            options["top_p"] = settings.top_p
        if settings.seed is not None:
            options["seed"] = settings.seed
        self.calls += 1
        try:
            self._response = stream = self._client.chat.completions.create(
                model=self.model, messages=messages, stream=True, **options)
            for event in stream:
                if event.choices:
                    text = event.choices[0].delta.content
                    if text:
                        yield text
        except openai.APIStatusError as err:
            message = err.message if isinstance(getattr(err, "message", None), str) else first_line(err)
            raise CbtLlmError(f"{self.describe()}: HTTP {err.status_code}: {message}") from None
        except openai.APIError as err:  # connection errors, timeouts, a broken stream
            raise CbtLlmError(f"{self.describe()}: {first_line(err)}") from None
        finally:
            self.stop()


# ------------------------------------------------------------------------------------------ terminal
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
        from cbt_llm.safety import OpenAIRiskJudge

        judge = OpenAIRiskJudge(judge_base_url, judge_model, api_key_env=api_key_env)
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
