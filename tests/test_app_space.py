"""How an exported Space installs cbt-llm, decided from the installed distribution's PEP 610 record.

Fast tier: made-up records and a wheel written here, nothing built or installed. tests/test_packaging.py
exports from this checkout, installs the folder in a fresh venv as a Space does and asks the running app.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

from cbt_llm import __version__
from cbt_llm.app import AppConfig, export_space, space
from cbt_llm.errors import CbtLlmError

CPU_TORCH = "--extra-index-url https://download.pytorch.org/whl/cpu"
METADATA = """Metadata-Version: 2.4
Name: cbt-llm
Version: 9.9.9
Requires-Dist: numpy>=2.0
Requires-Dist: tomli>=2; python_version < "3.11"
Provides-Extra: app
Requires-Dist: gradio<7,>=6.31; extra == "app"
Provides-Extra: eval
Requires-Dist: bert-score>=0.3.13; extra == "eval"
"""


def make_wheel(folder: Path, **files: str) -> Path:
    """A cbt_llm wheel with ``files`` (by path under cbt_llm/, ``/`` written as ``__``) besides two of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "cbt_llm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("cbt_llm/__init__.py", '__version__ = "9.9.9"\n')
        archive.writestr("cbt_llm/data/crisis_resources.json", "{}\n")
        for name, text in files.items():
            archive.writestr(f"cbt_llm/{name.replace('__', '/')}", text)
        archive.writestr("cbt_llm-9.9.9.dist-info/METADATA", METADATA)
    return wheel


def export(tmp_path: Path, monkeypatch, record: dict | None) -> Path:
    """Export a Space for a served model (nothing is loaded) as if cbt-llm had been installed as ``record`` says."""
    monkeypatch.setattr(space, "installed_from", lambda: record)
    return export_space(AppConfig(model="cbt", base_url="https://api.example.org/v1",
                                  export_space=str(tmp_path / "space")))


def requirement_lines(folder: Path) -> list[str]:
    text = (folder / "requirements.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def published(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("record", [
    None,  # from an index: pip writes no direct_url.json
    {"url": "https://example.org/cbt_llm-0.1.0-py3-none-any.whl", "archive_info": {"hash": "sha256=00"}},
    {"url": "https://github.com/someone/cbt-llm", "vcs_info": {"vcs": "git", "commit_id": "0" * 40}},
], ids=["index", "remote-wheel", "git"])
def test_anything_but_a_local_source_pins_the_release(tmp_path, monkeypatch, record):
    out = export(tmp_path, monkeypatch, record)
    assert requirement_lines(out) == [CPU_TORCH, f"cbt-llm[app]=={__version__}"]
    assert published(out) == ["README.md", "app.py", "requirements.txt"]


def test_a_wheel_install_puts_the_package_next_to_app_py_through_the_filter(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "dist", **{"safety__rules.yaml": "- a: b\n", ".env": "OPENAI_API_KEY=sk-leak\n",
                                             "checkpoint-2__optimizer.pt": "state", "training_args.bin": "pickle"})
    out = export(tmp_path, monkeypatch, {"url": wheel.as_uri(), "archive_info": {}})
    assert published(out) == ["README.md", "app.py", "cbt_llm/__init__.py", "cbt_llm/data/crisis_resources.json",
                              "cbt_llm/safety/rules.yaml", "requirements.txt"]
    # its dependencies with the app extra; a marker on anything else is left for the Space's Python
    assert requirement_lines(out) == [CPU_TORCH, "numpy>=2.0", 'tomli>=2; python_version < "3.11"', "gradio<7,>=6.31"]
    assert "9.9.9 is the cbt_llm/ folder next to app.py (from its wheel" in (out / "requirements.txt").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert str(tmp_path).encode() not in path.read_bytes() and b"sk-leak" not in path.read_bytes(), path


def test_a_source_tree_install_builds_the_wheel_from_it_and_leaves_its_links_out(tmp_path, monkeypatch):
    tree = tmp_path / "checkout"
    (tree / "cbt_llm").mkdir(parents=True)
    (tmp_path / "private.txt").write_text("outside the tree\n", encoding="utf-8")
    (tree / "cbt_llm" / "notes.txt").symlink_to(tmp_path / "private.txt")  # setuptools would pack what it points to
    built = []

    def build_wheel(source, folder):
        built.append(source)
        return make_wheel(folder, **{"notes.txt": "outside the tree\n"})

    monkeypatch.setattr(space, "build_wheel", build_wheel)
    out = export(tmp_path, monkeypatch, {"url": tree.as_uri(), "dir_info": {"editable": True}})
    assert built == [tree] and "cbt_llm/notes.txt" not in published(out)
    assert (out / "cbt_llm" / "__init__.py").is_file() and "gradio<7,>=6.31" in requirement_lines(out)
    assert "(from its source tree;" in (out / "requirements.txt").read_text(encoding="utf-8")


def test_a_package_file_naming_this_machine_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "dist", **{"paths.py": f"ROOT = {str(tmp_path / 'dist')!r}\n"})
    for _ in range(2):  # the refusal leaves no half-written folder, so a rerun says the same
        with pytest.raises(CbtLlmError, match=r"cbt_llm/paths.py names .*dist, a path of this machine"):
            export(tmp_path, monkeypatch, {"url": wheel.as_uri(), "archive_info": {}})
        assert not (tmp_path / "space").exists()


def test_a_source_that_is_gone_is_named(tmp_path, monkeypatch):
    gone = tmp_path / "deleted-checkout"
    with pytest.raises(CbtLlmError, match="installed from .*deleted-checkout, which is gone"):
        export(tmp_path, monkeypatch, {"url": gone.as_uri(), "dir_info": {}})
    assert not (tmp_path / "space").exists()


def test_the_record_is_the_installed_distributions_not_an_egg_info_in_the_working_folder(tmp_path, monkeypatch):
    checkout, site = tmp_path / "checkout", tmp_path / "site-packages"
    (checkout / "cbt_llm.egg-info").mkdir(parents=True)  # left by a build in the checkout; no direct_url.json
    (checkout / "cbt_llm.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: cbt-llm\nVersion: 0.1.0\n")
    (site / "cbt_llm-0.1.0.dist-info").mkdir(parents=True)
    (site / "cbt_llm-0.1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: cbt-llm\nVersion: 0.1.0\n")
    record = {"url": checkout.as_uri(), "dir_info": {"editable": True}}
    (site / "cbt_llm-0.1.0.dist-info" / "direct_url.json").write_text(json.dumps(record), encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(checkout), str(site)])
    assert space.installed_from() == record and space.local_source(record) == checkout
    monkeypatch.setattr(sys, "path", [str(checkout)])
    assert space.installed_from() is None

