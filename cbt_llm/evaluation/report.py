"""The evaluation report: its data (``Report``, ``SystemResult``), report.json, report.md and the plots.

* ``report.json`` - every number, per system, with the predictions' settings, what reproduces each
  figure and what could not be computed;
* ``report.md`` - one table (a row per system: every metric, the CBT-structure score and the
  coverage of each of the five steps; the references' own structure as a last row), for dialogue turns a
  second table of dialogue-level figures (``cbt_llm.evaluation.dialogue``), then the plots;
* ``metrics.png`` (metric bars per system) and ``step_coverage.png`` (share of answers with each step).

The metric columns come from the metric registry (``cbt_llm.evaluation.registry``), so a registered
metric is reported without a change here. ``cbt_llm.cards.update_model_card_with_results`` writes one
system's numbers into an adapter card with the labels of ``METRIC_INFO``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.cards.common import table_cell
from cbt_llm.data.prompts import CBT_STEPS, STEP_KEYS
from cbt_llm.evaluation.registry import HUNDRED, UNIT, Column, headline, metric_columns, registered_metrics

STRUCTURE_COLUMNS = {
    "structure_mean": Column("CBT structure", "cbt_structure", "0-2, mean of the detector score"),
    "structure_full": Column("Full CBT", "cbt_structure_full", "share of answers scoring 2", ".0%"),
}
STEP_SPEC = ".0%"  # step coverage: a share of answers
JUDGE_LABELS = {"relevance": "Judge relevance", "cbt_structure": "Judge CBT", "helpfulness": "Judge helpful"}
STEP_SHORT = {"validation": "Empathy", "key_thought": "Thought", "challenge": "Challenge", "strategy": "Strategy",
              "encouragement": "Encourage"}


class ReportColumns(Mapping[str, Column]):
    """Every figure column of the report by key: the registered metrics', then the CBT-structure score's.

    Read from the registry when asked, so a metric registered after this module is imported is included.
    """

    def _columns(self) -> dict[str, Column]:
        return {**metric_columns(), **STRUCTURE_COLUMNS}

    def __getitem__(self, key: str) -> Column:
        return self._columns()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns())

    def __len__(self) -> int:
        return len(self._columns())


METRIC_INFO: Mapping[str, Column] = ReportColumns()


@dataclass
class SystemResult:
    """One row of the report: a system's figures, CBT structure, judge means and how they were made."""

    name: str
    file: str | None
    n: int
    metrics: dict[str, float]
    structure: dict[str, Any]
    settings: dict = field(default_factory=dict)
    judge: dict = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)          # metric key -> why it is missing
    metric_settings: dict[str, dict] = field(default_factory=dict)  # metric key -> how it was computed
    dialogue: dict[str, Any] = field(default_factory=dict)         # dialogue figures (dialogue config only)

    def row(self) -> dict[str, float]:
        """The metric figures plus the two CBT-structure figures, by column key."""
        return {**self.metrics, "structure_mean": self.structure["structure_mean"],
                "structure_full": self.structure["structure_full"]}


@dataclass
class Report:
    """What ``evaluate_systems`` scored and the files it wrote."""

    output_dir: Path
    systems: list[SystemResult]
    reference: SystemResult
    n: int
    dropped: dict[str, int]
    files: list[Path]
    card: Path | None = None
    note: str | None = None
    unit: str = "questions"  # what a row is: questions, or counsellor turns (dialogue config)

    def format(self) -> str:
        lines = [f"scored {len(self.systems)} systems on {self.n} shared {self.unit}; wrote "
                 + ", ".join(str(f) for f in self.files)]
        for name, count in self.dropped.items():
            lines.append(f"  {name}: {count} answers left out (their ids are not shared by every file)")
        for key, reason in skipped_metrics(self).items():
            lines.append(f"  {_label(key)} not computed: {reason}")
        if self.card:
            lines.append(f"model card updated: {self.card}")
        return "\n".join(lines)


def skipped_metrics(report: Report) -> dict[str, str]:
    """Metric key -> why it is missing, over every system (the first system's reason for each key)."""
    skipped: dict[str, str] = {}
    for system in report.systems:
        for key, reason in system.skipped.items():
            skipped.setdefault(key, reason)
    return skipped


def reproducibility(metric_settings: dict[str, dict]) -> dict[str, dict]:
    """What reproduces each figure (each metric's ``REPRODUCE``): sacrebleu's signature for BLEU and chrF;
    BERTScore's model, layer and hash."""
    keep = {headline(metric): metric.REPRODUCE for metric in registered_metrics().values() if metric.REPRODUCE}
    return {key: {k: metric_settings[key][k] for k in fields if k in metric_settings[key]}
            for key, fields in keep.items() if key in metric_settings}


def _label(key: str) -> str:
    return METRIC_INFO[key].label if key in METRIC_INFO else key


def describe_arguments(args: dict) -> str:
    """Settings as report.md and the card name them: ``model `x`, layer `8`, hash `...```."""
    return ", ".join(f"{k.replace('num_layers', 'layer')} `{v}`" for k, v in args.items())


def format_figure(key: str, value: float | None) -> str:
    """A figure as report.md and the card show it, by its column's format ("–" when missing)."""
    if value is None:
        return "–"
    if key.startswith("step_"):
        return format(value, STEP_SPEC)
    return format(value, METRIC_INFO[key].spec if key in METRIC_INFO else ".3f")


# ---------------------------------------------------------------------------------------------
# report.json
# ---------------------------------------------------------------------------------------------
def report_data(report: Report, references: str, dataset: str) -> dict[str, Any]:
    """What report.json holds: every number, the settings behind them, and what was left out."""
    from cbt_llm.engine.store import utc_now

    args = reproducibility(report.systems[0].metric_settings)
    return {
        "created_at": utc_now(), "dataset": dataset, "references": references, "n": report.n, "note": report.note,
        "dropped": report.dropped,
        "bertscore_model": args.get("bertscore_f1", {}).get("model"),  # also under reproducibility; kept for readers
        "reproducibility": args,
        "skipped": skipped_metrics(report),
        "metrics": {k: {"label": column.label, "scale": column.scale} for k, column in METRIC_INFO.items()},
        "unit": report.unit,
        "systems": [{"name": s.name, "file": s.file, "n": s.n, "metrics": s.metrics, "structure": s.structure,
                     "judge": s.judge, "settings": s.settings, "skipped": s.skipped,
                     "metric_settings": s.metric_settings, **({"dialogue": s.dialogue} if s.dialogue else {})}
                    for s in report.systems],
        "reference": {"metrics": report.reference.metrics, "structure": report.reference.structure,
                      **({"dialogue": report.reference.dialogue} if report.reference.dialogue else {})},
    }


def write_report(report: Report, references: str, dataset: str) -> None:
    """report.json, the two plots and report.md in ``report.output_dir``; they are added to ``report.files``."""
    folder = report.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "report.json"
    data.write_text(json.dumps(report_data(report, references, dataset), ensure_ascii=False, indent=2),
                    encoding="utf-8")
    plots = [plot_metrics(report.systems, folder / "metrics.png"),
             plot_steps(report.systems, report.reference, folder / "step_coverage.png")]
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
    report.files += [data, folder / "report.md", *plots]


# ---------------------------------------------------------------------------------------------
# report.md
# ---------------------------------------------------------------------------------------------
def table_columns(report: Report) -> list[str]:
    """The table's column keys: the figures some system has, the five steps, the judge means if any."""
    keys = [k for k in METRIC_INFO if any(k in s.row() for s in report.systems)]
    keys += [f"step_{k}" for k in STEP_KEYS]
    if any(s.judge for s in report.systems):
        keys += [f"judge_{c}" for c in JUDGE_LABELS]
    return keys


def _header(key: str) -> str:
    if key.startswith("step_"):
        return STEP_SHORT[key[5:]]
    if key.startswith("judge_"):
        return JUDGE_LABELS[key[6:]]
    return METRIC_INFO[key].label


def _cell(system: SystemResult, key: str) -> str:
    if key.startswith("step_"):
        return format_figure(key, system.structure["steps"][key[5:]])
    if key.startswith("judge_"):
        value = system.judge.get(key[6:])
        return "–" if value is None else f"{value:.2f}"
    return format_figure(key, system.row().get(key))


def _table(report: Report, keys: list[str]) -> list[str]:
    """The Markdown table: a row per system; names and labels escaped so that none can split a row."""
    lines = ["| System | n | " + " | ".join(table_cell(_header(k)) for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for system in [*report.systems, report.reference]:
        lines.append(f"| {table_cell(system.name)} | {system.n} | " + " | ".join(_cell(system, k) for k in keys) + " |")
    return lines


def _metric_notes(report: Report, keys: list[str]) -> list[str]:
    """How each metric column is computed, each system's notes on its metrics, and what could not be computed."""
    args = reproducibility(report.systems[0].metric_settings if report.systems else {})
    lines = [f"- **{METRIC_INFO[key].label}**: {METRIC_INFO[key].scale}"
             + (f"; {describe_arguments(args[key])}" if args.get(key) else "") + "." for key in keys if key in METRIC_INFO]
    metrics = registered_metrics().values()
    for system in report.systems:
        notes = (metric.note(system.metric_settings.get(headline(metric), {})) for metric in metrics)
        lines += [f"- {system.name}: {note}." for note in notes if note]
    lines += [f"- **{_label(key)}**: not computed ({reason})." for key, reason in skipped_metrics(report).items()]
    return lines


def _other_notes(report: Report) -> list[str]:
    """How the step, reference and judge columns are made, and which answers were left out."""
    lines = ["- **" + " / ".join(STEP_SHORT.values()) + "**: share of answers in which the five-step detector "
             "(cbt_llm.steps) finds " + ", ".join(f"{s.name_en.lower()} ({s.name_zh})" for s in CBT_STEPS)
             + ".", "- The `reference` row scores the reference answers themselves (reference-free columns only)."]
    if any(s.judge for s in report.systems):
        lines.append("- **Judge** columns: mean 0-2 scores of the LLM judge (cbt_llm.evaluation.judge rubric).")
    lines += [f"- {dropped}: {count} answers left out (ids not shared by every file)."
              for dropped, count in report.dropped.items()]
    return lines


DIALOGUE_COLUMNS = {  # figure key -> (header, how it is computed, format)
    "dialogues": ("Dialogues", "dialogues scored", "d"),
    "turns": ("Turns", "counsellor turns per dialogue", ".1f"),
    "question_share": ("Asks", "share of counsellor turns with a question", ".0%"),
    "asks_first": ("Asks first", "share of dialogues whose first counsellor turn asks", ".0%"),
    "steps_covered": ("Steps", "mean number of the five CBT steps found across a dialogue's counsellor turns",
                      ".2f"),
    "all_steps": ("All five", "share of dialogues whose turns cover all five steps", ".0%"),
}


def _dialogue_table(report: Report) -> list[str]:
    """The dialogue-level table (dialogue config): a row per system and the reference turns, and what each
    column is; nothing when the report is on questions."""
    rows = [s for s in [*report.systems, report.reference] if s.dialogue]
    if not rows:
        return []
    lines = ["## Dialogues", "", "Each counsellor turn was answered after the dialogue's reference history; the "
             "turns are read back as dialogues (the figures the checks of generated dialogues use).", "",
             "| System | " + " | ".join(header for header, _, _ in DIALOGUE_COLUMNS.values()) + " |",
             "|---|" + "---:|" * len(DIALOGUE_COLUMNS)]
    lines += [f"| {table_cell(s.name)} | " + " | ".join(format(s.dialogue[k], spec) for k, (_, _, spec)
                                                          in DIALOGUE_COLUMNS.items()) + " |" for s in rows]
    lines += ["", *(f"- **{header}**: {how}." for header, how, _ in DIALOGUE_COLUMNS.values()), ""]
    return lines


def render_markdown(report: Report) -> str:
    """report.md: the table, how each column is computed, the dialogue table (dialogue config), and the plots."""
    keys = table_columns(report)
    lines = ["# Evaluation report\n", f"{len(report.systems)} systems, {report.n} {report.unit} "
             "(the ids every predictions file and the references share).\n",
             *([f"**What these numbers mean.** {report.note}\n"] if report.note else []),
             *_table(report, keys), "", "How each column is computed:", "",
             *_metric_notes(report, keys), *_other_notes(report), "", *_dialogue_table(report),
             "![Metrics per system](metrics.png)", "", "![Step coverage](step_coverage.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(axis, groups: list[str], series: dict[str, list[float]], ylabel: str, ylim=None) -> None:
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(positions, values, width, label=name)
    axis.set_xticks(range(len(groups)), groups, rotation=0)
    axis.set_ylabel(ylabel)
    if ylim:
        axis.set_ylim(*ylim)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)


def plot_metrics(systems: list[SystemResult], path: Path) -> Path:
    """Two panels of grouped bars: the 0-100 metrics, and the 0-1 metrics (CBT structure scaled to 0-1);
    each registered metric's columns go on the panel they name."""
    plt = _pyplot()
    columns = metric_columns()
    hundred, unit = ([k for k, column in columns.items() if column.panel == panel and k in systems[0].metrics]
                     for panel in (HUNDRED, UNIT))
    figure, axes = plt.subplots(1, 2, figsize=(13, 4), dpi=100, gridspec_kw={"width_ratios": [len(hundred),
                                                                                             len(unit) + 1]})
    _grouped_bars(axes[0], [columns[k].short or columns[k].label for k in hundred],
                  {s.name: [s.metrics[k] for k in hundred] for s in systems}, "score (0-100)")
    _grouped_bars(axes[1], [columns[k].short or columns[k].label for k in unit] + ["CBT/2"],
                  {s.name: [s.metrics[k] for k in unit] + [s.structure["structure_mean"] / 2] for s in systems},
                  "score (0-1)", (0, 1.05))
    figure.suptitle("Reference metrics per system")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_steps(systems: list[SystemResult], reference: SystemResult, path: Path) -> Path:
    """Grouped bars: the share of answers in which each CBT step is found, per system and for the references."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 4), dpi=100)
    _grouped_bars(axis, [STEP_SHORT[k] for k in STEP_KEYS],
                  {s.name: [s.structure["steps"][k] for k in STEP_KEYS] for s in [*systems, reference]},
                  "share of answers", (0, 1.05))
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside the bars
    axis.set_title("CBT step coverage (five-step detector)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
