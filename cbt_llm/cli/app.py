"""``cbt-llm app``: the Gradio web app (chat behind the crisis guard, dataset explorer, report), or a Space folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cbt_llm.cli.common import Command, option


@dataclass
class AppArguments:
    adapter: str | None = option(None, "a LoRA adapter folder or Hub repo id", metavar="DIR|REPO")
    model_name_or_path: str | None = option(None, "base model (Hub id, folder or cbt-llm/tiny-random-llama): with "
                                            "--adapter, instead of the adapter's own base; alone, chat with it")
    base_url: str | None = option(None, "a served model (OpenAI-compatible), e.g. http://127.0.0.1:8000/v1",
                                  metavar="URL")
    model: str | None = option(None, "the served model's name on the server", metavar="NAME")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the API key; the key itself is never "
                              "taken from a flag", metavar="NAME")
    max_new_tokens: int | None = option(None, "answer length cap (default: 512)", metavar="N")
    dataset: str = option("cbt_qa", "cbt_qa (the bundled sample), a folder from `cbt-llm build` or a Hub dataset id")
    report_dir: str | None = option(None, "a folder from `cbt-llm evaluate`, shown in the report tab", metavar="DIR")
    host: str = option("127.0.0.1", "address to bind")
    port: int | None = option(None, "port (default: Gradio's, 7860 or the next free one)")
    share: bool = option(False, "also open a public gradio.live link (off unless given)")
    trace_file: str | None = option(None, "append one JSON line per turn: the guard's decision, no message text",
                                    metavar="FILE")
    language: Literal["zh", "en"] = option("zh", "interface language (replies follow each message's language)")
    export_space: str | None = option(None, "write a folder to push as a Hugging Face Space (app.py, "
                                      "requirements.txt, README.md) instead of serving", metavar="DIR")


def app(args: AppArguments) -> str:
    """Serve the app until Ctrl-C, or write the Space folder."""
    from cbt_llm.app import app_main

    return app_main(adapter=args.adapter, model=args.model if args.base_url else args.model_name_or_path or args.model,
                    base_url=args.base_url, dataset=args.dataset, report_dir=args.report_dir, host=args.host,
                    port=args.port, share=args.share, trace_file=args.trace_file, language=args.language,
                    max_new_tokens=args.max_new_tokens, api_key_env=args.api_key_env,
                    export_space_dir=args.export_space)


COMMANDS = (
    Command("app", AppArguments, app,
            help="the web app: chat behind the crisis guard, dataset explorer, evaluation report (Gradio)",
            description="Serve the app on 127.0.0.1 (a public link only with --share). Every message goes through "
                        "the crisis guard; on a crisis the page shows fixed help information and the model is not "
                        "asked. Nothing is logged unless --trace_file. --export_space DIR writes a folder to push as "
                        "a Hugging Face Space instead. Needs the app extra: pip install 'cbt-llm[app]'."),
)
