"""OpenAI Batch API mode: the same questions and output contract as ``generate``, at half the price.

Three steps, each resumable after days, with the state kept next to the output file:

* ``submit``: write ``OUT.jsonl.batch-requests.jsonl`` (one chat-completions request per question
  still to do, ``custom_id`` = question id), upload it and create the batch; the batch id and the
  run's config (saved whole, its quality bounds included) go to ``OUT.jsonl.batch.json``.
* ``poll``: check the batch (optionally until it ends) and, once it has ended, download the results
  to ``OUT.jsonl.batch-results.jsonl`` (errors appended with their status). An expired or cancelled
  batch keeps the answers it got (paid for): they are downloaded too, and the requests it did not
  get to are written as ``failed``, so the next ``submit`` asks only those.
* ``ingest``: read the saved config back, check each answer with the quality check and write the
  records into ``OUT.jsonl`` exactly like ``generate`` (done ids kept, failed ones replaced; the
  same :func:`~cbt_llm.generation.generate.answer_record`). A batch cannot re-ask, so an answer
  failing the check is kept as ``rejected``; a later ``cbt-llm generate`` with the same output
  retries the ``failed`` ones.

``run_batch`` does all three in one go.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cbt_llm.config import config_from_dict, config_to_dict, option
from cbt_llm.data.prompts import PromptTemplate, get_prompt
from cbt_llm.data.sources import Question
from cbt_llm.engine.config import ApiKeyConfig
from cbt_llm.engine.endpoints import api_errors, openai_client
from cbt_llm.engine.runner import Progress, resume
from cbt_llm.errors import CbtLlmError
from cbt_llm.generation.generate import (
    DONE_STATUSES,
    GenerateConfig,
    GenerateSummary,
    answer_record,
    build_payload,
    count_output,
    count_reason,
    make_record,
    questions_to_do,
    record_source,
    select_questions,
    settings_check,
)

MAX_BATCH_REQUESTS = 50_000
TERMINAL = ("completed", "failed", "expired", "cancelled")
WITH_RESULTS = ("completed", "expired", "cancelled")  # ended states whose output file holds answers


@dataclass(kw_only=True)
class PollingConfig:
    """How often a submitted batch is checked (by ``run_batch`` and by ``poll --wait``)."""

    poll_interval: float = option(30.0, "seconds between batch polls", metavar="S")


@dataclass(kw_only=True)
class BatchConfig(PollingConfig, GenerateConfig):
    """``generate``'s config plus how often ``run_batch`` polls; saved whole in the state file by ``submit``."""


@dataclass(kw_only=True)
class SubmittedBatchConfig:
    """A batch ``submit`` started, found by the output file it was given."""

    output_file: str = option(help="the output file given to submit", metavar="OUT.jsonl")


@dataclass(kw_only=True)
class PollConfig(PollingConfig, SubmittedBatchConfig, ApiKeyConfig):
    """``cbt-llm batch poll``: which batch and how to wait for it."""

    wait: bool = option(False, "keep polling until the batch ends")


@dataclass(kw_only=True)
class IngestConfig(SubmittedBatchConfig):
    """``cbt-llm batch ingest``: which batch; the rest is the config saved by submit."""

    progress: bool = option(True, "show a progress bar (--no_progress: none)")


def state_path(output: str | Path) -> Path:
    """``OUT.jsonl.batch.json``: the batch id, its status and the config given to ``submit``."""
    return Path(f"{output}.batch.json")


def requests_path(output: str | Path) -> Path:
    """``OUT.jsonl.batch-requests.jsonl``: the request file ``submit`` uploads."""
    return Path(f"{output}.batch-requests.jsonl")


def results_path(output: str | Path) -> Path:
    """``OUT.jsonl.batch-results.jsonl``: the answers and errors ``poll`` downloads."""
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
            text += f"; results in {self.results}; next: cbt-llm batch ingest --output_file ..."
        return text + (f"; {self.note}" if self.note else "")


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------
def _load_state(output: str | Path) -> dict:
    path = state_path(output)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no batch state; run 'cbt-llm batch submit' with --output_file {output} first")
    return json.loads(path.read_text(encoding="utf-8"))


def _save_state(output: str | Path, state: dict) -> None:
    path = state_path(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def saved_config(config: GenerateConfig) -> dict[str, Any]:
    """The config as the state file keeps it: ``BatchConfig``'s fields (a CLI subclass's switches left out)."""
    data = config_to_dict(config)
    return {f.name: data[f.name] for f in fields(BatchConfig) if f.name in data}


def batch_config(state: dict, output: str | Path) -> BatchConfig:
    """The config ``submit`` saved, typed again (a state file written before the config was kept whole
    holds ``input``, ``model`` and the other options apart; its quality bounds were the default)."""
    where = str(state_path(output))
    if "config" in state:
        return config_from_dict(BatchConfig, state["config"], where)
    options = {("max_new_tokens" if k == "max_tokens" else k): v for k, v in state["options"].items()}
    return config_from_dict(BatchConfig, {**options, "input": state["input"], "model": state["model"],
                                          "output_file": str(output)}, where)


# ---------------------------------------------------------------------------------------------
# Submit
# ---------------------------------------------------------------------------------------------
def write_requests(config: GenerateConfig) -> tuple[Path, int]:
    """Write the Batch API request file for the questions not yet done; returns it and the count."""
    template = get_prompt(config.prompt, config.language)
    todo = questions_to_do(select_questions(config), config, template)
    if len(todo) > MAX_BATCH_REQUESTS:
        raise CbtLlmError(f"{len(todo)} requests exceed the Batch API's {MAX_BATCH_REQUESTS} per batch; "
                          "use --limit and submit in parts")
    path = requests_path(config.output_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for q in todo:
            line = {"custom_id": q.id, "method": "POST", "url": "/v1/chat/completions",
                    "body": build_payload(q, template, config.model, config.params())}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path, len(todo)


def submit(config: GenerateConfig) -> BatchStatus:
    """Write the request file, upload it and create the batch; the state and the config go to ``OUT.batch.json``."""
    output = config.output_file
    if state_path(output).is_file():
        state = json.loads(state_path(output).read_text(encoding="utf-8"))
        if state.get("status") not in TERMINAL + ("ingested",):
            raise CbtLlmError(f"batch {state['batch_id']} for {output} is still {state.get('status')}; "
                              "poll and ingest it first (or delete " + str(state_path(output)) + ")")
    path, count = write_requests(config)
    if count == 0:
        return BatchStatus("-", "nothing to do", note=f"every question in {config.input} is done in {output}")
    client = openai_client(config.base_url, config.api_key_env, max_retries=5)
    with api_errors("batch submit", client.api_key), open(path, "rb") as f:
        uploaded = client.files.create(file=(path.name, f), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata={"tool": "cbt-llm"})
    state = {"batch_id": batch.id, "input_file_id": uploaded.id, "status": batch.status, "requests": count,
             "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": saved_config(config)}
    _save_state(output, state)
    return BatchStatus(batch.id, batch.status, {"requests": count}, note=f"state in {state_path(output)}")


# ---------------------------------------------------------------------------------------------
# Poll
# ---------------------------------------------------------------------------------------------
def poll(config: PollConfig) -> BatchStatus:
    """Check the batch; with ``wait`` keep polling until it ends. Downloads the results once it has ended."""
    state = _load_state(config.output_file)
    client = openai_client(batch_config(state, config.output_file).base_url, config.api_key_env, max_retries=5)
    batch = _check(client, state, config)
    counts = batch.request_counts.model_dump() if batch.request_counts is not None else {}
    if batch.status not in WITH_RESULTS or not (batch.output_file_id or batch.error_file_id):
        return BatchStatus(batch.id, batch.status, counts)
    path = _download(client, batch, config.output_file, state)
    note = "" if batch.status == "completed" else ("the answers it got are in the results; after ingest, "
                                                  "'cbt-llm batch submit' asks the rest again")
    return BatchStatus(batch.id, batch.status, counts, path, note)


def _check(client: Any, state: dict, config: PollConfig) -> Any:
    """Retrieve the batch (until it ends, with ``wait``), keeping its status in the state file."""
    while True:
        with api_errors(f"batch poll {state['batch_id']}", client.api_key):
            batch = client.batches.retrieve(state["batch_id"])
        state["status"] = batch.status
        _save_state(config.output_file, state)
        if batch.status in TERMINAL or not config.wait:
            return batch
        time.sleep(config.poll_interval)


def _download(client: Any, batch: Any, output: str | Path, state: dict) -> Path:
    """Write the batch's answers, then its errors, to the results file (atomically) and note it in the state."""
    texts = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            with api_errors(f"batch download {file_id}", client.api_key):
                texts.append(client.files.content(file_id).read().decode("utf-8"))
    path = results_path(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(text if text.endswith("\n") or not text else text + "\n" for text in texts),
                   encoding="utf-8")
    os.replace(tmp, path)
    state["results"] = str(path)
    _save_state(output, state)
    return path


# ---------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------
def read_results(output: str | Path) -> dict[str, dict]:
    """The downloaded results by ``custom_id`` (the question id)."""
    path = results_path(output)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no results yet; run 'cbt-llm batch poll --output_file {output} --wait'")
    results: dict[str, dict] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise CbtLlmError(f"{path}:{number}: invalid JSON: {err.msg}") from None
            results[str(item.get("custom_id"))] = item
    return results


def _result_record(question: Question, item: dict, config: BatchConfig, template: PromptTemplate,
                  summary: GenerateSummary) -> dict:
    """One result line as a record: failed with the batch's error, else checked like a ``generate`` answer."""
    response = item.get("response") or {}
    body = response.get("body") or {}
    code = response.get("status_code")
    if code != 200 or item.get("error"):
        return make_record(question, "failed", _batch_error(item, body, code),
                           source=record_source(config.model, template, None, None, 1))
    usage = body.get("usage") or {}
    summary.prompt_tokens += usage.get("prompt_tokens") or 0
    summary.completion_tokens += usage.get("completion_tokens") or 0
    return answer_record(question, body, config, template, 1, "batch, 1 answer")


def _batch_error(item: dict, body: dict, code: int | None) -> str:
    error = item.get("error") or body.get("error") or {}
    message = error.get("message", "") if isinstance(error, dict) else str(error)
    what = f"HTTP {code}" if code else (error.get("code") if isinstance(error, dict) else None) or "error"
    return f"batch: {what}: {message}".strip()


def ingest(config: IngestConfig) -> GenerateSummary:
    """Check the downloaded answers and write them into the output file, like ``generate``."""
    output = config.output_file
    state = _load_state(output)
    results = read_results(output)
    saved = batch_config(state, output)
    template = get_prompt(saved.prompt, saved.language)
    questions = {q.id: q for q in select_questions(saved)}
    summary = GenerateSummary(Path(output))
    # generate may have added to the output since the batch was submitted: its settings must still match
    store, todo = resume(output, list(results), lambda custom_id: custom_id, summary, done_statuses=DONE_STATUSES,
                         check=settings_check(saved, template))
    started = time.monotonic()
    bar = Progress(len(todo), config.progress, "ingest")
    with store:
        for custom_id in todo:
            question = questions.get(custom_id)
            if question is None:
                summary.skipped += 1
                continue
            record = _result_record(question, results[custom_id], saved, template, summary)
            store.append(record)
            summary.counts[record["status"]] += 1
            count_reason(summary, record)
            bar.update(summary.counts)
    bar.close()
    summary.seconds = time.monotonic() - started
    state["status"] = "ingested"
    _save_state(output, state)
    count_output(summary, saved.duplicate_threshold)
    return summary


def run_batch(config: BatchConfig) -> GenerateSummary:
    """Submit, poll until the batch ends, and ingest: ``cbt-llm generate --batch``."""
    status = submit(config)
    if status.status == "nothing to do":
        raise CbtLlmError(status.note)
    status = poll(PollConfig(output_file=config.output_file, wait=True, poll_interval=config.poll_interval,
                             api_key_env=config.api_key_env))
    if status.results is None:
        raise CbtLlmError(f"batch {status.batch_id} ended {status.status}; nothing to ingest")
    return ingest(IngestConfig(output_file=config.output_file, progress=config.progress))
