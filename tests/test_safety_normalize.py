"""Normalisation before every layer (OpenCC, NFKC, split words, slang, homophones, pinyin) and the typed signals."""

import json

import pytest

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety import (LAYERS, SET_ASIDE_KINDS, Hit, Risk, RiskLevel, assess_lexicon, assess_risk,
                            detect_language, evaluate, normalize, register_layer, run_layers)
from cbt_llm.safety.normalize import pinyin_runs, pinyin_syllables, split_pinyin


@pytest.mark.parametrize("text, expected", [
    ("我想自殺，頭好痛", "我想自杀,头好痛"),  # OpenCC t2s, then NFKC turned the full-width comma
    ("ＩＷＡＮＴ ｔｏ ｄｉｅ", "iwant to die"),  # NFKC full-width -> ASCII, lower case
    ("自 杀", "自杀"), ("自-杀", "自杀"), ("自*杀", "自杀"), ("我 想 死", "我想死"), ("想 自杀", "想自杀"),
    ("自\u200b杀", "自杀"),  # a zero-width space
    ("好累 想躺平了", "好累 想躺平了"),  # a space between two longer runs stands for a comma: kept
    ("I'm fine", "im fine"),
])
def test_normalisation(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("好想紫砂", "好想自杀"), ("自鲨了算了", "自杀了算了"), ("他又去割碗了", "他又去割腕了"),
    ("买了个紫砂壶", "买了个紫砂壶"),  # jieba reads 紫砂壶 as one word: kept
    ("一个完整的女人", "一个完整的女人"),  # 个完 sounds like 割腕 but crosses two words: kept
    ("这个字啥意思", "这个字啥意思"),
])
def test_homophones_read_as_the_word_only_where_they_stand_alone(text, expected):
    assert normalize(text) == expected


def test_curated_slang_is_read_as_plain_words_and_only_as_whole_words():
    assert normalize("unalive myself tonight") == "kill myself tonight"
    assert normalize("thinking about sewerslide") == "thinking about suicide"
    assert normalize("人生重开吧") == "自杀吧"
    assert assess_lexicon("i wnat to die").level == "crisis"
    assert normalize("ran 5 kms wnat2") == "ran 5 kms wnat2"  # whole words only


def test_the_pinyin_channel():
    assert split_pinyin("zisha") == ("zi", "sha") and split_pinyin("woxiangsile") == ("wo", "xiang", "si", "le")
    assert split_pinyin("the") is None and split_pinyin("a" * 100) is None
    assert pinyin_syllables("我想死了") == ["wo", "xiang", "si", "le"] == pinyin_syllables("wo xiang si le")
    assert pinyin_syllables("紫砂") == pinyin_syllables("zisha") == ["zi", "sha"]
    assert list(pinyin_runs("ni zisha")) == [(0, 8, "ni zi sha")] and list(pinyin_runs("hi zisha")) == [(3, 8, "zi sha")]
    assert list(pinyin_runs("the end")) == []
    assert detect_language("wo xiang si le") == "zh" and detect_language("i want to die") == "en"


@pytest.mark.parametrize("text", ["zisha", "wo xiang si le", "woxiangsile", "wo zhen de bu xiang huo le", "好想紫砂"])
def test_pinyin_and_homophones_reach_the_rules(text):
    assert assess_lexicon(text).level == "crisis", assess_lexicon(text)


@pytest.mark.parametrize("text", ["wo bu xiang si", "ni hao", "xiang si ni le", "买了个紫砂壶"])
def test_pinyin_look_alikes_stay_below_crisis(text):
    assert assess_lexicon(text).level != "crisis"


# ----------------------------------------------------------------------------------------- typed signals
def test_levels_are_an_enum_equal_to_their_names():
    risk = assess_risk("我不想活了")
    assert risk.level is RiskLevel.CRISIS and risk.level == "crisis" and f"{risk.level}" == "crisis"
    assert {"crisis": 1}[risk.level] == 1 and json.dumps({"level": risk.level}) == '{"level": "crisis"}'
    assert RiskLevel.of(" Concern ") is RiskLevel.CONCERN and RiskLevel.NONE.rank < RiskLevel.CRISIS.rank
    with pytest.raises(CbtLlmError, match="unknown risk level"):
        RiskLevel.of("maybe")


@pytest.mark.parametrize("text, kind", [
    ("我朋友说她想自杀", "third_party"), ("我从来没想过自杀", "negated"), ("以前我想过自杀，现在好多了", "past"), ("小时候自残过", "past"),
    ("在我的世界里自杀了好几次", "game"), ("《自杀俱乐部》这本书", "title"), ("一部关于自杀的纪录片", "distance"),
])
def test_a_hit_set_aside_says_how_it_was_read(text, kind):
    risk = assess_risk(text)
    hits = [h for h in risk.hits if h.kind == kind]
    assert hits and all(h.layer == "rules" and h.rule.startswith("zh.") for h in hits), risk.hits
    start, end = hits[0].span
    assert normalize(text)[start:end] == hits[0].text
    assert kind in SET_ASIDE_KINDS and risk.set_aside and risk.level != "crisis"


def test_the_writer_introducing_themselves_is_the_writer():
    assert assess_risk("13岁女生，每天都想死").level == "crisis"
    assert not assess_risk("13岁女生，每天都想死").set_aside
    assert assess_risk("又有明星自杀了").level != "crisis"  # a bare topic word after 又 is news, not the writer


def test_layers_are_registered_by_name_and_run_in_order():
    assert list(LAYERS)[:3] == ["rules", "classifier", "model_guard"]
    assert run_layers("药我已经准备好了", ("rules",)).level == "none"
    assert run_layers("药我已经准备好了", ("rules", "classifier")).level == "crisis"
    seen = []

    def keyword_layer(run, risk):
        seen.append(run.text)
        return risk if "beacon" not in run.text else Risk(RiskLevel.CONCERN, ("site: beacon",), risk.language,
                                                          risk.notes, (*risk.hits, Hit("site", "beacon", "concern")))
    register_layer("site", keyword_layer)
    try:
        assert assess_risk("the beacon word").level == "concern" and seen == ["the beacon word"]
    finally:
        del LAYERS["site"]
    with pytest.raises(CbtLlmError, match="unknown guard layer"):
        run_layers("x", ("nope",))


def test_eval_reports_each_layer_and_each_severity(tmp_path):
    rows = [{"text": "我不想活了", "label": "crisis", "lang": "zh", "orig_label": "主动自杀意图"},
            {"text": "活着没意思，睡着了别醒就好", "label": "crisis", "lang": "zh", "orig_label": "被动自杀意图"},
            {"text": "今天吃了火锅", "label": "benign", "lang": "zh", "orig_label": "与自杀/自伤/攻击行为无关"},
            {"text": "I want to die", "label": "crisis", "lang": "en", "orig_label": "r/suicidewatch"}]
    path = tmp_path / "sev.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    groups = {row[0]: row for row in evaluate(path, "combined").groups()}
    assert groups["zh active"][1] == "1.000 (1/1)" and groups["zh none"][3] == "0.000 (0/1)"
    assert {"zh passive", "en crisis", "zh", "en"} <= set(groups)
    assert evaluate(path, "rules").total == evaluate(path, "classifier").total == 4
