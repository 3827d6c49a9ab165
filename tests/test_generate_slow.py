"""Heavier generate tests: SIGKILL the real CLI three times and resume; a real `transformers serve`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_server import ChatServer
from test_generate import write_questions

from cbt_llm.models.serve import transformers_serve

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

CLI = Path(sys.executable).parent / "cbt-llm"


def complete_lines(path: Path) -> list[dict]:
    """The whole lines of a file (a torn last line, without its newline, is left out)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line) for line in lines]


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_killed_three_times_then_completed_every_id_exactly_once(tmp_path):
    n = 300
    questions = write_questions(tmp_path / "q.jsonl", n)
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": "sk-kill-test"}
    with ChatServer(latency=0.15, p429=0.05, p500=0.05, retry_after=0.2, seed=7) as server:
        args = [str(CLI), "generate", "--input", str(questions), "--output", str(out), "--model", "m",
                "--base-url", server.base_url, "--concurrency", "8", "--max-attempts", "8"]
        for kill_at in (40, 120, 200):
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                deadline = time.monotonic() + 60
                while count_lines(out) < kill_at:
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
            assert proc.returncode == -signal.SIGKILL
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


@pytest.mark.slow
def test_real_transformers_serve_answers_are_rejected_end_to_end(tmp_path, tiny_model, cli, monkeypatch):
    """`transformers serve` with the tiny random model: gibberish answers, rejected with a reason, run completes."""
    with transformers_serve(tiny_model) as base_url:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        questions = write_questions(tmp_path / "q.jsonl", 3)
        out = tmp_path / "out.jsonl"
        result = cli("generate", "--input", questions, "--output", out, "--model", str(tiny_model),
                     "--base-url", base_url, "--concurrency", "2", "--max-tokens", "24", "--max-asks", "2")
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert sorted(r["id"] for r in records) == ["0", "1", "2"]
        for record in records:
            assert record["status"] == "rejected"
            assert record["reason"].startswith("quality: ") and "(2 answers)" in record["reason"]
            assert record["source"]["model"] and record["source"]["completion_tokens"]
        assert "rejected 3" in result.stdout
        # a rerun has nothing left to do
        again = cli("generate", "--input", questions, "--output", out, "--model", str(tiny_model),
                    "--base-url", base_url)
        assert again.returncode == 0 and "3 already done" in again.stdout
