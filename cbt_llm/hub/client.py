"""Talking to the Hub: repo ids, the token, the endpoint, and one-line errors for the Hub client's failures.

Authentication is huggingface_hub's own (``HF_TOKEN``, ``hf auth login``); the token is passed to
the client and never written, logged or put into a message. ``HF_ENDPOINT`` selects another Hub.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from cbt_llm.errors import CbtLlmError, first_line

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it looks like NAMESPACE/NAME, else a ``CbtLlmError``."""
    if not _REPO_ID.match(repo_id or "") or "--" in repo_id or ".." in repo_id:
        raise CbtLlmError(f"repo id must look like NAMESPACE/NAME, got {repo_id!r}")
    return repo_id


def looks_like_local_path(name: str) -> bool:
    """Whether a base model name is a path on this machine rather than a Hub id."""
    return (name.startswith(("/", "./", "../", "~", ".")) or "\\" in name or name.count("/") > 1
            or Path(name).expanduser().exists())


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
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

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
        elif is_network_error(err):
            message = f"cannot {what} {label}: cannot reach the Hub at {hub_endpoint()} ({type(err).__name__})"
        else:
            message = f"cannot {what} {label}: the Hub answered {status}: {first_line(err)}"
    except Exception as err:
        if not is_network_error(err):
            raise
        message = (f"cannot {what} {label}: cannot reach the Hub at {hub_endpoint()} "
                   f"(no network or connection refused; HF_ENDPOINT selects another Hub)")
    else:
        return
    if token:
        message = message.replace(token, "***")
    raise CbtLlmError(message) from None
