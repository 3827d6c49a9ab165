"""Evaluation results in an adapter's card: its ``model-index`` and an "Evaluation results" section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cbt_llm.cards.common import replace_section, table_cell
from cbt_llm.errors import CbtLlmError

CARD_START, CARD_END = "<!-- cbt-llm evaluate: start -->", "<!-- cbt-llm evaluate: end -->"


def _eval_results(results: dict[str, float], dataset_id: str, split: str, dataset_name: str | None,
                  metric_args: dict[str, dict]) -> list[Any]:
    """One ``EvalResult`` per known metric with a value."""
    from huggingface_hub import EvalResult

    from cbt_llm.evaluation.report import METRIC_INFO

    return [EvalResult(task_type="text-generation", task_name="CBT question answering", dataset_type=dataset_id,
                       dataset_name=dataset_name or dataset_id, dataset_split=split, metric_type=METRIC_INFO[k][1],
                       metric_name=f"{METRIC_INFO[k][0]} ({METRIC_INFO[k][2]})", metric_value=round(float(v), 4),
                       metric_args=metric_args.get(k))
            for k, v in results.items() if k in METRIC_INFO and v is not None]


def _results_section(results: dict[str, float], dataset_id: str, split: str, n: int | None,
                     metric_args: dict[str, dict]) -> str:
    """The card's "Evaluation results" section, between its markers: a table, and what reproduces the figures."""
    from cbt_llm.evaluation.report import METRIC_INFO, describe_arguments, format_figure

    section = [CARD_START, "## Evaluation results", "",
               f"On `{dataset_id}`, split `{split}`" + (f" ({n} questions)" if n else "") + ", scored by `cbt-llm evaluate`:",
               "", "| Metric | Value |", "|---|---|"]
    section += [f"| {table_cell(f'{METRIC_INFO[k][0]} ({METRIC_INFO[k][2]})')} | {format_figure(k, v)} |"
                for k, v in results.items()
                if k in METRIC_INFO and v is not None]
    args = {k: a for k, a in metric_args.items() if k in results}
    if args:
        section += ["", "To reproduce: " + "; ".join(f"{METRIC_INFO[k][0]}: {describe_arguments(a)}"
                                                     for k, a in args.items()) + "."]
    section.append(CARD_END)
    return "\n".join(section)


def update_model_card_with_results(card_path: str | Path, results: dict[str, float], dataset_id: str, *,
                                   split: str = "test", dataset_name: str | None = None,
                                   n: int | None = None, metric_args: dict[str, dict] | None = None) -> Path:
    """Write ``results`` (metric key -> value) into the card's ``model-index`` and an evaluation section.

    ``metric_args`` (metric key -> settings, see ``cbt_llm.evaluation.report.reproducibility``) go into
    each result's ``metric_args`` and the section. Earlier results of the same dataset and split are
    replaced; others are kept. Returns the path.
    """
    metric_args = metric_args or {}
    return _write_into_card(card_path, {(dataset_id, split)},
                            _eval_results(results, dataset_id, split, dataset_name, metric_args),
                            _results_section(results, dataset_id, split, n, metric_args), CARD_START, CARD_END)


def _write_into_card(card_path: str | Path, replaced: set[tuple[str, str]], new_results: list, section: str,
                     start: str, end: str) -> Path:
    """The card's ``model-index`` with earlier results of the ``replaced`` (dataset, split) pairs swapped for
    ``new_results`` (others kept), and ``section`` between its markers, saved; returns the path."""
    from huggingface_hub import ModelCard

    card_path = Path(card_path)
    if not card_path.is_file():
        raise CbtLlmError(f"{card_path}: no such model card")
    card = ModelCard.load(card_path)
    keep = [r for r in (card.data.eval_results or []) if (r.dataset_type, r.dataset_split) not in replaced]
    card.data.eval_results = keep + new_results
    if not card.data.model_name:
        card.data.model_name = card_path.parent.name
    card.text = replace_section(card.text, section, start, end, before="\n## How to use")
    card.save(card_path)
    return card_path


BENCH_START, BENCH_END = "<!-- cbt-llm bench: start -->", "<!-- cbt-llm bench: end -->"


def update_model_card_with_bench(card_path: str | Path, rows: list[dict], note: str = "") -> Path:
    """Write public-benchmark scores (``cbt-llm bench``) into the card's ``model-index`` and a "Benchmarks" section.

    Each row has ``dataset_type`` (the benchmark's Hub id or name), ``dataset_name``, ``split``,
    ``metric_type``, ``metric_name``, ``value`` and ``args`` (shots, judge...). Earlier results of the
    same benchmark and split are replaced; ``cbt-llm evaluate``'s results are kept.
    """
    from huggingface_hub import EvalResult

    new_results = [EvalResult(task_type="text-generation", task_name=r["task_name"], dataset_type=r["dataset_type"],
                              dataset_name=r["dataset_name"], dataset_split=r["split"], metric_type=r["metric_type"],
                              metric_name=r["metric_name"], metric_value=round(float(r["value"]), 4),
                              metric_args=r.get("args"))
                   for r in rows if r["value"] is not None]

    table = ["| Benchmark | Split | Metric | Value | Settings |", "|---|---|---|---|---|"]
    table += [f"| {table_cell(r['dataset_name'])} | {r['split']} | {table_cell(r['metric_name'])} | "
              f"{'-' if r['value'] is None else format(r['value'], '.4f')} | "
              f"{table_cell(', '.join(f'{k} {v}' for k, v in (r.get('args') or {}).items()))} |" for r in rows]
    section = "\n".join([BENCH_START, "## Benchmarks", "", "Scored by `cbt-llm bench` on public benchmarks:", "",
                         *table, *(["", note] if note else []), BENCH_END])
    return _write_into_card(card_path, {(r["dataset_type"], r["split"]) for r in rows}, new_results, section,
                            BENCH_START, BENCH_END)
