"""cbt-llm generate without a server: the configs, the CLI's parsing and exit code, the output store's repairs and
refusals, the settings check on resume, the dry run, the summary, and batch submit and ingest on a faked Batch API
(the loopback-server and process tests are in test_generate_slow.py)."""

import asyncio
import io
import json
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from chat_server import cbt_steps

from cbt_llm.cli import main, parse_args
from cbt_llm.cli.generation import GenerateArguments
from cbt_llm.config import config_to_dict
from cbt_llm.data.prompts import get_prompt
from cbt_llm.data.sources import Question
from cbt_llm.engine.client import FatalAPIError
from cbt_llm.engine.runner import RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, ResumeState
from cbt_llm.errors import CbtLlmError
from cbt_llm.generation import batch
from cbt_llm.generation.annotate import AnnotateConfig, parse_labels
from cbt_llm.generation.batch import BatchConfig, IngestConfig, PollConfig
from cbt_llm.generation.dedup import DuplicatePair
from cbt_llm.generation.generate import (
    GenerateConfig,
    GenerateSummary,
    estimate,
    generate,
    make_record,
    reason_key,
    record_source,
)
from cbt_llm.generation.quality import QualityConfig

STRICT = QualityConfig(min_length_zh=10_000, max_length_zh=20_000)  # no real answer is this long


def write_questions(path: Path, n: int, start: int = 0) -> Path:
    rows = [{"questionID": i, "question": f"第{i}个问题：最近总是睡不好，一直担心工作做不好怎么办？",
             "description": f"描述{i}：每天晚上都会反复想白天的事情。", "keywords": "情绪,焦虑"}
            for i in range(start, start + n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def config(questions, output, **options) -> GenerateConfig:
    options.setdefault("progress", False)
    options.setdefault("concurrency", 8)
    options.setdefault("model", "test-model")
    return GenerateConfig(input=questions, output_file=output, **options)


def test_the_config_validates_and_takes_paths(tmp_path):
    made = config(tmp_path / "q.jsonl", tmp_path / "o.jsonl")
    assert made.input == str(tmp_path / "q.jsonl") and made.max_new_tokens is None and made.quality == QualityConfig()
    assert config("q", "o", max_new_tokens=64, seed=3).params() == \
        {"temperature": 0.7, "top_p": None, "max_tokens": 64, "seed": 3}  # the API's name for the cap
    with pytest.raises(CbtLlmError, match="^--max_asks must be at least 1, got 0$"):
        config("q", "o", max_asks=0)
    with pytest.raises(CbtLlmError, match="^--limit must be >= 0"):
        config("q", "o", limit=-1)
    with pytest.raises(CbtLlmError, match="^--output_file must differ from --input"):
        AnnotateConfig(input=tmp_path / "r.jsonl", output_file=tmp_path / "r.jsonl", model="m")
    with pytest.raises(CbtLlmError, match="^--output_file must differ from --input"):
        config(tmp_path / "q.jsonl", tmp_path / "q.jsonl")


def test_the_cli_parses_the_stage_configs_and_the_old_max_tokens_flag(capsys):
    _, generate_args = parse_args(["generate", "--input", "q", "--output_file", "o", "--model", "m",
                                   "--max_tokens", "64", "--poll_interval", "2"])
    assert isinstance(generate_args, BatchConfig)
    assert (generate_args.max_new_tokens, generate_args.poll_interval, generate_args.batch) == (64, 2.0, False)
    _, submit_args = parse_args(["batch", "submit", "--input", "q", "--output_file", "o", "--model", "m",
                                 "--max-tokens=8"])
    assert type(submit_args) is GenerateConfig and submit_args.max_new_tokens == 8
    _, annotate_args = parse_args(["annotate", "--input", "r", "--output_file", "o", "--model", "m"])
    assert type(annotate_args) is AnnotateConfig and annotate_args.max_new_tokens == 200
    assert parse_args(["batch", "poll", "--output_file", "o"])[1] == PollConfig(output_file="o")
    assert parse_args(["batch", "ingest", "--output_file", "o", "--no_progress"])[1] == \
        IngestConfig(output_file="o", progress=False)
    assert capsys.readouterr().err.splitlines() == [
        "cbt-llm generate: --max_tokens is deprecated; use --max_new_tokens",
        "cbt-llm batch: --max-tokens is deprecated; use --max_new_tokens"]


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


@pytest.mark.parametrize("name,content,why", [
    ("README.md", "# My project\n\nSome notes.\n" * 200, "its first line is not a JSON object"),
    ("data.json", json.dumps([{"id": str(i), "status": "ok"} for i in range(5)], indent=2) + "\n",
     "its first line is not a JSON object"),
    ("questions.jsonl", "".join(json.dumps({"questionID": i, "question": "q"}) + "\n" for i in range(5)),
     "5 of its 5 lines are not JSON records with an id"),
    ("one-line.txt", "hello", "its first line is not a JSON object"),  # no newline: not a torn record either
])
def test_an_existing_file_that_is_not_jsonl_output_is_refused_untouched(tmp_path, name, content, why):
    """Regression: a README or a JSON array given as --output_file was rewritten ("dropped 645 unreadable lines")."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CbtLlmError) as caught:
        JsonlStore(path).open()
    assert str(caught.value) == (f"{path}: exists and is not a JSON Lines output file ({why}); not touching it: "
                                 "choose another --output_file, or move this file away")
    assert path.read_text(encoding="utf-8") == content
    questions = write_questions(tmp_path / "q.jsonl", 2)
    for stage in (estimate, generate):  # refused before anything is sent
        with pytest.raises(CbtLlmError, match="not a JSON Lines output file"):
            stage(config(questions, path, base_url="http://127.0.0.1:9/v1"))
    assert path.read_text(encoding="utf-8") == content


def test_a_crash_torn_line_and_an_odd_bad_line_are_still_repaired(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "a", "status": "ok"}\n\x00\x00\x00\n{"id": "b", "status": "ok"}\n{"id": "c", "st')
    state = JsonlStore(out).open()
    assert (state.torn_tail, state.bad_lines, sorted(state.records)) == (True, 1, ["a", "b"])
    torn_only = tmp_path / "torn.jsonl"
    torn_only.write_text('{"id": "a", "question": "半')
    JsonlStore(torn_only).open()
    assert torn_only.read_text() == ""


def test_a_store_that_wrote_nothing_leaves_no_file(tmp_path):
    """Regression: a run stopped by a 401 or 400 left an empty output file."""
    out = tmp_path / "new" / "o.jsonl"
    store = JsonlStore(out)
    store.open()
    store.close()
    assert not out.exists()
    store.open()
    store.append({"id": "a", "status": "failed"})
    store.close()
    store = JsonlStore(out)
    store.open()
    store.close()  # it was there before: kept
    assert read_lines(out) == [{"id": "a", "status": "failed"}]


def test_a_fatal_error_names_the_question_it_was_raised_for(tmp_path):
    stats = RunStats(tmp_path / "o.jsonl")
    store, todo = resume(stats.output, [Question(str(i), f"问题{i}") for i in range(3)], lambda q: q.id, stats)

    async def work(engine, question: Question) -> dict:
        if question.id == "1":
            raise FatalAPIError("http://127.0.0.1:9/v1/chat/completions: HTTP 401: bad key")
        return {"id": question.id, "status": "ok"}

    endpoint = config("q", "o", base_url="http://127.0.0.1:9/v1", concurrency=1)
    with pytest.raises(FatalAPIError) as caught:
        asyncio.run(run_requests(todo, work, store, endpoint, stats, desc="generate", progress=False))
    assert str(caught.value) == "question 1: http://127.0.0.1:9/v1/chat/completions: HTTP 401: bad key"
    assert [r["id"] for r in read_lines(stats.output)] == ["0"]


def made_with(model: str, prompt: str = "paper", language: str = "zh", served: str | None = None,
              status: str = "ok", legacy: bool = False) -> dict:
    """A record as generate writes it (``legacy``: as it wrote it before the asked model was kept)."""
    source = record_source(model, get_prompt(prompt, language), {"model": served or model}, "stop", 1)
    if legacy:
        source = {k: v for k, v in source.items() if k not in ("requested_model", "language")}
    return make_record(Question("0", "问题"), status, source=source)


@pytest.mark.parametrize("changed,words", [
    ({"model": "model-b"}, "--model 'model-a' (this run: 'model-b')"),
    ({"prompt": "structured"}, "prompt 'paper-zh-v1' (this run: 'structured-zh-v1')"),
    ({"language": "en"}, "prompt 'paper-zh-v1' (this run: 'paper-en-v1'), --language 'zh' (this run: 'en')"),
])
def test_adding_to_an_output_made_with_another_model_or_prompt_is_refused(tmp_path, changed, words):
    """Regression: resuming with another --model or --prompt mixed its records into the file silently."""
    questions = write_questions(tmp_path / "q.jsonl", 3)
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps(made_with("model-a", served="model-a-2024-07-18"), ensure_ascii=False) + "\n")
    before = out.read_bytes()
    assert estimate(config(questions, out, model="model-a")).todo == 2  # the same settings go on
    options = {"model": "model-a", **changed, "base_url": "http://127.0.0.1:9/v1"}
    for stage in (estimate, generate):
        with pytest.raises(CbtLlmError) as caught:
            stage(config(questions, out, **options))
        assert str(caught.value) == (f"{out}: its records were made with {words} (record 0); adding to it would mix "
                                     "them: write to a new --output_file, or run again with the settings that "
                                     "made them")
    assert out.read_bytes() == before


def test_failed_lines_and_records_from_before_the_asked_model_was_kept_do_not_block_a_resume(tmp_path):
    questions = write_questions(tmp_path / "q.jsonl", 3)
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps(made_with("gpt-4o-mini", served="gpt-4o-mini-2024-07-18", legacy=True)) + "\n"
                   + json.dumps({**made_with("model-b", status="failed"), "id": "1"}) + "\n")
    assert estimate(config(questions, out, model="gpt-4o-mini")).todo == 2
    with pytest.raises(CbtLlmError, match="prompt 'paper-zh-v1' \\(this run: 'structured-zh-v1'\\)"):
        estimate(config(questions, out, model="gpt-4o-mini", prompt="structured"))


def test_the_cli_exits_1_with_one_line_when_every_question_failed(tmp_path, monkeypatch, capsys):
    """Regression: `generate` exited 0 when every request failed."""
    from cbt_llm.cli import generation

    def all_failed(config):
        return GenerateSummary(Path(config.output_file), total=3, counts=Counter(failed=3),
                               reasons=Counter({"HTTP N: Invalid request": 3}))

    monkeypatch.setattr(generation, "generate", all_failed)
    argv = ["generate", "--input", "q.jsonl", "--output_file", str(tmp_path / "o.jsonl"), "--model", "m"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "ok 0, rejected 0, failed 3" in captured.out and "not ok: HTTP N: Invalid request x3" in captured.out
    assert captured.err == (f"cbt-llm generate: error: all 3 items failed, none came back done; their reasons are in "
                            f"{tmp_path / 'o.jsonl'} (the same command again retries them)\n")
    monkeypatch.setattr(generation, "generate", lambda config: GenerateSummary(
        Path(config.output_file), total=3, counts=Counter(failed=2, rejected=1)))
    assert main(argv) == 0
    monkeypatch.setattr(generation, "generate", lambda config: GenerateSummary(Path(config.output_file), total=3,
                                                                               skipped=3))
    assert main(argv) == 0  # nothing left to do is not a failure


def test_dry_run_estimates_what_is_left_to_do(tmp_path):
    questions = write_questions(tmp_path / "q.jsonl", 20)
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"id": "0", "status": "ok"}) + "\n" + json.dumps({"id": "1", "status": "failed"}) + "\n")
    estimated = estimate(config(questions, out, price_input=2.5, price_output=10))
    assert (estimated.questions, estimated.todo, estimated.completion_tokens) == (20, 19, 19 * 700)
    assert "20 questions valid, 19 to generate (1 already done)" in estimated.format()
    assert "estimated cost: $0.1" in estimated.format()
    capped = estimate(config(questions, out, limit=5, max_new_tokens=100))
    assert (capped.todo, capped.completion_tokens) == (4, 400)
    assert "pass --price_input and --price_output" in capped.format()


def test_the_summary_says_what_the_run_did():
    summary = GenerateSummary(
        Path("o.jsonl"), total=10, skipped=2, counts=Counter(ok=5, rejected=2, failed=1), seconds=4.0, requests=12,
        retries=3, errors=Counter({"429": 2, "500": 1}), prompt_tokens=1000, completion_tokens=5000,
        rate_limit_events=2, learned_rate=3.5, price_input=2.5, price_output=10.0,
        resume=ResumeState(torn_tail=True, bad_lines=2, duplicates=1, retried_failed=3),
        reasons=Counter({"quality: too short": 3, "HTTP 500": 1}), file_counts=Counter(ok=7, rejected=2, failed=1),
        duplicates=[DuplicatePair("a", "b", 0.9), DuplicatePair("b", "c", 0.85), DuplicatePair("d", "e", 0.81)])
    assert summary.format().splitlines() == [
        "generated 8 of 10 questions in 4.0 s (2.00/s): ok 5, rejected 2, failed 1; 2 already done",
        "requests 12, retries 3, errors: 429 x2, 500 x1; slowed down 2x for 429s (server accepted about 3.5 req/s)",
        "tokens: prompt 1000, completion 5000; cost about $0.0525",
        "resumed: retried 3 failed, repaired a torn last line, dropped 2 unreadable lines, removed 1 duplicate ids",
        "not ok: quality: too short x3; HTTP 500 x1",
        "o.jsonl: ok 7, rejected 2, failed 1 (cbt-llm build --input takes the ok records)",
        "near-duplicate answers: 3 pairs in 2 clusters (largest: 3 answers, b ...), e.g. a~b (0.90), b~c (0.85), "
        "d~e (0.81)"]
    long_reasons = GenerateSummary(Path("o.jsonl"), reasons=Counter({reason_key(
        "quality: too short (312 < 400 chars); missing steps: challenge, strategy, encouragement (3 answers)"): 4}))
    assert "not ok: quality: too short (N < N chars); missing steps: challenge, strategy, encouragement (N answers) x4" \
        in long_reasons.format().splitlines()  # regression: cut at 80 characters, mid-word
    assert reason_key("HTTP 500: The server had an error (after 6 attempts)") == "HTTP N: The server had an error"
    quiet = GenerateSummary(Path("o.jsonl"), resume=ResumeState())
    assert quiet.format().splitlines() == [
        "generated 0 of 0 questions in 0.0 s (0.00/s): ok 0, rejected 0, failed 0", "requests 0, retries 0",
        "tokens: prompt 0, completion 0", "near-duplicate answers: none"]


def test_parse_labels_keeps_the_taxonomy_and_reports_the_rest():
    assert parse_labels("none") is None and parse_labels('["labelling"]') == (["labeling"], [])
    assert parse_labels('{"distortions": ["catastrophizing", "读心术", "x"]}') == \
        (["catastrophizing", "mind_reading"], ["x"])


class FakeBatchAPI:
    """The two calls ``submit`` makes, answered in memory (no server): what was uploaded is kept."""

    def __init__(self):
        self.api_key, self.uploaded = "sk-fake", b""
        self.files = SimpleNamespace(create=self._upload)
        self.batches = SimpleNamespace(create=lambda **_: SimpleNamespace(id="batch_1", status="validating"))

    def _upload(self, file, purpose):
        self.uploaded = file[1].read()
        return SimpleNamespace(id="file-1")


def fake_results(output: Path, answers: dict[str, str | None]) -> None:
    """The results file ``poll`` would download: an answer per id, or (None) a request the batch did not get to."""
    lines = []
    for custom_id, answer in answers.items():
        if answer is None:
            lines.append({"custom_id": custom_id, "response": None,
                          "error": {"code": "batch_expired", "message": "not executed"}})
            continue
        body = {"model": "test-model", "usage": {"prompt_tokens": 50, "completion_tokens": 600},
                "choices": [{"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}
        lines.append({"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None})
    batch.results_path(output).write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                          encoding="utf-8")


def submit_offline(monkeypatch, submitted: GenerateConfig) -> FakeBatchAPI:
    api = FakeBatchAPI()
    monkeypatch.setattr(batch, "openai_client", lambda *args, **kwargs: api)
    status = batch.submit(submitted)
    assert (status.batch_id, status.counts) == ("batch_1", {"requests": api.uploaded.count(b"\n")})
    return api


def test_batch_ingest_applies_the_quality_bounds_given_to_submit(tmp_path, monkeypatch):
    """Regression: the state file dropped ``quality`` and ingest checked against the default bounds."""
    questions = write_questions(tmp_path / "q.jsonl", 2)
    out = tmp_path / "o.jsonl"
    submit_offline(monkeypatch, config(questions, out, quality=STRICT, max_new_tokens=900))
    saved = json.loads(batch.state_path(out).read_text())["config"]
    assert saved["quality"] == config_to_dict(STRICT) and saved["max_new_tokens"] == 900
    good = "\n\n".join(cbt_steps("第0个问题").values())  # passes the default check
    fake_results(out, {"0": good, "1": None})
    summary = batch.ingest(IngestConfig(output_file=out, progress=False))
    records = {r["id"]: r for r in read_lines(out)}
    assert records["0"]["status"] == "rejected" and records["0"]["response"] == good
    assert records["0"]["reason"].startswith("quality: too short (") and records["0"]["reason"].endswith(
        " < 10000 chars) (batch, 1 answer)")
    assert records["1"]["status"] == "failed" and records["1"]["reason"] == "batch: batch_expired: not executed"
    assert summary.counts == {"rejected": 1, "failed": 1} and summary.completion_tokens == 600
    assert json.loads(batch.state_path(out).read_text())["status"] == "ingested"


def test_the_state_file_keeps_the_whole_config_typed_without_the_cli_switches(tmp_path, monkeypatch):
    questions = write_questions(tmp_path / "q.jsonl", 1)
    args = GenerateArguments(input=questions, output_file=tmp_path / "o.jsonl", model="m", batch=True, poll_interval=5,
                             quality=STRICT, duplicate_threshold=0.5, rpm=60)
    submit_offline(monkeypatch, args)
    state = json.loads(batch.state_path(args.output_file).read_text())
    restored = batch.batch_config(state, args.output_file)
    assert type(restored) is BatchConfig and (restored.quality, restored.poll_interval) == (STRICT, 5)
    assert config_to_dict(restored) == {k: v for k, v in config_to_dict(args).items() if k not in ("batch", "dry_run")}


def test_batch_requests_and_ingested_records_match_generate(tmp_path, monkeypatch):
    questions = write_questions(tmp_path / "q.jsonl", 3)
    out = tmp_path / "o.jsonl"
    api = submit_offline(monkeypatch, config(questions, out, prompt="structured", max_new_tokens=900, seed=1))
    first = json.loads(api.uploaded.decode().splitlines()[0])
    assert (first["custom_id"], first["url"]) == ("0", "/v1/chat/completions")
    assert {k: v for k, v in first["body"].items() if k != "messages"} == \
        {"model": "test-model", "temperature": 0.7, "max_tokens": 900, "seed": 1}
    steps = cbt_steps("x")
    fake_results(out, {"0": json.dumps({**steps, "response": "\n\n".join(steps.values())}, ensure_ascii=False),
                       "1": "不是 JSON", "9": "an id that is not a question"})
    summary = batch.ingest(IngestConfig(output_file=out, progress=False))
    records = {r["id"]: r for r in read_lines(out)}
    assert records["0"]["status"] == "ok" and records["0"]["steps"] == steps
    assert records["0"]["source"]["prompt_version"] == "structured-zh-v1" and records["0"]["source"]["asks"] == 1
    assert records["1"]["reason"] == "quality: structured answer is not a JSON object (batch, 1 answer)"
    assert summary.counts == {"ok": 1, "rejected": 1} and summary.skipped == 1 and "9" not in records


def test_batch_ingest_reads_a_state_file_from_before_the_config_was_saved_whole(tmp_path):
    questions = write_questions(tmp_path / "q.jsonl", 1)
    out = tmp_path / "o.jsonl"
    batch.state_path(out).write_text(json.dumps({
        "batch_id": "batch_1", "status": "completed", "input": str(questions), "model": "old-model",
        "options": {"prompt": "paper", "language": "zh", "max_tokens": 300, "base_url": "http://h/v1",
                    "duplicate_threshold": 0.9}}))
    fake_results(out, {"0": "\n\n".join(cbt_steps("第0个问题").values())})
    batch.ingest(IngestConfig(output_file=out, progress=False))
    assert [(r["id"], r["status"], r["source"]["model"]) for r in read_lines(out)] == [("0", "ok", "test-model")]
    restored = batch.batch_config(json.loads(batch.state_path(out).read_text()), out)
    assert (restored.model, restored.max_new_tokens, restored.base_url, restored.quality) == \
        ("old-model", 300, "http://h/v1", QualityConfig())


def test_batch_ingest_shows_progress_on_a_terminal_unless_turned_off(tmp_path, monkeypatch):
    questions = write_questions(tmp_path / "q.jsonl", 3)
    out = tmp_path / "o.jsonl"
    submit_offline(monkeypatch, config(questions, out))
    fake_results(out, {str(i): "\n\n".join(cbt_steps(f"第{i}个问题").values()) for i in range(3)})
    terminal = type("Terminal", (io.StringIO,), {"isatty": lambda self: True})()
    monkeypatch.setattr(sys, "stderr", terminal)
    batch.ingest(IngestConfig(output_file=out, progress=False))
    assert terminal.getvalue() == ""
    out.unlink()
    batch.ingest(IngestConfig(output_file=out))
    assert "ingest" in terminal.getvalue() and "ok=3" in terminal.getvalue()


def test_batch_steps_name_the_current_flags_in_their_hints(tmp_path):
    out = tmp_path / "o.jsonl"
    with pytest.raises(CbtLlmError, match="with --output_file .* first$"):
        batch.ingest(IngestConfig(output_file=out))
    batch.state_path(out).write_text(json.dumps({"batch_id": "b", "status": "completed", "config": {}}))
    with pytest.raises(CbtLlmError, match=r"run 'cbt-llm batch poll --output_file .* --wait'$"):
        batch.ingest(IngestConfig(output_file=out))
    assert "cbt-llm batch ingest --output_file" in batch.BatchStatus("b", "completed", results=out).format()
