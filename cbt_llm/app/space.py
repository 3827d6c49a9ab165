"""``cbt-llm app --export_space DIR``: a folder to push as a Hugging Face Space (Gradio SDK).

It holds ``app.py`` (builds the same app with ``build_app``), ``requirements.txt`` and a ``README.md``
whose YAML header configures the Space. Local folders (adapter, dataset, report) are copied in and
referred to relative to ``app.py``; Hub ids are kept as they are. No key is ever written: a served
model's key is read on the Space from the secret named by ``api_key_env``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cbt_llm.chat import notice
from cbt_llm.errors import CbtLlmError

APP_PY = '''"""CBT-LLM web app: chat behind the crisis guard and a dataset explorer (written by `cbt-llm app --export_space`)."""

from pathlib import Path

from cbt_llm.app import build_app, launch_app

HERE = Path(__file__).resolve().parent


def _here(name):
    return None if name is None else str(HERE / name)


demo = build_app({arguments})

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


def export_space(output: str | Path, *, adapter: str | None = None, model: str | None = None,
                 base_url: str | None = None, dataset: str | None = None, report_dir: str | Path | None = None,
                 language: str = "zh", max_new_tokens: int | None = None, api_key_env: str = "OPENAI_API_KEY",
                 title: str = "CBT-LLM") -> Path:
    """Write the Space folder ``output`` (must be empty or new) and return it."""
    import gradio

    from cbt_llm import __version__

    output = Path(output).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise CbtLlmError(f"{output}: the Space folder must be empty or new")
    output.mkdir(parents=True, exist_ok=True)
    arguments = {"adapter": _place(adapter, output, "adapter"), "model": _place(model, output, "model"),
                 "base_url": repr(base_url), "dataset": _place(dataset, output, "dataset"),
                 "report_dir": _place(report_dir, output, "report"), "language": repr(language),
                 "max_new_tokens": repr(max_new_tokens), "api_key_env": repr(api_key_env)}
    (output / "app.py").write_text(APP_PY.replace("{arguments}", ", ".join(f"{k}={v}" for k, v in arguments.items())),
                                   encoding="utf-8")
    (output / "requirements.txt").write_text(f"cbt-llm[app]=={__version__}\n", encoding="utf-8")
    what = f"adapter `{adapter}`" if adapter else f"model `{model}`" if model else "no model (explorer only)"
    secret = (f"\nThe served model at {base_url} needs its API key as the Space secret `{api_key_env}` "
              "(Settings, Variables and secrets).\n") if base_url else ""
    (output / "README.md").write_text(README.format(
        title=title, gradio_version=gradio.__version__, what=what, secret=secret,
        data=f"the dataset `{dataset}`" if dataset else "the bundled sample of the CBT QA dataset",
        notice_zh=notice("zh"), notice_en=notice("en")), encoding="utf-8")
    return output


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
