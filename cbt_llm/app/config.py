"""``cbt-llm app``'s options, read by the CLI, :func:`~cbt_llm.app.build_app` and the Space export alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cbt_llm.chat.backends import ChatModelConfig
from cbt_llm.config import option
from cbt_llm.errors import CbtLlmError

SERVING_FIELDS = ("host", "port", "share", "trace_file", "export_space")  # how this machine serves it, not the page


@dataclass(kw_only=True)
class AppConfig(ChatModelConfig):
    """The web app: the chat's model (local or served, as for ``cbt-llm chat``; none: explore only), the
    dataset and report it shows, and where it is served (or the Space folder it is written to)."""

    dataset: str | None = option("cbt_qa", "cbt_qa (the bundled sample), a folder from `cbt-llm build` or a Hub "
                                 "dataset id")
    report_dir: str | None = option(None, "a folder from `cbt-llm evaluate` or `cbt-llm bench` (report.md, "
                                    "bench.md and their plots), shown in the report tab", metavar="DIR")
    language: Literal["zh", "en"] = option("zh", "interface language (replies follow each message's language)")
    host: str = option("127.0.0.1", "address to bind")
    port: int | None = option(None, "port (default: Gradio's, 7860 or the next free one)")
    share: bool = option(False, "also open a public gradio.live link (off unless given)")
    trace_file: str | None = option(None, "append one JSON line per turn: the guard's decision, no message text",
                                    metavar="FILE")
    export_space: str | None = option(None, "write a folder to push as a Hugging Face Space (app.py, "
                                      "requirements.txt, README.md) instead of serving", metavar="DIR")

    def __post_init__(self):
        super().__post_init__()
        if self.language not in ("zh", "en"):
            raise CbtLlmError(f"language must be zh or en, got {self.language!r}")
