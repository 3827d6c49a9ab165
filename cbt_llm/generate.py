"""Generate CBT answers for a questions file with any OpenAI-compatible model: fast, resumable, nothing lost.

``generate(input, output, model, ...)`` (and ``cbt-llm generate``) sends one request per
question through ``cbt_llm.client.RequestEngine`` (concurrency, optional rpm/tpm, adaptive
backoff on 429, retries), checks every answer with ``cbt_llm.quality`` (re-asking up to a bound)
and writes one JSON line per question id to the output file:

* the ``default`` record fields plus ``status`` (``ok``, ``rejected``, ``failed``) and ``reason``;
* each line is written whole with one ``write`` call as soon as its answer is done;
* a run killed at any moment and started again with the same arguments skips the ids that are
  done (ok or rejected), retries the failed ones and repairs a torn last line. Before appending,
  the file is compacted (torn tail, failed lines to retry, any duplicate) into a temporary file
  that atomically replaces it, so an id never appears twice, even across crashes.

Importing this module does not import torch, transformers or datasets.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .client import estimate_message_tokens
from .errors import CbtLlmError
from .prompts import STEP_KEYS, PromptTemplate, get_prompt
from .quality import DEFAULT_QUALITY, QualityConfig, check_answer, near_duplicates
from .sources import Question, read_questions

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
STATUS_RANK = {"failed": 0, "rejected": 1, "ok": 2}
# Assumed answer lengths for --dry-run (tokens), from the bundled sample (~580 Chinese characters).
EXPECTED_COMPLETION_TOKENS = {"zh": 700, "en": 500}


# ---------------------------------------------------------------------------------------------
# API key
# ---------------------------------------------------------------------------------------------
def resolve_api_key(api_key_env: str = DEFAULT_API_KEY_ENV, base_url: str | None = None) -> str | None:
    """The API key from the environment variable ``api_key_env``.

    Local servers (a ``--base-url``) often need no key; then ``None`` is returned and a placeholder
    is sent. Against the default OpenAI endpoint a missing key is an error.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env or ""):
        raise CbtLlmError("--api-key-env must be the name of an environment variable (letters, digits, _), "
                          "not the key itself")
    key = os.environ.get(api_key_env, "").strip()
    if key:
        return key
    if base_url:
        return None
    raise CbtLlmError(f"no API key: set the environment variable {api_key_env} "
                      "(or name another variable with --api-key-env), or pass --base-url for a local server")


# ---------------------------------------------------------------------------------------------
# The output file
# ---------------------------------------------------------------------------------------------
@dataclass
class ResumeState:
    """What an existing output file held when the run started."""

    records: dict[str, dict] = field(default_factory=dict)
    torn_tail: bool = False
    bad_lines: int = 0
    duplicates: int = 0
    retried_failed: int = 0


class OutputFile:
    """An append-only JSON Lines file with one line per id, made resumable and crash-safe.

    ``open(retry=ids)`` reads what is there, drops a torn last line, unreadable lines, duplicate
    ids (keeping the best status) and the ``failed`` lines whose ids are about to be retried, by
    writing the kept lines to a temporary file and ``os.replace``-ing it over the output. Then
    ``append`` writes each new record as one line with a single ``write`` call.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def read(self) -> ResumeState:
        state = ResumeState()
        if not self.path.exists():
            return state
        if self.path.is_dir():
            raise CbtLlmError(f"{self.path}: is a directory, expected an output .jsonl file")
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            state.torn_tail = True  # no newline at the end: the last write was cut off
            lines.pop()
        for raw in lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                record_id = record["id"]
                if not isinstance(record_id, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                state.bad_lines += 1
                continue
            previous = state.records.get(record_id)
            if previous is not None:
                state.duplicates += 1
                if STATUS_RANK.get(previous.get("status"), 0) > STATUS_RANK.get(record.get("status"), 0):
                    continue
            state.records[record_id] = record
        return state

    def open(self, retry: set[str] | None = None) -> ResumeState:
        """Repair and compact the file for resuming, then open it for appending."""
        state = self.read()
        retry = retry or set()
        to_retry = {i for i, r in state.records.items() if r.get("status") == "failed" and i in retry}
        state.retried_failed = len(to_retry)
        for record_id in to_retry:
            del state.records[record_id]
        if state.torn_tail or state.bad_lines or state.duplicates or to_retry:
            self._rewrite(state.records.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return state

    def _rewrite(self, records) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            for record in records:
                f.write(_line(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def append(self, record: dict) -> None:
        data = _line(record)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_stale_temp_files(path: Path) -> None:
    """Remove temporary files left by a compaction that was killed before its ``os.replace``."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or not _alive(pid):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_record(question: Question, status: str, reason: str = "", response: str = "",
                steps: dict[str, str] | None = None, source: dict[str, Any] | None = None) -> dict:
    """One output line: the ``default`` schema fields plus ``status`` and ``reason``."""
    return {
        "id": question.id,
        "question": question.question,
        "description": question.description,
        "keywords": list(question.keywords),
        "response": response,
        "steps": steps or {key: "" for key in STEP_KEYS},
        "distortions": [],
        "status": status,
        "reason": reason,
        "source": source or {},
    }


def answer_of(body: dict) -> tuple[str, str | None]:
    """The assistant text and finish reason of a chat-completions response."""
    try:
        choice = body["choices"][0]
    except (KeyError, IndexError, TypeError):
        return "", None
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return (content if isinstance(content, str) else ""), choice.get("finish_reason")


def build_payload(question: Question, prompt: PromptTemplate, model: str, params: dict[str, Any]) -> dict:
    """The chat-completions request body for one question."""
    messages = [{"role": "user", "content": prompt.render(question.question, question.description)}]
    payload = {"model": model, "messages": messages}
    payload.update({k: v for k, v in params.items() if v is not None})
    return payload


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
@dataclass
class GenerateSummary:
    """What a run did; ``format()`` is the final summary printed by the command."""

    output: Path
    total: int = 0
    skipped: int = 0
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    errors: Counter = field(default_factory=Counter)
    rate_limit_events: int = 0
    learned_rate: float | None = None
    resume: ResumeState | None = None
    duplicates: list = field(default_factory=list)
    price_input: float | None = None
    price_output: float | None = None
    file_counts: Counter = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def cost(self) -> float | None:
        if self.price_input is None and self.price_output is None:
            return None
        return (self.prompt_tokens * (self.price_input or 0) + self.completion_tokens * (self.price_output or 0)) / 1e6

    def format(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"generated {self.done} of {self.total} questions in {self.seconds:.1f} s ({rate:.2f}/s): "
            f"ok {self.counts['ok']}, rejected {self.counts['rejected']}, failed {self.counts['failed']}"
            + (f"; {self.skipped} already done" if self.skipped else ""),
            f"requests {self.requests}, retries {self.retries}"
            + (", errors: " + ", ".join(f"{k} x{n}" for k, n in self.errors.most_common()) if self.errors else "")
            + (f"; slowed down {self.rate_limit_events}x for 429s (server accepted about {self.learned_rate:.1f} req/s)"
               if self.rate_limit_events and self.learned_rate else ""),
            f"tokens: prompt {self.prompt_tokens}, completion {self.completion_tokens}"
            + (f"; cost about ${self.cost():.4f}" if self.cost() is not None else ""),
        ]
        if self.resume and (self.resume.torn_tail or self.resume.bad_lines or self.resume.duplicates
                            or self.resume.retried_failed):
            lines.append(f"resumed: retried {self.resume.retried_failed} failed"
                         + (", repaired a torn last line" if self.resume.torn_tail else "")
                         + (f", dropped {self.resume.bad_lines} unreadable lines" if self.resume.bad_lines else "")
                         + (f", removed {self.resume.duplicates} duplicate ids" if self.resume.duplicates else ""))
        if self.reasons:
            lines.append("not ok: " + "; ".join(f"{why} x{n}" for why, n in self.reasons.most_common(5)))
        if self.file_counts:
            lines.append(f"{self.output}: " + ", ".join(f"{k} {self.file_counts[k]}" for k in ("ok", "rejected", "failed"))
                         + " (cbt-llm build --input takes the ok records)")
        if self.duplicates:
            shown = ", ".join(f"{p.first}~{p.second} ({p.similarity:.2f})" for p in self.duplicates[:5])
            lines.append(f"near-duplicate answers: {len(self.duplicates)} pairs, e.g. {shown}")
        else:
            lines.append("near-duplicate answers: none")
        return "\n".join(lines)


def _reason_key(reason: str) -> str:
    return re.sub(r"\d+", "N", reason.split(" (after")[0])[:80]


# ---------------------------------------------------------------------------------------------
# Dry run
# ---------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    questions: int
    todo: int
    prompt_tokens: int
    completion_tokens: int
    price_input: float | None
    price_output: float | None

    def cost(self) -> float | None:
        if self.price_input is None and self.price_output is None:
            return None
        return (self.prompt_tokens * (self.price_input or 0) + self.completion_tokens * (self.price_output or 0)) / 1e6

    def format(self) -> str:
        lines = [f"dry run: {self.questions} questions valid, {self.todo} to generate "
                 f"({self.questions - self.todo} already done); nothing was sent",
                 f"estimated tokens: prompt {self.prompt_tokens}, completion {self.completion_tokens} "
                 "(approximate: no tokenizer, answers assumed full length, re-asks not counted)"]
        cost = self.cost()
        if cost is None:
            lines.append("cost: pass --price-input and --price-output (USD per million tokens) for an estimate")
        else:
            lines.append(f"estimated cost: ${cost:.2f} (Batch API: about ${cost / 2:.2f})")
        return "\n".join(lines)


def estimate(input: str | Path, output: str | Path | None = None, *, prompt: str = "paper", language: str = "zh",
             limit: int | None = None, max_tokens: int | None = None, price_input: float | None = None,
             price_output: float | None = None) -> Estimate:
    """Validate the input and estimate tokens and cost for what is left to generate; sends nothing."""
    template = get_prompt(prompt, language)
    questions = _select(read_questions(input), limit)
    done = set()
    if output is not None:
        done = {i for i, r in OutputFile(output).read().records.items() if r.get("status") in ("ok", "rejected")}
    todo = [q for q in questions if q.id not in done]
    prompt_tokens = sum(estimate_message_tokens(build_payload(q, template, "", {})["messages"]) + 8 for q in todo)
    per_answer = EXPECTED_COMPLETION_TOKENS[language]
    if max_tokens:
        per_answer = min(per_answer, max_tokens)
    return Estimate(len(questions), len(todo), prompt_tokens, per_answer * len(todo), price_input, price_output)


def _select(questions: list[Question], limit: int | None) -> list[Question]:
    if limit is not None:
        if limit < 0:
            raise CbtLlmError(f"--limit must be >= 0, got {limit}")
        questions = questions[:limit]
    return questions


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
@dataclass
class GenerateOptions:
    """Everything ``generate`` takes besides input, output and model (the CLI flags)."""

    base_url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    concurrency: int = 16
    prompt: str = "paper"
    language: str = "zh"
    limit: int | None = None
    temperature: float | None = 0.7
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 120.0
    max_attempts: int = 6
    max_asks: int = 3
    price_input: float | None = None
    price_output: float | None = None
    progress: bool = True
    duplicate_threshold: float = 0.8
    quality: QualityConfig = DEFAULT_QUALITY

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed}


def generate(input: str | Path, output: str | Path, model: str, **options: Any) -> GenerateSummary:
    """Answer every question of ``input`` into ``output`` (see the module docstring); returns the summary."""
    opts = GenerateOptions(**options)
    return asyncio.run(agenerate(input, output, model, opts))


class _Progress:
    """A tqdm bar on stderr with ok/rejected/failed and tokens; shown only on a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and total and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="q", desc="generate", file=sys.stderr, mininterval=0.5,
                            dynamic_ncols=True)

    def update(self, counts: Counter, tokens: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"ok={counts['ok']} rej={counts['rejected']} fail={counts['failed']} "
                                     f"tok={tokens}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def agenerate(input: str | Path, output: str | Path, model: str, opts: GenerateOptions) -> GenerateSummary:
    """The asynchronous core of ``generate``."""
    from .client import RequestEngine, RequestFailed, for_each

    if opts.max_asks < 1:
        raise CbtLlmError(f"--max-asks must be at least 1, got {opts.max_asks}")
    template = get_prompt(opts.prompt, opts.language)
    questions = _select(read_questions(input), opts.limit)
    api_key = resolve_api_key(opts.api_key_env, opts.base_url)
    out = OutputFile(output)
    clean_stale_temp_files(out.path)
    summary = GenerateSummary(out.path, total=len(questions), price_input=opts.price_input,
                              price_output=opts.price_output)
    resume = out.open(retry={q.id for q in questions})
    summary.resume = resume
    done = {i for i, r in resume.records.items() if r.get("status") in ("ok", "rejected")}
    todo = [q for q in questions if q.id not in done]
    summary.skipped = len(questions) - len(todo)
    params = opts.params()
    started = time.monotonic()
    progress = _Progress(len(todo), opts.progress)
    engine = RequestEngine(base_url=opts.base_url, api_key=api_key, concurrency=opts.concurrency, rpm=opts.rpm,
                           tpm=opts.tpm, timeout=opts.timeout, max_attempts=opts.max_attempts)
    async def answer(q: Question) -> dict:
        payload = build_payload(q, template, model, params)
        estimated = estimate_message_tokens(payload["messages"]) + (opts.max_tokens or 800)
        reasons = ""
        response, steps, source = "", None, {}
        for ask in range(1, opts.max_asks + 1):
            try:
                reply = await engine.request(payload, estimated_tokens=estimated if opts.tpm else 0)
            except RequestFailed as err:
                return make_record(q, "failed", err.reason, source=_source(model, template, None, None, ask))
            content, finish = answer_of(reply.body)
            result = check_answer(content, opts.language, template.structured, finish, opts.quality)
            response, steps = result.response, (result.steps if template.structured else None)
            source = _source(model, template, reply.body, finish, ask)
            if result.ok:
                return make_record(q, "ok", "", response, steps, source)
            reasons = result.reason
        return make_record(q, "rejected", f"quality: {reasons} ({opts.max_asks} answers)", response, steps, source)

    async def handle(q: Question) -> None:
        record = await answer(q)
        out.append(record)
        summary.counts[record["status"]] += 1
        if record["status"] != "ok":
            summary.reasons[_reason_key(record["reason"])] += 1
        progress.update(summary.counts, engine.stats.prompt_tokens + engine.stats.completion_tokens)

    try:
        await for_each(todo, handle, opts.concurrency)
    finally:
        progress.close()
        out.close()
        await engine.aclose()
        summary.seconds = time.monotonic() - started
        stats = engine.stats
        summary.prompt_tokens, summary.completion_tokens = stats.prompt_tokens, stats.completion_tokens
        summary.requests, summary.retries, summary.errors = stats.sent, stats.retries, stats.errors
        summary.rate_limit_events = engine.limiter.rate_limit_events
        summary.learned_rate = engine.limiter.last_measured
    final = OutputFile(output).read().records
    summary.file_counts = Counter(r.get("status") for r in final.values())
    ok_texts = {i: r.get("response", "") for i, r in final.items() if r.get("status") == "ok"}
    summary.duplicates = near_duplicates(ok_texts, threshold=opts.duplicate_threshold)
    return summary


def _source(model: str, template: PromptTemplate, body: dict | None, finish: str | None, asks: int) -> dict:
    usage = (body or {}).get("usage") or {}
    source = {
        "model": str((body or {}).get("model") or model),
        "prompt_version": template.version,
        "created_at": utc_now(),
        "finish_reason": finish or "",
        "prompt_tokens": usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None,
        "completion_tokens": usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None,
        "asks": asks,
    }
    return source
