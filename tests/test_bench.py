"""cbt-llm bench, fast tier: answer extraction, label parsing, weighted F1, judge verdicts, loaders, bad input."""

from __future__ import annotations

import json
import zipfile

import pytest
from bench_helpers import bench_data, copy_task

from cbt_llm.bench import BenchConfig
from cbt_llm.bench.contamination import contamination
from cbt_llm.bench.run import sample
from cbt_llm.bench.tasks import TASKS, Item, task_names
from cbt_llm.bench.tasks.cbt_bench import SUBTASKS, parse_labels, weighted_f1
from cbt_llm.bench.tasks.cpsycoune import parse_verdict
from cbt_llm.bench.tasks.cpsyexam import extract_choices
from cbt_llm.errors import CbtLlmError


@pytest.mark.parametrize("reply, expected", [
    ("答案：A C", "AC"), ("AC", "AC"), ("选B。", "B"), ("A、C、D", "ACD"), ("答案：Ａ", "A"),
    ("正确答案是ABD，因为A和B都对", "ABD"), ("B。因为乔姆斯基提出了语言获得装置", "B"), ("B 乔姆斯基", "B"),
    ("选项A为强化说，选项C为转换生成说。答案：C", "C"), ("正确选项是BD", "BD"), ("应选择AB。", "AB"),
    ("The answer is (C).", "C"), ("Answer: (A) and (C)", "AC"), ("A good question. The answer is B.", "B"),
    ("I am not sure.", ""), ("答案：F", ""), ("", ""),
])
def test_answer_letters_are_extracted_from_real_replies(reply, expected):
    assert extract_choices(reply) == expected


def test_letters_outside_the_options_are_ignored():
    assert extract_choices("答案：ABE", "ABCD") == "AB"


DISTORTIONS, CORE_MAJOR, CORE_FINE = (SUBTASKS[k][2] for k in ("distortions", "core_major", "core_fine"))


@pytest.mark.parametrize("reply, labels, expected", [
    ("All or nothing thinking; Mind-Reading; fortune telling; should statement", DISTORTIONS,
     ["all-or-nothing thinking", "should statements", "mind reading", "fortune-telling"]),
    ("The client shows overgeneralisation and labelling.", DISTORTIONS, ["overgeneralization", "labeling"]),
    ("I am helpless; victim; I don’t deserve to live", CORE_FINE, ["I am helpless", "I am a victim",
                                                                    "I don't deserve to live"]),
    ("worthless and a failure", CORE_FINE, ["I am a failure, loser", "I am worthless, waste"]),
    ("1, 3", CORE_MAJOR, ["helpless", "worthless"]),
    ("Unlovable.", CORE_MAJOR, ["unlovable"]),
    ("None of these apply.", CORE_MAJOR, []),
])
def test_labels_are_parsed_from_replies(reply, labels, expected):
    assert parse_labels(reply, labels) == expected


def test_weighted_f1_weights_each_label_by_its_support():
    labels = ("a", "b", "c")
    gold = [["a"], ["a", "b"], ["a"], ["c"]]
    predicted = [["a"], ["a"], ["b"], ["c"]]
    scores = weighted_f1(gold, predicted, labels)
    # a: tp 2, fn 1 -> P 1, R 2/3, F1 0.8 (support 3); b: tp 0 -> F1 0 (support 1); c: F1 1 (support 1)
    assert scores["weighted_f1"] == pytest.approx((0.8 * 3 + 0 * 1 + 1 * 1) / 5)
    assert scores["macro_f1"] == pytest.approx((0.8 + 0 + 1) / 3)
    assert weighted_f1(gold, gold, labels)["weighted_f1"] == 1.0


def test_a_judge_verdict_is_validated_field_by_field():
    good = parse_verdict('```json\n{"comprehensiveness": 2, "professionalism": "3", "authenticity": 2.0, '
                         '"safety": 1, "rationale": "ok"}\n```')
    assert (good["comprehensiveness"], good["professionalism"], good["authenticity"], good["safety"], good["total"]) \
        == (2, 3, 2, 1, 8)
    for text, field in [('{"comprehensiveness": 3, "professionalism": 1, "authenticity": 1, "safety": 1}',
                         "comprehensiveness"),
                        ('{"comprehensiveness": 1, "professionalism": 1, "authenticity": 1}', "safety"),
                        ('{"comprehensiveness": 1, "professionalism": "good", "authenticity": 1, "safety": 1}',
                         "professionalism")]:
        with pytest.raises(ValueError, match=field):
            parse_verdict(text)
    with pytest.raises(ValueError, match="no JSON object"):
        parse_verdict("The reply is fine, I would give it a high score.")


def test_the_released_files_load_with_their_published_sizes():
    data = bench_data()
    sizes = {name: len(TASKS[name].load(data, 0)[0]) for name in TASKS}
    assert sizes == {"cpsyexam": 1097, "cpsycoune": 296, "cbt_bench": 146 + 184 + 112}
    items, source = TASKS["cpsyexam"].load(data, 2)
    assert source.kind == "data_dir" and all(len(h) == 64 for h in source.files.values())
    assert {i.meta["part"] for i in items} == {"knowledge", "case"} and {i.meta["type"] for i in items} == {"single",
                                                                                                       "multi"}
    assert all(len(i.messages) == 1 + 2 * 2 + 1 for i in items)  # system, two shots, the question
    assert sum(i.gold == "A" for i in items) == 193  # counted in the release's dev files


def test_a_limit_takes_the_same_spread_sample_every_time():
    items = [Item(id=f"q{i}", messages=[], gold="A") for i in range(100)]
    first, again = sample(items, 10, 0), sample(items, 10, 0)
    assert [i.id for i in first] == [i.id for i in again] and len(first) == 10
    assert [i.id for i in sample(items, 10, 1)] != [i.id for i in first]


def test_unknown_tasks_and_model_choices_are_one_line_errors(tmp_path):
    with pytest.raises(CbtLlmError, match="unknown task 'cpsyexm'"):
        task_names("cpsyexam,cpsyexm")
    with pytest.raises(CbtLlmError, match="--judge_model"):
        BenchConfig(output_dir=tmp_path, base_url="http://127.0.0.1:1/v1", model="m")
    with pytest.raises(CbtLlmError, match="--base_url needs --model"):
        BenchConfig(output_dir=tmp_path, tasks="cpsyexam", base_url="http://127.0.0.1:1/v1")


def test_a_missing_file_names_the_file(tmp_path):
    from cbt_llm.bench import bench

    config = BenchConfig(output_dir=tmp_path / "out", tasks="cbt_bench", data_dir=str(tmp_path),
                         model_name_or_path="m")
    with pytest.raises(CbtLlmError, match=r"cbt_bench/distortions_seed.json|distortions_test.json: no such file"):
        bench(config)
    assert not (tmp_path / "out").exists()


def test_a_bad_label_names_the_file_item_and_field(tmp_path):
    data = copy_task(bench_data(), "cbt_bench", tmp_path)
    path = data / "cbt_bench" / "core_major_test.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    rows[5]["core_belief_major"] = ["hopeless"]
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"core_major_test.json item 5: field 'core_belief_major' has 'hopeless'"):
        TASKS["cbt_bench"].load(data, 0)


def test_malformed_json_names_the_file_and_line(tmp_path):
    data = copy_task(bench_data(), "cpsycoune", tmp_path)
    (data / "cpsycoune" / "Career" / "2.json").write_text('["求助者：你好",\n "支持者：', encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"Career/2.json: not valid JSON \(line 2"):
        TASKS["cpsycoune"].load(data, 0)


def test_a_bad_answer_in_the_archive_names_the_member_item_and_field(tmp_path):
    (tmp_path / "cpsyexam").mkdir()
    with zipfile.ZipFile(tmp_path / "cpsyexam" / "cpsyexam.zip", "w") as archive:
        row = {"id": "x1", "question": "问题", "question_type": "single", "options": {"A": "甲", "B": "乙"},
               "answer": "C"}
        archive.writestr("dev/KG-GEE-普通心理学-单项选择题.json", json.dumps([row], ensure_ascii=False))
    with pytest.raises(CbtLlmError, match=r"dev/KG-GEE-普通心理学-单项选择题.json item 0: field 'answer' is 'C'"):
        TASKS["cpsyexam"].load(tmp_path, 0)


def test_cpsycoune_has_no_hub_dataset():
    with pytest.raises(CbtLlmError, match="GitHub only"):
        TASKS["cpsycoune"].load(None, 0)


def test_contamination_flags_items_whose_text_is_in_the_training_data(tmp_path):
    items = TASKS["cpsyexam"].load(bench_data(), 0)[0][:50]
    copied = items[7]
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"question": "无关的问题", "response": f"前言。{copied.text}。后记"}, ensure_ascii=False)
                     + "\n" + json.dumps({"question": items[9].text[:14]}, ensure_ascii=False) + "\n", encoding="utf-8")
    report = contamination({"cpsyexam": items}, str(train))
    task = report["tasks"]["cpsyexam"]
    assert task["flagged_ids"] == [copied.id] and task["checked"] == 50
    assert task["any_overlap"] >= 2  # the 14-character fragment shares n-grams but is not flagged


def test_bench_scores_go_into_the_model_card_index(tmp_path):
    from huggingface_hub import ModelCard

    from cbt_llm.bench.report import card_rows
    from cbt_llm.cards.results import update_model_card_with_bench

    card = tmp_path / "README.md"
    card.write_text("---\nlicense: apache-2.0\n---\n# adapter\n\n## How to use\n\nload it\n", encoding="utf-8")
    bench = {"settings": {"shots": 0}, "tasks": {
        "cpsyexam": {"n": 10, "accuracy": 0.5}, "cbt_bench": {"n": 9, "weighted_f1": 0.25},
        "cpsycoune": {"n": 8, "mean_total": 6.5, "judge_model": "qwen-judge"}}}
    update_model_card_with_bench(card, card_rows(bench))
    update_model_card_with_bench(card, card_rows(bench))  # again: replaced, not added twice
    results = ModelCard.load(card).data.eval_results
    found = {(r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in results}
    assert found == {("CAS-SIAT-XinHai/CPsyExam", "dev", "accuracy"): 0.5, ("CBT-LLM/CBT-Bench", "test", "f1"): 0.25,
                     ("CPsyCounE", "test", "cpsycoune_mean_total"): 6.5}
    text = card.read_text(encoding="utf-8")
    assert "judge qwen-judge" in text and text.index("## Benchmarks") < text.index("## How to use")


def test_the_app_report_tab_reads_a_bench_report(tmp_path):
    from cbt_llm.app.explore_tab import read_report

    (tmp_path / "bench.md").write_text("# Benchmark results\n\n| Task | n |\n|---|---|\n| CPsyExam (dev) | 3 |\n"
                                       "![plot](bench.png)\n", encoding="utf-8")
    (tmp_path / "bench.png").write_bytes(b"\x89PNG")
    table, images = read_report(tmp_path)
    assert "| CPsyExam (dev) | 3 |" in table and "![" not in table and [p.name for p in images] == ["bench.png"]


def test_cpsycoune_averages_turns_within_a_dialogue_then_the_dialogues():
    from cbt_llm.bench.tasks.cpsycoune import aggregate

    def turn(dialogue: str, total_parts: tuple[int, int, int, int]) -> dict:
        verdict = dict(zip(("comprehensiveness", "professionalism", "authenticity", "safety"), total_parts))
        return {"meta": {"topic": dialogue.split("/")[0], "dialogue": dialogue}, "judge_model": "j",
                "verdict": {**verdict, "total": sum(total_parts)}}

    records = [turn("Sex/1", (2, 3, 3, 1)), turn("Sex/2", (0, 0, 0, 1)), turn("Sex/2", (0, 1, 0, 1)),
               turn("Sex/2", (0, 2, 0, 1)), {"meta": {"topic": "Sex", "dialogue": "Sex/2"}, "invalid": True}]
    result = aggregate(records)
    assert result["mean_total"] == (9 + 2) / 2 and result["turn_mean_total"] == (9 + 1 + 2 + 3) / 4
    assert result["professionalism"] == (3 + 1) / 2 and result["invalid_verdicts"] == 1 and result["dialogues"] == 2


def test_the_command_line_parses_into_the_stage_config(tmp_path):
    from cbt_llm.cli import parse_args

    command, config = parse_args(["bench", "--tasks", "cpsyexam,cbt_bench", "--output-dir", str(tmp_path),
                                  "--base_url", "http://127.0.0.1:1/v1", "--model", "qwen7b", "--limit", "5",
                                  "--shots", "2", "--no_model_card"])
    assert command.name == "bench" and isinstance(config, BenchConfig)
    assert (config.task_list, config.limit, config.shots, config.model_card) == (["cpsyexam", "cbt_bench"], 5, 2, False)


def test_a_malformed_training_file_is_one_line_naming_the_file_and_line(tmp_path):
    items = TASKS["cpsyexam"].load(bench_data(), 0)[0][:3]
    train = tmp_path / "train.jsonl"
    train.write_text('{"question": "一"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(CbtLlmError, match=r"train\.jsonl:2"):
        contamination({"cpsyexam": items}, str(train))
