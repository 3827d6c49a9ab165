"""``cbt-llm push`` and ``cbt-llm pull``: a dataset or adapter repo on the Hugging Face Hub, both by ``--repo_id``."""

from __future__ import annotations

from dataclasses import dataclass

from cbt_llm.cli.common import Command, option, positional
from cbt_llm.errors import CbtLlmError


@dataclass(kw_only=True)
class HubArguments:
    kind: str = positional("what the repo holds", choices=("dataset", "adapter"))
    repo_id: str = option(help="the Hub repository", metavar="NS/NAME")
    revision: str | None = option(None, "branch (push: made from main when missing) or, for pull, a commit id "
                                  "(default: main)")


@dataclass(kw_only=True)
class PushArguments(HubArguments):
    folder: str = positional("a folder from `cbt-llm build` (dataset) or an adapter folder")
    private: bool | None = option(None, "create the repo private (the default for datasets: PsyQA-derived data has "
                                  "usage terms); --private false: public (the default for adapters)",
                                  nargs="?", const=True)
    commit_message: str | None = option(None, "the commit's summary line")
    dry_run: bool = option(False, "write exactly the files that would be uploaded to --output_dir, list them, and "
                           "upload nothing")
    output_dir: str | None = option(None, "with --dry_run: the folder to write (must be empty or new)", metavar="DIR")
    dataset_repo_id: str | None = option(None, "adapter: the dataset repo it was trained on (linked from the card "
                                         "and listed in its `datasets`)", metavar="NS/NAME")
    base_model: str | None = option(None, "adapter: the base model's Hub id, replacing a local path in the uploaded "
                                    "adapter_config.json and card", metavar="HUB_ID")

    def __post_init__(self):
        if self.dry_run != (self.output_dir is not None):
            raise CbtLlmError("--dry_run and --output_dir DIR go together: the files that would be uploaded are "
                              "written to DIR")


def push(args: PushArguments) -> str:
    """Upload the folder in one commit (or, with --dry_run, write what would be uploaded)."""
    from cbt_llm.hub import push_adapter, push_dataset

    options = {"revision": args.revision, "commit_message": args.commit_message, "dry_run": args.output_dir}
    if args.private is not None:
        options["private"] = args.private  # else each kind's own default
    if args.kind == "dataset":
        result = push_dataset(args.folder, args.repo_id, **options)
    else:
        result = push_adapter(args.folder, args.repo_id, dataset_repo_id=args.dataset_repo_id,
                              base_model=args.base_model, **options)
    files = "".join(f"\n  {name}" for name in result.files)
    if result.dry_run_dir is not None:
        return f"dry run: would push {len(result.files)} files to {args.kind} repo {result.repo_id} " \
               f"(branch {result.revision}); wrote them to {result.dry_run_dir}:{files}"
    deleted = "".join(f"\n  deleted {name}" for name in result.deleted)
    visibility = "private" if result.private else "public"
    return f"pushed {len(result.files)} files to {args.kind} repo {result.repo_id} ({visibility}), " \
           f"branch {result.revision}, commit {result.commit}: {result.url}{files}{deleted}"


@dataclass(kw_only=True)
class PullArguments(HubArguments):
    output_dir: str = option(help="folder to write (must be empty or new)", metavar="DIR")


def pull(args: PullArguments) -> str:
    """Download exactly one commit's files into an empty folder."""
    from cbt_llm.hub import pull as pull_repo

    result = pull_repo(args.kind, args.repo_id, args.output_dir, revision=args.revision)
    return f"pulled {args.kind} repo {result.repo_id} at commit {result.commit} into {result.output_dir} " \
           f"({len(result.files)} files)"


COMMANDS = (
    Command("push", PushArguments, push,
            help="upload a dataset folder or a LoRA adapter folder to the Hugging Face Hub",
            description="Upload in one commit. Datasets are private unless --private false (PsyQA-derived data has "
                        "usage terms); adapters are public unless --private. The adapter's model card is regenerated "
                        "for the Hub. Uses HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub."),
    Command("pull", PullArguments, pull,
            help="download one commit of a dataset or adapter repo from the Hub",
            description="Download exactly the files of one commit (the head of main, or --revision) into an empty "
                        "folder."),
)
