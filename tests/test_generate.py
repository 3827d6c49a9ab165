"""cbt-llm generate end to end against the loopback chat server: output contract, resume, faults, secrets, batch."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from chat_server import ChatServer, cbt_steps

from cbt_llm.data.prompts import STEP_KEYS
from cbt_llm.data.records import read_records
from cbt_llm.errors import CbtLlmError
from cbt_llm.generation import batch
from cbt_llm.generation.annotate import annotate, parse_labels
from cbt_llm.generation.generate import generate
from cbt_llm.engine.store import JsonlStore

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

SECRET = "sk-proj-THIS-IS-A-TEST-SECRET-0123456789"


def write_questions(path: Path, n: int, start: int = 0) -> Path:
    rows = [{"questionID": i, "question": f"第{i}个问题：最近总是睡不好，一直担心工作做不好怎么办？",
             "description": f"描述{i}：每天晚上都会反复想白天的事情。", "keywords": "情绪,焦虑"}
            for i in range(start, start + n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return SECRET


def run_generate(server, questions, output, **options):
    options.setdefault("progress", False)
    options.setdefault("concurrency", 8)
    return generate(questions, output, "test-model", base_url=server.base_url, **options)


def test_generates_records_in_the_default_schema(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 12)
    out = tmp_path / "out.jsonl"
    with ChatServer() as server:
        summary = run_generate(server, questions, out)
    lines = read_lines(out)
    assert sorted(int(r["id"]) for r in lines) == list(range(12))
    assert summary.counts["ok"] == 12 and "ok 12" in summary.format()
    first = lines[0]
    assert first["status"] == "ok" and first["reason"] == ""
    assert first["keywords"] == ["情绪", "焦虑"] and first["distortions"] == []
    assert first["source"]["prompt_version"] == "paper-zh-v1" and first["source"]["model"] == "test-model"
    assert first["source"]["finish_reason"] == "stop" and first["source"]["completion_tokens"] > 100
    assert read_records([out]).records[0]["response"]  # what `cbt-llm build --input` reads
    assert server.stats.auth_headers == {f"Bearer {SECRET}"}


def test_structured_and_english_prompts(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 4)
    with ChatServer() as server:
        run_generate(server, questions, tmp_path / "s.jsonl", prompt="structured")
        run_generate(server, questions, tmp_path / "en.jsonl", language="en")
    structured = read_lines(tmp_path / "s.jsonl")
    assert all(r["status"] == "ok" and all(r["steps"][k] for k in STEP_KEYS) for r in structured)
    assert structured[0]["source"]["prompt_version"] == "structured-zh-v1"
    english = read_lines(tmp_path / "en.jsonl")
    assert all(r["status"] == "ok" and r["response"].isascii() for r in english)


def test_bad_answers_are_asked_again_then_rejected_with_a_reason(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 3)
    asked = {}

    def answer(prompt, body):
        asked[prompt] = asked.get(prompt, 0) + 1
        if "第0个" in prompt and asked[prompt] == 2:  # question 0: good on the second ask
            return "\n\n".join(cbt_steps(prompt).values())
        return "作为一个AI语言模型，我无法提供心理咨询。"

    with ChatServer(answer=answer) as server:
        summary = run_generate(server, questions, tmp_path / "out.jsonl", max_asks=3)
        assert server.stats.answered == 2 + 3 + 3
    records = {r["id"]: r for r in read_lines(tmp_path / "out.jsonl")}
    assert records["0"]["status"] == "ok" and records["0"]["source"]["asks"] == 2
    assert records["1"]["status"] == "rejected"
    assert "refusal" in records["1"]["reason"] and "3 answers" in records["1"]["reason"]
    assert records["1"]["response"].startswith("作为")
    assert summary.counts == {"ok": 1, "rejected": 2}


def test_resume_skips_done_retries_failed_and_repairs_a_torn_line(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 10)
    out = tmp_path / "out.jsonl"
    with ChatServer(p500=1.0) as server:
        summary = run_generate(server, questions, out, max_attempts=2, limit=4)
    assert summary.counts["failed"] == 4
    assert all("HTTP 500" in r["reason"] for r in read_lines(out))
    with ChatServer() as server:
        run_generate(server, questions, out, limit=6)  # retries the 4 failed, adds 2
        assert server.stats.answered == 6
    # a torn last line, as a SIGKILL in the middle of a write would leave
    with open(out, "ab") as f:
        f.write('{"id": "6", "question": "半行'.encode("utf-8"))
    with ChatServer() as server:
        summary = run_generate(server, questions, out)
        assert server.stats.answered == 4
    assert summary.resume.torn_tail and summary.skipped == 6
    lines = read_lines(out)
    assert sorted(int(r["id"]) for r in lines) == list(range(10))
    assert all(r["status"] == "ok" for r in lines)
    assert not list(tmp_path.glob(".out.jsonl.tmp-*"))


def test_output_file_compaction_keeps_one_line_per_id(tmp_path):
    out = tmp_path / "o.jsonl"
    rows = [{"id": "a", "status": "failed"}, {"id": "a", "status": "ok"}, {"id": "b", "status": "failed"},
            {"id": "c", "status": "rejected"}]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n" + '{"id": "d"')
    f = JsonlStore(out)
    state = f.open(retry={"b"})
    f.append({"id": "b", "status": "ok"})
    f.close()
    assert state.duplicates == 1 and state.bad_lines == 1 and state.torn_tail and state.retried_failed == 1
    assert [(r["id"], r["status"]) for r in read_lines(out)] == [("a", "ok"), ("c", "rejected"), ("b", "ok")]


def test_dry_run_sends_nothing_and_estimates_cost(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    questions = write_questions(tmp_path / "q.jsonl", 20)
    with ChatServer() as server:
        result = cli("generate", "--input", questions, "--output", tmp_path / "o.jsonl", "--model", "m",
                     "--base-url", server.base_url, "--dry-run", "--price-input", "2.5", "--price-output", "10")
        assert server.stats.requests == 0
    assert result.returncode == 0, result.stderr
    assert "20 questions valid, 20 to generate" in result.stdout and "estimated cost: $0.1" in result.stdout
    assert not (tmp_path / "o.jsonl").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": ""}\n')
    failed = cli("generate", "--input", bad, "--output", tmp_path / "o.jsonl", "--model", "m", "--dry-run")
    assert failed.returncode == 1 and "field 'question': is blank" in failed.stderr


@pytest.mark.parametrize("status,message", [(401, "rejected the API key"), (404, "not found")])
def test_fatal_errors_stop_the_cli_with_one_line_and_no_secret(tmp_path, cli, key, status, message):
    questions = write_questions(tmp_path / "q.jsonl", 30)
    with ChatServer(status=status) as server:
        result = cli("generate", "--input", questions, "--output", tmp_path / "o.jsonl", "--model", "m",
                     "--base-url", server.base_url, "--concurrency", "4")
        assert server.stats.requests <= 8
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cbt-llm generate: error: ") and message in last
    assert SECRET not in result.stderr + result.stdout


def test_api_key_never_lands_in_outputs_or_logs(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_TEACHER_KEY", SECRET)
    questions = write_questions(tmp_path / "q.jsonl", 6)
    out = tmp_path / "o.jsonl"
    with ChatServer(p500=0.3, seed=3) as server:
        server.script.extend(["429", "drop"])
        result = cli("generate", "--input", questions, "--output", out, "--model", "m", "--base-url",
                     server.base_url, "--api-key-env", "MY_TEACHER_KEY")
        assert server.stats.auth_headers == {f"Bearer {SECRET}"}
    assert result.returncode == 0, result.stderr
    assert "ok 6" in result.stdout
    everything = result.stdout + result.stderr + "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    assert SECRET not in everything and "THIS-IS-A-TEST" not in everything
    # a key passed where a variable name belongs is refused without echoing it
    refused = cli("generate", "--input", questions, "--output", out, "--model", "m", "--api-key-env", SECRET)
    assert refused.returncode == 1 and SECRET not in refused.stderr


def test_generate_stays_light():
    code = ("import sys\nfrom cbt_llm.cli import main\nimport cbt_llm.generation.generate, cbt_llm.engine.client\n"
            "try:\n    main(['generate', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'trl', 'peft') if m in sys.modules))")  # the parser is transformers'
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "--api-key-env" in result.stdout


def test_batch_mode_in_one_go_and_in_steps(tmp_path, key, cli):
    questions = write_questions(tmp_path / "q.jsonl", 8)
    out = tmp_path / "o.jsonl"
    with ChatServer(batch_polls=2, batch_fail_ids=("3",)) as server:
        summary = batch.run_batch(questions, out, "test-model", base_url=server.base_url, poll_interval=0.01)
        assert summary.counts == {"ok": 7, "failed": 1}
        requests = read_lines(batch.requests_path(out))
        assert requests[0]["url"] == "/v1/chat/completions" and requests[0]["body"]["model"] == "test-model"
        # separate steps through the CLI: only the failed id is submitted again
        server.batch_fail_ids = set()
        args = ("--output", out)
        submitted = cli("batch", "submit", "--input", questions, *args, "--model", "test-model",
                        "--base-url", server.base_url)
        assert submitted.returncode == 0, submitted.stderr
        assert "requests 1" in submitted.stdout
        assert "in_progress" in cli("batch", "poll", *args).stdout
        polled = cli("batch", "poll", *args, "--wait", "--poll-interval", "0.01")
        assert "completed" in polled.stdout, polled.stderr
        ingested = cli("batch", "ingest", *args)
        assert ingested.returncode == 0, ingested.stderr
    lines = read_lines(out)
    assert sorted(int(r["id"]) for r in lines) == list(range(8)) and all(r["status"] == "ok" for r in lines)
    state = json.loads(batch.state_path(out).read_text())
    assert state["status"] == "ingested" and SECRET not in batch.state_path(out).read_text()


def test_annotate_labels_distortions_from_the_taxonomy(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 5)
    out = tmp_path / "o.jsonl"

    def answer(prompt, body):
        if "只能从以下列表中选择" in prompt:
            return '```json\n{"distortions": ["catastrophizing", "读心术", "not-a-distortion"]}\n```'
        if "第4个" in prompt:
            return "不知道。"
        return "\n\n".join(cbt_steps(prompt).values())

    with ChatServer(answer=answer) as server:
        run_generate(server, questions, out, max_asks=1)
        summary = annotate(out, tmp_path / "labelled.jsonl", "test-model", base_url=server.base_url, progress=False)
    labelled = {r["id"]: r for r in read_lines(tmp_path / "labelled.jsonl")}
    assert labelled["0"]["distortions"] == ["catastrophizing", "mind_reading"]
    assert labelled["4"]["status"] == "rejected" and labelled["4"]["distortions"] == []
    assert summary.labels == {"catastrophizing": 4, "mind_reading": 4}
    assert summary.unknown == {"not-a-distortion": 4}
    assert parse_labels("none") is None and parse_labels('["labelling"]') == (["labeling"], [])
    with pytest.raises(CbtLlmError):
        annotate(out, out, "m", base_url="http://127.0.0.1:9/v1")


def test_an_expired_batch_keeps_its_answers_and_leaves_the_rest_for_a_new_batch(tmp_path, key, monkeypatch):
    questions = write_questions(tmp_path / "q.jsonl", 6)
    out = tmp_path / "o.jsonl"
    with ChatServer(batch_polls=2, batch_expire_after=4) as server:
        batch.submit(questions, out, "test-model", base_url=server.base_url)
        status = batch.poll(out, wait=True, interval=0.01)
        assert status.status == "expired" and status.results is not None, status.format()
        assert "submit' asks the rest again" in status.format()
        summary = batch.ingest(out)
        assert summary.counts == {"ok": 4, "failed": 2}
        assert summary.reasons and "batch_expired" in next(iter(summary.reasons))
        server.batch_expire_after = None
        again = batch.submit(questions, out, "test-model", base_url=server.base_url)
        assert again.counts == {"requests": 2}
        assert sorted(r["custom_id"] for r in read_lines(batch.requests_path(out))) == ["4", "5"]
        batch.poll(out, wait=True, interval=0.01)
        batch.ingest(out)
    lines = read_lines(out)
    assert sorted(r["id"] for r in lines if r["status"] == "ok") == [str(i) for i in range(6)]


def test_batch_ingest_shows_progress_on_a_terminal_unless_turned_off(tmp_path, key, monkeypatch):
    questions = write_questions(tmp_path / "q.jsonl", 3)
    out = tmp_path / "o.jsonl"
    with ChatServer(batch_polls=1) as server:
        batch.submit(questions, out, "test-model", base_url=server.base_url)
        batch.poll(out, wait=True, interval=0.01)
    terminal = type("Terminal", (io.StringIO,), {"isatty": lambda self: True})()
    monkeypatch.setattr(sys, "stderr", terminal)
    batch.ingest(out, progress=False)
    assert terminal.getvalue() == ""
    out.unlink()
    batch.ingest(out, progress=True)
    assert "ingest" in terminal.getvalue() and "ok=3" in terminal.getvalue()
