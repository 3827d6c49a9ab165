"""The classifier trainer: how rows are weighed, the per-language options, a small real training run and the learning curve."""

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest

from cbt_llm.safety.classifier import parse_classifier
from cbt_llm.safety.evaluation import LabelledMessage, read_labelled
from cbt_llm.safety.augment import variants
from cbt_llm.safety.train_classifier import (HEADS, TrainArgs, TrainingRows, _per_language, _weights, curve_table,
                                             learning_curve, train)

DATA = Path(__file__).parent / "data"


def _msg(gold: str, language: str, text: str = "x") -> LabelledMessage:
    return LabelledMessage(text=text, gold=gold, category="", language=language, source="s")


def _rows(messages: list[LabelledMessage], real: int, variants: int = 0) -> TrainingRows:
    """Stand-in training rows: the first ``real`` messages are real, then ``variants`` copies of message 0."""
    fitted = messages + [messages[0]] * variants
    return TrainingRows(messages[:real], messages, np.arange(len(messages)) < real, fitted,
                        np.array(list(range(len(messages))) + [0] * variants),
                        np.arange(len(fitted)) >= len(messages), None, None, None, {})


def test_the_crisis_head_leaves_real_concern_out_and_scales_the_projects_own_per_language():
    rows = _rows([_msg("concern", "zh"), _msg("concern", "zh"), _msg("concern", "en"), _msg("crisis", "zh"),
                  _msg("none", "zh")], real=1, variants=1)
    args = TrainArgs(dev=[], dev_weight=2.0, augment_weight=0.5)
    y = np.array([m.gold == "crisis" for m in rows.fitted], dtype=float)
    crisis = _weights(rows, y, args, {"zh": 0.3, "en": 1.0})
    assert crisis[0] == 0.0 and crisis[5] == 0.0  # real concern ("exploring suicide") and its variant
    assert crisis[1] == pytest.approx(0.3 * crisis[2])  # own zh concern weighs 0.3 of own en concern
    assert crisis[2] == pytest.approx(crisis[4])  # own en concern is an ordinary negative
    risk = _weights(rows, np.array([m.gold != "none" for m in rows.fitted], dtype=float), args, None)
    assert (risk > 0).all() and risk[0] == pytest.approx(2 * risk[1])  # the risk head keeps every row, real twice
    assert risk[5] == pytest.approx(0.5 * risk[0])  # a variant weighs half its message


def test_variants_keep_the_label_and_change_only_the_wrapping():
    rng = random.Random(0)
    message = _msg("crisis", "zh", "我不想活了，药已经准备好了")
    out = variants(message, rng, 3)
    assert len(out) == 3 and all(v.gold == "crisis" and v.language == "zh" for v in out)
    assert all(v.text != message.text and ("不想活" in v.text or "不想活" in v.text.replace(" ", "")) for v in out)


def test_per_language_options_parse_and_name_what_is_wrong():
    assert _per_language("zh=0.04,en=0.02") == {"zh": 0.04, "en": 0.02}
    with pytest.raises(argparse.ArgumentTypeError, match="LANG=NUMBER"):
        _per_language("zh:0.04")
    with pytest.raises(argparse.ArgumentTypeError, match="for zh and for en"):
        _per_language("zh=0.04")


@pytest.fixture
def small_args(tmp_path) -> TrainArgs:
    """Two stand-in real files in the crisis_real format, made from the project's own held-in messages."""
    own = read_labelled(DATA / "safety_eval.jsonl")[::3]
    files = [tmp_path / "dev.jsonl", tmp_path / "more" / "train.jsonl"]
    files[1].parent.mkdir()
    for k, path in enumerate(files):
        with path.open("w", encoding="utf-8") as f:
            for m in own[k::2]:
                label = {"none": "benign"}.get(m.gold, m.gold)
                f.write(json.dumps({"text": m.text, "label": label, "lang": m.language, "source": "stand-in"},
                                   ensure_ascii=False) + "\n")
    return TrainArgs(dev=files, own=[DATA / "safety_train.jsonl"], buckets=1 << 12, steps=60, folds=3, augment=1,
                     max_benign_crisis={"zh": 0.05, "en": 0.0}, max_own_benign_crisis=1.0)


def test_a_small_training_run_chooses_thresholds_per_language(small_args, capsys):
    args = small_args
    data = train(args)
    model = parse_classifier(data, "trained in a test")
    assert set(model.weights) == set(HEADS)
    assert set(model.thresholds["crisis"]) == {"zh", "en"}
    figures = data["card"]["cross_validated_real"]
    assert figures["en/crisis"]["benign_flagged"] == 0.0 and figures["zh/crisis"]["benign_flagged"] <= 0.05
    assert "zh 0.3" in data["card"]["crisis_head_concern_rows"]
    trained_on = data["card"]["trained_on"]
    assert trained_on[f"{args.dev[0].parent.name}/dev.jsonl (not shipped)"] == 102
    assert trained_on["more/train.jsonl (not shipped)"] == 102 and trained_on["safety_train.jsonl"] > 0
    assert "out of fold" in capsys.readouterr().out


def test_the_learning_curve_fits_on_growing_shares_of_the_real_rows(small_args):
    rows = learning_curve(small_args, fractions=(0.0, 1.0), repeats=1)
    none, full = rows
    assert none["real_rows_fitted"] == 0 and full["real_rows_fitted"] == pytest.approx(204 * 2 / 3)
    assert all(0.0 <= row[key] <= 1.0 for row in rows for key in row if "/" in key)
    assert full["zh/auc"] > 0.8 and full["en/auc"] > 0.8  # these stand-in rows are plain; a broken fit falls to ~0.5
    assert full["zh/auc"] > none["zh/auc"] and full["en/auc"] > none["en/auc"]  # the real rows were fitted on
    table = curve_table(rows, small_args.max_benign_crisis)
    assert "| 1.00 | 136 |" in table and "zh recall at 5% benign" in table
