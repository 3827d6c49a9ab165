"""Dialogue evaluation: counsellor turns as rows for predict and evaluate, read back as dialogues in the report;
and the system line a dialogue-trained adapter expects, sent by predict, the terminal chat and the web app."""

import json

import pytest
from bench_helpers import BENCH_DATA, VERDICT
from chat_server import ChatServer
from judge_server import JudgeServer

from cbt_llm.bench import BenchConfig, bench
from cbt_llm.config import DatasetConfig
from cbt_llm.data.dialogue_prompts import DIALOGUE_SYSTEM_PROMPTS
from cbt_llm.data.dialogues import dialogue_sample_path, read_dialogues
from cbt_llm.data.prompts import SYSTEM_PROMPTS
from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.dialogue import dialogue_figures, dialogues_of, turn_rows
from cbt_llm.evaluation.evaluate import EvaluateConfig, evaluate_systems, load_references
from cbt_llm.evaluation.judge import JudgeConfig
from cbt_llm.evaluation.predict import PredictConfig, load_split, predict
from cbt_llm.generation.dialogue_checks import check_dialogue


def sample_dialogues():
    return read_dialogues([dialogue_sample_path()]).records


def write_predictions(path, texts):
    path.write_text("".join(json.dumps({"id": i, "prediction": t}, ensure_ascii=False) + "\n"
                            for i, t in texts.items()), encoding="utf-8")
    return path


def test_each_counsellor_turn_becomes_a_row_with_the_history_before_it():
    dialogues = sample_dialogues()
    rows = turn_rows(dialogues)
    assert len(rows) == sum(m["role"] == "assistant" for d in dialogues for m in d["messages"])
    first = dialogues[0]["messages"]
    mine = [r for r in rows if r["id"].startswith(dialogues[0]["id"] + "#")]
    assert [r["id"] for r in mine][:3] == [f"{dialogues[0]['id']}#{n}" for n in (1, 2, 3)]
    assert mine[0]["history"] == first[:1] and mine[0]["response"] == first[1]["content"]
    assert mine[1]["history"] == first[:3] and mine[1]["response"] == first[3]["content"]
    # A system line in the dialogue (the dataset config's rows have one) is not part of the history.
    with_system = [{"id": "d", "messages": [{"role": "system", "content": "S"}, *first]}]
    assert turn_rows(with_system)[0]["history"] == first[:1]


def test_turns_are_read_back_as_dialogues_in_turn_order():
    assert dialogues_of({"d#10": "ten", "d#2": "two", "d#1": "one", "e#1": "other"}) == \
        {"d": ["one", "two", "ten"], "e": ["other"]}
    # The reference turns of the sample, read back, give the figures the dialogue checks found on each dialogue.
    dialogues = sample_dialogues()
    figures = dialogue_figures({r["id"]: r["response"] for r in turn_rows(dialogues)})
    checks = [check_dialogue(d["messages"], d.get("language", "zh")) for d in dialogues]
    assert figures["dialogues"] == len(dialogues)
    assert figures["steps_covered"] == pytest.approx(sum(len(c.steps) for c in checks) / len(checks))
    assert figures["turns"] == pytest.approx(sum(c.rounds for c in checks) / len(checks))
    assert figures["asks_first"] > 0.9 and figures["question_share"] > 0.4
    # A counsellor who only lectures: no turn asks, and no dialogue covers the five steps.
    lecture = dialogue_figures({f"d{n}#{t}": "你要多运动，早点睡觉。" for n in range(3) for t in (1, 2)})
    assert lecture == {"dialogues": 3, "turns": 2.0, "question_share": 0.0, "asks_first": 0.0,
                       "steps_covered": lecture["steps_covered"], "all_steps": 0.0, "steps": lecture["steps"]}
    assert lecture["steps_covered"] < 2


def test_evaluate_scores_turns_and_adds_the_dialogue_table(tmp_path):
    references = load_references("validation", dataset_config="dialogue")
    assert references == {r["id"]: r["response"] for r in load_split(split="validation", dataset_config="dialogue")}
    assert all("#" in i for i in references)
    same = write_predictions(tmp_path / "same.jsonl", references)
    lecture = write_predictions(tmp_path / "lecture.jsonl", {i: "你要多运动，早点睡觉。" for i in references})
    report = evaluate_systems(EvaluateConfig(predictions=[same, lecture], output_dir=tmp_path / "report",
                                             dataset_config="dialogue", references="validation", bertscore=False))
    assert report.n == len(references) and report.unit == "counsellor turns"
    copy, lecturer = report.systems
    assert copy.metrics["chrf"] == pytest.approx(100.0) and lecturer.metrics["chrf"] < 10
    assert copy.dialogue == report.reference.dialogue and copy.dialogue["dialogues"] == 4
    assert lecturer.dialogue["question_share"] == 0.0 and lecturer.dialogue["all_steps"] == 0.0
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert f"{len(references)} counsellor turns" in markdown and "## Dialogues" in markdown
    assert "| lecture | 4 | 1.0 |" not in markdown and "| lecture | 4 |" in markdown
    data = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert data["unit"] == "counsellor turns" and data["systems"][1]["dialogue"]["question_share"] == 0.0
    assert data["reference"]["dialogue"] == copy.dialogue

    # The questions' report has no dialogue table.
    questions = {r["id"]: r["response"] for r in load_split(split="test")}
    plain = evaluate_systems(EvaluateConfig(predictions=[write_predictions(tmp_path / "q.jsonl", questions)],
                                            output_dir=tmp_path / "plain", bertscore=False))
    assert plain.unit == "questions" and not plain.systems[0].dialogue
    assert "## Dialogues" not in (tmp_path / "plain" / "report.md").read_text(encoding="utf-8")


def test_dialogue_config_choices_are_checked():
    with pytest.raises(CbtLlmError, match="--dataset_config must be default or dialogue, got 'sft'"):
        DatasetConfig(dataset_config="sft")
    with pytest.raises(CbtLlmError, match="--model_card takes the default config's figures"):
        EvaluateConfig(predictions=["p.jsonl"], output_dir="r", dataset_config="dialogue", model_card="README.md")
    with pytest.raises(CbtLlmError, match="the judge's rubric scores an answer to a question"):
        JudgeConfig(predictions="p.jsonl", output_file="j.jsonl", model="judge", dataset_config="dialogue")


@pytest.mark.slow
def test_predict_answers_each_turn_after_its_history_with_the_dialogue_line(tmp_path):
    rows = load_split(split="validation", dataset_config="dialogue")
    out = tmp_path / "turns.jsonl"
    with ChatServer(answer=lambda prompt, body: "你愿意多说一点吗？") as server:
        summary = predict(PredictConfig(output_file=out, model="served", base_url=server.base_url, split="validation",
                                        dataset_config="dialogue", max_new_tokens=32, progress=False))
        sent = server.stats.received
    assert summary.counts["ok"] == len(rows)
    by_history = {json.dumps(m[1:], ensure_ascii=False): m[0] for m in sent}
    for row in rows:  # every turn was asked once, after exactly its reference history, with the dialogue line
        assert by_history[json.dumps(row["history"], ensure_ascii=False)] == \
            {"role": "system", "content": DIALOGUE_SYSTEM_PROMPTS["zh"]}
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in rows)
    assert records[0]["settings"]["dataset_config"] == "dialogue"


@pytest.mark.slow
def test_a_dialogue_adapter_gets_its_dialogue_line_in_predict_chat_and_app(tiny_model, tmp_path):
    """A tiny adapter saved with the tiny-dialogue recipe (two steps): predict, the terminal chat and the web app's
    chat send the dialogue line it was trained with; a single-turn recipe keeps the counselling line."""
    from cbt_llm.app.chat_tab import GuardedChat
    from cbt_llm.chat import LocalBackend, run_chat
    from cbt_llm.training.train import build_trainer, parse_args, train_and_save

    adapter = tmp_path / "dialogue-adapter"
    args = parse_args(["--config", "tiny-dialogue", "--output_dir", str(adapter), "--max_steps", "2",
                       "--eval_strategy", "no", "--logging_steps", "1"])
    train_and_save(build_trainer(*args), *args)

    backend = LocalBackend(str(adapter), settings=None)
    assert backend.system_prompts == DIALOGUE_SYSTEM_PROMPTS
    sent = []

    class Recording:  # the real back-end, recording what it is sent
        calls, context_tokens, count_tokens = 0, backend.context_tokens, staticmethod(backend.count_tokens)
        settings, system_prompts = backend.settings, backend.system_prompts

        def __call__(self, messages):
            sent.append(messages)
            self.calls += 1
            return backend(messages)

        def stop(self):
            backend.stop()

    replies = iter(["我最近工作压力有点大。", "我该怎么和领导沟通呢？", "/reset", "I keep doubting every choice I make.",
                    "/exit"])
    output = tmp_path / "chat.txt"
    with open(output, "w", encoding="utf-8") as out:
        run_chat(Recording(), input_fn=lambda prompt: next(replies), output=out, show_notice=False)
    assert [m[0]["content"] for m in sent] == [DIALOGUE_SYSTEM_PROMPTS["zh"]] * 2 + [DIALOGUE_SYSTEM_PROMPTS["en"]]
    assert [m["role"] for m in sent[1]] == ["system", "user", "assistant", "user"]  # the history goes along
    assert sent[1][1]["content"] == "我最近工作压力有点大。"

    for _ in GuardedChat(Recording()).turn("我总是担心考试考不好。", []):
        pass
    assert sent[-1][0]["content"] == DIALOGUE_SYSTEM_PROMPTS["zh"]

    predict(PredictConfig(output_file=tmp_path / "p.jsonl", adapter=str(adapter), split="validation",
                          dataset_config="dialogue", limit=1, max_new_tokens=4, progress=False))
    line = json.loads((tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert line["settings"]["system_prompt"] == DIALOGUE_SYSTEM_PROMPTS["zh"]

    # CPsyCounE, the public benchmark of counselling dialogues, runs on the dialogue adapter (when ../shared has it).
    if (BENCH_DATA / "cpsycoune").is_dir():
        with JudgeServer(lambda body: json.dumps(VERDICT)) as server:
            bench(BenchConfig(tasks="cpsycoune", output_dir=tmp_path / "bench", data_dir=str(BENCH_DATA),
                              adapter=str(adapter), limit=2, max_new_tokens=8, judge_base_url=server.base_url,
                              judge_model="judge", progress=False))
        scored = json.loads((tmp_path / "bench" / "bench.json").read_text(encoding="utf-8"))
        assert scored["tasks"]["cpsycoune"]["n"] == 2 and scored["settings"]["adapter"] == str(adapter)

    # The same recipe made single-turn keeps the paper's counselling line, per language.
    (adapter / "training_recipe.yaml").write_text("dataset_config: sft\n", encoding="utf-8")
    assert LocalBackend(str(adapter)).system_prompts == SYSTEM_PROMPTS
