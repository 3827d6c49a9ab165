"""Publish the dataset and LoRA adapters to the Hugging Face Hub, and pull them back.

``push(PushConfig(kind="dataset", folder=DIR, repo_id=...))`` uploads a folder written by
``build_dataset`` (parquet per config and split plus the README card) in one commit;
``kind="adapter"`` uploads an adapter folder with its model card regenerated for the Hub. Both plan
the exact files first (``plan``), so ``dry_run=True, output_dir=DIR`` writes what would be uploaded
and nothing else. ``pull(PullConfig(...))`` downloads one commit of a repo; ``load_adapter`` returns
a model and tokenizer from a repo or a folder. What is pushed loads with the stock clients alone:
``load_dataset(repo)``, ``load_dataset(repo, "sft")`` and
``AutoPeftModelForCausalLM.from_pretrained(repo)``.

Authentication is huggingface_hub's own (``HF_TOKEN``, ``hf auth login``); the token is passed to
the client and never written, logged or put into a message. ``HF_ENDPOINT`` selects another Hub.
Failures become one-line ``CbtLlmError``s: no token, repository not found or no access, revision
not found, no network.
"""

from cbt_llm.hub.client import KINDS, RepoConfig, hub_errors
from cbt_llm.hub.pull import PullConfig, PullResult, load_adapter, pull
from cbt_llm.hub.push import ADAPTER_CONFIG, PushConfig, PushResult, plan, push, write_plan

__all__ = ["ADAPTER_CONFIG", "KINDS", "PullConfig", "PullResult", "PushConfig", "PushResult", "RepoConfig", "hub_errors",
           "load_adapter", "plan", "pull", "push", "write_plan"]
