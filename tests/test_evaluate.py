"""compute_metrics and the CBT-structure score, with its agreement on hand-labelled answers."""

import json
from pathlib import Path

import pytest
from eval_helpers import sample_rows

from cbt_llm.data.prompts import STEP_KEYS
from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.evaluate import compute_metrics
from cbt_llm.evaluation.registry import metric_columns
from cbt_llm.evaluation.structure import (
    cbt_structure_score,
    cohen_kappa,
    step_coverage,
    structure_agreement,
    structure_of,
)

HAND_LABELLED = Path(__file__).parent / "data" / "cbt_structure_eval.jsonl"


def test_compute_metrics_returns_every_key_and_the_acceptance_anchors(tiny_bert):
    answers = [row["response"] for row in sample_rows()[:5]]
    same = compute_metrics(answers, answers, bertscore={"model": str(tiny_bert), "num_layers": 2})
    assert list(same)[:len(metric_columns())] == list(metric_columns())  # every column, in the report's order
    assert same["bleu"] == pytest.approx(100) and same["chrf"] == pytest.approx(100)
    assert same["meteor"] > 0.99 and same["rouge_l"] == pytest.approx(1.0)
    assert same["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    unrelated = compute_metrics(["明天北京晴转多云，最高气温二十五度，空气质量良。"] * 5, answers, bertscore=False)
    assert unrelated["bleu"] < 5 and "bertscore_f1" not in unrelated


def test_compute_metrics_rejects_misaligned_or_empty_input():
    with pytest.raises(CbtLlmError, match="2 predictions but 1 references"):
        compute_metrics(["a", "b"], ["a"], bertscore=False)
    with pytest.raises(CbtLlmError, match="no predictions"):
        compute_metrics([], [], bertscore=False)
    with pytest.raises(CbtLlmError, match="unknown metric.*nope; registered: bleu, chrf"):
        compute_metrics(["a"], ["a"], nope=False)


def test_full_five_step_answers_score_2_and_platitudes_0():
    rows = sample_rows()
    assert all(cbt_structure_score(row["response"]) == 2 for row in rows)
    for platitude in ("想开点，一切都会好起来的。", "加油！", "多喝热水，早点休息。", ""):
        assert cbt_structure_score(platitude) == 0


def test_per_step_detection_and_order():
    steps = sample_rows()[0]["steps"]
    full = structure_of("\n\n".join(steps[k] for k in STEP_KEYS))
    assert full.score == 2 and full.count == 5 and full.in_order
    # the same five paragraphs with the encouragement first: all present, not in order -> 1
    shuffled = "\n\n".join(steps[k] for k in ("encouragement", "validation", "key_thought", "challenge", "strategy"))
    result = structure_of(shuffled)
    assert result.count == 5 and not result.in_order and result.score == 1
    two = structure_of(steps["validation"] + "\n\n" + steps["strategy"])
    assert two.score == 1 and two.present["validation"] and two.present["strategy"] and not two.present["challenge"]


def test_step_coverage_over_many_answers():
    steps = sample_rows()[0]["steps"]
    texts = [sample_rows()[1]["response"], steps["validation"], "加油！", steps["validation"] + steps["strategy"]]
    coverage = step_coverage(texts)
    assert coverage["n"] == 4
    assert coverage["steps"]["validation"] == pytest.approx(3 / 4)
    assert coverage["structure_full"] == pytest.approx(1 / 4)
    assert coverage["scores"] == {"0": 2, "1": 1, "2": 1}
    assert step_coverage([])["n"] == 0


def test_cohen_kappa_known_values():
    assert cohen_kappa([0, 1, 2, 2], [0, 1, 2, 2]) == pytest.approx(1.0)
    # textbook 2x2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4
    gold = [1] * 25 + [0] * 25
    rater = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(gold, rater, labels=(0, 1)) == pytest.approx(0.4)
    # a one-step miss costs less than a two-step miss under quadratic weights
    near = cohen_kappa([0, 1, 2, 2, 0], [0, 1, 2, 1, 0], weights="quadratic")
    far = cohen_kappa([0, 1, 2, 2, 0], [0, 1, 2, 0, 0], weights="quadratic")
    assert near > far


def test_the_hand_labelled_set_is_varied_and_the_score_agrees_with_it():
    rows = [json.loads(line) for line in HAND_LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 30 and {r["label"] for r in rows} == {0, 1, 2}
    assert len({r["id"] for r in rows}) == len(rows)
    fluent = [r for r in rows if r["label"] == 2 and "fluent" in r["note"]]
    assert len(fluent) >= 8 and not any("：" in r["text"].split("\n")[0][:8] for r in fluent)
    agreement = structure_agreement(HAND_LABELLED)
    assert agreement["n"] == len(rows)
    assert agreement["accuracy"] >= 0.85 and agreement["kappa"] >= 0.75
    assert sum(map(sum, agreement["confusion"])) == len(rows)
    # a scorer that ignores the text agrees only by chance
    constant = structure_agreement(HAND_LABELLED, scorer=lambda text, language: 2)
    assert constant["kappa"] == pytest.approx(0.0) and constant["accuracy"] < 0.5


def test_a_metric_that_cannot_run_is_skipped_with_its_reason_and_the_others_kept(tmp_path):
    answers = [row["response"] for row in sample_rows()[:3]]
    result = compute_metrics(answers, answers, bertscore={"model": str(tmp_path / "no-such-model")})
    assert result["bleu"] == pytest.approx(100) and result["rouge_l"] == pytest.approx(1.0)
    assert "bertscore_f1" not in result
    assert list(result.skipped) == ["bertscore_f1"] and "could not be loaded" in result.skipped["bertscore_f1"]


def test_sacrebleu_signatures_are_kept():
    answers = [row["response"] for row in sample_rows()[:3]]
    result = compute_metrics(answers, answers, bertscore=False)
    assert result.skipped == {}
    assert result.settings["bleu"]["signature"].startswith("nrefs:1|") and "tok:zh" in result.settings["bleu"]["signature"]
    assert result.settings["chrf"]["signature"].startswith("nrefs:1|") and "nc:6" in result.settings["chrf"]["signature"]


# ---------------------------------------------------------------------------------------------
# Predictions and references files: every line is checked, a bad one is one clear error
# ---------------------------------------------------------------------------------------------
GOOD_LINES = [json.dumps({"id": f"q{i}", "prediction": "想开点。", "status": "ok"}, ensure_ascii=False).encode()
              for i in range(4)]


def predictions_bytes(*lines: bytes, newline: bool = True) -> bytes:
    return b"\n".join(lines) + (b"\n" if newline else b"")


@pytest.mark.parametrize(("case", "data", "expected"), [
    ("torn last line", predictions_bytes(*GOOD_LINES, b'{"id": "q9", "predic', newline=False),
     ":5: the last line is cut off .*rerun the same `cbt-llm predict` command: it repairs the file"),
    ("cut inside a character", predictions_bytes(*GOOD_LINES, '{"id": "q9", "prediction": "好'.encode()[:-1],
                                                 newline=False), ":5: the last line is cut off"),
    ("NUL bytes", predictions_bytes(GOOD_LINES[0], b"\x00" * 40, *GOOD_LINES[1:]), ":2: holds NUL bytes"),
    ("bad UTF-8", predictions_bytes(GOOD_LINES[0], b'{"id": "q8", "prediction": "\xff\xfe"}', *GOOD_LINES[1:]),
     ":2: bytes are not valid UTF-8"),
    ("duplicate id", predictions_bytes(*GOOD_LINES, GOOD_LINES[1]),
     ":5: field 'id': duplicate id 'q1' \\(first seen at .*:2\\)"),
    ("not JSON", predictions_bytes(GOOD_LINES[0], b"{oops", *GOOD_LINES[1:]), ":2: invalid JSON"),
    ("no id", predictions_bytes(*GOOD_LINES, b'{"prediction": "x"}'), ":5: field 'id': must be a string, got null"),
    ("no prediction", predictions_bytes(*GOOD_LINES, b'{"id": "q7", "status": "ok"}'),
     ":5: field 'prediction': must be a string, got null"),
    ("JSON array", b"[\n" + b",\n".join(GOOD_LINES) + b"\n]", ":1: is a JSON array; expected JSON Lines"),
    ("empty file", b"", ": file is empty"),
    ("only failed answers", b'{"id": "q1", "status": "failed", "prediction": ""}\n',
     ": no answers to score: predict marked all 1 lines failed"),
])
def test_a_corrupt_predictions_file_is_one_clear_error_naming_file_and_line(tmp_path, case, data, expected):
    from cbt_llm.evaluation.evaluate import EvaluateConfig, evaluate_systems

    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"id": f"q{i}", "response": "想开点。"}) + "\n" for i in range(10)),
                    encoding="utf-8")
    good = tmp_path / "good.jsonl"
    good.write_bytes(predictions_bytes(*GOOD_LINES))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(data)
    with pytest.raises(CbtLlmError, match=f"^{bad}{expected}"):
        evaluate_systems(EvaluateConfig(predictions=[good, bad], output_dir=tmp_path / "report", references=str(refs),
                                        bertscore=False))
    assert not (tmp_path / "report").exists()


def test_a_references_file_with_bad_utf8_or_a_duplicate_id_is_one_clear_error(tmp_path):
    from cbt_llm.evaluation.evaluate import load_references

    refs = tmp_path / "refs.jsonl"
    refs.write_bytes(b'{"id": "a", "response": "ok"}\n{"id": "b", "response": "\xe4\xbd"}\n')
    with pytest.raises(CbtLlmError, match=f"^{refs}:2: bytes are not valid UTF-8"):
        load_references(str(refs))
    refs.write_bytes(b'{"id": "a", "response": "ok"}\n{"id": "a", "reference": "again"}\n')
    with pytest.raises(CbtLlmError, match=f"^{refs}:2: field 'id': duplicate id 'a'"):
        load_references(str(refs))
    refs.write_bytes(b'{"id": "a", "response": "ok"}\n{"id": "b", "response": 3}\n')
    with pytest.raises(CbtLlmError, match=f"^{refs}:2: field 'response': expected a JSON object with string 'id'"):
        load_references(str(refs))
