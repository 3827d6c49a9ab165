"""The web app's interface strings in Chinese and English (the page switches between them)."""

from __future__ import annotations

import re

from cbt_llm.chat import notice

LANGUAGES = {"中文": "zh", "English": "en"}  # the switch's choices: label -> language

UI = {
    "zh": {
        "title": "## CBT-LLM：认知行为疗法心理问答",
        "chat_tab": "对话",
        "explore_tab": "数据集",
        "report_tab": "评估报告",
        "language": "界面语言",
        "chatbot": "对话",
        "input": "说说你的困扰，按回车发送",
        "send": "发送",
        "reset": "清空对话",
        "model": "模型：{what}。每条消息先经过危机检查：遇到危机时显示固定的求助信息，不会询问模型。",
        "no_model": "未配置模型（启动时给出 --adapter、--model_name_or_path，或 --base_url 与 --model），只能浏览数据。",
        "error": "出错了：{error}",
        "keyword": "关键词",
        "distortion": "认知扭曲",
        "any_distortion": "全部",
        "record": "记录",
        "matches": "共 {total} 条记录，符合条件 {shown} 条",
        "no_match": "没有符合条件的记录。",
        "answer": "回答（按 CBT 五个步骤着色）",
        "keywords": "关键词",
        "distortions": "认知扭曲",
        "split": "划分",
        "steps_from_record": "步骤来自记录自带的 steps 字段。",
        "steps_detected": "记录没有完整的 steps 字段，步骤由 cbt_llm.steps.detect_steps 按句识别。",
        "no_report": "启动时给出 --report_dir（`cbt-llm evaluate` 的输出文件夹）即可在此查看评估报告。",
    },
    "en": {
        "title": "## CBT-LLM: cognitive behavioural therapy QA",
        "chat_tab": "Chat",
        "explore_tab": "Dataset",
        "report_tab": "Evaluation report",
        "language": "Interface language",
        "chatbot": "Conversation",
        "input": "Say what is troubling you; Enter sends",
        "send": "Send",
        "reset": "Reset",
        "model": "Model: {what}. Every message is checked for crisis first: on a crisis the page shows fixed help "
                 "information and the model is not asked.",
        "no_model": "No model configured (start with --adapter, --model_name_or_path, or --base_url with --model): "
                    "browse the data only.",
        "error": "error: {error}",
        "keyword": "Keyword",
        "distortion": "Cognitive distortion",
        "any_distortion": "any",
        "record": "Record",
        "matches": "{shown} of {total} records match",
        "no_match": "No record matches.",
        "answer": "Answer (coloured by CBT step)",
        "keywords": "Keywords",
        "distortions": "Distortions",
        "split": "Split",
        "steps_from_record": "Steps from the record's own steps field.",
        "steps_detected": "The record has no complete steps field: steps found per sentence by "
                          "cbt_llm.steps.detect_steps.",
        "no_report": "Start with --report_dir (the folder `cbt-llm evaluate` wrote) to see the evaluation report here.",
    },
}


def ui(language: str) -> dict[str, str]:
    """The strings of one interface language (English for anything but zh)."""
    return UI.get(language, UI["en"])


def notice_html(language: str) -> str:
    """The not-a-substitute notice with crisis lines, as the banner that stays at the top of every tab."""
    return (f'<div id="cbt-notice" role="note" style="border:2px solid #c0392b;border-radius:8px;padding:10px 14px;'
            f'background:#fdecea;color:#1f1f1f;font-size:15px;line-height:1.5">{notice(language)}</div>')


# ---------------------------------------------------------------------------------- text on the page
URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_MARKUP = re.compile(r"[\\`<~\[]|&(?=#?\w+;)")  # what would make Markdown show something else than the text
_URL_TAIL = ".,:;!?'\"*"


def _url_end(url: str) -> str:
    """``url`` without the punctuation a sentence puts after it (a closing bracket only when it is unbalanced)."""
    while url:
        last = url[-1]
        if last in _URL_TAIL or (last == ")" and url.count(")") > url.count("(")) \
                or (last == "]" and url.count("]") > url.count("[")):
            url = url[:-1]
        else:
            break
    return url


def _escaped(text: str) -> str:
    return _MARKUP.sub(lambda match: "\\" + match.group(), text)


def text_markdown(text: str) -> str:
    """Markdown that shows ``text`` as it is written: no HTML, image, link, code or fence of its own takes
    effect (``<``, ``[``, backticks, ``~``, ``\\`` and entities are escaped; emphasis and lists still render),
    and each http(s) URL becomes a link that shows where it goes and ends where the URL does (ASCII only: a
    full-width bracket after it stays outside)."""
    parts, cursor = [], 0
    for match in URL.finditer(text):
        url = _url_end(match.group())
        if not url.partition("://")[2]:
            continue
        parts += [_escaped(text[cursor:match.start()]), f"<{url}>"]
        cursor = match.start() + len(url)
    parts.append(_escaped(text[cursor:]))
    return "".join(parts)


def shown_as_text(messages: list[dict]) -> list[dict]:
    """The chat's messages for the page: each one's text through :func:`text_markdown`."""
    return [{**message, "content": text_markdown(message["content"])} for message in messages]
