"""``cbt-llm evaluate``: score predictions files side by side against the references, and report.

``compute_metrics(predictions, references)`` returns BLEU and chrF (sacrebleu, 0-100), BLEU-1..4
on jieba words (0-100), METEOR (0-1, jieba words, exact and stem matching), ROUGE-L (0-1,
characters), distinct-1/2 (0-1, jieba words) and BERTScore F1 (0-1). Every metric is an
``evaluate.Metric`` subclass in ``cbt_llm.evaluation.metrics``, made directly, so nothing is fetched.
A metric that cannot be computed is left out and named, with the reason, in the result's ``skipped``.

``evaluate_systems([A.jsonl, B.jsonl], references="test", output_dir="report")`` scores every
system on the same questions (the ids that all files and the references share), adds the
CBT-structure score (``cbt_llm.evaluation.structure``) and writes ``report.json`` (every number,
per system, with the predictions' settings, the metrics' signatures and what was skipped) and the
report of ``cbt_llm.evaluation.report``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cbt_llm.errors import CbtLlmError, first_line
from cbt_llm.evaluation.report import (
    METRIC_INFO,
    Report,
    SystemResult,
    plot_metrics,
    plot_steps,
    render_markdown,
    reproducibility,
    skipped_metrics,
    update_model_card_with_results,
)

METRIC_KEYS = ("bleu", "chrf", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "distinct_1",
               "distinct_2", "bertscore_f1")


class MetricResults(dict):
    """Metric key -> value (what ``compute_metrics`` returns), plus ``skipped`` (metric key -> why it
    could not be computed) and ``settings`` (metric key -> how it was computed: sacrebleu's signature;
    BERTScore's model, layer, hash and empty answers), for reproducing the figures."""

    def __init__(self, values: dict[str, float], skipped: dict[str, str], settings: dict[str, dict]):
        super().__init__(values)
        self.skipped, self.settings = skipped, settings


def compute_metrics(predictions: Sequence[str], references: Sequence[str], *, bertscore_model: str | None = None,
                    bertscore_num_layers: int | None = None, bertscore: bool = True,
                    bertscore_batch_size: int = 32) -> MetricResults:
    """All reference metrics for aligned predictions and references (see the module docstring).

    ``bertscore_model`` is a Hub name or a local folder (default ``bert-base-chinese``);
    ``bertscore=False`` leaves BERTScore out (no model is loaded). A metric that cannot be computed
    (BERTScore offline without its model) is left out and named in ``.skipped`` with the reason;
    the others are still computed.
    """
    from cbt_llm.evaluation.metrics import (
        DEFAULT_BERTSCORE_MODEL,
        BertScore,
        Bleu,
        ChrF,
        Distinct,
        JiebaBleu,
        Meteor,
        RougeL,
    )

    predictions, references = [p or "" for p in predictions], [r or "" for r in references]
    if len(predictions) != len(references):
        raise CbtLlmError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise CbtLlmError("no predictions to score")
    results: dict[str, float] = {}
    skipped: dict[str, str] = {}
    settings: dict[str, dict] = {}
    # (the key its skip and settings are filed under, the metric)
    metrics = [("bleu", Bleu()), ("chrf", ChrF()), ("bleu_4", JiebaBleu()), ("meteor", Meteor()),
               ("rouge_l", RougeL()), ("distinct_2", Distinct())]
    if bertscore:
        metrics.append(("bertscore_f1", BertScore(bertscore_model or DEFAULT_BERTSCORE_MODEL, bertscore_num_layers,
                                                  batch_size=bertscore_batch_size)))
    for key, metric in metrics:
        try:
            scores = metric.compute(predictions=predictions, references=references)
        except Exception as err:  # noqa: BLE001 - reported in .skipped (and report.md/json), never silent
            skipped[key] = str(err) if isinstance(err, CbtLlmError) else f"{type(err).__name__}: {first_line(err)}"
            continue
        results.update({k: v for k, v in scores.items() if isinstance(v, float)})
        if any(not isinstance(v, float) for v in scores.values()):
            settings[key] = {k: v for k, v in scores.items() if not isinstance(v, float)}
    values = {key: results[key] for key in METRIC_KEYS if key in results} | \
             {k: v for k, v in results.items() if k not in METRIC_KEYS}
    return MetricResults(values, skipped, settings)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def load_references(references: str = "test", dataset: str = "cbt_qa",
                    data_files: list[str] | None = None) -> dict[str, str]:
    """Reference answers by id: a split of the dataset, or a JSONL file with ``id`` and ``response``/``reference``."""
    from cbt_llm.evaluation.predict import load_split

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
                     dataset_id: str | None = None, note: str | None = None, require_bertscore: bool = False) -> Report:
    """Score each predictions file against the references and write the report (see the module docstring).

    ``note`` is a plain statement of what the numbers mean, put above the table and into report.json.
    A metric that cannot be computed (BERTScore offline without its model) is reported as missing,
    with the reason, in report.md/json and ``Report.format()``; with ``require_bertscore`` a missing
    BERTScore then raises ``CbtLlmError`` (after the report is written).
    """
    from cbt_llm.evaluation.judge import judgement_means
    from cbt_llm.evaluation.predict import read_predictions
    from cbt_llm.evaluation.structure import step_coverage

    if not predictions:
        raise CbtLlmError("name at least one predictions file")
    if require_bertscore and not bertscore:
        raise CbtLlmError("--require-bertscore and --no-bertscore contradict each other")
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
        systems.append(SystemResult(name, str(path), len(ids), dict(metrics), step_coverage(texts), settings,
                                    judged.get(name, {}), metrics.skipped, metrics.settings))
    from cbt_llm.evaluation.metrics import distinct

    ref_texts = [refs[i] for i in ids]
    reference = SystemResult("reference", None, len(ids), {"distinct_1": distinct(ref_texts, 1),
                                                           "distinct_2": distinct(ref_texts, 2)},
                             step_coverage(ref_texts))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = Report(output_dir, systems, reference, len(ids), dropped, [], note=note)
    report.files.append(_write_json(report, references, dataset))
    report.files += plot_metrics(systems, output_dir / "metrics.png"), plot_steps(systems, reference,
                                                                                   output_dir / "step_coverage.png")
    (output_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    report.files.insert(1, output_dir / "report.md")
    if model_card:
        chosen = _card_system(systems, model_card, card_system)
        report.card = update_model_card_with_results(model_card, chosen.row(), dataset_id or dataset,
                                                     split=references if not Path(references).is_file() else "test",
                                                     n=len(ids), metric_args=reproducibility(chosen.metric_settings))
    missing = skipped_metrics(report).get("bertscore_f1")
    if require_bertscore and missing:
        raise CbtLlmError(f"BERTScore was not computed ({missing}); the other metrics are in {output_dir}")
    return report


def _default_names(paths: list) -> list[str]:
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]


def _judgements_by_system(paths, means) -> dict[str, dict]:
    from cbt_llm.engine.store import JsonlStore

    result = {}
    for path in paths:
        records = list(JsonlStore(path).read().records.values())
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


def _write_json(report: Report, references: str, dataset: str) -> Path:
    from cbt_llm.engine.store import utc_now

    args = reproducibility(report.systems[0].metric_settings)
    data = {
        "created_at": utc_now(), "dataset": dataset, "references": references, "n": report.n, "note": report.note,
        "dropped": report.dropped,
        "bertscore_model": args.get("bertscore_f1", {}).get("model"),
        "reproducibility": args,
        "skipped": skipped_metrics(report),
        "metrics": {k: {"label": v[0], "scale": v[2]} for k, v in METRIC_INFO.items()},
        "systems": [{"name": s.name, "file": s.file, "n": s.n, "metrics": s.metrics, "structure": s.structure,
                     "judge": s.judge, "settings": s.settings, "skipped": s.skipped,
                     "metric_settings": s.metric_settings} for s in report.systems],
        "reference": {"metrics": report.reference.metrics, "structure": report.reference.structure},
    }
    path = report.output_dir / "report.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


