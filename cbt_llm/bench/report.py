"""bench.json, bench.md and bench.png from the scores of a bench run, and the scores into a local adapter's card.

``bench.json`` is ``{"tasks": {TASK: {...}}, "settings": {...}, "contamination": {...}}``; each task
leads with its headline figure (``accuracy``, ``weighted_f1``, ``mean_total``) and carries its
breakdowns and its data source with file hashes. ``bench.md`` shows the same as tables; a judged
task's table names its judge model in the heading.
"""

from __future__ import annotations

import json
from pathlib import Path

from cbt_llm.bench.tasks import JUDGED, get_task
from cbt_llm.engine.store import utc_now

TITLES = {"cpsyexam": "CPsyExam (dev)", "cpsycoune": "CPsyCounE", "cbt_bench": "CBT-Bench level II"}
CITATIONS = {"cpsyexam": "Zhao et al., COLING 2025", "cpsycoune": "Zhang et al., Findings of ACL 2024",
             "cbt_bench": "Zhang et al., NAACL 2025"}


def settings_of(config) -> dict:
    """The run's settings bench.json records (never a key: only the variable names)."""
    judged = bool(set(config.task_list) & JUDGED)
    return {"mode": "endpoint" if config.base_url else "transformers", "model": config.model_meant(),
            "adapter": config.adapter, "base_url": config.base_url, "shots": config.shots, "seed": config.seed,
            "limit": config.limit, "temperature": config.temperature, "max_new_tokens": config.max_new_tokens,
            "prompts": {t: get_task(t).PROMPT_VERSION for t in config.task_list},
            "judge": {"model": config.judge_model, "base_url": config.judge_base_url,
                      "prompt": get_task("cpsycoune").JUDGE_VERSION} if judged else None}


def _figure(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def _cpsyexam_md(result: dict) -> list[str]:
    rows = [[f"{group}: {name}", v["n"], _figure(v["accuracy"])]
            for group in ("by_part", "by_type") for name, v in result[group].items()]
    lines = _table(["Part / type", "n", "Accuracy"], rows)
    lines += [f"Chance (uniform guess among valid answers): {_figure(result.get('chance'))}; replies with no "
              f"answer letter: {result['no_answer']}.", ""]
    return lines + _table(["Subject", "n", "Accuracy"], [[k, v["n"], _figure(v["accuracy"])]
                                                       for k, v in result["by_subject"].items()])


def _cbt_bench_md(result: dict) -> list[str]:
    return _table(["Sub-task", "n", "Weighted F1", "Micro F1", "Macro F1", "No label found"],
                  [[k, v["n"], _figure(v["weighted_f1"]), _figure(v["micro_f1"]), _figure(v["macro_f1"]),
                    v["no_label"]] for k, v in result["by_subtask"].items()])


def _cpsycoune_md(result: dict) -> list[str]:
    from cbt_llm.bench.tasks.cpsycoune import DIMENSIONS

    header = ["Topic", "n", "Total (0-9)", *(f"{d} (0-{m})" for d, m in DIMENSIONS.items())]
    rows = [["all", result["n"], _figure(result["mean_total"], 2), *(_figure(result.get(d), 2) for d in DIMENSIONS)]]
    rows += [[k, v["n"], _figure(v["mean_total"], 2), *(_figure(v.get(d), 2) for d in DIMENSIONS)]
             for k, v in result["by_topic"].items()]
    return [f"Scored by judge `{result['judge_model']}` (prompt {result['judge_prompt']}); "
            f"{result['invalid_verdicts']} turns without a valid verdict after retries.", "", *_table(header, rows)]


SECTIONS = {"cpsyexam": _cpsyexam_md, "cbt_bench": _cbt_bench_md, "cpsycoune": _cpsycoune_md}


def render_markdown(bench: dict) -> str:
    settings = bench["settings"]
    model = settings["model"] + (f" + adapter {settings['adapter']}" if settings.get("adapter") else "")
    lines = ["# Benchmark results", "", f"Model: `{model}` ({settings['mode']}), {settings['shots']}-shot, seed "
             f"{settings['seed']}" + (f", at most {settings['limit']} items per task" if settings["limit"] else ""),
             ""]
    rows = []
    for task, result in bench["tasks"].items():
        head = get_task(task).HEADLINE
        judge = f"judge `{result['judge_model']}`" if task in JUDGED else "-"
        rows.append([TITLES[task], result["n"], head, _figure(result.get(head)), judge, CITATIONS[task]])
    lines += _table(["Task", "n", "Metric", "Value", "Judge", "Benchmark"], rows)
    for task, result in bench["tasks"].items():
        lines += [f"## {TITLES[task]}" + (f" — judge {result['judge_model']}" if task in JUDGED else ""), ""]
        lines += SECTIONS[task](result)
    checked = bench.get("contamination")
    if checked:
        lines += ["## Contamination check", "", f"Against `{checked['train_dataset']}`, {checked['ngram']}-character "
                  f"n-grams; an item is flagged when {checked['overlap']:.0%} of its n-grams are in the training data.",
                  ""]
        lines += _table(["Task", "Checked", "Any overlap", "Flagged"],
                        [[t, v["checked"], v["any_overlap"], v["flagged"]] for t, v in checked["tasks"].items()])
    return "\n".join(lines).rstrip() + "\n"


def plot(bench: dict, path: Path) -> Path:
    """One panel per task: the headline figure and its breakdown, each on the task's own 0-1 (or 0-9) scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(bench["tasks"].items())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, (task, result) in zip(axes[0], tasks):
        head = get_task(task).HEADLINE
        parts = {"cpsyexam": {**result.get("by_part", {}), **result.get("by_type", {})},
                 "cbt_bench": result.get("by_subtask", {}), "cpsycoune": {}}[task]
        bars = {"all": result.get(head), **{k: v.get(head) for k, v in parts.items()}}
        bars = {k: v for k, v in bars.items() if v is not None}
        ax.bar(list(bars), list(bars.values()), color="#5b8ff9")
        ax.set_ylim(0, 9 if task == "cpsycoune" else 1)
        ax.set_title(f"{TITLES[task]}: {head}", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(config, results: dict, sources: dict, checked: dict | None) -> Path | None:
    """Write bench.json, bench.md and bench.png into ``config.output_dir``; the model card written, if any."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {task: {**result, "source": {"kind": sources[task].kind, "location": sources[task].location,
                                         "files": sources[task].files}}
             for task, result in results.items()}
    bench = {"tasks": tasks, "settings": settings_of(config), "contamination": checked, "created_at": utc_now()}
    (out / "bench.json").write_text(json.dumps(bench, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "bench.md").write_text(render_markdown(bench), encoding="utf-8")
    plot(bench, out / "bench.png")
    card = Path(config.adapter).expanduser() / "README.md" if config.adapter else None
    if config.model_card and card is not None and card.is_file():
        from cbt_llm.cards.results import update_model_card_with_bench

        return update_model_card_with_bench(card, card_rows(bench), CARD_NOTE)
    return None


CARD_NOTE = ("CPsyExam and CBT-Bench figures are accuracy and weighted F1 (0-1); CPsyCounE is a judge model's mean "
             "score per counsellor turn (0-9), comparable only with scores from the same judge.")
SPLITS = {"cpsyexam": "dev", "cpsycoune": "test", "cbt_bench": "test"}
METRICS = {"accuracy": ("accuracy", "Accuracy"), "weighted_f1": ("f1", "Weighted F1"),
           "mean_total": ("cpsycoune_mean_total", "Mean judge score (0-9)")}


def card_rows(bench: dict) -> list[dict]:
    """The headline figure of each task as a model-index row: benchmark, split, metric, value and settings."""
    rows = []
    for task, result in bench["tasks"].items():
        head = get_task(task).HEADLINE
        metric_type, metric_name = METRICS[head]
        args = {"shots": bench["settings"]["shots"], "n": result["n"]}
        if task in JUDGED:
            args["judge"] = result["judge_model"]
            metric_name += f", judge {result['judge_model']}"
        rows.append({"task_name": TITLES[task], "dataset_type": get_task(task).HUB_ID or "CPsyCounE",
                     "dataset_name": f"{TITLES[task]} ({CITATIONS[task]})", "split": SPLITS[task],
                     "metric_type": metric_type, "metric_name": metric_name, "value": result.get(head), "args": args})
    return rows
