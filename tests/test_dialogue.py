"""Multi-turn CBT dialogues, fast tier: the checks, the prompts, the sample, the corpus readers, the dataset config."""

import json
from pathlib import Path

import pytest

from cbt_llm.data.dialogue_prompts import END_MARK, TECHNIQUES, get_dialogue_prompts, plan_text
from cbt_llm.data.dialogues import dialogue_sample_path, read_cpsycound, read_dialogues, read_smilechat
from cbt_llm.data.prompts import COGNITIVE_DISTORTIONS, STEP_KEYS
from cbt_llm.errors import CbtLlmError
from cbt_llm.generation.dialogue import DialogueConfig, DialogueSummary, Rejected, parse_plan, split_speakers
from cbt_llm.generation.dialogue_checks import check_dialogue
from cbt_llm.steps import language_share

SHARED_DIALOGUES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dialogues"
SAMPLE_DIALOGUES = 12


def turns(*texts):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


GOOD = turns(
    "最近工作压力很大，晚上睡不好，觉得自己什么都做不好。",
    "听起来这段时间你真的很辛苦。能说说最近一次特别难受是什么时候吗？",
    "每次交报告都怕出错，一出错就觉得领导对我很失望。",
    "你好像在告诉自己“只要出一点错，我就是失败的”，这有点像非黑即白的想法。有没有证据说明领导真的对你失望呢？",
    "好像也没有……上次领导还夸过我。",
    "你可以试着每天睡前把担心的想法写下来，旁边写上支持和反对它的证据。愿意这周试一试吗？",
    "嗯，我可以试试。",
    "改变需要一点时间，你已经迈出了第一步，我相信你会慢慢好起来。如果压力一直很大，也可以寻求专业咨询师的支持。",
)
CRISIS = "说实话，我已经写好遗书了，今晚就想从楼上跳下去。"


@pytest.fixture
def shared_dialogues() -> Path:
    if not SHARED_DIALOGUES.is_dir():
        pytest.skip("../shared/data/dialogues is not beside this checkout")
    return SHARED_DIALOGUES


def test_a_good_dialogue_passes_with_its_figures():
    check = check_dialogue(GOOD)
    assert check.ok, check.reason
    assert check.rounds == 4 and check.steps == list(STEP_KEYS) and check.crisis_turn is None
    assert check.question_share == 0.75


@pytest.mark.parametrize("messages, reason", [
    (GOOD[1:], "client does not speak first"),
    (GOOD[:-1], "counsellor does not speak last"),
    (GOOD[:3] + [GOOD[3], GOOD[3]] + GOOD[4:], "roles do not alternate (turn 5)"),
    (GOOD[:1] + [{"role": "assistant", "content": GOOD[1]["content"].replace("？", "。")}] + GOOD[2:],
     "counsellor does not ask in its first turn"),
    (GOOD[:1] + [{"role": "assistant", "content": "你可以试着每天写日记，也可以多去运动，建议你先做一个计划。能做到吗？"}] + GOOD[2:],
     "counsellor lectures in turn 1 (advice before asking)"),
    (GOOD[:4], "2 rounds, outside 3-12"),
    (GOOD[:5] + [{"role": "assistant", "content": "嗯，我明白了。" * 40}] + GOOD[6:], "counsellor turn 6 too long (280 > 260 chars)"),
    (GOOD[:7] + [{"role": "assistant", "content": "作为一个AI，我建议你保持积极。"}], "AI meta-talk in turn 8"),
    (GOOD[:7] + [{"role": "assistant", "content": "好的。"}], "steps not covered: encouragement"),
])
def test_each_broken_rule_is_the_reason(messages, reason):
    check = check_dialogue(messages)
    assert not check.ok and reason in check.reason, check.reason


def test_the_wrong_language_is_a_reason():
    english = turns("I feel stressed.", "That sounds hard. What happened?", "Work.", "What do you tell yourself?")
    assert "wrong language (only 0% zh)" in check_dialogue(english, "zh").reason
    assert "wrong language" not in check_dialogue(english, "en").reason


def test_a_crisis_turn_needs_the_crisis_protocol():
    ignored = GOOD[:2] + turns(CRISIS, GOOD[3]["content"])
    check = check_dialogue(ignored)
    assert check.crisis_turn == 3
    assert "crisis in client turn 3 not answered with the crisis protocol (no crisis resources, therapy as usual)" \
        in check.reason
    answered = GOOD[:2] + turns(CRISIS, "我很担心你现在的安全，你现在安全吗？请马上联系身边的人，或拨打心理援助热线 12356，"
                                        "紧急情况请拨打 120 或 110。" + "我会一直在这里。" * 30)
    check = check_dialogue(answered)
    assert check.ok, check.reason  # ends at the protocol: short of rounds and steps, and its length not bounded
    as_usual = GOOD[:2] + turns(CRISIS, "请拨打心理援助热线 12356。另外我们可以继续做行为实验。")
    assert "(therapy as usual)" in check_dialogue(as_usual).reason


def test_the_bundled_sample_passes_every_check_and_is_mostly_chinese():
    dialogues = read_dialogues([dialogue_sample_path()])
    assert len(dialogues.records) == SAMPLE_DIALOGUES and not dialogues.dropped
    for record in dialogues.records:
        check = check_dialogue(record["messages"], record["language"])
        assert check.ok, (record["id"], check.reason)
        assert record["source"] == "sample" and record["plan"]["automatic_thought"]
        text = "".join(m["content"] for m in record["messages"])
        assert language_share(text, record["language"]) > 0.9
    assert sum(r["language"] == "zh" for r in dialogues.records) >= 10
    crisis = [check_dialogue(r["messages"]).crisis_turn for r in dialogues.records if r["language"] == "zh"]
    assert any(turn is not None for turn in crisis)  # one shows the crisis protocol


@pytest.mark.parametrize("language", ["zh", "en"])
def test_prompts_are_versioned_and_carry_the_intake_and_the_crisis_block(language):
    prompts = get_dialogue_prompts(language)
    assert prompts.version == f"dialogue-{language}-v1"
    intake = {"question": "QUESTION-X", "description": "DESC-Y"}
    for role in ("plan", "client", "counsellor", "rewrite"):
        text = prompts.render(role, **intake, answer="ANSWER-Z", plan_text="PLAN-W", round=2, max_rounds=5)
        assert "QUESTION-X" in text and "DESC-Y" in text and language_share(text, language) > 0.5
    counsellor = prompts.render("counsellor", **intake, plan_text="PLAN-W", round=5, max_rounds=5, closing=True,
                                crisis=True, resources="- 12356")
    assert "PLAN-W" in counsellor and END_MARK in counsellor and "- 12356" in counsellor
    assert "- 12356" not in prompts.render("counsellor", **intake, plan_text="", round=1, max_rounds=5)
    assert all(key in prompts.render("plan", **intake) for key in [*COGNITIVE_DISTORTIONS, *TECHNIQUES])
    assert "ANSWER-Z" in prompts.render("rewrite", **intake, answer="ANSWER-Z")
    with pytest.raises(CbtLlmError, match="unknown language"):
        get_dialogue_prompts("fr")


def test_plans_keep_only_known_labels_and_need_a_thought():
    plan = parse_plan({"automatic_thought": " 我不行 ", "distortions": ["labeling", "made_up"],
                       "techniques": ["thought_record", 3], "goal": "目标"})
    assert plan == {"automatic_thought": "我不行", "distortions": ["labeling"], "techniques": ["thought_record"],
                    "goal": "目标"}
    assert "贴标签" in plan_text(plan) and "Labelling" in plan_text(plan, "en")
    for bad in (None, {"distortions": []}, {"automatic_thought": ""}):
        with pytest.raises(Rejected, match="plan: "):
            parse_plan(bad)


def test_a_reply_that_speaks_for_the_other_role_becomes_several_turns():
    assert split_speakers("我还好。\n心理咨询师：那你觉得呢？", "user") == [
        {"role": "user", "content": "我还好。"}, {"role": "assistant", "content": "那你觉得呢？"}]
    assert split_speakers("Client: hi\nCounsellor: hello", "assistant") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert split_speakers("一句话：没有说话人。", "assistant") == [{"role": "assistant", "content": "一句话：没有说话人。"}]


def test_the_config_refuses_rounds_the_checks_would_reject(tmp_path):
    with pytest.raises(CbtLlmError, match="--max_rounds must be between 3 and 12"):
        DialogueConfig(input="q.jsonl", output_file="out.jsonl", model="m", max_rounds=2)
    with pytest.raises(CbtLlmError, match="must differ"):
        DialogueConfig(input=tmp_path / "a.jsonl", output_file=tmp_path / "a.jsonl", model="m")
    assert DialogueConfig(input="q", output_file="o", model="m", seed=3).params() == {"temperature": 0.8, "seed": 3}


def test_the_summary_reports_counts_reasons_and_figures(tmp_path):
    summary = DialogueSummary(tmp_path / "o.jsonl", total=3)
    summary.counts.update(ok=2, rejected=1)
    summary.reasons["roles do not alternate (turn N)"] += 1
    summary.figures = {"rounds": 4.5, "question_share": 0.7, "all_steps": 1.0, "crisis": 1}
    text = summary.format()
    assert "ok 2, rejected 1, failed 0" in text and "roles do not alternate (turn N) x1" in text
    assert "4.5 rounds, counsellor asks in 70% of turns, all five steps in 100%, 1 answered a crisis" in text
    assert summary.failure() is None


def test_smilechat_and_cpsycound_release_files_are_read(shared_dialogues):
    smile = sorted((shared_dialogues / "smile").glob("*.json"))
    record, reason = read_smilechat(smile[0])
    assert reason is None and record["source"] == "smilechat" and record["id"] == f"smilechat-{smile[0].stem}"
    assert record["question"] == json.loads(smile[0].read_text(encoding="utf-8"))[0]["content"]
    record, reason = read_cpsycound(sorted((shared_dialogues / "cpsycound").glob("*.txt"))[0])
    assert reason is None and record["source"] == "cpsycound"
    both = read_dialogues([shared_dialogues / "smile", shared_dialogues / "cpsycound"])  # folders; LICENSE skipped
    assert len(both.records) == 40 and not both.dropped
    for record in both.records:
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:]))


def test_bad_dialogue_files_name_the_file_and_place(tmp_path):
    smile = tmp_path / "s.json"
    smile.write_text(json.dumps([{"role": "client", "content": "hi"}, {"role": "bot", "content": "x"}]), encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"s\.json: \[index 1\] field 'role'"):
        read_smilechat(smile)
    text = tmp_path / "c.txt"
    text.write_text("前言\n来访者：你好\n", encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"c\.txt:1: expected a turn starting with 来访者"):
        read_cpsycound(text)
    records = tmp_path / "d.jsonl"
    records.write_text(json.dumps({"id": "1", "question": "q", "messages": [{"role": "bot", "content": "x"}]}) + "\n",
                       encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"d\.jsonl:1: field 'messages': turn 0 must be"):
        read_dialogues([records])
    (tmp_path / "x.csv").write_text("a", encoding="utf-8")
    with pytest.raises(CbtLlmError, match="unknown dialogue file type '.csv'"):
        read_dialogues([tmp_path / "x.csv"])


def test_generated_records_are_read_with_rejected_ones_dropped(tmp_path):
    lines = [{"id": "a", "question": "q", "messages": GOOD, "plan": None, "status": "ok",
              "source": {"mode": "simulate", "model": "teacher"}},
             {"id": "b", "question": "q", "messages": GOOD[:2], "status": "rejected", "reason": "x"}]
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    result = read_dialogues([path])
    assert [r["id"] for r in result.records] == ["a"] and result.dropped == {"status rejected": 1}
    assert result.records[0]["source"] == "simulate:teacher"
    assert result.records[0]["plan"] == {"automatic_thought": "", "distortions": [], "techniques": [], "goal": ""}


def test_load_dataset_dialogue_config_reads_the_sample_and_mixed_corpora(shared_dialogues):
    from datasets import load_dataset

    rows = [row for split in load_dataset("cbt_qa", "dialogue").values() for row in split]
    assert len(rows) == SAMPLE_DIALOGUES
    for row in rows:
        assert row["messages"][0]["role"] == "system" and row["messages"][1]["role"] == "user"
        assert row["messages"][-1]["role"] == "assistant" and row["source"] == "sample"
    zh = next(row for row in rows if row["id"] == "dialogue-001")
    assert zh["messages"][0]["content"].startswith("你是一名经验丰富的心理咨询师") and zh["plan"]["distortions"]
    mixed = load_dataset("cbt_qa", "dialogue", split_ratios=(1.0, 0.0, 0.0), data_files=[
        str(dialogue_sample_path()), str(shared_dialogues / "smile" / "*.json"), str(shared_dialogues / "cpsycound" / "*.txt")])
    assert sorted(set(mixed["train"]["source"])) == ["cpsycound", "sample", "smilechat"]
    assert mixed["train"].num_rows == SAMPLE_DIALOGUES + 40
    assert len(load_dataset("cbt_qa", split="train")) > 0  # the default config still reads the single-turn sample


def test_build_writes_the_dialogue_config_and_its_card_section(tmp_path, shared_dialogues):
    from datasets import load_dataset

    from cbt_llm.data.build import BuildConfig, build_dataset

    plain = build_dataset(BuildConfig(output_dir=str(tmp_path / "plain")))
    assert "dialogue" not in plain.num_rows and not (tmp_path / "plain" / "dialogue").exists()
    out = tmp_path / "built"
    result = build_dataset(BuildConfig(output_dir=str(out), dialogues=["sample", str(shared_dialogues / "smile")]))
    assert sum(result.num_rows["dialogue"].values()) == SAMPLE_DIALOGUES + 20
    loaded = load_dataset(str(out), "dialogue")  # plain datasets, no cbt_llm builder
    assert sum(split.num_rows for split in loaded.values()) == SAMPLE_DIALOGUES + 20
    assert loaded["train"][0]["messages"][0]["role"] == "system"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Dialogues (`dialogue` config)" in card and "config_name: dialogue" in card
    assert "| `smilechat` | 20 |" in card and "| `sample` | 12 |" in card
    passed = sum(check_dialogue(r["messages"], r["language"]).ok
                 for r in read_dialogues([dialogue_sample_path(), shared_dialogues / "smile"]).records)
    assert f"| passed every check | {passed} of {SAMPLE_DIALOGUES + 20} |" in card and passed >= SAMPLE_DIALOGUES
    rebuilt = build_dataset(BuildConfig(output_dir=str(out)))  # without --dialogues the old config goes
    assert "dialogue" not in rebuilt.num_rows and not list((out / "dialogue").glob("*.parquet"))
    with pytest.raises(CbtLlmError, match="no dialogue to build from"):
        empty = tmp_path / "empty"
        empty.mkdir()
        build_dataset(BuildConfig(output_dir=str(tmp_path / "x"), dialogues=[str(empty)]))


def test_an_output_made_with_other_settings_is_refused():
    from cbt_llm.generation.dialogue import check_same_settings, dialogue_record, Intake

    made = DialogueConfig(input="q", output_file="out.jsonl", model="teacher")
    record = dialogue_record(Intake("1", "q"), made, get_dialogue_prompts("zh"), "ok")
    check_same_settings(made, get_dialogue_prompts("zh"))({"1": record})  # the same settings: fine
    other = DialogueConfig(input="q", output_file="out.jsonl", model="teacher", mode="rewrite", language="en")
    with pytest.raises(CbtLlmError, match=r"out\.jsonl: its dialogues were made with prompt_version 'dialogue-zh-v1' "
                                          r"\(this run: 'dialogue-en-v1'\), language 'zh' .*mode 'simulate'"):
        check_same_settings(other, get_dialogue_prompts("en"))({"1": record})
    failed = {**record, "status": "failed"}  # failed lines are asked again with this run's settings
    check_same_settings(other, get_dialogue_prompts("en"))({"1": failed})
