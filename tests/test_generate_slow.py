"""cbt-llm generate against the loopback chat server and through the real CLI: output contract, resume, faults,
secrets, the Batch API, annotate; SIGKILL the CLI three times and resume; a real `transformers serve`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_server import ChatServer, cbt_steps
from test_generate import STRICT, config, read_lines, write_questions

from cbt_llm.data.prompts import STEP_KEYS
from cbt_llm.data.records import read_records
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV
from cbt_llm.generation import batch
from cbt_llm.generation.annotate import AnnotateConfig, annotate
from cbt_llm.generation.batch import BatchConfig, IngestConfig, PollConfig
from cbt_llm.generation.generate import generate
from cbt_llm.models.serve import transformers_serve

pytestmark = pytest.mark.slow  # every test here starts a server or a process

CLI = Path(sys.executable).parent / "cbt-llm"
SECRET = "sk-proj-THIS-IS-A-TEST-SECRET-0123456789"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(DEFAULT_API_KEY_ENV, SECRET)
    return SECRET


def run_generate(server, questions, output, **options):
    return generate(config(questions, output, base_url=server.base_url, **options))


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


def test_generate_applies_its_quality_bounds(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 2)
    with ChatServer() as server:
        summary = run_generate(server, questions, tmp_path / "out.jsonl", max_asks=2, quality=STRICT)
        assert server.stats.answered == 4
    assert summary.counts == {"rejected": 2}
    assert all(r["reason"].endswith("< 10000 chars) (2 answers)") for r in read_lines(tmp_path / "out.jsonl"))


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


def test_dry_run_sends_nothing_and_estimates_cost(tmp_path, cli, monkeypatch):
    monkeypatch.delenv(DEFAULT_API_KEY_ENV, raising=False)
    questions = write_questions(tmp_path / "q.jsonl", 20)
    with ChatServer() as server:
        result = cli("generate", "--input", questions, "--output_file", tmp_path / "o.jsonl", "--model", "m",
                     "--base_url", server.base_url, "--dry_run", "--price_input", "2.5", "--price_output", "10")
        assert server.stats.requests == 0
    assert result.returncode == 0, result.stderr
    assert "20 questions valid, 20 to generate" in result.stdout and "estimated cost: $0.1" in result.stdout
    assert not (tmp_path / "o.jsonl").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": ""}\n')
    failed = cli("generate", "--input", bad, "--output_file", tmp_path / "o.jsonl", "--model", "m", "--dry_run")
    assert failed.returncode == 1 and "field 'question': is blank" in failed.stderr


@pytest.mark.parametrize("status,message", [(401, "rejected the API key"), (404, "not found")])
def test_fatal_errors_stop_the_cli_with_one_line_and_no_secret(tmp_path, cli, key, status, message):
    questions = write_questions(tmp_path / "q.jsonl", 30)
    with ChatServer(status=status) as server:
        result = cli("generate", "--input", questions, "--output_file", tmp_path / "o.jsonl", "--model", "m",
                     "--base_url", server.base_url, "--concurrency", "4")
        assert server.stats.requests <= 8
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cbt-llm generate: error: question ") and message in last  # names the question
    assert SECRET not in result.stderr + result.stdout
    assert not (tmp_path / "o.jsonl").exists()  # regression: an empty output file was left behind


def test_a_question_too_long_for_the_model_fails_alone_and_the_run_goes_on(tmp_path, key):
    """Regression: one HTTP 400 (context_length_exceeded) stopped the whole run, and every rerun at the same place."""
    questions = write_questions(tmp_path / "q.jsonl", 5)
    rows = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines()]
    rows[2]["description"] = "每天晚上都会反复想白天的事情。" * 300
    questions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    for run in (1, 2):  # a rerun asks the failed one again and completes too
        with ChatServer() as server:
            server.context_limit = 3000
            summary = run_generate(server, questions, out)
            assert server.stats.requests == (5 if run == 1 else 1)  # a 400 is not retried
        assert summary.counts == ({"ok": 4, "failed": 1} if run == 1 else {"failed": 1})
    records = {r["id"]: r for r in read_lines(out)}
    assert [records[i]["status"] for i in "01234"] == ["ok", "ok", "failed", "ok", "ok"]
    reason = records["2"]["reason"]
    assert reason.startswith("HTTP 400: This model's maximum context length is 3000 tokens. However, your messages ")
    assert reason.endswith(" tokens. Please reduce the length of the messages.")  # the server's message, one line
    assert "not ok: HTTP N: This model's maximum context length is N tokens. However, your messages resulted in N " \
        "tokens. Please reduce the length of the messages. x1" in summary.format().splitlines()


def test_the_cli_exits_1_when_every_question_failed(tmp_path, cli, key):
    """Regression: `generate` exited 0 when every request failed."""
    questions = write_questions(tmp_path / "q.jsonl", 3)
    out = tmp_path / "o.jsonl"
    with ChatServer(p500=1.0) as server:
        result = cli("generate", "--input", questions, "--output_file", out, "--model", "m", "--base_url",
                     server.base_url, "--max_attempts", "1")
    assert result.returncode == 1 and "ok 0, rejected 0, failed 3" in result.stdout
    assert result.stderr.splitlines() == [f"cbt-llm generate: error: all 3 items failed, none came back done; their "
                                          f"reasons are in {out} (the same command again retries them)"]
    assert [r["status"] for r in read_lines(out)] == ["failed"] * 3


def test_api_key_never_lands_in_outputs_or_logs(tmp_path, cli, monkeypatch):
    monkeypatch.delenv(DEFAULT_API_KEY_ENV, raising=False)
    monkeypatch.setenv("MY_TEACHER_KEY", SECRET)
    questions = write_questions(tmp_path / "q.jsonl", 6)
    out = tmp_path / "o.jsonl"
    with ChatServer(p500=0.3, seed=3) as server:
        server.script.extend(["429", "drop"])
        result = cli("generate", "--input", questions, "--output_file", out, "--model", "m", "--base_url",
                     server.base_url, "--api_key_env", "MY_TEACHER_KEY")
        assert server.stats.auth_headers == {f"Bearer {SECRET}"}
    assert result.returncode == 0, result.stderr
    assert "ok 6" in result.stdout
    everything = result.stdout + result.stderr + "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    assert SECRET not in everything and "THIS-IS-A-TEST" not in everything
    # a key passed where a variable name belongs is refused without echoing it
    refused = cli("generate", "--input", questions, "--output_file", out, "--model", "m", "--api_key_env", SECRET)
    assert refused.returncode == 1 and SECRET not in refused.stderr


def test_generate_stays_light():
    code = ("import sys\nfrom cbt_llm.cli import main\nimport cbt_llm.generation.generate, cbt_llm.engine.client\n"
            "try:\n    main(['generate', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'trl', 'peft') if m in sys.modules))")  # the parser is transformers'
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "--api_key_env" in result.stdout and "--max_new_tokens" in result.stdout


def test_batch_mode_in_one_go_and_in_steps(tmp_path, key, cli):
    questions = write_questions(tmp_path / "q.jsonl", 8)
    out = tmp_path / "o.jsonl"
    with ChatServer(batch_polls=2, batch_fail_ids=("3",)) as server:
        summary = batch.run_batch(BatchConfig(input=questions, output_file=out, model="test-model",
                                              base_url=server.base_url, poll_interval=0.01, progress=False))
        assert summary.counts == {"ok": 7, "failed": 1}
        requests = read_lines(batch.requests_path(out))
        assert requests[0]["url"] == "/v1/chat/completions" and requests[0]["body"]["model"] == "test-model"
        # separate steps through the CLI: only the failed id is submitted again
        server.batch_fail_ids = set()
        args = ("--output_file", out)
        submitted = cli("batch", "submit", "--input", questions, *args, "--model", "test-model",
                        "--base_url", server.base_url)
        assert submitted.returncode == 0, submitted.stderr
        assert "requests 1" in submitted.stdout
        assert "in_progress" in cli("batch", "poll", *args).stdout
        polled = cli("batch", "poll", *args, "--wait", "--poll_interval", "0.01")
        assert "completed" in polled.stdout, polled.stderr
        ingested = cli("batch", "ingest", *args)
        assert ingested.returncode == 0, ingested.stderr
    lines = read_lines(out)
    assert sorted(int(r["id"]) for r in lines) == list(range(8)) and all(r["status"] == "ok" for r in lines)
    state = json.loads(batch.state_path(out).read_text())
    assert state["status"] == "ingested" and SECRET not in batch.state_path(out).read_text()


def test_an_expired_batch_keeps_its_answers_and_leaves_the_rest_for_a_new_batch(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 6)
    out = tmp_path / "o.jsonl"
    with ChatServer(batch_polls=2, batch_expire_after=4) as server:
        submitted = config(questions, out, base_url=server.base_url)
        poll = PollConfig(output_file=out, wait=True, poll_interval=0.01)
        batch.submit(submitted)
        status = batch.poll(poll)
        assert status.status == "expired" and status.results is not None, status.format()
        assert "submit' asks the rest again" in status.format()
        summary = batch.ingest(IngestConfig(output_file=out, progress=False))
        assert summary.counts == {"ok": 4, "failed": 2}
        assert summary.reasons and "batch_expired" in next(iter(summary.reasons))
        server.batch_expire_after = None
        again = batch.submit(submitted)
        assert again.counts == {"requests": 2}
        assert sorted(r["custom_id"] for r in read_lines(batch.requests_path(out))) == ["4", "5"]
        batch.poll(poll)
        batch.ingest(IngestConfig(output_file=out, progress=False))
    lines = read_lines(out)
    assert sorted(r["id"] for r in lines if r["status"] == "ok") == [str(i) for i in range(6)]


def test_annotate_labels_distortions_from_the_taxonomy(tmp_path, key):
    questions = write_questions(tmp_path / "q.jsonl", 5)
    out = tmp_path / "o.jsonl"
    caps = set()

    def answer(prompt, body):
        if "只能从以下列表中选择" in prompt:
            caps.add(body.get("max_tokens"))  # max_new_tokens, under the API's name
            return '```json\n{"distortions": ["catastrophizing", "读心术", "not-a-distortion"]}\n```'
        if "第4个" in prompt:
            return "不知道。"
        return "\n\n".join(cbt_steps(prompt).values())

    with ChatServer(answer=answer) as server:
        run_generate(server, questions, out, max_asks=1)
        summary = annotate(AnnotateConfig(input=out, output_file=tmp_path / "labelled.jsonl", model="test-model",
                                          base_url=server.base_url, progress=False))
    assert caps == {200}
    labelled = {r["id"]: r for r in read_lines(tmp_path / "labelled.jsonl")}
    assert labelled["0"]["distortions"] == ["catastrophizing", "mind_reading"]
    assert labelled["4"]["status"] == "rejected" and labelled["4"]["distortions"] == []
    assert summary.labels == {"catastrophizing": 4, "mind_reading": 4}
    assert summary.unknown == {"not-a-distortion": 4}


def complete_lines(path: Path) -> list[dict]:
    """The whole lines of a file (a torn last line, without its newline, is left out)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line) for line in lines]


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_when_written(args: list[str], env: dict, out: Path, lines: int) -> int:
    """Start the CLI and SIGKILL it once ``out`` has ``lines`` lines; returns its exit code."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while count_lines(out) < lines:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return proc.returncode


def test_killed_three_times_then_completed_every_id_exactly_once(tmp_path):
    n = 300
    questions = write_questions(tmp_path / "q.jsonl", n)
    out = tmp_path / "out.jsonl"
    env = {**os.environ, DEFAULT_API_KEY_ENV: "sk-kill-test"}
    with ChatServer(latency=0.15, p429=0.05, p500=0.05, retry_after=0.2, seed=7) as server:
        args = [str(CLI), "generate", "--input", str(questions), "--output_file", str(out), "--model", "m",
                "--base_url", server.base_url, "--concurrency", "8", "--max_attempts", "8"]
        for kill_at in (40, 120, 200):
            assert kill_when_written(args, env, out, kill_at) == -signal.SIGKILL
            seen = [r["id"] for r in complete_lines(out)]
            assert len(seen) == len(set(seen)) and len(seen) < n  # never a duplicate, even mid-run
        started = time.monotonic()
        final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        print(f"final run {time.monotonic() - started:.1f} s", final.stdout)
        assert final.returncode == 0, final.stderr
        assert server.stats.injected_429 > 0 and server.stats.injected_500 > 0
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # every line parses
    ids = [r["id"] for r in records]
    assert sorted(ids, key=int) == [str(i) for i in range(n)]  # every id exactly once
    ok = sum(r["status"] == "ok" for r in records)
    assert ok >= 0.95 * n, final.stdout
    assert "already done" in final.stdout


def test_real_transformers_serve_answers_are_rejected_end_to_end(tmp_path, tiny_model, cli, monkeypatch):
    """`transformers serve` with the tiny random model: gibberish answers, rejected with a reason, run completes."""
    with transformers_serve(tiny_model) as base_url:
        monkeypatch.delenv(DEFAULT_API_KEY_ENV, raising=False)
        questions = write_questions(tmp_path / "q.jsonl", 3)
        out = tmp_path / "out.jsonl"
        result = cli("generate", "--input", questions, "--output", out, "--model", str(tiny_model),
                     "--base-url", base_url, "--concurrency", "2", "--max-tokens", "24", "--max-asks", "2")
        assert result.returncode == 0, result.stderr
        # the old spellings still work, each with its one-line notice
        for notice in ("--output is deprecated; use --output_file", "--max-tokens is deprecated; use --max_new_tokens"):
            assert f"cbt-llm generate: {notice}" in result.stderr.splitlines()
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert sorted(r["id"] for r in records) == ["0", "1", "2"]
        for record in records:
            assert record["status"] == "rejected"
            assert record["reason"].startswith("quality: ") and "(2 answers)" in record["reason"]
            assert record["source"]["model"] and record["source"]["completion_tokens"]
        assert "rejected 3" in result.stdout
        # a rerun has nothing left to do
        again = cli("generate", "--input", questions, "--output_file", out, "--model", str(tiny_model),
                    "--base_url", base_url)
        assert again.returncode == 0 and "3 already done" in again.stdout
