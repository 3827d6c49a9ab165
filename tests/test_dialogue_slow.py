"""Multi-turn CBT dialogues against a loopback teacher (a real HTTP server): good and bad teachers, and SIGKILL."""

import json
import os
import signal
import subprocess

import pytest
from dialogue_server import dialogue_server
from test_generate_slow import CLI, complete_lines, kill_when_written

from cbt_llm.data.dialogues import read_dialogues
from cbt_llm.data.prompts import STEP_KEYS
from cbt_llm.data.splits import sample_path, sample_questions_path
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV
from cbt_llm.generation.dialogue import DialogueConfig, dialogue

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(DEFAULT_API_KEY_ENV, "sk-dialogue-test")


def run(server, tmp_path, **options):
    out = tmp_path / "dialogues.jsonl"
    config = DialogueConfig(input=str(options.pop("input", sample_questions_path())), output_file=str(out),
                            model="teacher", base_url=server.base_url, progress=False, concurrency=4, **options)
    summary = dialogue(config)
    return summary, [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("language, max_rounds", [("zh", 6), ("en", 3)])
def test_a_teacher_playing_its_roles_gives_dialogues_that_pass(tmp_path, language, max_rounds):
    with dialogue_server() as server:
        summary, records = run(server, tmp_path, language=language, max_rounds=max_rounds)
    assert [r["status"] for r in records] == ["ok"] * 8, [r["reason"] for r in records]
    rounds = 3 if max_rounds == 3 else 4  # the teacher's counsellor closes in round 4 unless told to close earlier
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["user", "assistant"] * rounds
        assert "[END]" not in record["messages"][-1]["content"]
        assert record["checks"]["steps"] == list(STEP_KEYS) and record["checks"]["rounds"] == rounds
        assert record["plan"]["distortions"] == ["all_or_nothing", "labeling"]  # "made_up" is not in the taxonomy
        assert record["source"]["prompt_version"] == f"dialogue-{language}-v1"
        assert record["source"]["requests"] == 1 + 2 * rounds  # the plan, then one request per turn
    assert server.stats.answered == 8 * (1 + 2 * rounds)
    assert "ok 8, rejected 0, failed 0" in summary.format() and "all five steps in 100%" in summary.format()
    assert sum(r["status"] == "ok" for r in records) == len(read_dialogues([tmp_path / "dialogues.jsonl"]).records)


def test_a_crisis_turn_gets_the_protocol_and_ends_the_dialogue(tmp_path):
    with dialogue_server(crisis=True) as server:
        summary, records = run(server, tmp_path)
    for record in records:
        assert record["status"] == "ok", record["reason"]
        assert record["checks"]["crisis_turn"] == 3 and len(record["messages"]) == 4
        assert "12356" in record["messages"][-1]["content"]  # the resources the prompt listed
    assert "8 answered a crisis" in summary.format()


@pytest.mark.parametrize("fault, crisis, reason", [
    ("alternation", False, "roles do not alternate (turn 5)"),
    ("lecture", False, "counsellor lectures in turn 1 (advice before asking)"),
    ("ignore_crisis", True, "crisis in client turn 3 not answered with the crisis protocol"),
])
def test_a_bad_teacher_gets_every_dialogue_rejected_with_the_reason(tmp_path, fault, crisis, reason):
    with dialogue_server(fault=fault, crisis=crisis) as server:
        summary, records = run(server, tmp_path, max_rounds=4)
    assert len(records) == 8
    for record in records:
        assert record["status"] == "rejected" and reason in record["reason"], record["reason"]
    assert summary.counts["rejected"] == 8 and "not ok: " in summary.format()


def test_rewrite_turns_each_answer_into_a_dialogue_in_one_request(tmp_path):
    with dialogue_server() as server:
        summary, records = run(server, tmp_path, mode="rewrite", input=sample_path(), limit=5)
    assert server.stats.answered == 5 and [r["status"] for r in records] == ["ok"] * 5
    assert all(r["source"]["mode"] == "rewrite" and r["checks"]["rounds"] == 4 for r in records)
    (tmp_path / "bad").mkdir()
    with dialogue_server(fault="alternation") as server:
        _, records = run(server, tmp_path / "bad", mode="rewrite", input=sample_path(), limit=5)
    assert all("roles do not alternate (turn 3)" in r["reason"] for r in records)


def test_killed_three_times_then_every_dialogue_exactly_once(tmp_path):
    n = 100
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"id": str(i), "question": f"第 {i} 个问题：最近压力很大，睡不好。"},
                                            ensure_ascii=False) + "\n" for i in range(n)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    env = {**os.environ, DEFAULT_API_KEY_ENV: "sk-kill-test"}
    with dialogue_server(latency=0.01) as server:
        args = [str(CLI), "dialogue", "--input", str(questions), "--output_file", str(out), "--model", "m",
                "--base_url", server.base_url, "--concurrency", "16", "--max_rounds", "3", "--max_attempts", "8"]
        for kill_at in (15, 40, 70):
            assert kill_when_written(args, env, out, kill_at) == -signal.SIGKILL
            seen = [r["id"] for r in complete_lines(out)]
            assert len(seen) == len(set(seen)) and len(seen) < n
        final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # no torn line
    assert sorted((r["id"] for r in records), key=int) == [str(i) for i in range(n)]  # every id exactly once
    assert all(r["status"] == "ok" for r in records), {r["reason"] for r in records}
    assert "already done" in final.stdout


def test_failed_dialogues_are_asked_again_on_the_next_run(tmp_path):
    with dialogue_server(p500=1.0) as server:
        summary, records = run(server, tmp_path, max_attempts=1, limit=3)
    assert [r["status"] for r in records] == ["failed"] * 3 and summary.failure() is not None
    with dialogue_server() as server:
        summary, records = run(server, tmp_path, limit=3)
    assert [r["status"] for r in records] == ["ok"] * 3 and summary.resume.retried_failed == 3


def test_a_built_dialogue_config_is_pushed_and_loads_with_the_stock_clients(tmp_path):
    from hub_server import HubServer
    from test_hub import TOKEN, cli, stock

    from cbt_llm.data.build import BuildConfig, build_dataset

    folder = build_dataset(BuildConfig(output_dir=tmp_path / "built", dialogues=["sample"])).output_dir
    out = tmp_path / "loaded.json"
    hub = HubServer(tmp_path / "hub-root", tokens={TOKEN: "alice"})
    hub.start()
    try:
        cli(hub, tmp_path, "push", "dataset", folder, "--repo_id", "alice/cbt_dialogues")
        stock(hub, tmp_path, """
            import json, sys
            import datasets
            from huggingface_hub import DatasetCard
            datasets.config.USE_PARQUET_EXPORT = False  # no datasets-server behind the test Hub
            rows = datasets.load_dataset(sys.argv[1], "dialogue")
            card = DatasetCard.load(sys.argv[1], repo_type="dataset")
            json.dump({"rows": sum(split.num_rows for split in rows.values()),
                       "roles": [m["role"] for m in rows["train"][0]["messages"][:3]],
                       "configs": [c["config_name"] for c in card.data.configs], "text": card.text},
                      open(sys.argv[2], "w"), ensure_ascii=False)
        """, "alice/cbt_dialogues", out)
    finally:
        hub.stop()
    loaded = json.loads(out.read_text(encoding="utf-8"))
    assert loaded["rows"] == 12 and loaded["roles"] == ["system", "user", "assistant"]
    assert loaded["configs"] == ["default", "dialogue", "sft"]
    assert 'load_dataset("alice/cbt_dialogues", "dialogue")' in loaded["text"]
    assert "| passed every check | 12 of 12 |" in loaded["text"]
