"""The quality check: the five CBT steps in fluent text, structured answers, bounds, refusals, near duplicates."""

import json

import pytest
from chat_server import EN_STEPS
from helpers import SAMPLE_SIZE

from cbt_llm.data.prompts import STEP_KEYS
from cbt_llm.data.splits import sample_path
from cbt_llm.evaluation.structure import cbt_structure_score
from cbt_llm.generation.dedup import near_duplicates
from cbt_llm.generation.quality import check_answer
from cbt_llm.steps import detect_steps, split_sentences, step_scores, supported_steps

SAMPLE = [json.loads(line) for line in sample_path().read_text(encoding="utf-8").splitlines() if line.strip()]
EN_ANSWER = "\n\n".join(EN_STEPS[key][0] for key in STEP_KEYS)


def test_the_sample_has_its_handwritten_answers():
    assert len(SAMPLE) == SAMPLE_SIZE


@pytest.mark.parametrize("record", SAMPLE, ids=[r["id"] for r in SAMPLE])
def test_every_handwritten_answer_passes(record):
    result = check_answer(record["response"], "zh")
    assert result.ok, result.reasons
    # also as one paragraph: the detector does not depend on the paragraph breaks
    assert check_answer(record["response"].replace("\n", ""), "zh").ok
    assert cbt_structure_score(record["response"]) == 2


def test_each_step_paragraph_is_recognised_as_its_step():
    for record in SAMPLE:
        for key in STEP_KEYS:
            supported = {s for sentence in split_sentences(record["steps"][key]) for s in supported_steps(step_scores(sentence))}
            assert key in supported, (record["id"], key)


@pytest.mark.parametrize("order", [(4, 3, 2, 1, 0), (3, 4, 0, 1, 2), (2, 0, 1, 3, 4), (1, 0, 2, 3, 4), (0, 1, 3, 2, 4)])
def test_steps_out_of_order_fail(order):
    failed = 0
    for record in SAMPLE:
        text = "\n\n".join(record["steps"][STEP_KEYS[i]] for i in order)
        result = check_answer(text, "zh")
        failed += not result.ok
        if not result.ok:
            assert "out of order" in result.reason or "missing" in result.reason
    assert failed >= 0.95 * len(SAMPLE)


BAD_ZH = {
    "one-liner": "别想太多，早点睡觉就好了。",
    "refusal": "抱歉，我无法回答这个问题。作为一个AI语言模型，我不能提供心理咨询，请咨询专业人士。",
    "advice only": "你可以试试每天跑步三十分钟，建议早睡早起，练习冥想，每天写日记，安排好作息时间。" * 8,
    "validation only": "我很理解你的感受，这真的很不容易，你一定很辛苦、很难受，有这样的情绪很正常。" * 8,
    "out of order (handwritten)": (
        "你可以试着每天睡前写下三件小事，也可以练习腹式呼吸，每天安排半小时散步，让身体先放松下来。"
        "比如把大任务拆成小步骤，每完成一步就给自己打个勾。\n\n"
        "慢慢来，改变需要时间，相信你会一点一点好起来。如果情况持续，可以寻求心理咨询师的帮助。\n\n"
        "你心里可能有这样的想法：“我什么都做不好。”这是一种非黑即白的思维，也有以偏概全的成分。\n\n"
        "我很理解你现在的难受和委屈，这段时间你一定很辛苦，压力这么大，换作任何人都会觉得累。\n\n"
        "想一想：真的有证据说明你什么都做不好吗？有没有哪件事，哪怕很小，是你做得还不错的？"
        "如果是好朋友这样说自己，你会怎么回应他？"
    ),
}


@pytest.mark.parametrize("name", list(BAD_ZH))
def test_bad_chinese_answers_fail(name):
    result = check_answer(BAD_ZH[name], "zh")
    assert not result.ok
    expected = {"one-liner": "too short", "refusal": "refusal", "advice only": "missing steps",
                "validation only": "missing steps", "out of order (handwritten)": "out of order"}[name]
    assert expected in result.reason


def test_language_is_checked():
    assert check_answer(EN_ANSWER, "en").ok, check_answer(EN_ANSWER, "en").reasons
    wrong = check_answer(EN_ANSWER, "zh")
    assert not wrong.ok and "wrong language" in wrong.reason
    assert "wrong language" in check_answer(SAMPLE[0]["response"], "en").reason
    assert cbt_structure_score(EN_ANSWER, "en") == 2


def test_english_refusal_and_out_of_order_fail():
    refusal = "I'm sorry, but I can't help with that. As an AI, I am not able to give mental health advice."
    assert "refusal" in check_answer(refusal * 3, "en").reason
    reversed_answer = "\n\n".join(EN_STEPS[key][1] for key in reversed(STEP_KEYS))
    assert not check_answer(reversed_answer, "en").ok


def test_empty_and_truncated_answers_fail():
    assert check_answer("", "zh").reasons == ["empty answer"]
    cut = check_answer(SAMPLE[0]["response"], "zh", finish_reason="length")
    assert not cut.ok and "finish_reason=length" in cut.reason


def test_structured_answers_are_checked_field_by_field():
    steps = SAMPLE[3]["steps"]
    good = json.dumps({**steps, "response": SAMPLE[3]["response"]}, ensure_ascii=False)
    result = check_answer(f"```json\n{good}\n```", "zh", structured=True)
    assert result.ok, result.reasons
    assert result.steps == steps and result.response == SAMPLE[3]["response"]
    # without a response field the steps are joined
    joined = check_answer(json.dumps(steps, ensure_ascii=False), "zh", structured=True)
    assert joined.ok and joined.response.startswith(steps["validation"])
    missing = check_answer(json.dumps({**steps, "challenge": ""}, ensure_ascii=False), "zh", structured=True)
    assert not missing.ok and "step challenge empty" in missing.reason
    assert "not a JSON object" in check_answer(SAMPLE[3]["response"], "zh", structured=True).reason


def test_detect_steps_reports_positions_for_reuse():
    detection = detect_steps(SAMPLE[0]["response"])
    assert detection.in_order and detection.missing == []
    positions = [detection.positions[key] for key in STEP_KEYS]
    assert positions == sorted(positions)
    assert cbt_structure_score(BAD_ZH["validation only"]) in (0, 1)
    assert cbt_structure_score(BAD_ZH["one-liner"]) == 0


def test_near_duplicates_pairwise_and_minhash():
    texts = {r["id"]: r["response"] for r in SAMPLE[:20]}
    assert near_duplicates(texts) == []
    texts["copy"] = SAMPLE[5]["response"].replace("。", "！", 2)
    pairs = near_duplicates(texts)
    assert [(p.first, p.second) for p in pairs] == [(SAMPLE[5]["id"], "copy")] and pairs[0].similarity > 0.9
    # many texts: MinHash/LSH candidates, the planted pair is still found and nothing else
    many = {f"{r['id']}-{k}": r["steps"][k] + r["steps"][STEP_KEYS[(i + 1) % 5]] for r in SAMPLE
            for i, k in enumerate(STEP_KEYS)}
    many["planted"] = many["sample-010-strategy"] + "。"
    found = near_duplicates(many, exact_below=100)
    assert {(p.first, p.second) for p in found} == {("sample-010-strategy", "planted")}


def test_a_stuck_teacher_repeating_one_answer_is_reported_as_one_cluster():
    # 250 different answers (two steps of two different sample rows) and 250 copies of one answer
    texts = {f"a{i}": SAMPLE[i % SAMPLE_SIZE]["steps"][STEP_KEYS[i % 5]] + SAMPLE[(i * 7 + 3) % SAMPLE_SIZE]["steps"][STEP_KEYS[(i // 5) % 5]]
             for i in range(250)}
    assert len(set(texts.values())) == 250
    texts.update({f"stuck{i}": SAMPLE[0]["response"] for i in range(250)})
    pairs = near_duplicates(texts)  # 500 > exact_below: MinHash/LSH, one bucket of 250 per band
    assert {f"stuck{i}" for i in range(250)} <= {i for p in pairs for i in (p.first, p.second)}
    from cbt_llm.generation.dedup import duplicate_groups

    groups = duplicate_groups(pairs)
    assert sorted(groups[0]) == sorted(f"stuck{i}" for i in range(250))
    assert len(pairs) < 1000  # clusters, not the 31,125 pairs of 250 copies
