"""``cbt-llm app --export_space DIR``: a folder to push as a Hugging Face Space (Gradio SDK).

It holds ``app.py`` (builds the same app with ``build_app`` from the same :class:`AppConfig`, less how
this machine serves it), ``requirements.txt`` and a ``README.md`` whose YAML header configures the
Space. Local folders (adapter, base model, dataset, report) are copied in and referred to relative to
``app.py``; Hub ids are kept as they are. No key is ever written: a served model's key is read on the
Space from the secret named by ``api_key_env``.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

from cbt_llm.app.config import SERVING_FIELDS, AppConfig
from cbt_llm.chat import notice
from cbt_llm.errors import CbtLlmError

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


PLACED = {"adapter": "adapter", "model_name_or_path": "model", "dataset": "dataset", "report_dir": "report"}


def export_space(config: AppConfig, *, title: str = "CBT-LLM") -> Path:
    """Write the Space folder ``config.export_space`` (must be empty or new) and return it."""
    import gradio

    from cbt_llm import __version__

    if not config.export_space:
        raise CbtLlmError("name the Space folder to write: --export_space DIR")
    output = Path(config.export_space).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise CbtLlmError(f"{output}: the Space folder must be empty or new")
    output.mkdir(parents=True, exist_ok=True)
    (output / "app.py").write_text(APP_PY.replace("{arguments}", _app_arguments(config, output)), encoding="utf-8")
    (output / "requirements.txt").write_text(f"cbt-llm[app]=={__version__}\n", encoding="utf-8")
    served = f"at {config.base_url}" if config.base_url else f"`{config.model}`"
    secret = (f"\nThe served model {served} needs its API key as the Space secret `{config.api_key_env}` "
              "(Settings, Variables and secrets).\n") if config.model else ""
    (output / "README.md").write_text(README.format(
        title=title, gradio_version=gradio.__version__, what=_chat_model(config), secret=secret,
        data=f"the dataset `{config.dataset}`" if config.dataset else "the bundled sample of the CBT QA dataset",
        notice_zh=notice("zh"), notice_en=notice("en")), encoding="utf-8")
    return output


def _chat_model(config: AppConfig) -> str:
    """What the Space's card says the chat talks to."""
    if config.adapter:
        return f"adapter `{config.adapter}`"
    if config.model_name_or_path or config.model:
        return f"model `{config.model_name_or_path or config.model}`"
    return "no model (explorer only)"


def _app_arguments(config: AppConfig, output: Path) -> str:
    """The ``AppConfig(...)`` arguments of app.py: every page setting that is not the default, one per line."""
    lines = []
    for field in fields(config):
        value = getattr(config, field.name)
        if field.name in SERVING_FIELDS or value == field.default:
            continue
        expression = _place(value, output, PLACED[field.name]) if field.name in PLACED else repr(value)
        lines.append(f"\n    {field.name}={expression},")
    return "".join(lines) + ("\n" if lines else "")


def _place(source: str | Path | None, output: Path, name: str) -> str:
    """The app.py expression for a path or id: a local folder is copied into the Space and named relative to app.py."""
    if source is None:
        return "None"
    path = Path(source).expanduser()
    if not path.exists():
        return repr(str(source))  # a Hub id (or a name such as cbt_qa) works the same on the Space
    if not path.is_dir():
        raise CbtLlmError(f"{path}: expected a folder (adapter, dataset or report) or a Hub id")
    shutil.copytree(path, output / name)
    return f"_here({name!r})"
