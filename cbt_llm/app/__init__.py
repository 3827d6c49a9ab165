"""The web app (Gradio): chat behind the crisis guard, a dataset explorer and the evaluation report.

``build_app(AppConfig(...)) -> gr.Blocks`` lays the page out; ``cbt-llm app`` (:func:`app_main`) launches
it on 127.0.0.1 (``--share`` only when asked) or writes a Space folder (``--export_space DIR``). The
not-a-substitute notice with crisis lines stays above every tab. Gradio, torch and datasets are imported
when the app is built, so ``import cbt_llm.app`` stays light.
"""

from __future__ import annotations

from typing import Callable

from cbt_llm.app.config import AppConfig
from cbt_llm.app.space import PACKAGE, export_space
from cbt_llm.app.texts import LANGUAGES, notice_html, ui
from cbt_llm.chat import notice

__all__ = ["APP_CSS", "AppConfig", "app_main", "build_app", "export_space", "launch_app"]

# The report table has up to 20 columns: a compact cell keeps each figure on one line (it fits at 1400 px),
# and a page narrower than the table scrolls it sideways instead of breaking numbers between digits.
APP_CSS = """
#report-table table { display: block; max-width: 100%; overflow-x: auto; font-size: var(--text-sm); }
#report-table th, #report-table td { padding: 5px 6px; overflow-wrap: normal; word-break: normal; }
#report-table td { white-space: nowrap; }
"""


def build_app(config: AppConfig | None = None, backend=None, model_guard: Callable | None = None):
    """The app as ``gr.Blocks``: a chat tab, a dataset tab and a report tab under the notice and a zh/en switch.

    The chat uses ``backend`` (a ``cbt_llm.chat`` back-end) or the one ``config`` names, made as
    ``cbt-llm chat`` makes it; without either the chat is disabled. ``config.dataset`` is ``cbt_qa``
    (the bundled sample), a built folder or a Hub dataset id (None: no dataset tab content).
    ``config.trace_file`` appends one JSON line per turn (the guard's decision, no text); nothing is
    logged without it. ``model_guard`` (default: the one ``config.guard_model`` names) is handed to the
    guard (it can only raise the risk level).
    """
    import gradio as gr

    from cbt_llm.app.chat_tab import GuardedChat, add_chat_tab
    from cbt_llm.app.explore_tab import add_dataset_tab, add_report_tab, load_records

    config = config or AppConfig()
    backend = backend if backend is not None else config.backend()
    model_guard = model_guard or config.guard()
    chat = GuardedChat(backend, trace_file=config.trace_file, model_guard=model_guard) if backend is not None else None
    records = load_records(config.dataset) if config.dataset else []
    language = config.language
    with gr.Blocks(title="CBT-LLM", analytics_enabled=False) as app:
        with gr.Row():
            title = gr.Markdown(ui(language)["title"], elem_id="cbt-title")
            switch = gr.Radio(list(LANGUAGES.items()), value=language, label=ui(language)["language"], scale=0,
                              min_width=220, elem_id="cbt-language")
        banner = gr.HTML(notice_html(language), elem_id="cbt-notice-box")
        with gr.Tabs():
            add_chat_tab(gr, chat, backend.describe(public=True) if backend is not None else None, switch)
            add_dataset_tab(gr, records, switch)
            add_report_tab(gr, config.report_dir, switch)

        def relabel(lang):
            return ui(lang)["title"], gr.update(label=ui(lang)["language"]), notice_html(lang)

        switch.change(relabel, [switch], [title, switch, banner], api_visibility="private")
    app.cbt_chat = chat  # the guarded chat (its back-end counts model calls), for callers that launch the app
    return app


def launch_app(app, host: str | None = None, port: int | None = None, share: bool = False, **kwargs):
    """Serve the app with what it promises: loopback unless ``host`` (or ``$GRADIO_SERVER_NAME``, as on a Space)
    says otherwise, a public link only when ``share`` is asked for, and no record of the conversations:
    Gradio's run history (which keeps every call's inputs and outputs) and traffic monitoring are off.
    The page's own style (:data:`APP_CSS`) goes with it."""
    return app.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=share, show_error=True, run_history=False,
        enable_monitoring=False, css=APP_CSS, **kwargs)


def serving_line(app, share: bool) -> str:
    """What ``cbt-llm app`` prints once the page is up: where it is, how to stop it, and (without a public
    link) the flag that makes one, in place of Gradio's advice about ``launch()``."""
    where = app.local_url + (f" and {app.share_url}" if getattr(app, "share_url", None) else "")
    return f"cbt-llm app: serving on {where} (Ctrl-C stops it" + ("" if share else "; --share adds a public link") + ")"


def app_main(config: AppConfig) -> str:
    """What ``cbt-llm app`` runs: write the Space folder (``config.export_space``), or build the app and serve
    it until Ctrl-C."""
    if config.export_space:
        folder = export_space(config)
        carried = f", {PACKAGE}/" if (folder / PACKAGE).is_dir() else ""
        return (f"wrote the Space folder {folder} (app.py, requirements.txt, README.md{carried}); push it with "
                f'`hf upload YOUR_NAME/SPACE_NAME {folder} --repo-type space --exclude ".venv/*" --exclude '
                '"*/__pycache__/*"` (the exclusions keep a local check\'s venv and caches out)')
    print(notice(config.language), flush=True)  # in the terminal too, before anything slow
    app = build_app(config)
    # quiet: Gradio's start-up lines speak to Python callers ("set `share=True` in `launch()`"); ours to the CLI
    launch_app(app, config.host, config.port, config.share, quiet=True, prevent_thread_lock=True)
    print(serving_line(app, config.share), flush=True)
    app.block_thread()  # until Ctrl-C
    return "app stopped"
