"""Push the dataset folder and LoRA adapters to the Hub, each in one commit, after planning the exact files.

``push_dataset`` uploads a folder written by ``build_dataset`` (parquet per config and split plus
the README card); ``push_adapter`` uploads an adapter folder with its model card made for the Hub.
``dry_run=DIR`` writes what would be uploaded and nothing else. What is pushed loads with the
stock clients alone: ``load_dataset(repo)``, ``load_dataset(repo, "sft")`` and
``AutoPeftModelForCausalLM.from_pretrained(repo)``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm import __version__
from cbt_llm.errors import CbtLlmError
from cbt_llm.hub.client import (
    check_repo_id,
    hub_endpoint,
    hub_errors,
    looks_like_local_path,
    resolve_token,
)
from cbt_llm.training.train import RESOLVED_RECIPE

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Trainer leftovers that do not belong in a published adapter repo (pickles, optimizer state).
ADAPTER_SKIPPED = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")
LINKS_START, LINKS_END = "<!-- cbt-llm:hub-links:start -->", "<!-- cbt-llm:hub-links:end -->"


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


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def plan_dataset(folder: str | Path, repo_id: str) -> dict[str, Path | bytes]:
    """The files a dataset push uploads: every parquet file and the card, rendered for ``repo_id``."""
    from huggingface_hub import DatasetCard

    from cbt_llm.cards import DATASET_CARD_INPUTS, render_dataset_card

    folder = Path(folder)
    card_path = folder / "README.md"
    if not card_path.is_file():
        raise CbtLlmError(f"{folder} is not a built dataset folder (no README.md card); run `cbt-llm build` first")
    parquet = [p for p in _visible_files(folder) if p.suffix == ".parquet"]
    if not parquet:
        raise CbtLlmError(f"{folder} has no parquet files; run `cbt-llm build` first")
    text = card_path.read_text(encoding="utf-8")
    try:
        card = DatasetCard(text)
    except Exception as err:  # a malformed YAML header
        raise CbtLlmError(f"{card_path}: cannot read the card's YAML header ({err})") from None
    configs = card.data.to_dict().get("configs") or []
    if not configs:
        raise CbtLlmError(f"{card_path} lists no `configs`, so load_dataset(repo) would not find the configs; "
                          "rebuild the folder with `cbt-llm build`")
    inputs = folder / DATASET_CARD_INPUTS
    if inputs.is_file():  # the same card, rendered for this repo (its usage snippet names the repo)
        text = render_dataset_card(json.loads(inputs.read_text(encoding="utf-8")), repo_id=repo_id)
    else:
        logger.warning("%s has no %s (built by an older cbt-llm): its card goes up as it is", folder,
                       DATASET_CARD_INPUTS)
    plan: dict[str, Path | bytes] = {"README.md": text.encode("utf-8")}
    plan.update({p.relative_to(folder).as_posix(): p for p in parquet})
    return plan


def adapter_card_for_hub(card_text: str | None, *, repo_id: str, base_model: str | None,
                         dataset_repo_id: str | None, endpoint: str, folder: Path) -> str:
    """The adapter's README.md for the Hub. This is the default ``card_fn`` of ``push_adapter``.

    An adapter trained by cbt-llm (its folder has the resolved recipe and trainer state) gets its card
    rendered again from those run files for this repo, links to the dataset and base model repos
    included; its evaluation results carry over. Any other card keeps its body, with a links section
    added (or refreshed). Both get ``library_name: peft``, ``base_model`` (a Hub id; a local path is
    left out) and ``dataset_repo_id`` merged into ``datasets``.
    """
    from huggingface_hub import ModelCard

    name = repo_id.split("/")[-1]
    if not card_text or not card_text.strip():
        card_text = (f"---\n---\n\n# {name}\n\nA LoRA adapter trained with cbt-llm on CBT-structured "
                     "mental-health QA. It is a research artifact, not a clinical tool.\n")
    card = ModelCard(card_text)
    links = []
    if dataset_repo_id:
        links.append(f"Training data: [{dataset_repo_id}]({endpoint}/datasets/{dataset_repo_id}) "
                     f'(`load_dataset("{dataset_repo_id}", "sft")`)')
    if base_model:
        links.append(f"Base model: [{base_model}]({endpoint}/{base_model})")
    links.append(f'Load: `AutoPeftModelForCausalLM.from_pretrained("{repo_id}")` (peft)')
    if (folder / RESOLVED_RECIPE).is_file() and (folder / "trainer_state.json").is_file():
        card = _regenerated_card(card, folder, repo_id, base_model, dataset_repo_id, links)
    else:  # a card cbt-llm did not write: its body stays, the links section is added or refreshed
        section = f"{LINKS_START}\n## Links\n\n" + "\n".join(f"- {line}" for line in links) + f"\n{LINKS_END}"
        body = card.text
        if LINKS_START in body and LINKS_END in body:
            body = body[:body.index(LINKS_START)] + section + body[body.index(LINKS_END) + len(LINKS_END):]
        else:
            body = body.rstrip("\n") + "\n\n" + section + "\n"
        card.text = body
    card.data.library_name = "peft"
    if base_model:
        card.data.base_model = base_model
    elif isinstance(card.data.base_model, str) and looks_like_local_path(card.data.base_model):
        card.data.base_model = None  # a path on the training machine means nothing on the Hub
    if dataset_repo_id:
        datasets = card.data.datasets or []
        datasets = [datasets] if isinstance(datasets, str) else list(datasets)
        if dataset_repo_id not in datasets:
            datasets.append(dataset_repo_id)
        card.data.datasets = datasets
    return str(card)


def _regenerated_card(old: Any, folder: Path, repo_id: str, base_model: str | None,
                      dataset_repo_id: str | None, links: list[str]) -> Any:
    """Re-render a cbt-llm adapter's card from its run files, for the Hub repo; evaluation results carry over."""
    import yaml
    from huggingface_hub import ModelCard

    from cbt_llm.cards import render_model_card

    recipe = yaml.safe_load((folder / RESOLVED_RECIPE).read_text(encoding="utf-8"))
    state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    datasets = old.data.datasets or [recipe.get("hub_dataset_id") or recipe.get("dataset_name") or "cbt_qa"]
    datasets = [datasets] if isinstance(datasets, str) else datasets
    card = ModelCard(render_model_card(
        base_model=base_model or old.data.base_model or recipe["model_name_or_path"],
        dataset_id=dataset_repo_id or datasets[0],
        license=old.data.license or recipe.get("model_license", "apache-2.0"),
        recipe=recipe,
        log_history=state.get("log_history", []),
        system_prompt=recipe.get("system_prompt", ""),
        repo_id=repo_id,
        hub_links=links,
    ))
    if old.data.eval_results:
        card.data.eval_results = old.data.eval_results
        card.data.model_name = old.data.model_name or card.data.model_name
    return card


CardFn = Callable[..., str]


def plan_adapter(folder: str | Path, repo_id: str, dataset_repo_id: str | None = None,
                 base_model: str | None = None, card_fn: CardFn = adapter_card_for_hub,
                 endpoint: str | None = None) -> dict[str, Path | bytes]:
    """The files an adapter push uploads: the adapter, tokenizer and config files, and the regenerated card.

    With ``base_model``, the uploaded ``adapter_config.json`` names that Hub id instead of the local
    path it was trained from (the local file is left as it is).
    """
    folder = Path(folder)
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        raise CbtLlmError(f"{folder} is not an adapter folder (no {ADAPTER_CONFIG})")
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise CbtLlmError(f"{folder} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CbtLlmError(f"{config_path}: not valid JSON ({err})") from None
    if dataset_repo_id:
        check_repo_id(dataset_repo_id)
    if base_model:
        check_repo_id(base_model)
        config["base_model_name_or_path"] = base_model
    else:
        configured = config.get("base_model_name_or_path") or ""
        if configured and looks_like_local_path(configured):
            logger.warning("%s names the local base model %s; pass base_model (--base-model) with its Hub id so "
                           "that others can load the adapter", ADAPTER_CONFIG, configured)
        elif configured:
            base_model = configured
    plan: dict[str, Path | bytes] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.name not in ADAPTER_SKIPPED and path.name != "README.md":
            plan[path.name] = path
    if config.get("base_model_name_or_path") != json.loads(config_path.read_text(encoding="utf-8")).get(
            "base_model_name_or_path"):  # rewritten for the Hub; otherwise the file goes up byte for byte
        plan[ADAPTER_CONFIG] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")
    readme = folder / "README.md"
    card = card_fn(readme.read_text(encoding="utf-8") if readme.is_file() else None, repo_id=repo_id,
                   base_model=base_model, dataset_repo_id=dataset_repo_id, endpoint=endpoint or hub_endpoint(),
                   folder=folder)
    plan["README.md"] = card.encode("utf-8")
    return dict(sorted(plan.items()))


def write_plan(plan: dict[str, Path | bytes], target: str | Path) -> Path:
    """Write the planned files to ``target`` (a dry run): exactly the bytes a push would upload."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise CbtLlmError(f"dry-run folder {target} is not empty")
    for name, source in plan.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            shutil.copyfile(source, path)
    return target


def _commit(plan: dict[str, Path | bytes], repo_id: str, repo_type: str, *, private: bool,
            revision: str | None, commit_message: str, stale: Callable[[str], bool], token: str | None) -> PushResult:
    from huggingface_hub import (
        CommitOperationAdd,
        CommitOperationDelete,
        HfApi,
        RepoFile,
    )

    token = resolve_token(token, required=True)
    api = HfApi(token=token, library_name="cbt-llm", library_version=__version__)
    branch = revision or "main"
    with hub_errors("push to", repo_id, repo_type, branch, token):
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type=repo_type, exist_ok=True)
        remote = [f.path for f in api.list_repo_tree(repo_id, repo_type=repo_type, revision=branch, recursive=True)
                  if isinstance(f, RepoFile)]
        deleted = sorted(p for p in remote if p not in plan and stale(p))
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=source if isinstance(source, bytes)
                                         else str(source)) for name, source in plan.items()]
        operations += [CommitOperationDelete(path_in_repo=p) for p in deleted]
        info = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type,
                                 revision=branch)
        repo_info = api.repo_info(repo_id, repo_type=repo_type, revision=info.oid)
    logger.info("pushed %d files to %s %s at %s", len(plan), repo_type, repo_id, info.oid)
    return PushResult(repo_id, repo_type, list(plan), info.oid, info.commit_url, branch, repo_info.private,
                      deleted=deleted)


def push_dataset(folder: str | Path, repo_id: str, *, private: bool = True, revision: str | None = None,
                 commit_message: str | None = None, dry_run: str | Path | None = None,
                 token: str | None = None) -> PushResult:
    """Upload a built dataset folder to a dataset repo in one commit (private unless ``private=False``).

    Parquet files of an earlier push that this folder no longer has are deleted in the same commit,
    so the card's ``configs`` patterns match only the new shards. ``revision`` names a branch, made
    from ``main`` when missing. ``dry_run=DIR`` writes the files to DIR instead and uploads nothing.
    ``private`` applies when the repo is created; an existing repo keeps its visibility.
    """
    check_repo_id(repo_id)
    plan = plan_dataset(folder, repo_id)
    if dry_run is not None:
        return PushResult(repo_id, "dataset", list(plan), revision=revision or "main", private=private,
                          dry_run_dir=write_plan(plan, dry_run))
    message = commit_message or f"Upload CBT QA dataset (cbt-llm {__version__})"
    return _commit(plan, repo_id, "dataset", private=private, revision=revision, commit_message=message,
                   stale=lambda path: path.endswith(".parquet"), token=token)


def push_adapter(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                 commit_message: str | None = None, dry_run: str | Path | None = None,
                 dataset_repo_id: str | None = None, base_model: str | None = None,
                 card_fn: CardFn = adapter_card_for_hub, token: str | None = None) -> PushResult:
    """Upload a LoRA adapter folder to a model repo in one commit, with its card regenerated for the Hub.

    ``card_fn(card_text, repo_id=, base_model=, dataset_repo_id=, endpoint=, folder=)`` returns the
    README.md to upload (default: ``adapter_card_for_hub``). ``base_model`` (a Hub id) replaces the
    local base path in the uploaded ``adapter_config.json`` so that
    ``AutoPeftModelForCausalLM.from_pretrained(repo)`` works anywhere. Other options as ``push_dataset``.
    """
    check_repo_id(repo_id)
    plan = plan_adapter(folder, repo_id, dataset_repo_id, base_model, card_fn)
    if dry_run is not None:
        return PushResult(repo_id, "model", list(plan), revision=revision or "main", private=private,
                          dry_run_dir=write_plan(plan, dry_run))
    message = commit_message or f"Upload LoRA adapter (cbt-llm {__version__})"
    return _commit(plan, repo_id, "model", private=private, revision=revision, commit_message=message,
                   stale=lambda path: path in ADAPTER_WEIGHTS, token=token)
