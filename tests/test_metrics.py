"""The metric classes: scale, tokenisation and the acceptance anchors (identical and unrelated text)."""

import random
import sys

import pytest
from eval_helpers import sample_rows

from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.metrics import (
    BertScore,
    Bleu,
    ChrF,
    Distinct,
    JiebaBleu,
    Meteor,
    NoWordNet,
    RougeL,
    characters,
    distinct,
    jieba_words,
    lcs_length,
    rouge_l,
)
from cbt_llm.evaluation.registry import register_metric, registered_metrics

ANSWERS = [row["response"] for row in sample_rows()[:8]]
UNRELATED = ["今天上午股市小幅上涨，科技板块领涨，成交量较昨日有所放大。",
             "这款手机采用六点七英寸屏幕，电池容量五千毫安时，支持无线充电。"] * 4


def test_every_registered_metric_computes_its_columns_offline():
    # HF_HUB_OFFLINE=1 (conftest): nothing is fetched; BERTScore, which needs a model, is tested with the tiny BERT
    metrics = registered_metrics()
    assert list(metrics) == ["bleu", "chrf", "jieba_bleu", "meteor", "rouge_l", "distinct", "bertscore"]
    for name, metric in metrics.items():
        assert metric.COLUMNS and metric().description, name
        if name != "bertscore":
            result = metric().compute(predictions=ANSWERS[:2], references=ANSWERS[:2])
            assert [k for k, v in result.items() if isinstance(v, float)] == list(metric.COLUMNS), name
    assert "zh" in Bleu().description


def test_a_metric_needs_columns_of_its_own_and_a_new_name():
    class Answers(Distinct):
        COLUMNS = {"distinct_2": Distinct.COLUMNS["distinct_2"]}

    with pytest.raises(CbtLlmError, match="already registered"):
        register_metric("bleu", Bleu)
    with pytest.raises(CbtLlmError, match="distinct_2 is distinct's"):
        register_metric("answers", Answers)
    Answers.COLUMNS = {}
    with pytest.raises(CbtLlmError, match="declares none"):
        register_metric("answers", Answers)
    assert "answers" not in registered_metrics()


def test_identical_answers_score_perfectly():
    assert Bleu().compute(predictions=ANSWERS, references=ANSWERS)["bleu"] == pytest.approx(100.0)
    assert ChrF().compute(predictions=ANSWERS, references=ANSWERS)["chrf"] == pytest.approx(100.0)
    words = JiebaBleu().compute(predictions=ANSWERS, references=ANSWERS)
    assert [words[f"bleu_{n}"] for n in range(1, 5)] == pytest.approx([100.0] * 4)
    assert Meteor().compute(predictions=ANSWERS, references=ANSWERS)["meteor"] > 0.99
    assert RougeL().compute(predictions=ANSWERS, references=ANSWERS)["rouge_l"] == pytest.approx(1.0)


def test_unrelated_text_scores_low_and_other_cbt_answers_score_between():
    assert Bleu().compute(predictions=UNRELATED[:8], references=ANSWERS)["bleu"] < 5
    assert ChrF().compute(predictions=UNRELATED[:8], references=ANSWERS)["chrf"] < 10
    shifted = ANSWERS[1:] + ANSWERS[:1]
    same_domain = Bleu().compute(predictions=shifted, references=ANSWERS)["bleu"]
    unrelated = Bleu().compute(predictions=UNRELATED[:8], references=ANSWERS)["bleu"]
    assert unrelated < same_domain < 100
    meteor = Meteor().compute(predictions=shifted, references=ANSWERS)["meteor"]
    assert 0.0 < meteor < 0.9
    assert RougeL().compute(predictions=UNRELATED[:8], references=ANSWERS)["rouge_l"] < \
        RougeL().compute(predictions=shifted, references=ANSWERS)["rouge_l"]


def test_bleu_counts_characters_while_bleu_n_counts_jieba_words():
    assert jieba_words("我们去公园散步") == ["我们", "去", "公园", "散步"]
    assert characters("我们 去\n公园") == ["我", "们", "去", "公", "园"]
    # same characters, different words: the character unigrams all match, the word unigrams do not
    prediction, reference = ["公园里的园丁"], ["园里公的丁园"]
    words = JiebaBleu().compute(predictions=prediction, references=reference)
    chars = Bleu().compute(predictions=prediction, references=reference)
    assert words["bleu_1"] < 60
    from sacrebleu.metrics import BLEU

    one_gram = BLEU(tokenize="zh", max_ngram_order=1).corpus_score(prediction, [reference]).score
    assert one_gram == pytest.approx(100.0) and chars["bleu"] < 100


def test_meteor_uses_exact_and_stem_matching_without_wordnet():
    assert NoWordNet().synsets("happy") == []
    exact = Meteor().compute(predictions=["我 很 担心 考试"], references=["我很担心考试"])["meteor"]
    assert exact > 0.9  # whitespace is not a token: both sides segment the same
    stemmed = Meteor().compute(predictions=["running tests daily"], references=["run test daily"])["meteor"]
    assert stemmed > 0.9  # Porter stems match
    synonym = Meteor().compute(predictions=["glad"], references=["happy"])["meteor"]
    assert synonym == 0.0  # no WordNet synonyms


def test_bit_parallel_lcs_matches_dynamic_programming():
    def dp(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
        return table[-1][-1]

    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("我你他好的了") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("我你他好的了") for _ in range(rng.randint(0, 40)))
        assert lcs_length(a, b) == dp(a, b)


def test_rouge_l_and_distinct_known_values():
    # LCS("我今天很开心", "今天我很开心") = 5 ("今天很开心"); P = R = 5/6
    assert rouge_l("我今天很开心", "今天我很开心") == pytest.approx(5 / 6)
    assert rouge_l("", "你好") == 0.0
    texts = ["我们 去 公园", "我们 去 学校"]
    assert distinct(texts, 1) == pytest.approx(4 / 6)
    assert distinct(texts, 2) == pytest.approx(3 / 4)
    assert Distinct().compute(predictions=["好 好 好"], references=["x"]) == {"distinct_1": pytest.approx(1 / 3),
                                                                             "distinct_2": pytest.approx(1 / 2)}


def test_bertscore_with_a_local_tiny_bert(tiny_bert):
    metric = BertScore(str(tiny_bert), num_layers=2)
    same = metric.compute(predictions=ANSWERS[:3], references=ANSWERS[:3])
    other = metric.compute(predictions=UNRELATED[:3], references=ANSWERS[:3])
    assert same["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    assert 0 < other["bertscore_f1"] < same["bertscore_f1"]
    # a folder without num_layers uses the last layer
    assert BertScore(str(tiny_bert)).compute(predictions=ANSWERS[:2], references=ANSWERS[:2])["bertscore_f1"] > 0.999


def test_bertscore_model_that_cannot_load_fails_clearly(tmp_path):
    with pytest.raises(CbtLlmError, match="--bertscore_model"):
        BertScore(str(tmp_path / "missing-model")).compute(predictions=["你好"], references=["你好"])


def test_bertscore_scores_empty_answers_0_and_counts_them(tiny_bert):
    # bert-score strips a blank text to "" and then calls a tokenizer method transformers 5 removed
    metric = BertScore(str(tiny_bert), num_layers=2)
    result = metric.compute(predictions=["", "  \n", ANSWERS[2]], references=ANSWERS[:3])
    assert result["bertscore_f1"] == pytest.approx(1 / 3, abs=1e-4)  # two empty answers 0, one identical 1
    assert result["empty_predictions"] == 2 and result["empty_references"] == 0
    assert result["num_layers"] == 2 and "_L2_" in result["hash"] and result["model"] == str(tiny_bert)


def test_bertscore_layer_is_bert_scores_for_a_local_copy_of_a_known_model(tmp_path, tiny_bert):
    from transformers import BertConfig

    from cbt_llm.evaluation.metrics.bertscore import bertscore_layer

    # a saved bert-base-chinese keeps no Hub name: its config's type and shape say what it is
    copy = tmp_path / "my-chinese-bert"
    BertConfig(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072).save_pretrained(copy)
    assert bertscore_layer(str(copy)) == 8
    assert bertscore_layer("bert-base-chinese") == 8  # bert-score's table, no download
    assert bertscore_layer(str(tiny_bert)) == 2  # an unknown model: its last layer
    assert bertscore_layer(str(copy), num_layers=5) == 5
    other = tmp_path / "other-bert"
    BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12).save_pretrained(other)
    assert bertscore_layer(str(other)) == 12


def test_bertscore_without_bert_score_names_the_eval_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bert_score", None)  # as on a plain install without the eval extra
    with pytest.raises(CbtLlmError, match=r"cbt-llm\[eval\].*--no_bertscore"):
        BertScore(str(tmp_path / "any-model")).compute(predictions=["你好"], references=["你好"])
