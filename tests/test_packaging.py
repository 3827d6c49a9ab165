"""A plain (non-editable) install must carry the card templates and sample data and work on its own; so must an
exported Space, installed as a Space installs it."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from app_helpers import app_process
from helpers import SAMPLE_SIZE

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(out), str(ROOT)], check=True, timeout=300)
    (path,) = out.glob("cbt_llm-*.whl")
    return path


def test_wheel_ships_templates_sample_and_entry_point(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("cbt_llm/dataset_cards/cbt_qa.md", "cbt_llm/data/sample/cbt_qa_sample.jsonl",
                   "cbt_llm/data/crisis_resources.json"):
        assert needed in names
    # every module and data file of the package, in any subpackage, and the top-level card templates
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "cbt_llm").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    source |= {f"cbt_llm/{p.relative_to(ROOT)}" for folder in ("dataset_cards", "model_cards")
               for p in (ROOT / folder).glob("*.md")}
    assert source - set(names) == set()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cbt-llm = cbt_llm.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith(("tests/", "dataset_cards/")) for n in names)


def test_installed_wheel_loads_the_sample_and_renders_the_card(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = textwrap.dedent("""
        import json, sys
        import cbt_llm
        from cbt_llm.cards import template_path
        from cbt_llm.data.build import BuildConfig, build_dataset
        from datasets import load_dataset
        ds = load_dataset("cbt_qa")
        build_dataset(BuildConfig(output_dir="built"))
        print(json.dumps({"module": cbt_llm.__file__, "template": str(template_path("dataset_cards", "cbt_qa.md")),
                          "rows": {s: len(ds[s]) for s in ds}, "torch": "torch" in sys.modules}))
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(site)})
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["module"].startswith(str(site)) and report["template"].startswith(str(site))
    assert sum(report["rows"].values()) == SAMPLE_SIZE and len(report["rows"]) == 3
    assert (tmp_path / "built" / "README.md").read_text(encoding="utf-8").startswith("---\n")
    assert report["torch"] is False


# A Chinese crisis message: the Space must answer it with the crisis lines without asking the model.
SPACE_CRISIS = "我不想活了，今晚就结束一切"


def _smoke_install():
    """scripts/smoke_install.py as a module (its make_venv: a fresh venv with torch, as `make dist` makes it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke_install", ROOT / "scripts" / "smoke_install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.release  # minutes of pip: run by `make dist` beside the wheel's own fresh-venv install
def test_an_exported_space_installs_alone_in_a_fresh_venv_and_answers_a_crisis(tiny_adapter, tmp_path):
    """The Space folder exported from this install, built as a Space builds it: a fresh venv (torch first, as
    `make dist`), then requirements.txt on its own in an empty folder (a Space mounts it before copying the rest);
    app.py then serves on loopback, and the stock gradio_client gets the fixed crisis reply with its lines."""
    import shutil
    import time

    from gradio_client import Client

    from cbt_llm.app import AppConfig, export_space
    from cbt_llm.app.space import installed_from, local_source
    from cbt_llm.app.texts import text_markdown
    from cbt_llm.chat import crisis_reply
    from cbt_llm.models.serve import free_port

    if local_source(installed_from()) is None:
        pytest.skip("cbt-llm is installed from a release here: the Space would pin it, not carry it")
    began = time.monotonic()
    space = export_space(AppConfig(adapter=str(tiny_adapter), export_space=str(tmp_path / "space")))
    assert (space / "cbt_llm" / "__init__.py").is_file()
    smoke = _smoke_install()
    python = smoke.make_venv(tmp_path / "venv", os.environ.get("TORCH", "torch==2.13.0"),
                             os.environ.get("TORCH_INDEX", smoke.CPU_TORCH_INDEX))
    build = tmp_path / "build"
    build.mkdir()
    shutil.copyfile(space / "requirements.txt", build / "requirements.txt")
    # PIP_RETRIES=0: where PyTorch's CPU index cannot be reached (this project's machines), pip would otherwise
    # retry each package's page there five times; it warns and takes every package from the index it can reach.
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                                "requirements.txt"], cwd=build, capture_output=True, text=True, timeout=1200,
                               env={**os.environ, "PIP_RETRIES": "0"})
    assert installed.returncode == 0, installed.stderr[-3000:]
    alone = subprocess.run([str(python), "-c", "import cbt_llm"], cwd=build, capture_output=True, text=True)
    assert alone.returncode != 0  # the venv holds no cbt-llm: app.py can only use the folder's
    print(f"exported and installed in {time.monotonic() - began:.0f} s")

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "CBT_LLM_CACHE": str(tmp_path / "cache")}  # the tiny base model is made again there, as on a Space
    with app_process([str(python), "app.py"], port, 300, "the Space's app.py", cwd=space, env=env) as (url, _):
        chat, box = Client(url, verbose=False).predict(SPACE_CRISIS, "zh", api_name="/chat")
    reply = chat[-1]["content"]
    reply = reply if isinstance(reply, str) else "".join(part["text"] for part in reply)
    assert "12356" in reply and box == ""
    assert reply == text_markdown(crisis_reply("zh"))  # the fixed reply and nothing else: no model text
    print(f"Space test: {time.monotonic() - began:.0f} s in all")
