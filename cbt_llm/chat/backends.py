"""Model back-ends for the chat: a local model (:class:`LocalBackend`) or a served one (:class:`EndpointBackend`).

A back-end is a callable ``messages -> iterator of text chunks`` (the ``generate`` of respond_stream)
with ``calls`` (how many times it asked the model), ``context_tokens`` (the context window, in
tokens), ``count_tokens(text)`` (what history trimming counts with), ``describe(public=False)`` (its
name; ``public``: as a web page's visitors may see it, without server address or local path) and
``stop()`` (ask a running generation to end early, e.g. after Ctrl-C). :class:`ChatModelConfig` says which
back-end (and which guard model) ``cbt-llm chat`` and ``cbt-llm app`` use. torch, transformers, peft
and openai are imported when a back-end is built, so ``import cbt_llm.chat`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from cbt_llm.config import option
from cbt_llm.engine.config import ServerConfig
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV, api_errors, estimate_tokens
from cbt_llm.errors import CbtLlmError, first_line
from cbt_llm.models.loading import MODEL_NAME_OR_PATH_HELP

DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9
ENDPOINT_CONTEXT_TOKENS = 8192  # endpoint mode: the assumed context window when --context_tokens is not given


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


@dataclass(kw_only=True)
class ChatModelConfig(ServerConfig):
    """What a chat talks to: an adapter and/or a base model loaded here, or a served model (``model``, at
    ``base_url``), how it samples, and an optional guard model. ``cbt-llm chat`` and ``cbt-llm app`` share it."""

    adapter: str | None = option(None, "a LoRA adapter folder or Hub repo id", metavar="DIR|REPO")
    model_name_or_path: str | None = option(None, f"{MODEL_NAME_OR_PATH_HELP}: with --adapter, instead of the "
                                            "adapter's own base; alone, chat with this model")
    revision: str | None = option(None, "Hub branch or commit of the adapter")
    device: str = option("auto", "cpu, cuda, ... (auto: cuda when available)")
    model: str | None = option(None, "the served model's name on the server", metavar="NAME")
    max_new_tokens: int = option(DEFAULT_MAX_NEW_TOKENS, "answer length cap", metavar="N")
    temperature: float = option(DEFAULT_TEMPERATURE, "sampling temperature, 0 for greedy")
    top_p: float = option(DEFAULT_TOP_P, "nucleus sampling")
    seed: int | None = option(None, "sampling seed (reproducible answers)")
    context_tokens: int | None = option(None, "context window the history is trimmed to (default: the model's; "
                                        f"served models: {ENDPOINT_CONTEXT_TOKENS}, counted with a character-based "
                                        "estimate)", metavar="N")
    guard_model: str | None = option(None, "also ask this model (OpenAI-compatible) to assess risk; it can only "
                                     "raise the level", metavar="NAME")
    guard_base_url: str | None = option(None, "server of --guard_model (key: --api_key_env)", metavar="URL")

    def __post_init__(self):
        if self.model and (self.adapter or self.model_name_or_path):
            raise CbtLlmError("give either --adapter/--model_name_or_path (a local model) or --model with --base_url "
                              "(a served model), not both")
        if self.base_url and not self.model:
            raise CbtLlmError("--base_url needs --model (the model's name on the server)")
        if self.context_tokens is not None and self.context_tokens <= 0:
            raise CbtLlmError(f"--context_tokens must be positive, got {self.context_tokens}")
        self.settings()  # the sampling settings are checked now, before anything is loaded

    def settings(self) -> GenerationSettings:
        """The sampling settings the back-end uses."""
        return GenerationSettings(self.max_new_tokens, self.temperature, self.top_p, self.seed)

    def backend(self) -> LocalBackend | EndpointBackend | None:
        """The served model when ``model`` is given, else the local adapter and/or base; None when neither is."""
        if self.model:
            return EndpointBackend(self.model, self.base_url, self.settings(), api_key_env=self.api_key_env,
                                   context_tokens=self.context_tokens, timeout=self.timeout)
        if self.adapter or self.model_name_or_path:
            return LocalBackend(self.adapter, self.model_name_or_path, self.settings(), device=self.device,
                                context_tokens=self.context_tokens, revision=self.revision)
        return None

    def guard(self) -> Callable[[str], dict] | None:
        """The model guard for ``guard_model`` (its key from ``api_key_env``), or None without one."""
        if not self.guard_model:
            return None
        from cbt_llm.safety import served_model_guard

        return served_model_guard(self.guard_model, self.guard_base_url, api_key_env=self.api_key_env)


def history_budget(backend) -> int:
    """How many tokens of the conversation fit beside the answer: ``context_tokens - max_new_tokens``."""
    budget = backend.context_tokens - backend.settings.max_new_tokens
    if budget <= 0:
        raise CbtLlmError(f"max_new_tokens ({backend.settings.max_new_tokens}) leaves no room for the conversation "
                          f"in a context window of {backend.context_tokens} tokens")
    return budget


def load_chat_model(adapter: str | None, model_name_or_path: str | None, *, device: str = "auto",
                    revision: str | None = None):
    """(model, tokenizer) in eval mode: ``adapter`` on its own base (or on ``model_name_or_path``), or
    ``model_name_or_path`` alone.

    The project's one loader (:func:`cbt_llm.models.loading.load_model_and_tokenizer`);
    ``model_name_or_path`` may be the tiny model's name.
    """
    from cbt_llm.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(model_name_or_path, adapter, revision=revision, device=device)


def trained_system_prompts(adapter: str | None, revision: str | None = None) -> dict[str, str] | None:
    """The system line per language ``adapter`` was trained with (its saved recipe), None without one."""
    from cbt_llm.data.dialogue_prompts import recipe_system_prompts
    from cbt_llm.models.loading import read_recipe

    recipe = read_recipe(adapter, revision)
    return recipe_system_prompts(recipe) if recipe else None


class LocalBackend:
    """A model on this machine: an adapter (folder or Hub repo id) on its base, or a plain base model.

    ``adapter`` alone loads on the base its config names (tokenizer from the adapter when it ships
    one); ``adapter`` with ``model_name_or_path`` puts the adapter on that base instead;
    ``model_name_or_path`` alone chats with the base model, which may be the tiny model's name
    (``cbt-llm/tiny-random-llama``). Tokens stream with transformers' ``TextIteratorStreamer`` from
    ``generate`` running in a thread. The context window is the model's ``max_position_embeddings``
    (or the tokenizer's ``model_max_length`` when smaller) unless ``context_tokens`` is given.
    ``system_prompts`` are the lines the adapter was trained with, per language (its saved recipe; a
    dialogue adapter's are the dialogues' own), or None for a base model or an adapter without a recipe.
    """

    def __init__(self, adapter: str | None = None, model_name_or_path: str | None = None,
                 settings: GenerationSettings | None = None, *, device: str = "auto",
                 context_tokens: int | None = None, revision: str | None = None):
        if not adapter and not model_name_or_path:
            raise CbtLlmError("give an adapter (folder or Hub repo id) or a base model")
        import threading

        self.settings = settings or GenerationSettings()
        self.adapter, self.model_name_or_path = adapter, model_name_or_path
        self.calls = 0
        self._stop = threading.Event()  # one per generation, so a late stop never ends the next one
        model, tokenizer = load_chat_model(adapter, model_name_or_path, device=device, revision=revision)
        if not tokenizer.chat_template:
            raise CbtLlmError(f"the tokenizer of {adapter or model_name_or_path} has no chat template; use an "
                              "instruct/chat model or an adapter trained with `cbt-llm train` (it saves one)")
        self.model, self.tokenizer = model, tokenizer
        self.system_prompts = trained_system_prompts(adapter, revision)
        limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 10_000_000]
        self.context_tokens = context_tokens or (min(limits) if limits else 2048)

    def describe(self, public: bool = False) -> str:
        """What the terminal names the model by; ``public`` (the web page) shows folder names, not local paths."""
        def name(path: str) -> str:
            return Path(path).name if public and Path(path).exists() else path

        if self.adapter:
            return f"adapter {name(self.adapter)}" + (f" on {name(self.model_name_or_path)}"
                                                     if self.model_name_or_path else "")
        return f"model {name(self.model_name_or_path)}"

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

    The key comes from the environment variable ``api_key_env`` (default:
    :data:`~cbt_llm.engine.endpoints.DEFAULT_API_KEY_ENV`), never from an argument; a local server
    given by ``base_url`` gets a placeholder when the variable is unset. A failure is one
    ``CbtLlmError`` line from :func:`~cbt_llm.engine.endpoints.api_errors`, with the key scrubbed as
    everywhere else (a server that echoes it in a 401 does not put it on the page, the terminal or a trace).
    The tokenizer is not known here, so history is trimmed with :func:`estimate_tokens` (one
    token per CJK character and 1.3 per other word) against ``context_tokens`` (default
    :data:`ENDPOINT_CONTEXT_TOKENS`).
    """

    def __init__(self, model: str, base_url: str | None = None, settings: GenerationSettings | None = None, *,
                 api_key_env: str = DEFAULT_API_KEY_ENV, context_tokens: int | None = None, timeout: float = 120.0,
                 max_retries: int = 2):
        from cbt_llm.engine.endpoints import openai_client, resolve_api_key

        self.model, self.base_url = model, base_url
        self.system_prompts = None  # the server's model: pass --system_prompt for the line it was trained with
        self.settings = settings or GenerationSettings()
        self.context_tokens = context_tokens or ENDPOINT_CONTEXT_TOKENS
        self.calls = 0
        self._response = None
        self._api_key = resolve_api_key(api_key_env, base_url)  # kept only to scrub it from error text
        self._client = openai_client(base_url, api_key=self._api_key, timeout=timeout, max_retries=max_retries)

    def describe(self, public: bool = False) -> str:
        """The served model's name, and where it is served unless ``public`` (the web page: no server address)."""
        return f"model {self.model}" + (f" at {self.base_url}" if self.base_url and not public else "")

    count_tokens = staticmethod(estimate_tokens)

    def stop(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing a half-read stream must not fail the chat
                pass

    def __call__(self, messages: list[dict]) -> Iterator[str]:
        settings = self.settings
        options = {"max_tokens": settings.max_new_tokens, "temperature": settings.temperature}
        if settings.top_p is not None:
            options["top_p"] = settings.top_p
        if settings.seed is not None:
            options["seed"] = settings.seed
        self.calls += 1
        try:
            with api_errors(self.describe(), self._api_key):  # HTTP errors, connection errors, a broken stream
                self._response = stream = self._client.chat.completions.create(
                    model=self.model, messages=messages, stream=True, **options)
                for event in stream:
                    if event.choices:
                        text = event.choices[0].delta.content
                        if text:
                            yield text
        finally:
            self.stop()

