"""The LLM judge: robust parsing of its replies, its config and requests, and a run through the engine against a
local server."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from chat_server import ChatServer

from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.judge import (
    JUDGE_SYSTEM,
    JudgeConfig,
    judge,
    judge_answer,
    judge_messages,
    judgement_means,
    parse_judgement,
)
from cbt_llm.evaluation.predict import load_split


@pytest.mark.parametrize("reply, expected", [
    ('{"relevance": 2, "cbt_structure": 1, "helpfulness": 2, "rationale": "具体"}', (2, 1, 2)),
    ('```json\n{"relevance": "2", "cbt_structure": "0/2", "helpfulness": 1.0}\n```', (2, 0, 1)),
    ('评分如下：{"相关性": 1, "CBT结构": 2, "帮助性": 0, "理由": "空泛 {注意}"} 以上。', (1, 2, 0)),
    ('{"relevance": {"score": 2}, "cbt_structure": {"score": 2}, "helpfulness": {"score": 1}}', (2, 2, 1)),
    ('{"note": "draft"} then {"relevance": 0, "cbt_structure": 0, "helpfulness": 0}', (0, 0, 0)),
    ("relevance: 2\ncbt_structure: 1\nhelpfulness: 2", (2, 1, 2)),
])
def test_parse_judgement_accepts_common_reply_shapes(reply, expected):
    result = parse_judgement(reply)
    assert (result["relevance"], result["cbt_structure"], result["helpfulness"]) == expected


@pytest.mark.parametrize("reply", [
    "I cannot rate this.",
    '{"relevance": 3, "cbt_structure": 1, "helpfulness": 2}',       # out of range
    '{"relevance": 2, "cbt_structure": 1}',                          # missing one
    '{"relevance": true, "cbt_structure": 1, "helpfulness": 2}',     # not a number
    '{"relevance": 1.5, "cbt_structure": 1, "helpfulness": 2}',      # not an integer
])
def test_parse_judgement_rejects_invalid_replies(reply):
    with pytest.raises(ValueError):
        parse_judgement(reply)


def test_the_prompt_carries_the_rubric_question_and_answer():
    messages = judge_messages("怎么办？", "我很焦虑", "先深呼吸。")
    assert messages[0]["content"] == JUDGE_SYSTEM
    for criterion in ("relevance", "cbt_structure", "helpfulness", "0 =", "2 ="):
        assert criterion in JUDGE_SYSTEM
    assert "怎么办？" in messages[1]["content"] and "我很焦虑" in messages[1]["content"]
    assert "先深呼吸。" in messages[1]["content"]


def write_predictions(path, ids):
    path.write_text("".join(json.dumps({"id": i, "prediction": f"答案 {i}", "status": "ok"}, ensure_ascii=False)
                            + "\n" for i in ids), encoding="utf-8")
    return path


class ScriptedEngine:
    """Stands in for the request engine: answers each request with the next reply and keeps the payloads."""

    def __init__(self, *replies):
        self.replies, self.payloads = list(replies), []

    async def request(self, payload, *, estimated_tokens=0):
        self.payloads.append(payload)
        return SimpleNamespace(body={"choices": [{"message": {"content": self.replies.pop(0)}}]})


def test_the_reply_cap_is_sent_as_the_apis_max_tokens_and_unparsable_replies_are_asked_again():
    config = JudgeConfig(predictions="p.jsonl", output_file="j.jsonl", model="judge-model", max_new_tokens=120,
                         max_asks=2)
    engine = ScriptedEngine("让我想想……", '{"relevance": 2, "cbt_structure": 1, "helpfulness": 2, "rationale": "好"}')
    row = {"id": "q1", "question": "怎么办？", "description": "我很焦虑"}
    record = asyncio.run(judge_answer(engine, config, "system-a", row, "先深呼吸。"))
    assert {k: record[k] for k in ("id", "system", "judge_model", "status", "asks", "relevance", "rationale")} == {
        "id": "q1", "system": "system-a", "judge_model": "judge-model", "status": "ok", "asks": 2, "relevance": 2,
        "rationale": "好"}
    assert [p["max_tokens"] for p in engine.payloads] == [120, 120] and "max_new_tokens" not in engine.payloads[0]
    never = asyncio.run(judge_answer(ScriptedEngine("不评", "不评"), config, "system-a", row, "先深呼吸。"))
    assert never["status"] == "failed" and "no valid" in never["reason"] and "after 2 replies" in never["reason"]


def test_the_config_needs_at_least_one_ask():
    assert JudgeConfig(predictions="p", output_file="j", model="m").max_new_tokens == 300
    with pytest.raises(CbtLlmError, match="--max_asks must be at least 1"):
        JudgeConfig(predictions="p", output_file="j", model="m", max_asks=0)


@pytest.mark.slow
def test_judge_run_with_retries_reasks_and_resume(tmp_path):
    ids = [row["id"] for row in load_split(split="test")]
    preds = write_predictions(tmp_path / "system-a.jsonl", ids)
    asked = []

    def answer(prompt, body):
        asked.append(prompt)
        record_id = next(i for i in ids if f"答案 {i}" in prompt)
        if record_id == ids[0] and sum(f"答案 {ids[0]}" in p for p in asked) == 1:
            return "让我想想……"  # first reply for this answer has no JSON: asked again
        if record_id == ids[1]:
            return "无法评分"  # never valid: failed after max_asks
        score = ids.index(record_id) % 3
        return f'```json\n{{"relevance": {score}, "cbt_structure": 2, "helpfulness": 1, "rationale": "ok"}}\n```'

    out = tmp_path / "judge.jsonl"
    with ChatServer(answer=answer) as server:
        server.script.extend(["429", "500"])
        summary = judge(JudgeConfig(predictions=preds, output_file=out, model="judge-model", base_url=server.base_url,
                                    concurrency=3, max_asks=2))
        assert summary.counts == {"ok": 5, "failed": 1} and summary.system == "system-a"
        assert server.stats.injected_429 == 1 and server.stats.injected_500 == 1
        records = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
        assert records[ids[0]]["asks"] == 2 and records[ids[0]]["status"] == "ok"
        assert records[ids[1]]["status"] == "failed" and "no valid" in records[ids[1]]["reason"]
        ok = [r for r in records.values() if r["status"] == "ok"]
        expected = sum(ids.index(r["id"]) % 3 for r in ok) / len(ok)
        means = judgement_means(out)
        assert means["n"] == 5 and means["relevance"] == pytest.approx(expected)
        assert means["cbt_structure"] == 2 and means["helpfulness"] == 1
        assert summary.means["relevance"] == pytest.approx(expected)
        # rerun: only the failed one is asked again
        before = server.stats.requests
        again = judge(JudgeConfig(predictions=preds, output_file=out, model="judge-model", base_url=server.base_url,
                                  max_asks=1))
        assert again.skipped == 5 and again.counts == {"failed": 1} and server.stats.requests == before + 1


def test_judge_rejects_predictions_for_other_questions(tmp_path):
    preds = write_predictions(tmp_path / "p.jsonl", ["not-a-test-id"])
    with pytest.raises(CbtLlmError, match="not in cbt_qa split test"):
        judge(JudgeConfig(predictions=preds, output_file=tmp_path / "j.jsonl", model="m",
                          base_url="http://127.0.0.1:9/v1"))


@pytest.mark.slow
def test_judge_stops_on_a_fatal_error(tmp_path, cli):
    ids = [row["id"] for row in load_split(split="test")]
    preds = write_predictions(tmp_path / "p.jsonl", ids)
    with ChatServer(status=401) as server:
        done = cli("judge", "--predictions", preds, "--output", tmp_path / "j.jsonl", "--model", "m",
                   "--base-url", server.base_url)
    assert done.returncode == 1 and "HTTP 401" in done.stderr and "Traceback" not in done.stderr
