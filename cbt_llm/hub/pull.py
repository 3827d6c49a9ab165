"""``pull(PullConfig(...))``: one commit of a dataset or adapter repo into a folder; ``load_adapter`` for the model."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
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


def unsafe_file_name(name: str) -> str | None:
    """Why a repo file name cannot be written inside the pull folder (a ``..`` part, an absolute, drive or UNC
    path, an empty part or a control character), or None when it can."""
    if any(ord(c) < 32 for c in name):
        return "a control character"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "a '..' part"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or any(PureWindowsPath(p).drive for p in parts):
        return "an absolute or drive path"
    if "" in parts or "." in parts:
        return "an empty or '.' part"
    return None


@contextlib.contextmanager
def _staging(output_dir: Path) -> Iterator[Path]:
    """A hidden folder beside ``output_dir`` whose files move into it only once the download is whole; on any
    failure it is removed, and ``output_dir`` is as it was (absent or empty)."""
    target = output_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.pull-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not target.exists():
        staging.rename(target)
        return
    for child in staging.iterdir():  # an empty folder that was there (perhaps the working directory) stays
        child.rename(target / child.name)
    staging.rmdir()


def pull(config: PullConfig, *, token: str | None = None) -> PullResult:
    """Download the files of one commit of a ``dataset`` or ``adapter`` repo into an empty folder.

    ``revision`` is a branch or a commit id (default ``main``); it is resolved to a commit first, so
    the folder holds exactly that commit's files. ``token`` defaults to huggingface_hub's own. Every
    file name is checked before anything is downloaded (one that would land outside the folder stops
    the pull), and the files go to a hidden folder beside it that is renamed only once all are in: a
    pull that fails leaves nothing behind, so the same command can run again.
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
    files = sorted(s.rfilename for s in info.siblings or [])
    for name in files:
        why = unsafe_file_name(name)
        if why:
            raise CbtLlmError(f"cannot pull {repo_type} repo {repo_id}: its file name {name!r} has {why}, so it "
                              f"cannot be written safely into {output_dir}; nothing was downloaded")
    with hub_errors("pull", repo_id, repo_type, config.revision or "main", token), _staging(output_dir) as staging:
        snapshot_download(repo_id, repo_type=repo_type, revision=info.sha, local_dir=staging, token=token)
    return PullResult(repo_id, repo_type, output_dir, info.sha, files)


def load_adapter(repo_or_dir: str | Path, **options: Any):
    """An adapter (repo id or folder) on its base model, and the tokenizer: ``(model, tokenizer)``.

    The tokenizer comes from the adapter when it ships one, else from the base model; ``options``
    go to ``cbt_llm.models.loading.load_model_and_tokenizer`` (``revision``, ``token``, ``device``, ``dtype``).
    """
    from cbt_llm.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(adapter=repo_or_dir, **options)
