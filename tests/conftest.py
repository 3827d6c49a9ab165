"""Shared test set-up: an empty Hugging Face cache per run, no network for the hub clients, and two tiers.

The fast tier (``pytest -m "not slow"``, ``make test-fast``) starts no process and no server and
trains nothing; a test that needs one of these is marked ``slow`` (tests using the fixtures in
``SLOW_FIXTURES`` are marked automatically) and a fast-tier test that tries anyway fails at once.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

SHARED_PSYQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "psyqa" / "PsyQA_example.json"
_HF_HOME = None


def pytest_configure(config):
    # Runs before any test module imports datasets or huggingface_hub, which read these at import.
    global _HF_HOME
    _HF_HOME = tempfile.mkdtemp(prefix="cbt-llm-test-hf-")
    os.environ["HF_HOME"] = _HF_HOME
    os.environ["CBT_LLM_CACHE"] = os.path.join(_HF_HOME, "cbt_llm")  # the tiny model is made here once per run
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    # matplotlib builds its font cache on first use by running fc-list: do it now, before the fast tier's
    # no-subprocess guard, so a report test on a fresh machine does not look like it starts a process.
    try:
        import matplotlib.font_manager  # noqa: F401
    except ImportError:
        pass


SLOW_FIXTURES = {"cli", "tiny_model", "tiny_run", "tiny_adapter", "tiny_bert", "hub"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tier_guard(request, monkeypatch):
    """In the fast tier, starting a process or listening on a socket fails the test with a pointer to the tiers."""
    if request.node.get_closest_marker("slow"):
        return

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} starts a process or a server: mark it @pytest.mark.slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "listen", refuse)


def pytest_unconfigure(config):
    if _HF_HOME:
        shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture
def psyqa_example() -> Path:
    """The public PsyQA sample from ../shared (never copied into the project); skipped when absent."""
    if not SHARED_PSYQA.is_file():
        pytest.skip("../shared/data/psyqa/PsyQA_example.json is not beside this checkout")
    return SHARED_PSYQA


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The library's tiny random Llama (created on first use in this run's cache)."""
    from cbt_llm.models.tiny import tiny_model_path

    return tiny_model_path()


class TinyRun(NamedTuple):
    """One run of the tiny-cpu recipe: its output folder, the finished process, and the secret it was given."""

    out: Path
    result: subprocess.CompletedProcess
    secret: str


@pytest.fixture(scope="session")
def tiny_run(tiny_model, tmp_path_factory) -> TinyRun:
    """The whole tiny-cpu recipe through the real CLI, with tokens in its environment (shared, read-only): the
    training tests read its losses, logs and files, and the rest use its adapter."""
    out = tmp_path_factory.mktemp("tiny-run") / "adapter"
    secret = "hf_thisIsNotARealTokenButMustNeverLeak42"
    result = subprocess.run([str(Path(sys.executable).parent / "cbt-llm"), "train", "--config", "tiny-cpu",
                             "--output_dir", str(out)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_TOKEN": secret, "OPENAI_API_KEY": secret})
    assert result.returncode == 0, result.stderr[-3000:]
    return TinyRun(out, result, secret)


@pytest.fixture(scope="session")
def tiny_adapter(tiny_run) -> Path:
    """The LoRA adapter of the tiny-cpu run (shared, read-only)."""
    return tiny_run.out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer random BERT over the sample's characters, for BERTScore without a download."""
    from eval_helpers import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def cli():
    """Run the real `cbt-llm` console script; returns the CompletedProcess."""
    import subprocess

    script = Path(sys.executable).parent / "cbt-llm"

    def run(*args, cwd=None, check=False):
        return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                              check=check, timeout=300)

    return run
