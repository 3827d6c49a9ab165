"""Pull one commit of a dataset or adapter repo into a folder, and load an adapter with its tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbt_llm import __version__
from cbt_llm.errors import CbtLlmError
from cbt_llm.hub.client import check_repo_id, hub_errors, resolve_token

KINDS = {"dataset": "dataset", "adapter": "model"}  # what the user calls it -> the Hub's repo type


@dataclass
class PullResult:
    """What a pull wrote: the folder, the commit it came from, and the repo's files at that commit."""

    repo_id: str
    repo_type: str
    output_dir: Path
    commit: str
    files: list[str]


def pull(kind: str, repo_id: str, output_dir: str | Path, *, revision: str | None = None,
         token: str | None = None) -> PullResult:
    """Download the files of one commit of a ``dataset`` or ``adapter`` repo into an empty folder.

    ``revision`` is a branch or a commit id (default ``main``); it is resolved to a commit first, so
    the folder holds exactly that commit's files.
    """
    from huggingface_hub import HfApi, snapshot_download

    if kind not in KINDS:
        raise CbtLlmError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    check_repo_id(repo_id)
    repo_type = KINDS[kind]
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise CbtLlmError(f"output folder {output_dir} exists and is not empty")
    token = resolve_token(token, required=False)
    api = HfApi(token=token, library_name="cbt-llm", library_version=__version__)
    with hub_errors("pull", repo_id, repo_type, revision or "main", token):
        info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
        snapshot_download(repo_id, repo_type=repo_type, revision=info.sha, local_dir=output_dir, token=token)
    files = sorted(s.rfilename for s in info.siblings or [])
    return PullResult(repo_id, repo_type, output_dir, info.sha, files)


def load_adapter(repo_or_dir: str | Path, *, revision: str | None = None, token: str | None = None,
                 **options: Any):
    """An adapter (repo id or folder) on its base model, and the tokenizer: ``(model, tokenizer)``.

    The tokenizer comes from the adapter when it ships one, else from the base model; ``options``
    go to ``cbt_llm.models.loading.load_model_and_tokenizer`` (``device``, ``dtype``).
    """
    from cbt_llm.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(adapter=repo_or_dir, revision=revision, token=token, **options)
