"""``cbt-llm chat`` (behind the crisis guard) and ``cbt-llm merge`` (one folder for serving)."""

from __future__ import annotations

from cbt_llm.chat.terminal import ChatConfig, chat_main
from cbt_llm.cli.common import Command
from cbt_llm.training.merge import MergeConfig, merge_adapter


def merge(config: MergeConfig) -> str:
    """Merge the adapter into its base model and save one folder; the line names both."""
    output = merge_adapter(config)
    return f"merged adapter {config.adapter} into its base model: {output} (model card: {output / 'README.md'})"


COMMANDS = (
    Command("chat", ChatConfig, chat_main,
            help="talk to a fine-tuned adapter (or a served model) in the terminal, behind the crisis guard",
            description="Streaming multi-turn chat with the counselling system line. Every message is checked for "
                        "risk first: on a crisis the reply is a fixed, caring answer with crisis resources and the "
                        "model is not asked; on a concern the model's answer is followed by the resources. /reset "
                        "clears the conversation, /exit (or Ctrl-D, or Ctrl-C at the prompt) ends it; Ctrl-C while an "
                        "answer streams stops that answer. Not a substitute for professional help."),
    Command("merge", MergeConfig, merge,
            help="merge a LoRA adapter into its base model (one folder for serving)",
            description="Load the adapter on its base (or --model_name_or_path), merge the LoRA weights in, and "
                        "write the merged model, tokenizer, chat template and a model card (with the not-a-substitute "
                        "statement and crisis resources) to --output_dir (must be empty or new)."),
)
