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

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import CbtLlmError, first_line
from .train import RESOLVED_RECIPE

logger = logging.getLogger(__name__)

KINDS = {"dataset": "dataset", "adapter": "model"}  # what the user calls it -> the Hub's repo type
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Trainer leftovers that do not belong in a published adapter repo (pickles, optimizer state).
ADAPTER_SKIPPED = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")
LINKS_START, LINKS_END = "<!-- cbt-llm:hub-links:start -->", "<!-- cbt-llm:hub-links:end -->"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


@dataclass
class PullResult:
    """What a pull wrote: the folder, the commit it came from, and the repo's files at that commit."""

    repo_id: str
    repo_type: str
    output_dir: Path
    commit: str
    files: list[str]


# ---------------------------------------------------------------- planning (no network)

def _check_repo_id(repo_id: str) -> str:
    if not _REPO_ID.match(repo_id or "") or "--" in repo_id or ".." in repo_id:
        raise CbtLlmError(f"repo id must look like NAMESPACE/NAME, got {repo_id!r}")
    return repo_id


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def plan_dataset(folder: str | Path, repo_id: str) -> dict[str, Path | bytes]:
    """The files a dataset push uploads: every parquet file and the card, its usage snippet naming ``repo_id``."""
    from huggingface_hub import DatasetCard

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
    # The card's usage snippet names the id it was built for; on the Hub it must name this repo.
    built_for = re.search(r'load_dataset\("([^"]+)"', text)
    if built_for and built_for.group(1) != repo_id:
        text = text.replace(f'load_dataset("{built_for.group(1)}"', f'load_dataset("{repo_id}"')
    plan: dict[str, Path | bytes] = {"README.md": text.encode("utf-8")}
    plan.update({p.relative_to(folder).as_posix(): p for p in parquet})
    return plan


def _looks_like_local_path(name: str) -> bool:
    """Whether a base model name is a path on this machine rather than a Hub id."""
    return (name.startswith(("/", "./", "../", "~", ".")) or "\\" in name or name.count("/") > 1
            or Path(name).expanduser().exists())


def adapter_card_for_hub(card_text: str | None, *, repo_id: str, base_model: str | None,
                         dataset_repo_id: str | None, endpoint: str, folder: Path) -> str:
    """The adapter's README.md for the Hub: the existing card with Hub metadata and links merged in.

    Sets ``library_name: peft``, ``base_model`` (a Hub id; a local path is left out) and merges
    ``dataset_repo_id`` into ``datasets``; keeps the body and adds (or refreshes) a short section
    linking the dataset and base model repos. This is the default ``card_fn`` of ``push_adapter``.
    """
    from huggingface_hub import ModelCard

    name = repo_id.split("/")[-1]
    if not card_text or not card_text.strip():
        card_text = (f"---\n---\n\n# {name}\n\nA LoRA adapter trained with cbt-llm on CBT-structured "
                     "mental-health QA. It is a research artifact, not a clinical tool.\n")
    card = ModelCard(card_text)
    if (folder / RESOLVED_RECIPE).is_file() and (folder / "trainer_state.json").is_file():
        card = _regenerated_card(card, folder, repo_id, base_model, dataset_repo_id)
    card.data.library_name = "peft"
    if base_model:
        card.data.base_model = base_model
    elif isinstance(card.data.base_model, str) and _looks_like_local_path(card.data.base_model):
        card.data.base_model = None  # a path on the training machine means nothing on the Hub
    if dataset_repo_id:
        datasets = card.data.datasets or []
        datasets = [datasets] if isinstance(datasets, str) else list(datasets)
        if dataset_repo_id not in datasets:
            datasets.append(dataset_repo_id)
        card.data.datasets = datasets
    lines = []
    if dataset_repo_id:
        lines.append(f"- Training data: [{dataset_repo_id}]({endpoint}/datasets/{dataset_repo_id}) "
                     f'(`load_dataset("{dataset_repo_id}", "sft")`)')
    if base_model:
        lines.append(f"- Base model: [{base_model}]({endpoint}/{base_model})")
    lines.append(f'- Load: `AutoPeftModelForCausalLM.from_pretrained("{repo_id}")` (peft)')
    section = f"{LINKS_START}\n## Links\n\n" + "\n".join(lines) + f"\n{LINKS_END}"
    body = card.text
    if LINKS_START in body and LINKS_END in body:
        body = body[:body.index(LINKS_START)] + section + body[body.index(LINKS_END) + len(LINKS_END):]
    else:
        body = body.rstrip("\n") + "\n\n" + section + "\n"
    card.text = body
    return str(card)


def _regenerated_card(old: Any, folder: Path, repo_id: str, base_model: str | None,
                      dataset_repo_id: str | None) -> Any:
    """Re-render a cbt-llm adapter's card from its run files, for the Hub repo; evaluation results carry over."""
    import yaml
    from huggingface_hub import ModelCard

    from .cards import render_model_card

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
        _check_repo_id(dataset_repo_id)
    if base_model:
        _check_repo_id(base_model)
        config["base_model_name_or_path"] = base_model
    else:
        configured = config.get("base_model_name_or_path") or ""
        if configured and _looks_like_local_path(configured):
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
                   base_model=base_model, dataset_repo_id=dataset_repo_id, endpoint=endpoint or _endpoint(),
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


# ---------------------------------------------------------------- talking to the Hub

def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _token(token: str | None, required: bool) -> str | None:
    from huggingface_hub import get_token

    token = token or get_token()
    if required and not token:
        raise CbtLlmError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return token


def _is_network_error(err: BaseException) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        module = type(err).__module__ or ""
        if module.startswith(("httpx", "httpcore")) and type(err).__name__ in (
                "ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException",
                "NetworkError", "ReadError", "WriteError", "RemoteProtocolError", "ProxyError"):
            return True
        if isinstance(err, (ConnectionError, TimeoutError)):
            return True
        err = err.__cause__ or err.__context__
    return False


@contextlib.contextmanager
def hub_errors(what: str, repo_id: str, repo_type: str, revision: str | None = None,
               token: str | None = None) -> Iterator[None]:
    """Turn the Hub client's exceptions into one-line ``CbtLlmError``s (the token never in them)."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    label = f"{repo_type} repo {repo_id}"
    try:
        yield
    except CbtLlmError:
        raise
    except OfflineModeIsEnabled:
        message = f"cannot {what} {label}: HF_HUB_OFFLINE is set; unset it to reach the Hub"
    except GatedRepoError:
        message = f"cannot {what} {label}: it is gated and this token has not been granted access"
    except RepositoryNotFoundError:
        message = (f"cannot {what} {label}: repository not found, or this token has no access to it "
                   f"(check the id, that it is a {repo_type} repo, and your token)")
    except RevisionNotFoundError:
        message = f"cannot {what} {label}: revision {revision!r} not found"
    except RemoteEntryNotFoundError as err:
        message = f"cannot {what} {label}: a file is missing at revision {revision or 'main'} ({first_line(err)})"
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            message = f"cannot {what} {label}: the Hub rejected the token (401); check HF_TOKEN or `hf auth login`"
        elif status == 403:
            message = f"cannot {what} {label}: this token has no write access to it (403)"
        elif _is_network_error(err):
            message = f"cannot {what} {label}: cannot reach the Hub at {_endpoint()} ({type(err).__name__})"
        else:
            message = f"cannot {what} {label}: the Hub answered {status}: {first_line(err)}"
    except Exception as err:
        if not _is_network_error(err):
            raise
        message = (f"cannot {what} {label}: cannot reach the Hub at {_endpoint()} "
                   f"(no network or connection refused; HF_ENDPOINT selects another Hub)")
    else:
        return
    if token:
        message = message.replace(token, "***")
    raise CbtLlmError(message) from None


def _commit(plan: dict[str, Path | bytes], repo_id: str, repo_type: str, *, private: bool,
            revision: str | None, commit_message: str, stale: Callable[[str], bool], token: str | None) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFile

    token = _token(token, required=True)
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
    _check_repo_id(repo_id)
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
    _check_repo_id(repo_id)
    plan = plan_adapter(folder, repo_id, dataset_repo_id, base_model, card_fn)
    if dry_run is not None:
        return PushResult(repo_id, "model", list(plan), revision=revision or "main", private=private,
                          dry_run_dir=write_plan(plan, dry_run))
    message = commit_message or f"Upload LoRA adapter (cbt-llm {__version__})"
    return _commit(plan, repo_id, "model", private=private, revision=revision, commit_message=message,
                   stale=lambda path: path in ADAPTER_WEIGHTS, token=token)


def pull(kind: str, repo_id: str, output_dir: str | Path, *, revision: str | None = None,
         token: str | None = None) -> PullResult:
    """Download the files of one commit of a ``dataset`` or ``adapter`` repo into an empty folder.

    ``revision`` is a branch or a commit id (default ``main``); it is resolved to a commit first, so
    the folder holds exactly that commit's files.
    """
    from huggingface_hub import HfApi, snapshot_download

    if kind not in KINDS:
        raise CbtLlmError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    _check_repo_id(repo_id)
    repo_type = KINDS[kind]
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise CbtLlmError(f"output folder {output_dir} exists and is not empty")
    token = _token(token, required=False)
    api = HfApi(token=token, library_name="cbt-llm", library_version=__version__)
    with hub_errors("pull", repo_id, repo_type, revision or "main", token):
        info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
        snapshot_download(repo_id, repo_type=repo_type, revision=info.sha, local_dir=output_dir, token=token)
    files = sorted(s.rfilename for s in info.siblings or [])
    return PullResult(repo_id, repo_type, output_dir, info.sha, files)


def load_adapter(repo_or_dir: str | Path, *, revision: str | None = None, token: str | None = None,
                 **model_kwargs: Any):
    """An adapter (repo id or folder) on its base model, and the tokenizer: ``(model, tokenizer)``.

    The tokenizer comes from the adapter when it ships one, else from the base model.
    """
    from huggingface_hub import HfApi
    from peft import AutoPeftModelForCausalLM, PeftConfig
    from transformers import AutoTokenizer

    source = str(repo_or_dir)
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / ADAPTER_CONFIG).is_file():
            raise CbtLlmError(f"{local} is not an adapter folder (no {ADAPTER_CONFIG})")
        source, has_tokenizer, revision = str(local), (local / "tokenizer_config.json").is_file(), None
    else:
        _check_repo_id(source)
        token = _token(token, required=False)
        with hub_errors("load", source, "model", revision or "main", token):
            info = HfApi(token=token).model_info(source, revision=revision)
        revision = info.sha  # every file from the same commit
        names = {s.rfilename for s in info.siblings or []}
        if ADAPTER_CONFIG not in names:
            raise CbtLlmError(f"model repo {source} has no {ADAPTER_CONFIG}; it is not a PEFT adapter")
        has_tokenizer = "tokenizer_config.json" in names
    with hub_errors("load", source, "model", revision, token):
        try:
            model = AutoPeftModelForCausalLM.from_pretrained(source, revision=revision, token=token, **model_kwargs)
            tokenizer_source = source if has_tokenizer else PeftConfig.from_pretrained(
                source, revision=revision, token=token).base_model_name_or_path
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, revision=revision if has_tokenizer else None,
                                                      token=token)
        except OSError as err:
            if _is_network_error(err) or type(err).__module__.startswith("huggingface_hub"):
                raise
            raise CbtLlmError(f"cannot load adapter {source}: {first_line(err)}") from None
    return model, tokenizer
