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
def transformers_serve(model: str | Path, timeout: float = 180.0) -> Iterator[str]:
    """Run ``transformers serve MODEL`` on 127.0.0.1 and yield its base URL (``http://127.0.0.1:PORT/v1``).

    The server is stopped (its whole process group) when the block ends, also on errors.
    """
    port = free_port()
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while not _ready(base_url):
            if server.poll() is not None:
                raise CbtLlmError(f"transformers serve exited: {server.stderr.read().decode()[-1500:]}")
            if time.monotonic() > deadline:
                raise CbtLlmError(f"transformers serve did not answer on {base_url} within {timeout:.0f} s")
            time.sleep(0.5)
        yield base_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stderr.close()


def _ready(base_url: str) -> bool:
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        with opener.open(f"{base_url}/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False
