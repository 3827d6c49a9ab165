"""Talking to the Hub: repo ids, the token, the endpoint, and one-line errors for the Hub client's failures.

Authentication is huggingface_hub's own (``HF_TOKEN``, ``hf auth login``); the token is passed to
the client and never written, logged or put into a message. ``HF_ENDPOINT`` selects another Hub.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbt_llm.config import option, positional
from cbt_llm.errors import CbtLlmError, first_line
from cbt_llm.models.tiny import SMALL_MODEL_NAME, TINY_MODEL_NAME

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
KINDS = {"dataset": "dataset", "adapter": "model"}  # what the user calls it -> the Hub's repo type
RANDOM_MODEL_NAMES = (TINY_MODEL_NAME, SMALL_MODEL_NAME)  # made on this machine (cbt_llm.models.tiny): no Hub page


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it looks like NAMESPACE/NAME, else a ``CbtLlmError``."""
    if not _REPO_ID.match(repo_id or "") or "--" in repo_id or ".." in repo_id:
        raise CbtLlmError(f"repo id must look like NAMESPACE/NAME, got {repo_id!r}")
    return repo_id


@dataclass(kw_only=True)
class RepoConfig:
    """A dataset or adapter repo on the Hub and a revision of it: what ``PushConfig`` and ``PullConfig`` share."""

    kind: str = positional("what the repo holds", choices=tuple(KINDS))
    repo_id: str = option(help="the Hub repository", metavar="NS/NAME")
    revision: str | None = option(None, "branch (push: made from main when missing) or, for pull, a commit id "
                                  "(default: main)")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CbtLlmError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        check_repo_id(self.repo_id)

    @property
    def repo_type(self) -> str:
        """The Hub's name for the kind: ``dataset`` or ``model``."""
        return KINDS[self.kind]


def kind_of(repo_type: str) -> str:
    """The user's name for a Hub repo type: ``dataset`` or ``adapter``."""
    return next(kind for kind, hub_type in KINDS.items() if hub_type == repo_type)


def looks_like_local_path(name: str) -> bool:
    """Whether a base model name is a path on this machine rather than a Hub id."""
    return (name.startswith(("/", "./", "../", "~", ".")) or "\\" in name or name.count("/") > 1
            or Path(name).expanduser().exists())


def is_local_model(name: str) -> bool:
    """Whether a model has no Hub page: a path on this machine, or a random model cbt-llm makes locally."""
    return name in RANDOM_MODEL_NAMES or looks_like_local_path(name)


def hub_endpoint() -> str:
    """The Hub this process talks to (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def resolve_token(token: str | None, required: bool) -> str | None:
    """``token``, else huggingface_hub's own (``HF_TOKEN``, ``hf auth login``); an error when required and none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if required and not token:
        raise CbtLlmError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return token


def is_network_error(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a refused or timed-out connection."""
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
    try:
        yield
    except CbtLlmError:
        raise
    except Exception as err:
        reason = _hub_error_reason(err, repo_type, revision)
        if reason is None:
            raise
        message = f"cannot {what} {repo_type} repo {repo_id}: {reason}"
        if token:
            message = message.replace(token, "***")
        raise CbtLlmError(message) from None


def _hub_error_reason(err: Exception, repo_type: str, revision: str | None) -> str | None:
    """What went wrong, in words, for the Hub client's own errors and network failures; None for anything else."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set; unset it to reach the Hub"
    if isinstance(err, GatedRepoError):  # before RepositoryNotFoundError, its base class
        return "it is gated and this token has not been granted access"
    if isinstance(err, RepositoryNotFoundError):
        return (f"repository not found, or this token has no access to it "
                f"(check the id, that it is a {repo_type} repo, and your token)")
    if isinstance(err, RevisionNotFoundError):
        return f"revision {revision!r} not found"
    if isinstance(err, RemoteEntryNotFoundError):
        return f"a file is missing at revision {revision or 'main'} ({first_line(err)})"
    if isinstance(err, HfHubHTTPError):
        return _http_error_reason(err)
    if is_network_error(err):
        return (f"cannot reach the Hub at {hub_endpoint()} "
                f"(no network or connection refused; HF_ENDPOINT selects another Hub)")
    return None


def _http_error_reason(err: Any) -> str:
    """An HTTP answer of the Hub that names no repo or revision: the token, the access, the network, or the status."""
    status = err.response.status_code if err.response is not None else None
    if status == 401:
        return "the Hub rejected the token (401); check HF_TOKEN or `hf auth login`"
    if status == 403:
        return "this token has no write access to it (403)"
    if is_network_error(err):
        return f"cannot reach the Hub at {hub_endpoint()} ({type(err).__name__})"
    return f"the Hub answered {status}: {first_line(err)}"
