"""The layered guard: rules + the shipped classifier, conversation context, odd input, the eval CLI, import cost."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety import LEVELS, assess_conversation, assess_risk, evaluate, load_classifier
from cbt_llm.safety.classifier import clauses, prepared, window_features

EVAL = Path(__file__).parent / "data" / "safety_eval.jsonl"
WRITTEN_WORK = Path(__file__).parent / "data" / "safety_written_work.jsonl"
LOOKALIKES_ZH = Path(__file__).parent / "data" / "safety_lookalikes_zh.jsonl"


# ------------------------------------------------------------------------------------------ classifier
def test_the_shipped_classifier_loads_once_and_scores_in_range():
    model = load_classifier()
    assert load_classifier() is model
    assert set(model.weights) == {"crisis", "risk"} and set(model.thresholds["crisis"]) == {"zh", "en"}
    scores = model.scores("我想死")
    assert all(0.0 <= p <= 1.0 for p in scores.values())
    assert model.card["trained_on"] and "PsySUICIDE" in model.card["sources"]


@pytest.mark.parametrize("text", ["药我已经准备好了", "方法我已经想好了"])
def test_the_classifier_raises_what_the_rules_miss(text):
    assert assess_risk(text, classifier=False).level == "none"
    risk = assess_risk(text)
    assert risk.level == "crisis" and risk.reasons[-1].startswith("classifier: crisis")


@pytest.mark.parametrize("text", ["我没有想死", "我从来没想过自杀，只是压力大", "I'm not suicidal, just tired",
                                  "我朋友说她想自杀", "My friend said \"I want to kill myself\" and I froze"])
def test_the_classifier_does_not_overrule_a_denial_or_someone_else(text):
    assert assess_risk(text).level == "concern"


SUPPORTIVE_REPLIES = [
    "hugs op. i know that feeling of wanting it all to stop. i was where you are two years ago and i'm still here. "
    "please reach out to someone tonight",
    "i've been where you are. at 19 i didn't think i'd make it to 20. i'm 30 now. it gets better, i promise",
    "you matter. you don't have to believe that right now. please call someone you trust or a crisis line tonight",
    "sending you hugs. when i wanted to die last year, telling my sister saved me. stay safe",
    "OP, I read your post twice. I felt exactly this way when my dad died and I wanted to end it. Please don't give up",
]


@pytest.mark.parametrize("text", SUPPORTIVE_REPLIES)
def test_a_supportive_reply_is_not_raised_to_crisis_by_the_classifier(text):
    # the rules see a reply to someone else (a set-aside kind): no layer raises it to crisis
    risk = assess_risk(text)
    assert risk.level != "crisis" and any(n.startswith("reply(en.reply)") for n in risk.notes), risk
    assert any(h.kind == "reply" for h in risk.hits)


@pytest.mark.parametrize("text", ["hugs op. honestly me too, i have the pills ready and i'm taking them tonight",
                                  "I can't hang on anymore, I want to die"])
def test_a_reply_that_tells_a_crisis_of_ones_own_is_still_crisis(text):
    assert assess_risk(text).level == "crisis"


def test_a_rules_crisis_is_final_and_the_classifier_can_be_switched_off():
    risk = assess_risk("我不想活了")
    assert risk.level == "crisis" and not any(r.startswith("classifier") for r in risk.reasons)
    assert assess_risk("hello there", classifier=False).reasons == ()


def test_a_bad_classifier_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"model\.json: invalid JSON at line 1"):
        load_classifier(bad)
    data = json.loads((Path(__file__).parents[1] / "cbt_llm" / "safety" / "classifier.json").read_text("utf-8"))
    version, data["feature_version"] = data["feature_version"], 0
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CbtLlmError, match="feature_version 0"):
        load_classifier(bad)
    data["feature_version"] = version
    del data["heads"]
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CbtLlmError, match="not a cbt-llm risk classifier"):
        load_classifier(bad)


def test_long_text_is_read_clause_by_clause_with_neighbours():
    assert clauses(prepared("今天好冷，我想死了。明天见!")) == ["今天好冷", "我想死了", "明天见"]
    a, b, c, d = (list(range(k * 10, k * 10 + 8)) for k in range(4))
    # the whole (as long as those trained on), each clause with its neighbours, then each clause alone
    assert window_features([a, b, c, d]) == [a + b + c + d, a + b, a + b + c, b + c + d, c + d, a, b, c, d]
    long = [list(range(k * 1000, k * 1000 + 400)) for k in range(4)]  # past the length trained on: not read whole
    assert window_features(long)[0] == long[0] + long[1]
    # a short message is one window, and its clauses; a clause of a character or two is not scored alone
    assert window_features([a, b, [99]]) == [a + b + [99], a, b]
    assert window_features([a]) == [a] and window_features([]) == []
    model = load_classifier()
    crisis = "我真的不想活了，药已经准备好了"
    paragraph = "今天和朋友去爬山了，风景很好，心情也不错。" * 20
    assert model.scores(paragraph + crisis + paragraph)["crisis"] == pytest.approx(model.scores(crisis)["crisis"], abs=0.2)


# ---------------------------------------------------------------------------------------- odd input
def test_a_100000_character_message_gets_a_verdict():
    filler = "今天天气不错，我们去公园散步了。"
    text = (filler * 7000)[:50_000] + "我不想活了" + (filler * 7000)[:49_995]
    assert len(text) == 100_000
    risk = assess_risk(text)
    assert risk.level == "crisis" and any("不想活" in r for r in risk.reasons)
    assert assess_risk("a" * 100_000).level in LEVELS
    assert assess_risk(("hello there, how are you? " * 4000)[:100_000]).level != "crisis"


def test_bytes_that_are_not_text_get_a_verdict_with_a_note():
    risk = assess_risk(b"\xff\xfe\x00" + "我想死".encode())
    assert risk.level == "crisis" and risk.notes[-1].startswith("not_text: 2 bytes")
    noise = assess_risk(bytes(range(256)) * 10)
    assert noise.level in LEVELS and any(n.startswith("not_text: 1280 bytes") for n in noise.notes)
    assert assess_risk("abc\ud800 I want to die").level == "crisis"
    with pytest.raises(CbtLlmError, match="expects text"):
        assess_risk(42)


# -------------------------------------------------------------------------------------------- context
def _history(*user_turns):
    out = []
    for turn in user_turns:
        out += [{"role": "user", "content": turn}, {"role": "assistant", "content": "..."}]
    return out


@pytest.mark.parametrize("turns", [
    ("work has been rough lately", "I have a plan", "tonight is the night"),
    ("最近很累", "地点也选好了", "就等今晚"),
])
def test_a_plan_told_across_three_messages_is_crisis(turns):
    *earlier, newest = turns
    assert all(assess_risk(t).level != "crisis" for t in turns)
    risk = assess_conversation(_history(*earlier), newest)
    assert risk.level == "crisis" and any(r.startswith("context: ") for r in risk.reasons)
    # only the last few user turns count: the same plan further back is not read into a new message
    older = _history(*earlier, "thanks", "ok", "let's talk about something else")
    assert assess_conversation(older, newest).level != "crisis"


def test_a_crisis_turn_alone_is_not_repeated_but_keeps_concern():
    risk = assess_conversation(_history("我不想活了"), "嗯，我刚刚打了电话")
    assert risk.level == "concern" and "previous_turn: crisis" in risk.reasons


# ------------------------------------------------------------------------------------------ evaluation
def test_safety_eval_figures_per_layer():
    rules, combined = evaluate(EVAL, "rules"), evaluate(EVAL, "combined")
    assert combined.crisis_recall >= rules.crisis_recall
    groups = {row[0]: row for row in combined.groups()}
    assert {"zh", "en", "safety_eval.jsonl"} <= set(groups)


def test_written_work_set_figures_hold():
    # messages written in the style of real ones, not used to train the classifier. Measured with the shipped
    # v3 model: zh crisis -> crisis 127/169 (v2: 112), none -> crisis 6/132 (v2: 0; long distress narratives the
    # whole-message window reads as crisis); en crisis -> concern or crisis 44/50 (v3 before its English rules: 30,
    # v2: 42), none -> crisis 1/45
    results = evaluate(WRITTEN_WORK, "combined").results

    def count(language, gold, levels):
        return sum(m.language == language and m.gold == gold and level in levels for m, level in results)

    assert count("zh", "crisis", {"crisis"}) >= 120 and count("zh", "none", {"crisis"}) <= 6
    assert count("en", "crisis", {"concern", "crisis"}) >= 43 and count("en", "none", {"crisis"}) <= 2


def test_zh_look_alikes_stay_below_crisis():
    # 300 everyday zh messages with the words of the acts, plans and wishes rules (划水, 烧烤的炭, 踩点拍星空,
    # 一睡不起 on a holiday, 活腻了 said to a cat). Measured: rules 0 crisis (2 before: 烧炭盆取暖, 囤了点常用药),
    # rules + classifier 1 (the classifier on 只想在被窝里一直睡下去)
    rules = evaluate(LOOKALIKES_ZH, "rules").results
    combined = evaluate(LOOKALIKES_ZH, "combined").results
    assert len(rules) == 300
    assert sum(level == "crisis" for _, level in rules) == 0
    assert sum(level == "crisis" for _, level in combined) <= 2


@pytest.mark.slow
def test_eval_cli_reports_every_layer_alone_and_combined():
    out = subprocess.run([sys.executable, "-m", "cbt_llm.safety", "--eval", str(EVAL)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for heading in ("## rules", "## classifier", "## combined (rules + classifier)"):
        assert heading in out.stdout
    head = "| group | crisis -> crisis | crisis -> concern or crisis | none -> crisis | none -> concern or crisis |"
    assert out.stdout.count(head) == 3


def test_eval_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"text": "hi", "label": "none"}\n{"text": "x", "label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"eval\.jsonl:2: label 'maybe'"):
        evaluate(bad)


# -------------------------------------------------------------------------------------------- import
@pytest.mark.slow
def test_the_safety_package_imports_nothing_heavy():
    code = ("import sys, cbt_llm; before = set(sys.modules); import cbt_llm.safety, cbt_llm.chat; "
            "cbt_llm.safety.assess_risk('我想死'); cbt_llm.safety.assess_conversation([], 'hello'); "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m.split('.')[0] in ('torch', 'datasets', 'pandas', 'numpy', 'transformers', "
            "'openai', 'pyarrow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"

