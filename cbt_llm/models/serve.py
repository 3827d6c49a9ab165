"""Start ``transformers serve`` on loopback for a local model folder: an OpenAI-compatible teacher offline.

The demo and the tests use it to run the generation engine against a real server; users can
use it to try a small local teacher before paying for an API.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cbt_llm.errors import CbtLlmError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(model: str | Path, timeout: float = 180.0, log: str | Path | None = None) -> Iterator[str]:
    """Run ``transformers serve MODEL`` on 127.0.0.1 and yield its base URL (``http://127.0.0.1:PORT/v1``).

    The server's output goes to ``log`` (default: a temporary file, removed when the server stops
    cleanly), never to an unread pipe that would block a chatty server; errors name the file.
    The server is stopped (its whole process group) when the block ends, also on errors.
    """
    port = free_port()
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu"]
    log_path = Path(log) if log else Path(tempfile.gettempdir()) / f"cbt-llm-transformers-serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    keep_log = log is not None
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(base_url):
            if server.poll() is not None:
                raise CbtLlmError(f"transformers serve exited with code {server.returncode} (log: {log_path}): "
                                  f"{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise CbtLlmError(f"transformers serve did not answer on {base_url} within {timeout:.0f} s "
                                  f"(log: {log_path}): {_tail(log_path)}")
            time.sleep(0.5)
        yield base_url
    except BaseException:
        keep_log = True  # the error names the log: keep it for reading
        raise
    finally:
        stop_process_group(server, 20)
        if not keep_log:
            log_path.unlink(missing_ok=True)


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM a server started in its own process group, SIGKILL it after ``timeout`` seconds, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(path: Path, lines: int = 5, size: int = 4000) -> str:
    """The log's last lines (each cut to 300 characters), for an error message."""
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - size, 0))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(line[:300] for line in text.strip().splitlines()[-lines:])


def _ready(base_url: str) -> bool:
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        with opener.open(f"{base_url}/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False
