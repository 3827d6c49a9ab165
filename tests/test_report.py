"""cbt-llm evaluate: predictions of the tiny adapter and the tiny base model into a report with plots."""

import json
import shutil

import pytest
from huggingface_hub import EvalResult, ModelCard

from cbt_llm.cards import CARD_START, update_model_card_with_results
from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.evaluate import EvaluateConfig, evaluate_systems, load_references
from cbt_llm.evaluation.metrics import TextMetric
from cbt_llm.evaluation.predict import load_split
from cbt_llm.evaluation.registry import METRICS, Column, register_metric

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    import matplotlib.image

    return matplotlib.image.imread(path).shape


def test_predict_and_evaluate_on_the_tiny_adapter_offline(tiny_adapter, tiny_bert, tiny_model, tmp_path, cli):
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, adapter)  # the card gets results written into it
    done = cli("predict", "--adapter", adapter, "--output", tmp_path / "adapter.jsonl", "--max-new-tokens", 24)
    assert done.returncode == 0, done.stderr
    base = tmp_path / "base.jsonl"
    from cbt_llm.evaluation.predict import PredictConfig, predict

    predict(PredictConfig(output_file=base, model_name_or_path=str(tiny_model), max_new_tokens=24, progress=False))
    report_dir = tmp_path / "report"
    done = cli("evaluate", "--predictions", tmp_path / "adapter.jsonl", base, "--names", "tiny-adapter", "tiny-base",
               "--output", report_dir, "--bertscore-model", tiny_bert, "--bertscore-num-layers", 2,
               "--model-card", adapter / "README.md")
    assert done.returncode == 0, done.stderr
    assert "scored 2 systems on 6 shared questions" in done.stdout
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in report["systems"]] == ["tiny-adapter", "tiny-base"]
    for system in report["systems"]:
        assert system["n"] == 6
        for key in ("bleu", "chrf", "bleu_1", "bleu_4", "meteor", "rouge_l", "distinct_1", "distinct_2",
                    "bertscore_f1"):
            assert isinstance(system["metrics"][key], float)
        assert set(system["structure"]["steps"]) == {"validation", "key_thought", "challenge", "strategy",
                                                     "encouragement"}
    assert report["reference"]["structure"]["structure_mean"] == 2.0
    assert report["systems"][0]["settings"]["adapter"] == str(adapter)

    table = [line for line in (report_dir / "report.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("|")]
    assert len(table) == 2 + 3  # header, rule, two systems and the references
    header = table[0]
    for column in ("BLEU", "chrF", "BLEU-4", "METEOR", "ROUGE-L", "Dist-2", "BERTScore F1", "CBT structure",
                   "Empathy", "Encourage"):
        assert f"| {column} |" in header
    assert table[2].startswith("| tiny-adapter | 6 |") and table[3].startswith("| tiny-base | 6 |")
    assert all(line.count("|") == header.count("|") for line in table)
    for name in ("metrics.png", "step_coverage.png"):
        assert (report_dir / name).read_bytes()[:8] == PNG
        height, width = png_size(report_dir / name)[:2]
        assert height >= 300 and width >= 600
        assert f"]({name})" in (report_dir / "report.md").read_text(encoding="utf-8")

    card = ModelCard.load(adapter / "README.md")
    results = {r.metric_name.split(" (")[0]: r.metric_value for r in card.data.eval_results}
    assert results["BLEU"] == pytest.approx(report["systems"][0]["metrics"]["bleu"], abs=1e-4)
    assert all(r.dataset_type == "cbt_qa" and r.dataset_split == "test" for r in card.data.eval_results)
    assert "## Evaluation results" in card.text and card.text.count(CARD_START) == 1
    assert "model-index:" in (adapter / "README.md").read_text(encoding="utf-8")


def write_predictions(path, predictions):
    path.write_text("".join(json.dumps({"id": i, "prediction": p, "status": "ok", "settings": {}},
                                       ensure_ascii=False) + "\n" for i, p in predictions.items()), encoding="utf-8")
    return path


def test_systems_are_scored_on_shared_ids_and_judge_means_become_columns(tmp_path):
    refs = {row["id"]: row["response"] for row in load_split(split="test")}
    ids = sorted(refs)
    perfect = write_predictions(tmp_path / "perfect.jsonl", refs)
    partial = write_predictions(tmp_path / "platitude.jsonl", {i: "想开点，一切都会好起来的。" for i in ids[:4]})
    judged = tmp_path / "judge.jsonl"
    judged.write_text("".join(json.dumps({"id": i, "system": "perfect", "status": "ok", "relevance": 2,
                                          "cbt_structure": 2, "helpfulness": 1}) + "\n" for i in ids),
                      encoding="utf-8")
    report = evaluate_systems(EvaluateConfig(predictions=[perfect, partial], output_dir=tmp_path / "out",
                                             bertscore=False, judgements=[judged]))
    assert report.n == 4 and report.dropped == {"perfect": 2}
    by_name = {s.name: s for s in report.systems}
    assert by_name["perfect"].metrics["bleu"] == pytest.approx(100)
    assert by_name["perfect"].structure["structure_mean"] == 2.0
    assert by_name["platitude"].structure["structure_mean"] == 0.0 and by_name["platitude"].metrics["bleu"] < 5
    assert by_name["perfect"].judge["relevance"] == 2 and not by_name["platitude"].judge
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "Judge relevance" in markdown and "perfect: 2 answers left out" in markdown
    assert "BERTScore" not in markdown.split("\n\n")[2]  # left out when not computed
    assert "What these numbers mean" not in markdown and json.loads((tmp_path / "out" / "report.json").read_text())[
        "note"] is None


def test_a_note_says_what_the_numbers_mean_above_the_table(tmp_path):
    refs = {row["id"]: row["response"] for row in load_split(split="test")}
    preds = write_predictions(tmp_path / "model.jsonl", refs)
    note = "A random model memorising a format; nothing about counselling quality."
    evaluate_systems(EvaluateConfig(predictions=[preds], output_dir=tmp_path / "out", bertscore=False, note=note))
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert markdown.index(f"**What these numbers mean.** {note}") < markdown.index("| System |")
    assert json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["note"] == note


class AnswerLength(TextMetric):
    """Mean answer length in characters: a metric that lives only in this test."""

    DESCRIPTION = "mean number of characters per answer"
    COLUMNS = {"answer_length": Column("Length", "answer_length", "characters per answer, reference-free", ".1f")}
    REFERENCE_FREE = True

    def _compute(self, predictions, references):
        return {"answer_length": sum(map(len, predictions)) / len(predictions)}


@pytest.fixture
def answer_length():
    register_metric("answer_length", AnswerLength)
    yield
    del METRICS["answer_length"]


def test_a_registered_metric_is_computed_and_reported_without_other_changes(tmp_path, answer_length):
    refs = {row["id"]: row["response"] for row in load_split(split="test")}
    preds = write_predictions(tmp_path / "short.jsonl", {i: "想开点。" for i in refs})
    report = evaluate_systems(EvaluateConfig(predictions=[preds], output_dir=tmp_path / "out", bertscore=False))
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert saved["metrics"]["answer_length"] == {"label": "Length", "scale": "characters per answer, reference-free"}
    assert list(saved["systems"][0]["metrics"])[-1] == "answer_length"
    assert saved["systems"][0]["metrics"]["answer_length"] == 4.0
    mean = sum(map(len, refs.values())) / len(refs)
    assert saved["reference"]["metrics"]["answer_length"] == pytest.approx(mean)  # reference-free: scored too
    table = [line for line in (tmp_path / "out" / "report.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("|")]
    header = [cell.strip() for cell in table[0].split("|")]
    column = header.index("Length")
    assert header[column - 1] == "Dist-2" and header[column + 1] == "CBT structure"  # after the built-in metrics
    assert table[2].split("|")[column].strip() == "4.0" and table[3].split("|")[column].strip() == f"{mean:.1f}"
    assert "- **Length**: characters per answer, reference-free." in (tmp_path / "out" / "report.md").read_text(
        encoding="utf-8")
    assert report.systems[0].metrics["answer_length"] == 4.0


def test_references_from_a_file_and_errors(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text('{"id": "a", "reference": "你好"}\n{"id": "b", "response": "再见"}\n', encoding="utf-8")
    assert load_references(str(refs)) == {"a": "你好", "b": "再见"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(CbtLlmError, match="bad.jsonl:1"):
        load_references(str(bad))
    preds = write_predictions(tmp_path / "p.jsonl", {"zzz": "x"})
    with pytest.raises(CbtLlmError, match="no question id is shared"):
        evaluate_systems(EvaluateConfig(predictions=[preds], output_dir=tmp_path / "out", references=str(refs),
                                        bertscore=False))
    with pytest.raises(CbtLlmError, match="names must differ"):
        EvaluateConfig(predictions=[preds, preds], output_dir=tmp_path / "out", bertscore=False)
    with pytest.raises(CbtLlmError, match="1 names for 2 predictions files"):
        EvaluateConfig(predictions=[preds, refs], output_dir=tmp_path / "out", names=["a"])
    with pytest.raises(CbtLlmError, match="--require_bertscore and --no_bertscore contradict"):
        EvaluateConfig(predictions=[preds], output_dir=tmp_path / "out", bertscore=False, require_bertscore=True)


def test_model_card_results_replace_their_own_and_keep_others(tmp_path):
    from huggingface_hub import ModelCardData

    card_path = tmp_path / "README.md"
    other = EvalResult(task_type="text-generation", dataset_type="other/data", dataset_name="other",
                       metric_type="bleu", metric_value=1.0)
    data = ModelCardData(model_name="x", eval_results=[other])
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n# x\n\n## How to use\n\ntext\n").save(card_path)
    update_model_card_with_results(card_path, {"bleu": 12.5, "meteor": 0.3}, "org/cbt_qa")
    update_model_card_with_results(card_path, {"bleu": 13.0, "meteor": 0.31}, "org/cbt_qa")
    card = ModelCard.load(card_path)
    mine = [r for r in card.data.eval_results if r.dataset_type == "org/cbt_qa"]
    assert sorted((r.metric_type, r.metric_value) for r in mine) == [("bleu", 13.0), ("meteor", 0.31)]
    assert any(r.dataset_type == "other/data" for r in card.data.eval_results)
    assert card.text.count("## Evaluation results") == 1
    assert card.text.index("## Evaluation results") < card.text.index("## How to use")
    with pytest.raises(CbtLlmError, match="no such model card"):
        update_model_card_with_results(tmp_path / "missing.md", {"bleu": 1.0}, "d")


def test_missing_bertscore_is_reported_and_fatal_only_when_asked(tmp_path):
    refs = {row["id"]: row["response"] for row in load_split(split="test")}
    preds = write_predictions(tmp_path / "perfect.jsonl", refs)
    missing = str(tmp_path / "no-such-bert")
    report = evaluate_systems(EvaluateConfig(predictions=[preds], output_dir=tmp_path / "out", bertscore_model=missing))
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert saved["systems"][0]["metrics"]["bleu"] == pytest.approx(100)
    assert "could not be loaded" in saved["skipped"]["bertscore_f1"]
    assert "BERTScore F1 not computed" in report.format()
    assert "**BERTScore F1**: not computed (BERTScore model" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    with pytest.raises(CbtLlmError, match="BERTScore was not computed"):
        evaluate_systems(EvaluateConfig(predictions=[preds], output_dir=tmp_path / "strict", bertscore_model=missing,
                                        require_bertscore=True))
    assert json.loads((tmp_path / "strict" / "report.json").read_text(encoding="utf-8"))["systems"][0]["metrics"]


def test_report_and_card_say_how_each_figure_was_computed(tmp_path, tiny_bert, cli):
    refs = {row["id"]: row["response"] for row in load_split(split="test")}
    preds = write_predictions(tmp_path / "perfect.jsonl", {**refs, sorted(refs)[0]: ""})
    card_path = tmp_path / "README.md"
    ModelCard("---\nmodel_name: x\n---\n\n# x\n\n## How to use\n\ntext\n").save(card_path)
    evaluate_systems(EvaluateConfig(predictions=[preds], output_dir=tmp_path / "out", bertscore_model=str(tiny_bert),
                                    model_card=card_path))
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    bert = saved["reproducibility"]["bertscore_f1"]
    assert bert["model"] == str(tiny_bert) and bert["num_layers"] == 2 and "_L2_no-idf_version=" in bert["hash"]
    assert saved["systems"][0]["metric_settings"]["bertscore_f1"]["empty_predictions"] == 1
    assert saved["reproducibility"]["bleu"]["signature"].startswith("nrefs:1|")
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "1 empty answers, scored 0 by BERTScore" in markdown and "tok:zh" in markdown
    card = ModelCard.load(card_path)
    args = {r.metric_name.split(" (")[0]: r.metric_args for r in card.data.eval_results}
    assert args["BERTScore F1"]["num_layers"] == 2 and args["BERTScore F1"]["hash"] == bert["hash"]
    assert args["BLEU"]["signature"] == saved["reproducibility"]["bleu"]["signature"] and args["BLEU-4"] is None
    assert saved["reproducibility"]["bleu"]["signature"] in card.text
    # the CLI: a missing BERTScore model is reported, and fails the command only with --require-bertscore
    args = ("evaluate", "--predictions", preds, "--output_dir", tmp_path / "cli", "--bertscore_model", tmp_path / "none")
    done = cli(*args)
    assert done.returncode == 0 and "BERTScore F1 not computed" in done.stdout, done.stderr
    done = cli(*args, "--require_bertscore")
    assert done.returncode != 0 and "BERTScore was not computed" in done.stderr


def test_a_pipe_or_a_newline_in_a_system_name_cannot_split_the_report_table(tmp_path):
    import re

    refs = {row["id"]: row["response"] for row in load_split(split="test")}
    preds = write_predictions(tmp_path / "model.jsonl", refs)
    evaluate_systems(EvaluateConfig(predictions=[preds], output_dir=tmp_path / "out", bertscore=False,
                                    names=["lora | r=16\nsecond try"]))
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    table = markdown.split("\n\n")[2].splitlines()
    cells = [re.split(r"(?<!\\)\|", line) for line in table]  # GFM splits cells on unescaped pipes only
    assert len(table) == 4 and {len(row) for row in cells} == {len(cells[0])}
    assert table[2].startswith("| lora \\| r=16 second try | 6 |")
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert saved["systems"][0]["name"] == "lora | r=16\nsecond try"  # the data keeps the name as given
