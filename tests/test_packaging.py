"""A plain (non-editable) install must carry the card templates and sample data and work on its own."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
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
