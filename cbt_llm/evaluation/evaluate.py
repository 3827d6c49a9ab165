"""``cbt-llm evaluate``: score predictions files side by side against the references, and report.

``compute_metrics(predictions, references)`` returns every registered metric
(``cbt_llm.evaluation.registry``): BLEU and chrF (sacrebleu, 0-100), BLEU-1..4 on jieba words
(0-100), METEOR (0-1, jieba words, exact and stem matching), ROUGE-L (0-1, characters), distinct-1/2
(0-1, jieba words) and BERTScore F1 (0-1), plus any metric registered since. Every metric is an
``evaluate.Metric`` subclass in ``cbt_llm.evaluation.metrics``, made directly, so nothing is fetched.
A metric that cannot be computed is left out and named, with the reason, in the result's ``skipped``.

``evaluate_systems(EvaluateConfig(predictions=[A.jsonl, B.jsonl], output_dir="report"))`` scores every
system on the same questions (the ids that all files and the references share), adds the
CBT-structure score (``cbt_llm.evaluation.structure``), writes ``report.json`` (every number, per
system, with the predictions' settings, the metrics' signatures and what was skipped) and the rest of
the report (``cbt_llm.evaluation.report``), and, if asked, one system's numbers into a model card.
With ``dataset_config="dialogue"`` the rows are counsellor turns (``predict --dataset_config dialogue``)
and the report adds dialogue-level figures (``cbt_llm.evaluation.dialogue``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbt_llm.cards import update_model_card_with_results
from cbt_llm.config import DatasetConfig, option, python_only
from cbt_llm.data.records import iter_json_lines
from cbt_llm.data.sources import IdRegistry, Location, json_type
from cbt_llm.errors import CbtLlmError, first_line
from cbt_llm.evaluation.registry import headline, registered_metrics
from cbt_llm.evaluation.report import Report, SystemResult, reproducibility, skipped_metrics, write_report


@dataclass(kw_only=True)
class EvaluateConfig(DatasetConfig):
    """What ``evaluate_systems`` reads: ``cbt-llm evaluate``'s flags, and a note only the Python API gives."""

    predictions: list[str] = option(help="predict's output files, one per system", metavar="PREDS.jsonl")
    output_dir: str = option(help="report folder", metavar="DIR")
    names: list[str] | None = option(None, "system names (default: the file names)", metavar="NAME")
    references: str = option("test", "a split of --dataset, or a JSONL file with id and response", metavar="SPLIT|FILE")
    bertscore: bool = option(True, "score BERTScore (--no_bertscore: leave it out, no model is loaded)")
    bertscore_model: str | None = option(None, "BERTScore model (default: bert-base-chinese)", metavar="NAME|DIR")
    bertscore_num_layers: int | None = option(None, "layer to use (default: bert-score's choice for known models, "
                                              "else the last)", metavar="N")
    require_bertscore: bool = option(False, "exit non-zero when BERTScore cannot be computed (default: the report "
                                     "says it is missing, and why)")
    judgements: list[str] | None = option(None, "`cbt-llm judge` outputs to add as columns (matched to systems by "
                                          "name)", metavar="JUDGE.jsonl")
    model_card: str | None = option(None, "also write the results into this adapter card's model-index",
                                    metavar="README.md")
    card_system: str | None = option(None, "which system's results go into the card (default: the one predicted "
                                     "with the card's adapter folder)", metavar="NAME")
    dataset_id: str | None = option(None, "dataset id for the card's model-index (default: --dataset)",
                                    metavar="NS/NAME")
    note: str | None = python_only(None, help="a plain statement of what the numbers mean, put above the table "
                                   "and into report.json")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.predictions = [str(p) for p in self.predictions]  # Paths are welcome too
        self.output_dir = str(self.output_dir)
        self.judgements = [str(p) for p in self.judgements] if self.judgements else self.judgements
        self.model_card = str(self.model_card) if self.model_card else self.model_card
        if not self.predictions:
            raise CbtLlmError("name at least one predictions file")
        if self.model_card and self.dataset_config != "default":
            raise CbtLlmError("--model_card takes the default config's figures (the card's model-index names a "
                              "dataset and split, not a config): write the card from a report of the questions")
        if self.require_bertscore and not self.bertscore:
            raise CbtLlmError("--require_bertscore and --no_bertscore contradict each other")
        if self.names and len(self.names) != len(self.predictions):
            raise CbtLlmError(f"{len(self.names)} names for {len(self.predictions)} predictions files")
        names = self.system_names()
        if len(set(names)) != len(names):
            raise CbtLlmError(f"system names must differ: {', '.join(names)} (pass --names)")

    def system_names(self) -> list[str]:
        """``names``, else the predictions files' names (with their folder when two files share a name)."""
        if self.names:
            return list(self.names)
        stems = [Path(p).stem for p in self.predictions]
        if len(set(stems)) == len(stems):
            return stems
        return [f"{Path(p).parent.name}/{Path(p).stem}" for p in self.predictions]

    def metric_choices(self) -> dict[str, Any]:
        """``compute_metrics``'s keywords: BERTScore's model and layer, or ``False`` to leave it out."""
        if not self.bertscore:
            return {"bertscore": False}
        given = {"model": self.bertscore_model, "num_layers": self.bertscore_num_layers}
        return {"bertscore": {name: value for name, value in given.items() if value is not None}}


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
class MetricResults(dict):
    """Metric key -> value (what ``compute_metrics`` returns), plus ``skipped`` (metric key -> why it
    could not be computed) and ``settings`` (metric key -> how it was computed: sacrebleu's signature;
    BERTScore's model, layer, hash and empty answers), for reproducing the figures."""

    def __init__(self, values: dict[str, float], skipped: dict[str, str], settings: dict[str, dict]):
        super().__init__(values)
        self.skipped, self.settings = skipped, settings


def _chosen_metrics(choices: Mapping[str, bool | Mapping[str, Any]]) -> list:
    """An instance of every registered metric not turned off in ``choices``, with its arguments from there."""
    metrics = registered_metrics()
    unknown = sorted(set(choices) - set(metrics))
    if unknown:
        raise CbtLlmError(f"unknown metric(s) {', '.join(unknown)}; registered: {', '.join(metrics)}")
    chosen = {name: choices.get(name, True) for name in metrics}
    return [metrics[name](**(how if isinstance(how, Mapping) else {})) for name, how in chosen.items()
            if how is not False]


def _compute(metric, predictions: list[str], references: list[str]) -> dict[str, Any] | str:
    """The metric's results, or why it could not be computed."""
    try:
        return metric.compute(predictions=predictions, references=references)
    except Exception as err:  # noqa: BLE001 - reported in .skipped (and report.md/json), never silent
        return str(err) if isinstance(err, CbtLlmError) else f"{type(err).__name__}: {first_line(err)}"


def _score(metrics: list, predictions: list[str], references: list[str]) -> MetricResults:
    """Each metric's figures, in column order; a metric that fails is filed under its headline in ``skipped``."""
    figures: dict[str, float] = {}
    skipped: dict[str, str] = {}
    settings: dict[str, dict] = {}
    for metric in metrics:
        key, scores = headline(type(metric)), _compute(metric, predictions, references)
        if isinstance(scores, str):
            skipped[key] = scores
            continue
        figures.update({k: v for k, v in scores.items() if isinstance(v, float)})
        other = {k: v for k, v in scores.items() if not isinstance(v, float)}
        if other:
            settings[key] = other
    columns = [key for metric in metrics for key in metric.COLUMNS]
    ordered = {key: figures[key] for key in columns if key in figures}
    return MetricResults(ordered | {k: v for k, v in figures.items() if k not in ordered}, skipped, settings)


def compute_metrics(predictions: Sequence[str], references: Sequence[str],
                    **choices: bool | Mapping[str, Any]) -> MetricResults:
    """Every registered metric for aligned predictions and references (see the module docstring).

    A keyword per metric name says how to run it: ``bertscore=False`` leaves BERTScore out (no model
    is loaded); ``bertscore={"model": DIR, "num_layers": 8}`` passes its arguments (``model`` a Hub name
    or a local folder, default ``bert-base-chinese``). A metric that cannot be computed (BERTScore
    offline without its model) is left out and named in ``.skipped`` with the reason; the others are
    still computed.
    """
    predictions, references = [p or "" for p in predictions], [r or "" for r in references]
    if len(predictions) != len(references):
        raise CbtLlmError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise CbtLlmError("no predictions to score")
    return _score(_chosen_metrics(choices), predictions, references)


def reference_free_figures(texts: list[str]) -> dict[str, float]:
    """The reference-free metrics (distinct-n) of texts that have no reference: the reference answers."""
    return dict(_score([metric() for metric in registered_metrics().values() if metric.REFERENCE_FREE], texts, texts))


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def load_references(references: str = "test", dataset: str = "cbt_qa", data_files: list[str] | None = None,
                    dataset_config: str = "default") -> dict[str, str]:
    """Reference answers by id: a split of the dataset (of a dialogue config: each counsellor turn, by turn id),
    or a JSONL file with ``id`` and ``response``/``reference``."""
    from cbt_llm.evaluation.predict import load_split

    path = Path(references).expanduser()
    if path.is_file():
        refs = {}
        for loc, row in _json_lines(path):
            text = row.get("response", row.get("reference"))
            if not isinstance(text, str):
                raise loc.error("expected a JSON object with string 'id' and 'response' (or 'reference')",
                                "response" if "response" in row else "reference")
            refs[row["id"]] = text
        return refs
    if "/" in references or references.endswith(".jsonl"):
        raise CbtLlmError(f"{references}: no such references file (or name a split: train, validation, test)")
    return {row["id"]: row["response"] for row in load_split(dataset, references, data_files, dataset_config)}


TORN_PREDICTIONS = ("; rerun the same `cbt-llm predict` command: it repairs the file (drops the cut-off line) "
                    "and answers what is missing")


def _json_lines(path: Path, torn_hint: str = "") -> Iterator[tuple[Location, dict]]:
    """Each object of a JSON Lines file with a string ``id``, once each; anything else is one clear error."""
    ids = IdRegistry()
    for loc, row in iter_json_lines(path, torn_hint):
        if not isinstance(row.get("id"), str):
            raise loc.error(f"must be a string, got {json_type(row.get('id'))}", "id")
        if not row["id"].strip():
            raise loc.error("is blank", "id")
        ids.add(row["id"], loc)
        yield loc, row


def load_predictions(path: str | Path) -> dict[str, dict]:
    """The answered lines of a predictions file by id, every line checked: one error (file, line, field) for
    a line that is not a JSON object, a missing or duplicate id, an ok line without a string ``prediction``,
    bad UTF-8, NUL bytes, an empty file or a JSON array. Lines predict marked failed are left out."""
    path = Path(path)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no such predictions file")
    records, failed = {}, 0
    for loc, row in _json_lines(path, TORN_PREDICTIONS):
        if row.get("status", "ok") != "ok":
            failed += 1
            continue
        if not isinstance(row.get("prediction"), str):
            raise loc.error(f"must be a string, got {json_type(row.get('prediction'))}", "prediction")
        records[row["id"]] = row
    if not records:
        raise CbtLlmError(f"{path}: no answers to score: predict marked all {failed} lines failed "
                          "(rerun the same `cbt-llm predict` command: it retries them)")
    return records


def _shared_ids(refs: dict[str, str], loaded: list[dict[str, dict]], references: str) -> list[str]:
    """The ids the references and every predictions file share, sorted."""
    shared = set(refs).intersection(*[set(p) for p in loaded])
    if not shared:
        raise CbtLlmError("no question id is shared by the references and every predictions file "
                          f"(references: {references!r}, {len(refs)} ids)")
    return sorted(shared)


def _judgements_by_system(paths: list[str]) -> dict[str, dict]:
    """The judge means of each judgements file, by the system name stored in it."""
    from cbt_llm.engine.store import JsonlStore
    from cbt_llm.evaluation.judge import judgement_means

    result = {}
    for path in paths:
        records = list(JsonlStore(path).read().records.values())
        if not records:
            raise CbtLlmError(f"{path}: no judgements")
        result[records[0].get("system", Path(path).stem)] = judgement_means(path)
    return result


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
def _score_system(name: str, path: str, records: dict[str, dict], references: list[str], ids: list[str],
                  config: EvaluateConfig, judge: dict) -> SystemResult:
    """One system's row: its metrics and CBT structure on ``ids``, with the settings it was predicted with."""
    from cbt_llm.evaluation.structure import step_coverage

    texts = [records[i]["prediction"] for i in ids]
    metrics = compute_metrics(texts, references, **config.metric_choices())
    settings = next(iter(records.values())).get("settings") or {}
    return SystemResult(name, path, len(ids), dict(metrics), step_coverage(texts), settings, judge, metrics.skipped,
                        metrics.settings, _dialogues(config, dict(zip(ids, texts))))


def _dialogues(config: EvaluateConfig, turns: dict[str, str]) -> dict:
    """The dialogue-level figures of counsellor turns by turn id (dialogue config only)."""
    from cbt_llm.evaluation.dialogue import dialogue_figures

    return dialogue_figures(turns) if config.dataset_config == "dialogue" else {}


def score_systems(config: EvaluateConfig) -> Report:
    """The report's numbers, nothing written yet: every system on the ids all files and the references share."""
    from cbt_llm.evaluation.structure import step_coverage

    names = config.system_names()
    refs = load_references(config.references, config.dataset, config.data_files, config.dataset_config)
    loaded = [load_predictions(p) for p in config.predictions]
    ids = _shared_ids(refs, loaded, config.references)
    judged = _judgements_by_system(config.judgements or [])
    ref_texts = [refs[i] for i in ids]
    systems = [_score_system(name, path, records, ref_texts, ids, config, judged.get(name, {}))
               for name, path, records in zip(names, config.predictions, loaded)]
    reference = SystemResult("reference", None, len(ids), reference_free_figures(ref_texts), step_coverage(ref_texts),
                             dialogue=_dialogues(config, dict(zip(ids, ref_texts))))
    dropped = {name: len(p) - len(ids) for name, p in zip(names, loaded) if len(p) > len(ids)}
    return Report(Path(config.output_dir), systems, reference, len(ids), dropped, [], note=config.note,
                  unit="counsellor turns" if config.dataset_config == "dialogue" else "questions")


def _card_system(systems: list[SystemResult], card: str, wanted: str | None) -> SystemResult:
    """The system whose numbers go into the card: the one named, else the one made with the card's adapter."""
    if wanted:
        for system in systems:
            if system.name == wanted:
                return system
        raise CbtLlmError(f"--card_system {wanted!r} is not one of: {', '.join(s.name for s in systems)}")
    folder = Path(card).expanduser().resolve().parent
    for system in systems:
        adapter = system.settings.get("adapter")
        if adapter and Path(adapter).expanduser().resolve() == folder:
            return system
    if len(systems) == 1:
        return systems[0]
    raise CbtLlmError("several systems and none made with the card's adapter folder: name one with --card_system")


def _write_card(report: Report, config: EvaluateConfig) -> Path:
    """One system's numbers into ``config.model_card``'s model-index and its evaluation section."""
    chosen = _card_system(report.systems, config.model_card, config.card_system)
    split = config.references if not Path(config.references).is_file() else "test"
    return update_model_card_with_results(config.model_card, chosen.row(), config.dataset_id or config.dataset,
                                          split=split, n=report.n, metric_args=reproducibility(chosen.metric_settings))


def evaluate_systems(config: EvaluateConfig) -> Report:
    """Score each predictions file against the references and write the report (see the module docstring).

    A metric that cannot be computed (BERTScore offline without its model) is reported as missing,
    with the reason, in report.md/json and ``Report.format()``; with ``require_bertscore`` a missing
    BERTScore then raises ``CbtLlmError`` (after the report is written).
    """
    report = score_systems(config)
    write_report(report, config.references, config.dataset)
    if config.model_card:
        report.card = _write_card(report, config)
    missing = skipped_metrics(report).get("bertscore_f1")
    if config.require_bertscore and missing:
        raise CbtLlmError(f"BERTScore was not computed ({missing}); the other metrics are in {report.output_dir}")
    return report
