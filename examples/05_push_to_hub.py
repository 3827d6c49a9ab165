"""Stage 5: publish the dataset folder and the adapter to the Hugging Face Hub, with generated cards.

By default this is a dry run: it writes exactly what would be uploaded to examples_output/upload/.
With --push it uploads (the token comes from HF_TOKEN or `hf auth login`; datasets are private).

    python examples/05_push_to_hub.py --namespace you --push
"""

import argparse

from cbt_llm.hub import PushConfig, push

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="examples_output/cbt_qa")
parser.add_argument("--adapter", default="examples_output/adapter")
parser.add_argument("--namespace", default="your-name")
parser.add_argument("--base_model", help="Hub id of the base model, written into the uploaded adapter_config.json "
                    "so that AutoPeftModelForCausalLM.from_pretrained(repo) works for others")
parser.add_argument("--push", action="store_true", help="really upload (default: dry run)")
args = parser.parse_args()

dataset_repo, adapter_repo = f"{args.namespace}/cbt_qa", f"{args.namespace}/cbt-lora"


def config(kind: str, folder: str, repo_id: str, **adapter_options) -> PushConfig:
    """A push, or (without --push) a dry run that writes the files to examples_output/upload/KIND."""
    return PushConfig(kind=kind, folder=folder, repo_id=repo_id, dry_run=not args.push,
                      output_dir=None if args.push else f"examples_output/upload/{kind}", **adapter_options)


for result in (
    push(config("dataset", args.dataset, dataset_repo)),
    push(config("adapter", args.adapter, adapter_repo, dataset_repo_id=dataset_repo, base_model=args.base_model)),
):
    where = result.url if args.push else result.dry_run_dir
    print(f"{result.repo_type} {result.repo_id}: {len(result.files)} files -> {where}")
