"""``cbt-llm app``: the Gradio web app (chat behind the crisis guard, dataset explorer, report), or a Space folder."""

from __future__ import annotations

from cbt_llm.app import app_main
from cbt_llm.app.config import AppConfig
from cbt_llm.cli.common import Command


COMMANDS = (
    Command("app", AppConfig, app_main,
            help="the web app: chat behind the crisis guard, dataset explorer, evaluation report (Gradio)",
            description="Serve the app on 127.0.0.1 (a public link only with --share). Every message goes through "
                        "the crisis guard; on a crisis the page shows fixed help information and the model is not "
                        "asked. Nothing is logged unless --trace_file. --export_space DIR writes a folder to push as "
                        "a Hugging Face Space instead. Needs the app extra: pip install 'cbt-llm[app]'."),
)
