"""The evaluation report: its data (``Report``, ``SystemResult``), ``report.md`` and the plots.

* ``report.md`` - one table (a row per system: every metric, the CBT-structure score and the
  coverage of each of the five steps; the references' own structure as a last row), then the plots;
* ``metrics.png`` (metric bars per system) and ``step_coverage.png`` (share of answers with each step).

``update_model_card_with_results(card, results, dataset_id)`` writes one system's numbers into an
adapter card's ``model-index`` (``ModelCardData.eval_results``) and an "Evaluation results" section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.data.prompts import CBT_STEPS, STEP_KEYS
from cbt_llm.errors import CbtLlmError

# key: (column label, model-index metric type, shown as)
METRIC_INFO: dict[str, tuple[str, str, str]] = {
    "bleu": ("BLEU", "bleu", "0-100, sacrebleu tokenize=zh (characters)"),
    "chrf": ("chrF", "chrf", "0-100, sacrebleu character 6-grams"),
    "bleu_1": ("BLEU-1", "bleu", "0-100, jieba words"),
    "bleu_2": ("BLEU-2", "bleu", "0-100, jieba words"),
    "bleu_3": ("BLEU-3", "bleu", "0-100, jieba words"),
    "bleu_4": ("BLEU-4", "bleu", "0-100, jieba words"),
    "meteor": ("METEOR", "meteor", "0-1, jieba words, exact+stem matching"),
    "rouge_l": ("ROUGE-L", "rouge", "0-1, characters"),
    "distinct_1": ("Dist-1", "distinct", "0-1, jieba words, reference-free"),
    "distinct_2": ("Dist-2", "distinct", "0-1, jieba words, reference-free"),
    "bertscore_f1": ("BERTScore F1", "bertscore", "0-1, raw (not rescaled)"),
    "structure_mean": ("CBT structure", "cbt_structure", "0-2, mean of the detector score"),
    "structure_full": ("Full CBT", "cbt_structure_full", "share of answers scoring 2"),
}
JUDGE_LABELS = {"relevance": "Judge relevance", "cbt_structure": "Judge CBT", "helpfulness": "Judge helpful"}
STEP_SHORT = {"validation": "Empathy", "key_thought": "Thought", "challenge": "Challenge", "strategy": "Strategy",
              "encouragement": "Encourage"}
CARD_START, CARD_END = "<!-- cbt-llm evaluate: start -->", "<!-- cbt-llm evaluate: end -->"


@dataclass
class SystemResult:
    name: str
    file: str | None
    n: int
    metrics: dict[str, float]
    structure: dict[str, Any]
    settings: dict = field(default_factory=dict)
    judge: dict = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)          # metric key -> why it is missing
    metric_settings: dict[str, dict] = field(default_factory=dict)  # metric key -> how it was computed

    def row(self) -> dict[str, float]:
        return {**self.metrics, "structure_mean": self.structure["structure_mean"],
                "structure_full": self.structure["structure_full"]}


@dataclass
class Report:
    output_dir: Path
    systems: list[SystemResult]
    reference: SystemResult
    n: int
    dropped: dict[str, int]
    files: list[Path]
    card: Path | None = None
    note: str | None = None

    def format(self) -> str:
        lines = [f"scored {len(self.systems)} systems on {self.n} shared questions; wrote "
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
    """What reproduces each figure: sacrebleu's signature (BLEU, chrF); BERTScore's model, layer and hash."""
    keep = {"bleu": ("signature",), "chrf": ("signature",), "bertscore_f1": ("model", "num_layers", "hash")}
    return {key: {k: metric_settings[key][k] for k in fields if k in metric_settings[key]}
            for key, fields in keep.items() if key in metric_settings}


def _label(key: str) -> str:
    return METRIC_INFO[key][0] if key in METRIC_INFO else key


def _describe(args: dict) -> str:
    return ", ".join(f"{k.replace('num_layers', 'layer')} `{v}`" for k, v in args.items())


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    if key in ("bleu", "chrf") or key.startswith("bleu_"):
        return f"{value:.2f}"
    if key == "structure_full" or key.startswith("step_"):
        return f"{100 * value:.0f}%"
    return f"{value:.3f}"


def table_columns(report: Report) -> list[str]:
    keys = [k for k in METRIC_INFO if any(k in s.row() for s in report.systems)]
    keys += [f"step_{k}" for k in STEP_KEYS]
    if any(s.judge for s in report.systems):
        keys += [f"judge_{c}" for c in JUDGE_LABELS]
    return keys


def _cell(system: SystemResult, key: str) -> str:
    if key.startswith("step_"):
        return _fmt(key, system.structure["steps"][key[5:]])
    if key.startswith("judge_"):
        value = system.judge.get(key[6:])
        return "–" if value is None else f"{value:.2f}"
    return _fmt(key, system.row().get(key))


def render_markdown(report: Report) -> str:
    """report.md: the table, how each column is computed, and the plots."""
    keys = table_columns(report)

    def label(key: str) -> str:
        if key.startswith("step_"):
            return STEP_SHORT[key[5:]]
        if key.startswith("judge_"):
            return JUDGE_LABELS[key[6:]]
        return METRIC_INFO[key][0]

    lines = ["# Evaluation report\n", f"{len(report.systems)} systems, {report.n} questions "
             "(the ids every predictions file and the references share).\n",
             *([f"**What these numbers mean.** {report.note}\n"] if report.note else []),
             "| System | n | " + " | ".join(label(k) for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for system in [*report.systems, report.reference]:
        lines.append(f"| {system.name} | {system.n} | " + " | ".join(_cell(system, k) for k in keys) + " |")
    lines += ["", "How each column is computed:", ""]
    settings = report.systems[0].metric_settings if report.systems else {}
    for key in keys:
        if key in METRIC_INFO:
            args = reproducibility(settings).get(key)
            lines.append(f"- **{METRIC_INFO[key][0]}**: {METRIC_INFO[key][2]}" + (f"; {_describe(args)}"
                                                                                  if args else "") + ".")
    for system in report.systems:
        empty = system.metric_settings.get("bertscore_f1", {}).get("empty_predictions")
        if empty:
            lines.append(f"- {system.name}: {empty} empty answers, scored 0 by BERTScore.")
    for key, reason in skipped_metrics(report).items():
        lines.append(f"- **{_label(key)}**: not computed ({reason}).")
    lines.append("- **" + " / ".join(STEP_SHORT.values()) + "**: share of answers in which the five-step detector "
                 "(cbt_llm.generation.quality) finds " + ", ".join(f"{s.name_en.lower()} ({s.name_zh})" for s in CBT_STEPS) + ".")
    lines.append("- The `reference` row scores the reference answers themselves (reference-free columns only).")
    if any(s.judge for s in report.systems):
        lines.append("- **Judge** columns: mean 0-2 scores of the LLM judge (cbt_llm.evaluation.judge rubric).")
    for dropped, count in report.dropped.items():
        lines.append(f"- {dropped}: {count} answers left out (ids not shared by every file).")
    lines += ["", "![Metrics per system](metrics.png)", "", "![Step coverage](step_coverage.png)", ""]
    return "\n".join(lines)


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
    """Two panels of grouped bars: the 0-100 metrics, and the 0-1 metrics (CBT structure scaled to 0-1)."""
    plt = _pyplot()
    hundred = [k for k in ("bleu", "chrf", "bleu_1", "bleu_2", "bleu_3", "bleu_4") if k in systems[0].metrics]
    unit = [k for k in ("meteor", "rouge_l", "distinct_1", "distinct_2", "bertscore_f1") if k in systems[0].metrics]
    figure, axes = plt.subplots(1, 2, figsize=(13, 4), dpi=100, gridspec_kw={"width_ratios": [len(hundred),
                                                                                             len(unit) + 1]})
    _grouped_bars(axes[0], [METRIC_INFO[k][0] for k in hundred],
                  {s.name: [s.metrics[k] for k in hundred] for s in systems}, "score (0-100)")
    _grouped_bars(axes[1], [METRIC_INFO[k][0].replace(" F1", "") for k in unit] + ["CBT/2"],
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
    axis.set_title("CBT step coverage (five-step detector)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------
def update_model_card_with_results(card_path: str | Path, results: dict[str, float], dataset_id: str, *,
                                   split: str = "test", dataset_name: str | None = None,
                                   n: int | None = None, metric_args: dict[str, dict] | None = None) -> Path:
    """Write ``results`` (metric key -> value) into the card's ``model-index`` and an evaluation section.

    ``metric_args`` (metric key -> settings, see ``reproducibility``) go into each result's
    ``metric_args`` and the section. Earlier results of the same dataset and split are replaced;
    others are kept. Returns the path.
    """
    from huggingface_hub import EvalResult, ModelCard

    card_path = Path(card_path)
    if not card_path.is_file():
        raise CbtLlmError(f"{card_path}: no such model card")
    card = ModelCard.load(card_path)
    keep = [r for r in (card.data.eval_results or [])
            if not (r.dataset_type == dataset_id and r.dataset_split == split)]
    new = [EvalResult(task_type="text-generation", task_name="CBT question answering", dataset_type=dataset_id,
                      dataset_name=dataset_name or dataset_id, dataset_split=split, metric_type=METRIC_INFO[k][1],
                      metric_name=f"{METRIC_INFO[k][0]} ({METRIC_INFO[k][2]})", metric_value=round(float(v), 4),
                      metric_args=(metric_args or {}).get(k))
           for k, v in results.items() if k in METRIC_INFO and v is not None]
    card.data.eval_results = keep + new
    if not card.data.model_name:
        card.data.model_name = card_path.parent.name
    section = [CARD_START, "## Evaluation results", "",
               f"On `{dataset_id}`, split `{split}`" + (f" ({n} questions)" if n else "") + ", scored by `cbt-llm evaluate`:",
               "", "| Metric | Value |", "|---|---|"]
    section += [f"| {METRIC_INFO[k][0]} ({METRIC_INFO[k][2]}) | {_fmt(k, v)} |" for k, v in results.items()
                if k in METRIC_INFO and v is not None]
    args = {k: a for k, a in (metric_args or {}).items() if k in results}
    if args:
        section += ["", "To reproduce: " + "; ".join(f"{METRIC_INFO[k][0]}: {_describe(a)}"
                                                     for k, a in args.items()) + "."]
    section.append(CARD_END)
    body = card.text
    if CARD_START in body and CARD_END in body:
        body = body[:body.index(CARD_START)] + "\n".join(section) + body[body.index(CARD_END) + len(CARD_END):]
    else:
        marker = "\n## How to use"
        block = "\n".join(section) + "\n"
        body = body.replace(marker, "\n" + block + marker, 1) if marker in body else body.rstrip() + "\n\n" + block
    card.text = body
    card.save(card_path)
    return card_path
