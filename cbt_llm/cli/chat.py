"""``cbt-llm chat`` (behind the crisis guard) and ``cbt-llm merge`` (one folder for serving)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cbt_llm.chat import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, ENDPOINT_CONTEXT_TOKENS
from cbt_llm.cli.common import Command, option

MODEL_HELP = "base model (Hub id, folder or cbt-llm/tiny-random-llama)"


@dataclass
class ChatArguments:
    adapter: str | None = option(None, "a LoRA adapter folder or Hub repo id", metavar="DIR|REPO")
    model_name_or_path: str | None = option(None, f"{MODEL_HELP}: with --adapter, instead of the adapter's own "
                                            "base; alone, chat with this model")
    revision: str | None = option(None, "Hub branch or commit of the adapter")
    device: str = option("auto", "cpu, cuda, ... (auto: cuda when available)")
    base_url: str | None = option(None, "a served model (OpenAI-compatible): e.g. http://127.0.0.1:8000/v1 (vLLM, "
                                  "TGI, llama.cpp ...)", metavar="URL")
    model: str | None = option(None, "the served model's name on the server", metavar="NAME")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the API key; the key itself is never "
                              "taken from a flag", metavar="NAME")
    max_new_tokens: int = option(DEFAULT_MAX_NEW_TOKENS, "answer length cap", metavar="N")
    temperature: float = option(DEFAULT_TEMPERATURE, "sampling temperature, 0 for greedy")
    top_p: float = option(DEFAULT_TOP_P, "nucleus sampling")
    seed: int | None = option(None, "sampling seed (reproducible answers)")
    context_tokens: int | None = option(None, "context window the history is trimmed to (default: the model's; "
                                        f"served models: {ENDPOINT_CONTEXT_TOKENS}, counted with a character-based "
                                        "estimate)", metavar="N")
    language: Literal["zh", "en"] = option("zh", "language of the notice and prompts (replies follow each "
                                           "message's language)")
    system_prompt: str | None = option(None, "system line (default: the counselling line of the message's language)",
                                       metavar="TEXT")
    judge_model: str | None = option(None, "also ask this model (OpenAI-compatible) to assess risk; it can only "
                                     "raise the level", metavar="NAME")
    judge_base_url: str | None = option(None, "server of --judge_model (key: --api_key_env)", metavar="URL")


def chat(args: ChatArguments) -> str:
    """The terminal chat; returns the goodbye line."""
    from cbt_llm.chat import GenerationSettings, chat_main

    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed)
    return chat_main(adapter=args.adapter, base=args.model_name_or_path, model=args.model, base_url=args.base_url,
                     api_key_env=args.api_key_env, language=args.language, settings=settings,
                     context_tokens=args.context_tokens, device=args.device, revision=args.revision,
                     system_prompt=args.system_prompt, judge_model=args.judge_model,
                     judge_base_url=args.judge_base_url)


@dataclass
class MergeArguments:
    adapter: str = option(help="adapter folder or Hub repo id", metavar="DIR|REPO")
    output_dir: str = option(help="folder to write (must be empty or new)", metavar="DIR")
    model_name_or_path: str | None = option(None, f"{MODEL_HELP} to merge into (default: the adapter's base)")
    revision: str | None = option(None, "Hub branch or commit of the adapter")


def merge(args: MergeArguments) -> str:
    """Merge the adapter into its base model and save one folder."""
    from cbt_llm.training.merge import merge_adapter

    output = merge_adapter(args.adapter, args.output_dir, model=args.model_name_or_path, revision=args.revision)
    return f"merged adapter {args.adapter} into its base model: {output} (model card: {output / 'README.md'})"


COMMANDS = (
    Command("chat", ChatArguments, chat,
            help="talk to a fine-tuned adapter (or a served model) in the terminal, behind the crisis guard",
            description="Streaming multi-turn chat with the counselling system line. Every message is checked for "
                        "risk first: on a crisis the reply is a fixed, caring answer with crisis resources and the "
                        "model is not asked; on a concern the model's answer is followed by the resources. /reset "
                        "clears the conversation, /exit (or Ctrl-D, or Ctrl-C at the prompt) ends it; Ctrl-C while an "
                        "answer streams stops that answer. Not a substitute for professional help."),
    Command("merge", MergeArguments, merge,
            help="merge a LoRA adapter into its base model (one folder for serving)",
            description="Load the adapter on its base (or --model_name_or_path), merge the LoRA weights in, and "
                        "write the merged model, tokenizer, chat template and a model card (with the not-a-substitute "
                        "statement and crisis resources) to --output_dir (must be empty or new)."),
)
