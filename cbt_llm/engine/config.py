"""Where an OpenAI-compatible server is and how hard to push it: the fields every server-facing stage shares.

``ApiKeyConfig`` names the key's variable; ``ServerConfig`` is enough for one conversation (chat, app, the guard's model layer); ``EndpointConfig``
adds what a stage that sends many requests needs (concurrency, rate caps, retries) and makes the
``RequestEngine``; ``ServedModelConfig`` adds the served model's name; ``ModelChoiceConfig`` is a model
either loaded here or served (predict, bench). Stage configs extend these, so each flag is declared here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cbt_llm.config import option
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV, resolve_api_key
from cbt_llm.errors import CbtLlmError

if TYPE_CHECKING:
    from cbt_llm.engine.client import RequestEngine


@dataclass(kw_only=True)
class ApiKeyConfig:
    """Where the API key is read from: the name of an environment variable, never the key itself."""

    api_key_env: str = option(DEFAULT_API_KEY_ENV, "environment variable holding the API key; the key itself is "
                              "never taken from a flag", metavar="NAME")


@dataclass(kw_only=True)
class ServerConfig(ApiKeyConfig):
    """An OpenAI-compatible server and the variable that holds its key."""

    base_url: str | None = option(None, "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, transformers "
                                  "serve, a hosted API); without it, generate/annotate/judge ask OpenAI (or "
                                  "$OPENAI_BASE_URL) and predict/chat/app load a model", metavar="URL")
    timeout: float = option(120.0, "seconds per request", metavar="S")


@dataclass(kw_only=True)
class EndpointConfig(ServerConfig):
    """A server asked many times at once: concurrency, optional rate caps, retries."""

    concurrency: int = option(16, "requests in flight", metavar="N")
    rpm: float | None = option(None, "requests-per-minute cap (the client still slows down by itself when the "
                               "server answers 429)", metavar="N")
    tpm: float | None = option(None, "tokens-per-minute cap", metavar="N")
    max_attempts: int = option(6, "attempts per request for 5xx, timeouts and dropped connections", metavar="N")

    def engine(self) -> RequestEngine:
        """A request engine with the key read from ``api_key_env``."""
        from cbt_llm.engine.client import RequestEngine

        return RequestEngine(base_url=self.base_url, api_key=resolve_api_key(self.api_key_env, self.base_url),
                             concurrency=self.concurrency, rpm=self.rpm, tpm=self.tpm, timeout=self.timeout,
                             max_attempts=self.max_attempts)


@dataclass(kw_only=True)
class ServedModelConfig(EndpointConfig):
    """A named model on such a server (generate, annotate, judge)."""

    model: str = option(help="model name on the server (e.g. gpt-4o-mini)")


@dataclass(kw_only=True)
class ModelChoiceConfig(EndpointConfig):
    """A model loaded here (``model_name_or_path`` and/or ``adapter``) or a served one (``base_url`` + ``model``):
    the stages that can ask either (predict, bench); ``check_model_choice`` is their one check."""

    model_name_or_path: str | None = option(None, "base model to load (Hub id, folder or cbt-llm/tiny-random-llama; "
                                            "default: the adapter's base)")
    model: str | None = option(None, "with --base_url: the model's name on the server (e.g. a vLLM --lora-modules "
                               "name)", metavar="NAME")
    adapter: str | None = option(None, "LoRA adapter folder or Hub repo id", metavar="DIR|REPO")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: cuda when available)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = option(
        None, "weights dtype (default: bfloat16 on a GPU that has it, else float32; auto: the checkpoint's own)")

    def check_model_choice(self) -> None:
        """One model, named the way its kind is named: a local one to load, or a served one."""
        if (self.base_url and self.model_name_or_path) or (self.model and not self.base_url):
            raise CbtLlmError("a model to load is --model_name_or_path; a served one is --base_url URL --model NAME")
        if self.base_url and self.adapter:
            raise CbtLlmError("--adapter is for local generation; with --base_url, name the served LoRA module "
                              "with --model (e.g. vllm serve BASE --enable-lora --lora-modules cbt=ADAPTER)")
        if self.base_url and not self.model:
            raise CbtLlmError("--base_url needs --model (the model name on the server)")
        if not (self.base_url or self.model_name_or_path or self.adapter):
            raise CbtLlmError("name a model: --model_name_or_path and/or --adapter to load one, or --base_url URL "
                              "--model NAME for a served one")

    def model_meant(self) -> str:
        """The model's name for run settings and reports: the served one, else the base to load, else the
        adapter's own base (its PEFT config)."""
        if self.model or self.model_name_or_path:
            return self.model or self.model_name_or_path
        from cbt_llm.models.loading import base_model_of

        return base_model_of(self.adapter)
