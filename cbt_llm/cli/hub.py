"""``cbt-llm push`` and ``cbt-llm pull``: a dataset or adapter repo on the Hugging Face Hub, both by ``--repo_id``."""

from __future__ import annotations

from cbt_llm.cli.common import Command
from cbt_llm.hub.pull import PullConfig, pull
from cbt_llm.hub.push import PushConfig, push


COMMANDS = (
    Command("push", PushConfig, push,
            help="upload a dataset folder or a LoRA adapter folder to the Hugging Face Hub",
            description="Upload in one commit. Datasets are private unless --private false (PsyQA-derived data has "
                        "usage terms); adapters are public unless --private. The adapter's model card is regenerated "
                        "for the Hub. Uses HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub."),
    Command("pull", PullConfig, pull,
            help="download one commit of a dataset or adapter repo from the Hub",
            description="Download exactly the files of one commit (the head of main, or --revision) into an empty "
                        "folder."),
)
