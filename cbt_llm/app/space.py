"""``cbt-llm app --export_space DIR``: a folder to push as a Hugging Face Space (Gradio SDK).

It holds ``app.py`` (builds the same app with ``build_app`` from the same :class:`AppConfig`, less how
this machine serves it), ``requirements.txt`` and a ``README.md`` whose YAML header configures the
Space. Local folders (adapter, base model, dataset, report) are copied in through the filter ``push``
uses (``cbt_llm.hub.files``: no symbolic link, hidden file, checkpoint or trainer state; an adapter's
card, config and run files without this machine's paths) and referred to relative to ``app.py``; Hub
ids are kept as they are. No key is ever written: a served model's key is read on the Space from the
secret named by ``api_key_env``, and a ``base_url`` that carries one is refused.

How the Space gets cbt-llm follows how it is installed here (its PEP 610 record, ``direct_url.json``): from a
source tree (editable or not) or a local wheel or sdist, the package itself goes into ``cbt_llm/`` next to
``app.py`` (from the wheel built as ``pip wheel`` builds it, through the same filter) and ``requirements.txt``
lists its dependencies with the ``app`` extra, because a Space installs ``requirements.txt`` alone, before
the folder's other files are there; from a package index, ``requirements.txt`` pins ``cbt-llm[app]==VERSION``.
Both take torch from PyPI's CPU mirror at PyTorch (a Space's free hardware has no GPU).
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from cbt_llm.app.config import SERVING_FIELDS, AppConfig
from cbt_llm.chat import notice
from cbt_llm.errors import CbtLlmError

if TYPE_CHECKING:
    from cbt_llm.hub.files import Plan

APP_PY = '''"""CBT-LLM web app: chat behind the crisis guard and a dataset explorer (written by `cbt-llm app --export_space`)."""

from pathlib import Path

from cbt_llm.app import AppConfig, build_app, launch_app

HERE = Path(__file__).resolve().parent


def _here(name):
    return None if name is None else str(HERE / name)


demo = build_app(AppConfig({arguments}))

if __name__ == "__main__":
    launch_app(demo)  # no run history, no monitoring, no share link
'''

README = """---
title: {title}
emoji: 🧠
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
license: apache-2.0
short_description: CBT-structured counselling answers behind a crisis guard
tags:
- cbt
- mental-health
- cbt-llm
---

# {title}

A [cbt-llm](https://pypi.org/project/cbt-llm/) web app: chat with {what} behind a crisis guard, and
browse {data}. Every message is checked for crisis first; on a crisis the page shows fixed help
information with crisis lines and the model is not asked. Nothing is logged.

**Not a substitute for professional help.**

> {notice_zh}
>
> {notice_en}
{secret}"""


REQUIREMENTS = """\
# A Space installs this file on its own, before the folder's other files are copied in (pip install -r).
# torch: on Linux, PyPI's torch is the multi-GB CUDA build, of no use on a Space's CPU hardware; PyTorch's CPU
# index has the same versions built for the CPU (`+cpu` sorts above PyPI's). On GPU hardware, delete the next line.
--extra-index-url https://download.pytorch.org/whl/cpu
{what}"""
PACKAGE = "cbt_llm"  # the folder next to app.py that holds cbt-llm when no release of it is installed here
BUILD_BACKEND = "setuptools>=77"  # pyproject.toml's build requirement: present, the wheel is built without isolation

PLACED = {"adapter": "adapter", "model_name_or_path": "model", "dataset": "dataset", "report_dir": "report"}
# Files of a copied folder that name this machine's paths (an evaluation's dataset, prediction files, adapter).
RUN_FILES = ("report.json",)
# Query parameters that carry a credential (api-key, access_token, sig, ...): a base_url with one is refused.
CREDENTIAL_PARAMETER = re.compile(r"key|token|secret|passw|auth|sig|credential|code", re.IGNORECASE)


def export_space(config: AppConfig, *, title: str = "CBT-LLM") -> Path:
    """Write the Space folder ``config.export_space`` (must be empty or new) and return it."""
    import gradio

    if not config.export_space:
        raise CbtLlmError("name the Space folder to write: --export_space DIR")
    check_base_url(config.base_url)
    output = Path(config.export_space).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise CbtLlmError(f"{output}: the Space folder must be empty or new")
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        arguments = _app_arguments(config, output)
        requirements = _requirements(output, installed_from())
    except BaseException:  # a refused folder: leave the Space folder as it was (empty or absent), so a rerun works
        _empty(output, remove=created)
        raise
    (output / "app.py").write_text(APP_PY.replace("{arguments}", arguments), encoding="utf-8")
    (output / "requirements.txt").write_text(requirements, encoding="utf-8")
    served = f"at {config.base_url}" if config.base_url else f"`{config.model}`"
    secret = (f"\nThe served model {served} needs its API key as the Space secret `{config.api_key_env}` "
              "(Settings, Variables and secrets).\n") if config.model else ""
    (output / "README.md").write_text(README.format(
        title=title, gradio_version=gradio.__version__, what=_chat_model(config), secret=secret,
        data=f"the dataset {_named(config, 'dataset')}" if config.dataset else "the bundled sample of the CBT QA dataset",
        notice_zh=notice("zh"), notice_en=notice("en")), encoding="utf-8")
    return output


def _empty(folder: Path, *, remove: bool) -> None:
    """Delete what an export wrote into ``folder`` and, with ``remove``, the folder itself."""
    import shutil

    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if remove:
        folder.rmdir()


def check_base_url(base_url: str | None) -> None:
    """Refuse a ``base_url`` that carries a credential (``user:key@``, ``?api-key=``): the Space would publish it."""
    if not base_url:
        return
    parts = urlsplit(base_url)
    if parts.username or parts.password or any(CREDENTIAL_PARAMETER.search(name)
                                               for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise CbtLlmError("--base_url carries a credential (user:key@ or a key in the query), which the Space folder "
                          "would publish: give the URL without it, and the key as the Space secret named by "
                          "--api_key_env")


def _chat_model(config: AppConfig) -> str:
    """What the Space's card says the chat talks to."""
    if config.adapter:
        return f"adapter {_named(config, 'adapter')}"
    if config.model_name_or_path:
        return f"model {_named(config, 'model_name_or_path')}"
    return f"model `{config.model}`" if config.model else "no model (explorer only)"


def _named(config: AppConfig, field: str) -> str:
    """How the Space's card names a setting: a local folder by its copy in the Space, never by its path here."""
    value = getattr(config, field)
    return f"`{PLACED[field]}/` (in this Space)" if Path(value).expanduser().exists() else f"`{value}`"


def _app_arguments(config: AppConfig, output: Path) -> str:
    """The ``AppConfig(...)`` arguments of app.py: every page setting that is not the default, one per line."""
    lines = []
    for field in fields(config):
        value = getattr(config, field.name)
        if field.name in SERVING_FIELDS or value == field.default:
            continue
        expression = _place(value, output, PLACED[field.name], config) if field.name in PLACED else repr(value)
        lines.append(f"\n    {field.name}={expression},")
    return "".join(lines) + ("\n" if lines else "")


def _place(source: str | Path | None, output: Path, name: str, config: AppConfig) -> str:
    """The app.py expression for a path or id: a local folder is copied into the Space (what ``push`` would
    publish of it) and named relative to app.py."""
    from cbt_llm.hub.files import folder_plan, write_plan

    if source is None:
        return "None"
    path = Path(source).expanduser()
    if not path.exists():
        return repr(str(source))  # a Hub id (or a name such as cbt_qa) works the same on the Space
    if not path.is_dir():
        raise CbtLlmError(f"{path}: expected a folder (adapter, dataset or report) or a Hub id")
    files = _adapter_files(path, config) if name == "adapter" else folder_plan(path, run_files=RUN_FILES)
    write_plan(files, output / name)
    return f"_here({name!r})"


def _adapter_files(folder: Path, config: AppConfig) -> Plan:
    """The adapter as ``push`` would publish it (card for the Space's ``adapter`` folder), on a base the Space loads."""
    from cbt_llm.cards import adapter_card_for_hub
    from cbt_llm.hub.client import hub_endpoint, is_local_model
    from cbt_llm.hub.files import adapter_plan, read_adapter_config

    base = read_adapter_config(folder).get("base_model_name_or_path") or None
    if base and is_local_model(base):
        base = _space_base_model(base, config)
    return adapter_plan(folder, base_model=base, card_fn=adapter_card_for_hub,
                        card_base_model=None if base is None or is_local_model(base) else base, repo_id="adapter",
                        dataset_repo_id=None, endpoint=hub_endpoint())


def _space_base_model(base: str, config: AppConfig) -> str:
    """What an adapter's ``base_model_name_or_path`` says on the Space when it names a local model here."""
    from cbt_llm.hub.client import looks_like_local_path
    from cbt_llm.models.tiny import random_model_name

    if config.model_name_or_path:  # app.py names the base itself; the copied folder, or the Hub id
        local = looks_like_local_path(config.model_name_or_path)
        return f"./{PLACED['model_name_or_path']}" if local else config.model_name_or_path
    named = random_model_name(base) or (base if not looks_like_local_path(base) else None)
    if named is None:
        raise CbtLlmError(f"the adapter's base model is {base}, a folder on this machine that the Space cannot load "
                          "and whose path it would publish: pass --model_name_or_path with the base model's Hub id "
                          "(or its folder, to copy it into the Space)")
    return named


# ------------------------------------------------------------------------------ how the Space installs cbt-llm
def installed_from() -> dict | None:
    """The PEP 610 record (``direct_url.json``) of the installed cbt-llm; None when it has none (from an index)."""
    import importlib.metadata

    for distribution in importlib.metadata.distributions(name="cbt-llm"):  # an egg-info in the working folder first
        record = distribution.read_text("direct_url.json")
        if record:
            return json.loads(record)
    return None


def local_source(record: dict | None) -> Path | None:
    """What cbt-llm was installed from when that is on this machine: a source tree, a wheel or an sdist; None for
    an index, a remote archive or a version control URL (the release route)."""
    from urllib.request import url2pathname

    url = (record or {}).get("url", "")
    if not url.startswith("file:") or not ({"dir_info", "archive_info"} & set(record)):
        return None
    source = Path(url2pathname(urlsplit(url).path))
    if not source.exists():
        raise CbtLlmError(f"cbt-llm was installed from {source}, which is gone: install it again (from its source "
                          "tree, a wheel or a release) before exporting a Space")
    return source


def _requirements(output: Path, record: dict | None) -> str:
    """requirements.txt for the Space; with a local source, the package itself is written to ``output/cbt_llm``."""
    import tempfile

    from cbt_llm import __version__
    from cbt_llm.hub.files import wheel_plan, write_plan

    source = local_source(record)
    if source is None:
        return REQUIREMENTS.format(what=f"cbt-llm[app]=={__version__}\n")
    with tempfile.TemporaryDirectory(prefix="cbt-llm-wheel-") as folder:
        wheel = source if source.suffix == ".whl" else build_wheel(source, Path(folder))
        write_plan(wheel_plan(wheel, PACKAGE, source=source), output / PACKAGE)
        dependencies = wheel_dependencies(wheel, "app")
    kind = "source tree" if source.is_dir() else "wheel" if source.suffix == ".whl" else "sdist"
    what = (f"# cbt-llm {wheel.name.split('-')[1]} is the {PACKAGE}/ folder next to app.py (from its {kind}; no "
            "release of it\n# was installed where this was exported): these are its dependencies, with the app "
            "extra.\n")
    return REQUIREMENTS.format(what=what + "".join(f"{line}\n" for line in dependencies))


def build_wheel(source: Path, folder: Path) -> Path:
    """cbt-llm's wheel built from ``source`` (a source tree or an sdist) into ``folder``, as ``pip wheel`` builds it."""
    import importlib.metadata
    import subprocess
    import sys

    from packaging.requirements import Requirement

    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-w", str(folder)]
    backend = Requirement(BUILD_BACKEND)
    try:
        if backend.specifier.contains(importlib.metadata.version(backend.name)):
            command.append("--no-build-isolation")  # offline: this environment's setuptools builds it
    except importlib.metadata.PackageNotFoundError:
        pass  # pip fetches setuptools for the build
    done = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=900)
    wheels = sorted(folder.glob("cbt_llm-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        said = (done.stderr.strip() or done.stdout.strip() or "no wheel").splitlines()[-1]
        raise CbtLlmError(f"could not build cbt-llm's wheel from {source} for the Space ({said}): build one with "
                          f"`pip wheel --no-deps -w dist {source}` and install it, or install a release")
    return wheels[0]


def wheel_dependencies(wheel: Path, extra: str) -> list[str]:
    """The wheel's requirements (``Requires-Dist``) with ``extra``, as requirements.txt lines."""
    import zipfile
    from email.parser import HeaderParser

    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        metadata = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    lines = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and "extra" in str(requirement.marker):  # any other marker is the Space's
            if not requirement.marker.evaluate({"extra": extra}):
                continue
            requirement.marker = None
        lines.append(str(requirement))
    return lines
