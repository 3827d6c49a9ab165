"""Helpers for the web-app tests: an evaluation report folder written by the project's own report writer, and
waiting for an app started in a process."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cbt_llm.data.splits import sample_path
from cbt_llm.models.serve import stop_process_group


def make_report(folder: Path, every_metric: bool = False) -> Path:
    """report.md and the two PNGs for the sample's test answers cut to 60 characters, as `cbt-llm evaluate` lays
    them out (BLEU and chrF from sacrebleu, the CBT-structure columns from the five-step detector).

    ``every_metric`` adds a fixed figure for each other registered metric: a table as wide as the demo's
    (20 columns with BERTScore)."""
    import sacrebleu

    from cbt_llm.evaluation.registry import HUNDRED, metric_columns
    from cbt_llm.evaluation.report import Report, SystemResult, plot_metrics, plot_steps, render_markdown
    from cbt_llm.evaluation.structure import step_coverage

    rows = [json.loads(line) for line in sample_path().read_text(encoding="utf-8").splitlines() if line.strip()][:6]
    references = [row["response"] for row in rows]
    predictions = [text[:60] for text in references]
    metrics = {"bleu": sacrebleu.corpus_bleu(predictions, [references], tokenize="zh").score,
               "chrf": sacrebleu.corpus_chrf(predictions, [references]).score}
    if every_metric:
        metrics |= {key: 42.99 if column.panel == HUNDRED else 0.247 for key, column in metric_columns().items()
                    if key not in metrics}
    system = SystemResult("cut-60", None, len(rows), metrics, step_coverage(predictions))
    reference = SystemResult("reference", None, len(rows), {}, step_coverage(references))
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(folder, [system], reference, len(rows), {}, [])
    plot_metrics([system], folder / "metrics.png")
    plot_steps([system], reference, folder / "step_coverage.png")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return folder


@contextlib.contextmanager
def app_process(argv: list[str], port: int, seconds: float, what: str, **popen) -> Iterator[tuple[str, list[str]]]:
    """Start a Gradio app (``argv``) that serves on ``port``; yield its URL and its log lines so far once it
    answers, failing with that log if it exits first or takes longer than ``seconds``; always stop it."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, **popen)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(url + "config", timeout=5)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{what} did not start: {''.join(output)[-3000:]}")
                time.sleep(0.5)
        yield url, output
    finally:
        stop_process_group(process, 30)
