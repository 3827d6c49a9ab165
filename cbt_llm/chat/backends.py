"""Model back-ends for the chat: a local model (:class:`LocalBackend`) or a served one (:class:`EndpointBackend`).

A back-end is a callable ``messages -> iterator of text chunks`` (the ``generate`` of respond_stream)
with ``calls`` (how many times it asked the model), ``context_tokens`` (the context window, in
tokens), ``count_tokens(text)`` (what history trimming counts with), ``describe()`` and ``stop()``
(ask a running generation to end early, e.g. after Ctrl-C). torch, transformers, peft and openai are
imported when a back-end is built, so ``import cbt_llm.chat`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from cbt_llm.engine.endpoints import estimate_tokens
from cbt_llm.errors import CbtLlmError, first_line

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


def load_chat_model(adapter: str | None, base: str | None, *, device: str = "auto", revision: str | None = None):
    """(model, tokenizer) in eval mode: ``adapter`` on its own base (or on ``base``), or ``base`` alone.

    The project's one loader (:func:`cbt_llm.models.loading.load_model_and_tokenizer`); ``base`` may be
    the tiny model's name.
    """
    from cbt_llm.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(base, adapter, revision=revision, device=device)


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

        self.settings = settings or GenerationSettings()
        self.adapter, self.base = adapter, base
        self.calls = 0
        self._stop = threading.Event()  # one per generation, so a late stop never ends the next one
        model, tokenizer = load_chat_model(adapter, base, device=device, revision=revision)
        if not tokenizer.chat_template:
            raise CbtLlmError(f"the tokenizer of {adapter or base} has no chat template; use an instruct/chat "
                              "model or an adapter trained with `cbt-llm train` (it saves one)")
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

        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer, set_seed

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
        import openai

        from cbt_llm.engine.endpoints import openai_client, resolve_api_key

        self._openai = openai
        self.model, self.base_url = model, base_url
        self.settings = settings or GenerationSettings()
        self.context_tokens = context_tokens or ENDPOINT_CONTEXT_TOKENS
        self.calls = 0
        self._response = None
        self._client = openai_client(base_url, api_key=resolve_api_key(api_key_env, base_url), timeout=timeout,
                                     max_retries=max_retries)

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

