"""The explorer: a built dataset (or Hub dataset) record by record with its CBT steps coloured, and the report
(``cbt-llm evaluate``'s, ``cbt-llm bench``'s, or both).

The data side is plain Python (``load_records``, ``filter_records``, ``answer_segments``,
``read_report``) so it can be tested without a browser; ``add_dataset_tab`` and ``add_report_tab``
lay it out with the Gradio module handed in.
"""

from __future__ import annotations

from pathlib import Path

from cbt_llm.app.texts import text_markdown, ui
from cbt_llm.data.prompts import CBT_STEPS, COGNITIVE_DISTORTIONS, STEP_KEYS
from cbt_llm.errors import CbtLlmError, first_line
from cbt_llm.steps import (
    detect_steps,
    language_share,
    supported_steps,
)

STEP_COLOURS = dict(zip(STEP_KEYS, ("#a8d8ea", "#ffd3b6", "#dcedc1", "#ffaaa5", "#d4a5f5")))
REPORT_FILE = "report.md"
REPORT_FILES = (REPORT_FILE, "bench.md")  # an evaluation report, a benchmark report, or both in one folder


# ------------------------------------------------------------------------------------------- data
def load_records(dataset: str = "cbt_qa") -> list[dict]:
    """Every row of the ``default`` config, all splits, each with its ``split``.

    ``dataset`` is ``cbt_qa`` (the bundled sample), a folder from ``cbt-llm build`` or a Hub dataset id,
    read with ``datasets.load_dataset``.
    """
    from datasets import load_dataset

    import cbt_llm  # noqa: F401 - registers cbt_qa

    try:
        loaded = load_dataset(dataset, "default")
    except (FileNotFoundError, ValueError, OSError) as err:
        raise CbtLlmError(f"cannot load dataset {dataset!r}: {first_line(err)[:200]}") from None
    return [{**row, "split": split} for split, rows in loaded.items() for row in rows]


def filter_records(records: list[dict], keyword: str = "", distortion: str | None = None) -> list[dict]:
    """The records whose question, description, keywords or answer contain ``keyword`` (case-insensitive)
    and, when ``distortion`` is given, that carry that distortion label."""
    keyword = (keyword or "").strip().lower()
    kept = []
    for record in records:
        if distortion and distortion not in (record.get("distortions") or []):
            continue
        if keyword:
            haystack = " ".join([record.get("question") or "", record.get("description") or "",
                                 record.get("response") or "", *(record.get("keywords") or [])]).lower()
            if keyword not in haystack:
                continue
        kept.append(record)
    return kept


def record_language(record: dict) -> str:
    """zh when most of the answer's letters are Chinese, else en (the step detector needs to know)."""
    return "zh" if language_share(record.get("response") or "", "zh") >= 0.5 else "en"


def _located(text: str, pieces: list[tuple[str, str | None]]) -> list[tuple[str, str | None]] | None:
    """Cut ``text`` into labelled pieces found in order (unlabelled gaps kept); None when one is not found."""
    segments, cursor = [], 0
    for piece, label in pieces:
        start = text.find(piece, cursor)
        if start < 0:
            return None
        if start > cursor:
            segments.append((text[cursor:start], None))
        segments.append((piece, label))
        cursor = start + len(piece)
    if cursor < len(text):
        segments.append((text[cursor:], None))
    return segments


def answer_segments(record: dict) -> tuple[list[tuple[str, str | None]], bool]:
    """The answer as ``(text, step key or None)`` pieces, and whether they came from the record's ``steps``.

    A record whose five ``steps`` all appear in its answer, in order, is cut at them; any other answer
    is cut into sentences, each labelled with the step :func:`detect_steps` finds it supports.
    """
    response = record.get("response") or ""
    steps = record.get("steps") or {}
    if all((steps.get(key) or "").strip() for key in STEP_KEYS):
        segments = _located(response, [(steps[key].strip(), key) for key in STEP_KEYS])
        if segments is not None:
            return segments, True
    detection = detect_steps(response, record_language(record))
    labelled = [(sentence, next(iter(supported_steps(scores)), None))
                for sentence, scores in zip(detection.sentences, detection.scores)]
    return _located(response, labelled) or [(response, None)], False


def step_label(key: str, language: str) -> str:
    """``1 验证与共情`` / ``1 Validation and empathy``: the legend entry of a step."""
    index = STEP_KEYS.index(key)
    step = CBT_STEPS[index]
    return f"{index + 1} {step.name_zh if language == 'zh' else step.name_en}"


def distortion_name(key: str, language: str) -> str:
    names = COGNITIVE_DISTORTIONS.get(key)
    return (names[1] if language == "zh" else names[0]) if names else key


def record_choices(records: list[dict]) -> list[tuple[str, int]]:
    """Dropdown entries: ``id · question`` shown, the index into ``records`` as the value."""
    return [(f"{r.get('id')} · {(r.get('question') or '')[:40]}", i) for i, r in enumerate(records)]


def render_record(record: dict | None, language: str) -> tuple[str, list[tuple[str, str | None]]]:
    """The record's header as Markdown and its answer as HighlightedText pieces labelled with step names.

    The record's own text is shown as text (:func:`~cbt_llm.app.texts.text_markdown`): no HTML or image in
    a question, keyword or label takes effect.
    """
    text = ui(language)
    if record is None:
        return text["no_match"], []
    segments, from_record = answer_segments(record)
    keywords = "、".join(map(str, record.get("keywords") or [])) or "-"
    distortions = ", ".join(distortion_name(d, language) for d in record.get("distortions") or []) or "-"
    question, split, record_id = (text_markdown(" ".join(str(record.get(key) or "").split()))  # one line each
                                  for key in ("question", "split", "id"))
    header = (f"### {question}\n\n{text_markdown(str(record.get('description') or ''))}\n\n"
              f"**{text['keywords']}:** {text_markdown(keywords)} · **{text['distortions']}:** "
              f"{text_markdown(distortions)} · **{text['split']}:** {split or '-'} · {record_id}\n\n"
              f"_{text['steps_from_record'] if from_record else text['steps_detected']}_")
    return header, [(piece, step_label(key, language) if key else None) for piece, key in segments]


def read_report(report_dir: str | Path) -> tuple[str, list[Path]]:
    """``report.md`` (``cbt-llm evaluate``) and/or ``bench.md`` (``cbt-llm bench``) without their image lines
    (the plots are shown as images), and the folder's PNGs."""
    folder = Path(report_dir).expanduser()
    found = [folder / name for name in REPORT_FILES if (folder / name).is_file()]
    if not found:
        raise CbtLlmError(f"{folder / REPORT_FILE}: no {' or '.join(REPORT_FILES)} (give the folder `cbt-llm evaluate` "
                          "or `cbt-llm bench` wrote as --output_dir)")
    texts = ["\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                       if not line.lstrip().startswith("![")).strip() for path in found]
    return "\n\n".join(texts), sorted(folder.glob("*.png"))


# ------------------------------------------------------------------------------------------ layout
def add_dataset_tab(gr, records: list[dict], language) -> None:
    """The dataset tab (call inside ``gr.Blocks``): filters, a record picker, the record with its steps coloured.

    ``language`` is the page's language switch; its changes relabel the tab.
    """
    text = ui(language.value)
    distortions = sorted({d for r in records for d in r.get("distortions") or []})
    with gr.Tab(text["explore_tab"], id="explore") as tab:
        with gr.Row():
            keyword = gr.Textbox(label=text["keyword"], scale=2, elem_id="explore-keyword")
            distortion = gr.Dropdown(_distortion_choices(distortions, language.value), value="", scale=1,
                                     label=text["distortion"], elem_id="explore-distortion")
        shown = gr.Markdown(text["matches"].format(total=len(records), shown=len(records)), elem_id="explore-count")
        pick = gr.Dropdown(record_choices(records), value=0 if records else None, label=text["record"],
                           elem_id="explore-record")
        header, segments = render_record(records[0] if records else None, language.value)
        head = gr.Markdown(header, elem_id="explore-header", latex_delimiters=[])
        answer = gr.HighlightedText(segments, label=text["answer"], show_legend=True, combine_adjacent=True,
                                    color_map=_colour_map(language.value), elem_id="explore-answer")

    def show(index, lang):
        record = records[index] if isinstance(index, int) and 0 <= index < len(records) else None
        head_md, pieces = render_record(record, lang)
        return head_md, gr.update(value=pieces, color_map=_colour_map(lang), label=ui(lang)["answer"])

    def refilter(word, label, lang):
        kept = {id(r) for r in filter_records(records, word, label or None)}
        choices = [(name, i) for name, i in record_choices(records) if id(records[i]) in kept]
        first = choices[0][1] if choices else None
        return (ui(lang)["matches"].format(total=len(records), shown=len(choices)),
                gr.update(choices=choices, value=first), *show(first, lang))

    def relabel(word, label, index, lang):
        text = ui(lang)
        count, _, head_md, pieces = refilter(word, label, lang)
        return (gr.update(label=text["explore_tab"]), gr.update(label=text["keyword"]),
                gr.update(label=text["distortion"], choices=_distortion_choices(distortions, lang)), count,
                gr.update(label=text["record"]), *show(index, lang))

    filters = [keyword, distortion, language]
    keyword.submit(refilter, filters, [shown, pick, head, answer], api_visibility="private")
    distortion.change(refilter, filters, [shown, pick, head, answer], api_visibility="private")
    pick.change(show, [pick, language], [head, answer], api_visibility="private")
    language.change(relabel, [keyword, distortion, pick, language], [tab, keyword, distortion, shown, pick, head,
                                                                      answer], api_visibility="private")


def add_report_tab(gr, report_dir: str | Path | None, language) -> None:
    """The report tab: report.md's and/or bench.md's tables and explanations, then the PNG plots; a hint when no
    report is given."""
    text = ui(language.value)
    table, images = read_report(report_dir) if report_dir is not None else (None, [])
    with gr.Tab(text["report_tab"], id="report") as tab:
        body = gr.Markdown(table or text["no_report"], elem_id="report-table")
        with gr.Column(elem_id="report-plots"):
            for image in images:  # full width: the metrics plot is wide
                gr.Image(str(image), label=image.name, show_label=True, interactive=False, type="filepath")

    def relabel(lang):
        return gr.update(label=ui(lang)["report_tab"]), table or ui(lang)["no_report"]

    language.change(relabel, [language], [tab, body], api_visibility="private")


def _distortion_choices(keys: list[str], language: str) -> list[tuple[str, str]]:
    return [(ui(language)["any_distortion"], "")] + [(distortion_name(k, language), k) for k in keys]


def _colour_map(language: str) -> dict[str, str]:
    return {step_label(key, language): colour for key, colour in STEP_COLOURS.items()}
