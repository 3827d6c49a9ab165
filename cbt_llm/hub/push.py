"""``push(PushConfig(...))``: a dataset folder or a LoRA adapter to the Hub in one commit, after planning the exact files.

A dataset push uploads a folder written by ``build_dataset`` (parquet per config and split plus the
README card); an adapter push uploads an adapter folder with its model card made for the Hub.
``dry_run=True, output_dir=DIR`` writes what would be uploaded and nothing else. What is pushed loads
with the stock clients alone: ``load_dataset(repo)``, ``load_dataset(repo, "sft")`` and
``AutoPeftModelForCausalLM.from_pretrained(repo)``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm import __version__
from cbt_llm.cards import adapter_card_for_hub
from cbt_llm.config import option, positional
from cbt_llm.errors import CbtLlmError
from cbt_llm.hub.client import (
    RepoConfig,
    check_repo_id,
    hub_endpoint,
    hub_errors,
    kind_of,
    looks_like_local_path,
    resolve_token,
)
from cbt_llm.hub.files import (  # the filter and path scrubbing `cbt-llm app --export_space` shares
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CardFn,
    Plan,
    adapter_plan,
    read_adapter_config,
    shareable_files,
    write_plan,
)

logger = logging.getLogger(__name__)

COMMIT_MESSAGES = {"dataset": "Upload CBT QA dataset (cbt-llm {version})",
                   "adapter": "Upload LoRA adapter (cbt-llm {version})"}


@dataclass(kw_only=True)
class PushConfig(RepoConfig):
    """What ``push`` uploads, where, and how (``cbt-llm push``)."""

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
        super().__post_init__()
        if self.dry_run != (self.output_dir is not None):
            raise CbtLlmError("--dry_run and --output_dir DIR go together: the files that would be uploaded are "
                              "written to DIR")
        for repo_id in (self.dataset_repo_id, self.base_model):
            if repo_id:
                check_repo_id(repo_id)

    @property
    def is_private(self) -> bool:
        """``private``, else the kind's default: datasets private, adapters public."""
        return self.private if self.private is not None else self.kind == "dataset"


@dataclass
class PushResult:
    """What a push uploaded (or, for a dry run, would upload)."""

    repo_id: str
    repo_type: str
    files: list[str]
    commit: str | None = None  # the new commit's id; None for a dry run
    url: str | None = None
    revision: str = "main"
    private: bool | None = None
    dry_run_dir: Path | None = None
    deleted: list[str] = field(default_factory=list)

    def format(self) -> str:
        """What was pushed (or written, for a dry run): the repo, branch and commit, and the files."""
        kind, files = kind_of(self.repo_type), "".join(f"\n  {name}" for name in self.files)
        if self.dry_run_dir is not None:
            return f"dry run: would push {len(self.files)} files to {kind} repo {self.repo_id} " \
                   f"(branch {self.revision}); wrote them to {self.dry_run_dir}:{files}"
        deleted = "".join(f"\n  deleted {name}" for name in self.deleted)
        visibility = "private" if self.private else "public"
        return f"pushed {len(self.files)} files to {kind} repo {self.repo_id} ({visibility}), " \
               f"branch {self.revision}, commit {self.commit}: {self.url}{files}{deleted}"


def _plan_dataset(folder: Path, repo_id: str) -> Plan:
    """The files a dataset push uploads: every parquet file and the card, rendered for ``repo_id``."""
    from huggingface_hub import DatasetCard

    from cbt_llm.cards import DATASET_CARD_INPUTS, render_dataset_card

    card_path = folder / "README.md"
    if not card_path.is_file():
        raise CbtLlmError(f"{folder} is not a built dataset folder (no README.md card); run `cbt-llm build` first")
    parquet = [p for p in shareable_files(folder) if p.suffix == ".parquet"]
    if not parquet:
        raise CbtLlmError(f"{folder} has no parquet files; run `cbt-llm build` first")
    text = card_path.read_text(encoding="utf-8")
    try:
        card = DatasetCard(text)
    except Exception as err:  # a malformed YAML header
        raise CbtLlmError(f"{card_path}: cannot read the card's YAML header ({err})") from None
    if not card.data.to_dict().get("configs"):
        raise CbtLlmError(f"{card_path} lists no `configs`, so load_dataset(repo) would not find the configs; "
                          "rebuild the folder with `cbt-llm build`")
    inputs = folder / DATASET_CARD_INPUTS
    if inputs.is_file():  # the same card, rendered for this repo (its usage snippet names the repo)
        text = render_dataset_card(json.loads(inputs.read_text(encoding="utf-8")), repo_id=repo_id)
    else:
        logger.warning("%s has no %s (built by an older cbt-llm): its card goes up as it is", folder,
                       DATASET_CARD_INPUTS)
    plan: Plan = {"README.md": text.encode("utf-8")}
    plan.update({p.relative_to(folder).as_posix(): p for p in parquet})
    return plan


def _hub_base_model(adapter_config: dict[str, Any], base_model: str | None) -> str | None:
    """The base model's Hub id for the card: ``base_model``, else the adapter config's unless it is a local path."""
    if base_model:
        return base_model
    configured = adapter_config.get("base_model_name_or_path") or ""
    if configured and looks_like_local_path(configured):
        logger.warning("%s names the local base model %s; pass --base_model with its Hub id so that others can "
                       "load the adapter", ADAPTER_CONFIG, configured)
        return None
    return configured or None


def _plan_adapter(config: PushConfig, card_fn: CardFn) -> Plan:
    """The files an adapter push uploads (``cbt_llm.hub.files.adapter_plan``), after checking they hold its weights.

    With ``base_model``, the uploaded ``adapter_config.json`` names that Hub id instead of the local
    path it was trained from (the local file is left as it is).
    """
    folder = Path(config.folder)
    files = adapter_plan(folder, base_model=config.base_model, card_fn=card_fn,
                         card_base_model=_hub_base_model(read_adapter_config(folder), config.base_model),
                         repo_id=config.repo_id, dataset_repo_id=config.dataset_repo_id, endpoint=hub_endpoint())
    if not any(name in files for name in ADAPTER_WEIGHTS):
        raise CbtLlmError(f"{folder} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}; a symbolic link is not "
                          "published: copy the file in)")
    return files


def plan(config: PushConfig, card_fn: CardFn = adapter_card_for_hub) -> Plan:
    """The files ``push`` uploads, by path in the repo: a local file, or the bytes made for the Hub (cards, config).

    ``card_fn(card_text, repo_id=, base_model=, dataset_repo_id=, endpoint=, folder=)`` returns an
    adapter's README.md (default: ``cbt_llm.cards.adapter_card_for_hub``).
    """
    if config.kind == "dataset":
        return _plan_dataset(Path(config.folder), config.repo_id)
    return _plan_adapter(config, card_fn)


def _is_stale(kind: str, path: str) -> bool:
    """Whether a file of an earlier push is deleted when this push does not have it: shards and weights only."""
    return path.endswith(".parquet") if kind == "dataset" else path in ADAPTER_WEIGHTS


def _commit(files: Plan, config: PushConfig, token: str | None) -> PushResult:
    """Create the repo (and branch) when missing, then add the planned files and delete stale ones in one commit."""
    from huggingface_hub import (
        CommitOperationAdd,
        CommitOperationDelete,
        HfApi,
        RepoFile,
    )

    token = resolve_token(token, required=True)
    api = HfApi(token=token, library_name="cbt-llm", library_version=__version__)
    repo_id, repo_type, branch = config.repo_id, config.repo_type, config.revision or "main"
    with hub_errors("push to", repo_id, repo_type, branch, token):
        api.create_repo(repo_id, repo_type=repo_type, private=config.is_private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type=repo_type, exist_ok=True)
        remote = [f.path for f in api.list_repo_tree(repo_id, repo_type=repo_type, revision=branch, recursive=True)
                  if isinstance(f, RepoFile)]
        deleted = sorted(p for p in remote if p not in files and _is_stale(config.kind, p))
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=source if isinstance(source, bytes)
                                         else str(source)) for name, source in files.items()]
        operations += [CommitOperationDelete(path_in_repo=p) for p in deleted]
        message = config.commit_message or COMMIT_MESSAGES[config.kind].format(version=__version__)
        info = api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type, revision=branch)
        repo_info = api.repo_info(repo_id, repo_type=repo_type, revision=info.oid)
    logger.info("pushed %d files to %s %s at %s", len(files), repo_type, repo_id, info.oid)
    return PushResult(repo_id, repo_type, list(files), info.oid, info.commit_url, branch, repo_info.private,
                      deleted=deleted)


def push(config: PushConfig, *, card_fn: CardFn = adapter_card_for_hub, token: str | None = None) -> PushResult:
    """Upload a built dataset folder or an adapter folder to its repo in one commit.

    Datasets are private and adapters public unless ``private`` says otherwise; ``private`` applies
    when the repo is created (an existing repo keeps its visibility). Parquet shards and adapter
    weights of an earlier push that the folder no longer has are deleted in the same commit, so the
    card's ``configs`` patterns match only the new shards. ``revision`` names a branch, made from
    ``main`` when missing. With ``dry_run`` the files go to ``output_dir`` instead and nothing is
    uploaded. ``card_fn`` makes an adapter's card (see ``plan``); ``token`` defaults to huggingface_hub's
    own (``HF_TOKEN``, ``hf auth login``).
    """
    files = plan(config, card_fn)
    if config.dry_run:
        return PushResult(config.repo_id, config.repo_type, list(files), revision=config.revision or "main",
                          private=config.is_private, dry_run_dir=write_plan(files, config.output_dir))
    return _commit(files, config, token)
