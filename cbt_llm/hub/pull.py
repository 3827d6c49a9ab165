"""``pull(PullConfig(...))``: one commit of a dataset or adapter repo into a folder; ``load_adapter`` for the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbt_llm import __version__
from cbt_llm.config import option
from cbt_llm.errors import CbtLlmError
from cbt_llm.hub.client import RepoConfig, hub_errors, kind_of, resolve_token


@dataclass(kw_only=True)
class PullConfig(RepoConfig):
    """Which repo and revision ``pull`` downloads, and where to (``cbt-llm pull``)."""

    output_dir: str = option(help="folder to write (must be empty or new)", metavar="DIR")


@dataclass
class PullResult:
    """What a pull wrote: the folder, the commit it came from, and the repo's files at that commit."""

    repo_id: str
    repo_type: str
    output_dir: Path
    commit: str
    files: list[str]

    def format(self) -> str:
        """The repo, the commit and the folder."""
        return f"pulled {kind_of(self.repo_type)} repo {self.repo_id} at commit {self.commit} into " \
               f"{self.output_dir} ({len(self.files)} files)"


def pull(config: PullConfig, *, token: str | None = None) -> PullResult:
    """Download the files of one commit of a ``dataset`` or ``adapter`` repo into an empty folder.

    ``revision`` is a branch or a commit id (default ``main``); it is resolved to a commit first, so
    the folder holds exactly that commit's files. ``token`` defaults to huggingface_hub's own.
    """
    from huggingface_hub import HfApi, snapshot_download

    output_dir = Path(config.output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise CbtLlmError(f"output folder {output_dir} exists and is not empty")
    token = resolve_token(token, required=False)
    api = HfApi(token=token, library_name="cbt-llm", library_version=__version__)
    repo_id, repo_type = config.repo_id, config.repo_type
    with hub_errors("pull", repo_id, repo_type, config.revision or "main", token):
        info = api.repo_info(repo_id, repo_type=repo_type, revision=config.revision)
        snapshot_download(repo_id, repo_type=repo_type, revision=info.sha, local_dir=output_dir, token=token)
    files = sorted(s.rfilename for s in info.siblings or [])
    return PullResult(repo_id, repo_type, output_dir, info.sha, files)


def load_adapter(repo_or_dir: str | Path, **options: Any):
    """An adapter (repo id or folder) on its base model, and the tokenizer: ``(model, tokenizer)``.

    The tokenizer comes from the adapter when it ships one, else from the base model; ``options``
    go to ``cbt_llm.models.loading.load_model_and_tokenizer`` (``revision``, ``token``, ``device``, ``dtype``).
    """
    from cbt_llm.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(adapter=repo_or_dir, **options)
