"""OpenAI Batch API mode: the same questions and output contract as ``generate``, at half the price.

Three steps, each resumable after days, with the state kept next to the output file:

* ``submit``: write ``OUT.jsonl.batch-requests.jsonl`` (one chat-completions request per question
  still to do, ``custom_id`` = question id), upload it and create the batch; the batch id and the
  run's settings go to ``OUT.jsonl.batch.json``.
* ``poll``: check the batch (optionally until it ends) and, once it has ended, download the results
  to ``OUT.jsonl.batch-results.jsonl`` (errors appended with their status). An expired or cancelled
  batch keeps the answers it got (paid for): they are downloaded too, and the requests it did not
  get to are written as ``failed``, so the next ``submit`` asks only those.
* ``ingest``: check each answer with the quality check and write the records into ``OUT.jsonl``
  exactly like ``generate`` (done ids kept, failed ones replaced). A batch cannot re-ask, so an
  answer failing the check is kept as ``rejected``; a later ``cbt-llm generate`` with the same
  output retries the ``failed`` ones.

``run_batch`` does all three in one go.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.data.prompts import get_prompt
from cbt_llm.data.sources import read_questions
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV, answer_of, api_errors, openai_client
from cbt_llm.errors import CbtLlmError
from cbt_llm.generation.generate import (
    GenerateOptions,
    GenerateSummary,
    build_payload,
    count_output,
    make_record,
    reason_key,
    record_source,
    select_questions,
)
from cbt_llm.generation.quality import check_answer
from cbt_llm.engine.runner import Progress, resume
from cbt_llm.engine.store import JsonlStore

MAX_BATCH_REQUESTS = 50_000
TERMINAL = ("completed", "failed", "expired", "cancelled")
WITH_RESULTS = ("completed", "expired", "cancelled")  # ended states whose output file holds answers


def state_path(output: str | Path) -> Path:
    return Path(f"{output}.batch.json")


def requests_path(output: str | Path) -> Path:
    return Path(f"{output}.batch-requests.jsonl")


def results_path(output: str | Path) -> Path:
    return Path(f"{output}.batch-results.jsonl")


@dataclass
class BatchStatus:
    """The batch as last seen, for the command's message."""

    batch_id: str
    status: str
    counts: dict = field(default_factory=dict)
    results: Path | None = None
    note: str = ""

    def format(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items()) if self.counts else ""
        text = f"batch {self.batch_id}: {self.status}" + (f" ({counts})" if counts else "")
        if self.results:
            text += f"; results in {self.results}; next: cbt-llm batch ingest --output ..."
        return text + (f"; {self.note}" if self.note else "")


def _load_state(output: str | Path) -> dict:
    path = state_path(output)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no batch state; run 'cbt-llm batch submit' with --output {output} first")
    return json.loads(path.read_text(encoding="utf-8"))


def _save_state(output: str | Path, state: dict) -> None:
    path = state_path(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def write_requests(input: str | Path, output: str | Path, model: str, opts: GenerateOptions) -> tuple[Path, int]:
    """Write the Batch API request file for the questions not yet done; returns it and the count."""
    template = get_prompt(opts.prompt, opts.language)
    questions = select_questions(read_questions(input), opts.limit)
    existing = JsonlStore(output).read().records
    done = {i for i, r in existing.items() if r.get("status") in ("ok", "rejected")}
    todo = [q for q in questions if q.id not in done]
    if len(todo) > MAX_BATCH_REQUESTS:
        raise CbtLlmError(f"{len(todo)} requests exceed the Batch API's {MAX_BATCH_REQUESTS} per batch; "
                          "use --limit and submit in parts")
    path = requests_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for q in todo:
            line = {"custom_id": q.id, "method": "POST", "url": "/v1/chat/completions",
                    "body": build_payload(q, template, model, opts.params())}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path, len(todo)


def submit(input: str | Path, output: str | Path, model: str, **options: Any) -> BatchStatus:
    """Write the request file, upload it and create the batch; the state goes to ``OUT.batch.json``."""
    opts = GenerateOptions(**options)
    if state_path(output).is_file():
        state = json.loads(state_path(output).read_text(encoding="utf-8"))
        if state.get("status") not in TERMINAL + ("ingested",):
            raise CbtLlmError(f"batch {state['batch_id']} for {output} is still {state.get('status')}; "
                              "poll and ingest it first (or delete " + str(state_path(output)) + ")")
    path, count = write_requests(input, output, model, opts)
    if count == 0:
        return BatchStatus("-", "nothing to do", note=f"every question in {input} is done in {output}")
    client = openai_client(opts.base_url, opts.api_key_env, max_retries=5)
    with api_errors("batch submit", client.api_key), open(path, "rb") as f:
        uploaded = client.files.create(file=(path.name, f), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata={"tool": "cbt-llm"})
    state = {"batch_id": batch.id, "input_file_id": uploaded.id, "status": batch.status, "requests": count,
             "input": str(input), "model": model, "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "options": {k: v for k, v in vars(opts).items() if k not in ("quality",)}}
    _save_state(output, state)
    return BatchStatus(batch.id, batch.status, {"requests": count}, note=f"state in {state_path(output)}")


def poll(output: str | Path, *, wait: bool = False, interval: float = 30.0, api_key_env: str | None = None,
         timeout: float | None = None) -> BatchStatus:
    """Check the batch; with ``wait`` keep polling until it ends. Downloads the results when completed."""
    state = _load_state(output)
    options = state["options"]
    client = openai_client(options.get("base_url"), api_key_env or options.get("api_key_env", DEFAULT_API_KEY_ENV),
                           max_retries=5)
    started = time.monotonic()
    while True:
        with api_errors(f"batch poll {state['batch_id']}", client.api_key):
            batch = client.batches.retrieve(state["batch_id"])
        counts = batch.request_counts.model_dump() if batch.request_counts is not None else {}
        state["status"] = batch.status
        _save_state(output, state)
        if batch.status in TERMINAL or not wait or (timeout and time.monotonic() - started > timeout):
            break
        time.sleep(interval)
    if batch.status not in WITH_RESULTS or not (batch.output_file_id or batch.error_file_id):
        return BatchStatus(batch.id, batch.status, counts)
    lines = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            with api_errors(f"batch download {file_id}", client.api_key):
                lines.append(client.files.content(file_id).read().decode("utf-8"))
    path = results_path(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(text if text.endswith("\n") or not text else text + "\n" for text in lines),
                   encoding="utf-8")
    os.replace(tmp, path)
    state["results"] = str(path)
    _save_state(output, state)
    note = "" if batch.status == "completed" else ("the answers it got are in the results; after ingest, "
                                                  "'cbt-llm batch submit' asks the rest again")
    return BatchStatus(batch.id, batch.status, counts, path, note)


def ingest(output: str | Path, *, progress: bool = False) -> GenerateSummary:
    """Check the downloaded answers and write them into the output file, like ``generate``."""
    state = _load_state(output)
    path = results_path(output)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no results yet; run 'cbt-llm batch poll --output {output} --wait'")
    options = dict(state["options"])
    opts = GenerateOptions(**{k: v for k, v in options.items() if k in GenerateOptions.__dataclass_fields__})
    template = get_prompt(opts.prompt, opts.language)
    questions = {q.id: q for q in select_questions(read_questions(state["input"]), opts.limit)}
    results: dict[str, dict] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise CbtLlmError(f"{path}:{number}: invalid JSON: {err.msg}") from None
            results[str(item.get("custom_id"))] = item
    summary = GenerateSummary(Path(output))
    store, todo = resume(output, list(results), lambda custom_id: custom_id, summary, done_statuses=("ok", "rejected"))
    started = time.monotonic()
    bar = Progress(len(todo), progress, "ingest")
    with store:
        for custom_id in todo:
            item, q = results[custom_id], questions.get(custom_id)
            if q is None:
                summary.skipped += 1
                continue
            response = item.get("response") or {}
            body = response.get("body") or {}
            code = response.get("status_code")
            if code != 200 or item.get("error"):
                error = item.get("error") or body.get("error") or {}
                message = error.get("message", "") if isinstance(error, dict) else str(error)
                what = f"HTTP {code}" if code else (error.get("code") if isinstance(error, dict) else None) or "error"
                record = make_record(q, "failed", f"batch: {what}: {message}".strip(),
                                     source=record_source(state["model"], template, None, None, 1))
            else:
                content, finish = answer_of(body)
                result = check_answer(content, opts.language, template.structured, finish, opts.quality)
                source = record_source(state["model"], template, body, finish, 1)
                usage = body.get("usage") or {}
                summary.prompt_tokens += usage.get("prompt_tokens") or 0
                summary.completion_tokens += usage.get("completion_tokens") or 0
                steps = result.steps if template.structured else None
                if result.ok:
                    record = make_record(q, "ok", "", result.response, steps, source)
                else:
                    record = make_record(q, "rejected", f"quality: {result.reason} (batch, 1 answer)",
                                         result.response, steps, source)
            store.append(record)
            summary.counts[record["status"]] += 1
            if record["status"] != "ok":
                summary.reasons[reason_key(record["reason"])] += 1
            bar.update(summary.counts)
    bar.close()
    summary.seconds = time.monotonic() - started
    state["status"] = "ingested"
    _save_state(output, state)
    count_output(summary, opts.duplicate_threshold)
    return summary


def run_batch(input: str | Path, output: str | Path, model: str, *, poll_interval: float = 30.0,
              **options: Any) -> GenerateSummary:
    """Submit, poll until the batch ends, and ingest: ``cbt-llm generate --batch``."""
    status = submit(input, output, model, **options)
    if status.status == "nothing to do":
        raise CbtLlmError(status.note)
    status = poll(output, wait=True, interval=poll_interval, api_key_env=options.get("api_key_env"))
    if status.results is None:
        raise CbtLlmError(f"batch {status.batch_id} ended {status.status}; nothing to ingest")
    return ingest(output)
