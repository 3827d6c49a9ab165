"""``cbt-llm evaluate``: score predictions files side by side and write a report with plots.

``evaluate_systems([A.jsonl, B.jsonl], references="test", output_dir="report")`` scores every
system on the same questions (the ids that all files and the references share), and writes

* ``report.json`` - every number, per system, with the predictions' settings;
* ``report.md`` - one table (a row per system: every metric, the CBT-structure score and the
  coverage of each of the five steps; the references' own structure as a last row), then the plots;
* ``metrics.png`` (metric bars per system) and ``step_coverage.png`` (share of answers with each step).

``update_model_card_with_results(card, results, dataset_id)`` writes one system's numbers into an
adapter card's ``model-index`` (``ModelCardData.eval_results``) and an "Evaluation results" section.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CbtLlmError
from .prompts import CBT_STEPS, STEP_KEYS

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

    def format(self) -> str:
        lines = [f"scored {len(self.systems)} systems on {self.n} shared questions; wrote "
                 + ", ".join(str(f) for f in self.files)]
        for name, count in self.dropped.items():
            lines.append(f"  {name}: {count} answers left out (their ids are not shared by every file)")
        if self.card:
            lines.append(f"model card updated: {self.card}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def load_references(references: str = "test", dataset: str = "cbt_qa",
                    data_files: list[str] | None = None) -> dict[str, str]:
    """Reference answers by id: a split of the dataset, or a JSONL file with ``id`` and ``response``/``reference``."""
    from .predict import load_split

    path = Path(references).expanduser()
    if path.is_file():
        refs = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row.get("response", row.get("reference"))
                if not isinstance(row["id"], str) or not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError, AttributeError):
                raise CbtLlmError(f"{path}:{number}: expected a JSON object with string 'id' and "
                                  "'response' (or 'reference')") from None
            refs[row["id"]] = text
        return refs
    if "/" in references or references.endswith(".jsonl"):
        raise CbtLlmError(f"{references}: no such references file (or name a split: train, validation, test)")
    return {row["id"]: row["response"] for row in load_split(dataset, references, data_files)}


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
def evaluate_systems(predictions: list[str | Path], output_dir: str | Path, *, references: str = "test",
                     names: list[str] | None = None, dataset: str = "cbt_qa", data_files: list[str] | None = None,
                     bertscore_model: str | None = None, bertscore_num_layers: int | None = None,
                     bertscore: bool = True, judgements: list[str | Path] | None = None,
                     model_card: str | Path | None = None, card_system: str | None = None,
                     dataset_id: str | None = None) -> Report:
    """Score each predictions file against the references and write the report (see the module docstring)."""
    from .evaluate import compute_metrics, step_coverage
    from .judge import judgement_means
    from .predict import read_predictions

    if not predictions:
        raise CbtLlmError("name at least one predictions file")
    names = list(names or [])
    if names and len(names) != len(predictions):
        raise CbtLlmError(f"{len(names)} names for {len(predictions)} predictions files")
    names = names or _default_names(predictions)
    if len(set(names)) != len(names):
        raise CbtLlmError(f"system names must differ: {', '.join(names)} (pass --names)")
    refs = load_references(references, dataset, data_files)
    loaded = [read_predictions(p) for p in predictions]
    shared = set(refs).intersection(*[set(p) for p in loaded])
    if not shared:
        raise CbtLlmError("no question id is shared by the references and every predictions file "
                          f"(references: {references!r}, {len(refs)} ids)")
    ids = sorted(shared)
    dropped = {name: len(p) - len(ids) for name, p in zip(names, loaded) if len(p) > len(ids)}
    judged = _judgements_by_system(judgements or [], judgement_means)
    systems = []
    for name, path, records in zip(names, predictions, loaded):
        texts = [records[i]["prediction"] for i in ids]
        metrics = compute_metrics(texts, [refs[i] for i in ids], bertscore_model=bertscore_model,
                                  bertscore_num_layers=bertscore_num_layers, bertscore=bertscore)
        settings = next(iter(records.values())).get("settings") or {}
        systems.append(SystemResult(name, str(path), len(ids), metrics, step_coverage(texts), settings,
                                    judged.get(name, {})))
    from .metrics import distinct

    ref_texts = [refs[i] for i in ids]
    reference = SystemResult("reference", None, len(ids), {"distinct_1": distinct(ref_texts, 1),
                                                           "distinct_2": distinct(ref_texts, 2)},
                             step_coverage(ref_texts))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = Report(output_dir, systems, reference, len(ids), dropped, [])
    report.files.append(_write_json(report, references, dataset, bertscore_model if bertscore else None))
    report.files += plot_metrics(systems, output_dir / "metrics.png"), plot_steps(systems, reference,
                                                                                   output_dir / "step_coverage.png")
    (output_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    report.files.insert(1, output_dir / "report.md")
    if model_card:
        chosen = _card_system(systems, model_card, card_system)
        report.card = update_model_card_with_results(model_card, chosen.row(), dataset_id or dataset,
                                                     split=references if not Path(references).is_file() else "test",
                                                     n=len(ids))
    return report


def _default_names(paths: list) -> list[str]:
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]


def _judgements_by_system(paths, means) -> dict[str, dict]:
    from .generate import OutputFile

    result = {}
    for path in paths:
        records = list(OutputFile(path).read().records.values())
        if not records:
            raise CbtLlmError(f"{path}: no judgements")
        result[records[0].get("system", Path(path).stem)] = means(path)
    return result


def _card_system(systems: list[SystemResult], card: str | Path, wanted: str | None) -> SystemResult:
    if wanted:
        for system in systems:
            if system.name == wanted:
                return system
        raise CbtLlmError(f"--card-system {wanted!r} is not one of: {', '.join(s.name for s in systems)}")
    folder = Path(card).expanduser().resolve().parent
    for system in systems:
        adapter = system.settings.get("adapter")
        if adapter and Path(adapter).expanduser().resolve() == folder:
            return system
    if len(systems) == 1:
        return systems[0]
    raise CbtLlmError("several systems and none made with the card's adapter folder: name one with --card-system")


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
def _write_json(report: Report, references: str, dataset: str, bertscore_model: str | None) -> Path:
    from .generate import utc_now
    from .metrics import DEFAULT_BERTSCORE_MODEL

    data = {
        "created_at": utc_now(), "dataset": dataset, "references": references, "n": report.n,
        "dropped": report.dropped,
        "bertscore_model": (bertscore_model or DEFAULT_BERTSCORE_MODEL) if "bertscore_f1" in (
            report.systems[0].metrics if report.systems else {}) else None,
        "metrics": {k: {"label": v[0], "scale": v[2]} for k, v in METRIC_INFO.items()},
        "systems": [{"name": s.name, "file": s.file, "n": s.n, "metrics": s.metrics, "structure": s.structure,
                     "judge": s.judge, "settings": s.settings} for s in report.systems],
        "reference": {"metrics": report.reference.metrics, "structure": report.reference.structure},
    }
    path = report.output_dir / "report.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


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
             "| System | n | " + " | ".join(label(k) for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for system in [*report.systems, report.reference]:
        lines.append(f"| {system.name} | {system.n} | " + " | ".join(_cell(system, k) for k in keys) + " |")
    lines += ["", "How each column is computed:", ""]
    for key in keys:
        if key in METRIC_INFO:
            lines.append(f"- **{METRIC_INFO[key][0]}**: {METRIC_INFO[key][2]}.")
    lines.append("- **" + " / ".join(STEP_SHORT.values()) + "**: share of answers in which the five-step detector "
                 "(cbt_llm.quality) finds " + ", ".join(f"{s.name_en.lower()} ({s.name_zh})" for s in CBT_STEPS) + ".")
    lines.append("- The `reference` row scores the reference answers themselves (reference-free columns only).")
    if any(s.judge for s in report.systems):
        lines.append("- **Judge** columns: mean 0-2 scores of the LLM judge (cbt_llm.judge rubric).")
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
                                   n: int | None = None) -> Path:
    """Write ``results`` (metric key -> value) into the card's ``model-index`` and an evaluation section.

    Earlier results of the same dataset and split are replaced; others are kept. Returns the path.
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
                      metric_name=f"{METRIC_INFO[k][0]} ({METRIC_INFO[k][2]})", metric_value=round(float(v), 4))
           for k, v in results.items() if k in METRIC_INFO and v is not None]
    card.data.eval_results = keep + new
    if not card.data.model_name:
        card.data.model_name = card_path.parent.name
    section = [CARD_START, "## Evaluation results", "",
               f"On `{dataset_id}`, split `{split}`" + (f" ({n} questions)" if n else "") + ", scored by `cbt-llm evaluate`:",
               "", "| Metric | Value |", "|---|---|"]
    section += [f"| {METRIC_INFO[k][0]} ({METRIC_INFO[k][2]}) | {_fmt(k, v)} |" for k, v in results.items()
                if k in METRIC_INFO and v is not None]
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
