"""Publish the dataset and LoRA adapters to the Hugging Face Hub, and pull them back.

``push_dataset`` uploads a folder written by ``build_dataset`` (parquet per config and split plus
the README card) in one commit; ``push_adapter`` uploads an adapter folder with its model card
regenerated for the Hub. Both plan the exact files first, so ``dry_run=DIR`` writes what would be
uploaded and nothing else. ``pull`` downloads one commit of a repo; ``load_adapter`` returns a
model and tokenizer from a repo or a folder. What is pushed loads with the stock clients alone:
``load_dataset(repo)``, ``load_dataset(repo, "sft")`` and
``AutoPeftModelForCausalLM.from_pretrained(repo)``.

Authentication is huggingface_hub's own (``HF_TOKEN``, ``hf auth login``); the token is passed to
the client and never written, logged or put into a message. ``HF_ENDPOINT`` selects another Hub.
Failures become one-line ``CbtLlmError``s: no token, repository not found or no access, revision
not found, no network.
"""

from cbt_llm.hub.client import hub_errors
from cbt_llm.hub.pull import KINDS, PullResult, load_adapter, pull
from cbt_llm.hub.push import (
    ADAPTER_CONFIG,
    PushResult,
    adapter_card_for_hub,
    plan_adapter,
    plan_dataset,
    push_adapter,
    push_dataset,
    write_plan,
)

__all__ = ["ADAPTER_CONFIG", "KINDS", "PullResult", "PushResult", "adapter_card_for_hub", "hub_errors", "load_adapter",
           "plan_adapter", "plan_dataset", "pull", "push_adapter", "push_dataset", "write_plan"]
