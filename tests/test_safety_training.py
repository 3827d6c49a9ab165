"""The classifier trainer: how rows are weighed, the per-language options, a small real training run and the learning curve."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from cbt_llm.safety.classifier import parse_classifier
from cbt_llm.safety.evaluation import LabelledMessage, read_labelled
from cbt_llm.safety.train_classifier import HEADS, TrainArgs, _per_language, _weights, curve_table, learning_curve, train

DATA = Path(__file__).parent / "data"


def _msg(gold: str, language: str) -> LabelledMessage:
    return LabelledMessage(text="x", gold=gold, category="", language=language, source="s")


def test_the_crisis_head_leaves_dev_concern_out_and_scales_the_projects_own_per_language():
    rows = [_msg("concern", "zh"), _msg("concern", "zh"), _msg("concern", "en"), _msg("crisis", "zh"), _msg("none", "zh")]
    is_dev = np.array([True, False, False, False, False])
    y = np.array([m.gold == "crisis" for m in rows], dtype=float)
    crisis = _weights(rows, y, is_dev, 2.0, {"zh": 0.3, "en": 1.0})
    assert crisis[0] == 0.0  # dev concern: "exploring suicide", worded like ideation
    assert crisis[1] == pytest.approx(0.3 * crisis[2])  # own zh concern weighs 0.3 of own en concern
    assert crisis[2] == pytest.approx(crisis[4])  # own en concern is an ordinary negative
    risk = _weights(rows, np.array([m.gold != "none" for m in rows], dtype=float), is_dev, 2.0, None)
    assert (risk > 0).all() and risk[0] == pytest.approx(2 * risk[1])  # the risk head keeps every row, dev twice


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
    return TrainArgs(dev=files, own=[DATA / "safety_train.jsonl"], buckets=1 << 12, steps=60, folds=3,
                     max_benign_crisis={"zh": 0.05, "en": 0.0})


def test_a_small_training_run_chooses_thresholds_per_language(small_args, capsys):
    args = small_args
    data = train(args)
    model = parse_classifier(data, "trained in a test")
    assert set(model.weights) == set(HEADS)
    assert set(model.thresholds["crisis"]) == {"zh", "en"}
    figures = data["card"]["cross_validated_dev"]
    assert figures["en/crisis"]["benign_flagged"] == 0.0 and figures["zh/crisis"]["benign_flagged"] <= 0.05
    assert "zh 0.3" in data["card"]["crisis_head_concern_rows"]
    trained_on = data["card"]["trained_on"]
    assert trained_on[f"{args.dev[0].parent.name}/dev.jsonl (not shipped)"] == 102
    assert trained_on["more/train.jsonl (not shipped)"] == 102 and trained_on["safety_train.jsonl"] > 0
    assert "out of fold" in capsys.readouterr().out


def test_the_learning_curve_fits_on_growing_shares_of_dev(small_args):
    rows = learning_curve(small_args, fractions=(0.0, 1.0), repeats=1)
    none, full = rows
    assert none["dev_rows_fitted"] == 0 and full["dev_rows_fitted"] == pytest.approx(204 * 2 / 3)
    assert all(0.0 <= row[key] <= 1.0 for row in rows for key in row if "/" in key)
    assert full["zh/auc"] > 0.8 and full["en/auc"] > 0.8  # these stand-in rows are plain; a broken fit falls to ~0.5
    assert full["zh/auc"] > none["zh/auc"] and full["en/auc"] > none["en/auc"]  # the dev rows were fitted on
    table = curve_table(rows, small_args.max_benign_crisis)
    assert "| 1.00 | 136 |" in table and "zh recall at 5% benign" in table
