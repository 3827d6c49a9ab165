"""Generate CBT answers for a questions file with any OpenAI-compatible model: fast, resumable, nothing lost.

``generate(input, output, model, ...)`` (and ``cbt-llm generate``) sends one request per
question through ``cbt_llm.engine.client.RequestEngine`` (concurrency, optional rpm/tpm, adaptive
backoff on 429, retries), checks every answer with ``cbt_llm.generation.quality`` (re-asking up to a bound)
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
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.data.prompts import STEP_KEYS, PromptTemplate, get_prompt
from cbt_llm.data.sources import Question, read_questions
from cbt_llm.engine.endpoints import answer_of, estimate_message_tokens, resolve_api_key
from cbt_llm.errors import CbtLlmError
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.generation.dedup import duplicate_groups, near_duplicates
from cbt_llm.generation.quality import (
    DEFAULT_QUALITY,
    QualityConfig,
    check_answer,
)
from cbt_llm.engine.runner import EndpointConfig, RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now

# Assumed answer lengths for --dry-run (tokens), from the bundled sample (~580 Chinese characters).
EXPECTED_COMPLETION_TOKENS = {"zh": 700, "en": 500}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
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
class GenerateSummary(RunStats):
    """What a run did; ``format()`` is the final summary printed by the command."""

    reasons: Counter = field(default_factory=Counter)
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
            groups = duplicate_groups(self.duplicates)
            lines.append(f"near-duplicate answers: {len(self.duplicates)} pairs in {len(groups)} clusters "
                         f"(largest: {len(groups[0])} answers, {groups[0][0]} ...), e.g. {shown}")
        else:
            lines.append("near-duplicate answers: none")
        return "\n".join(lines)


def reason_key(reason: str) -> str:
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
    questions = select_questions(read_questions(input), limit)
    done = set()
    if output is not None:
        done = {i for i, r in JsonlStore(output).read().records.items() if r.get("status") in ("ok", "rejected")}
    todo = [q for q in questions if q.id not in done]
    prompt_tokens = sum(estimate_message_tokens(build_payload(q, template, "", {})["messages"]) + 8 for q in todo)
    per_answer = EXPECTED_COMPLETION_TOKENS[language]
    if max_tokens:
        per_answer = min(per_answer, max_tokens)
    return Estimate(len(questions), len(todo), prompt_tokens, per_answer * len(todo), price_input, price_output)


def select_questions(questions: list[Question], limit: int | None) -> list[Question]:
    if limit is not None:
        if limit < 0:
            raise CbtLlmError(f"--limit must be >= 0, got {limit}")
        questions = questions[:limit]
    return questions


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
@dataclass
class GenerateOptions(EndpointConfig):
    """Everything ``generate`` takes besides input, output and model (the CLI flags)."""

    prompt: str = "paper"
    language: str = "zh"
    limit: int | None = None
    temperature: float | None = 0.7
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
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


async def agenerate(input: str | Path, output: str | Path, model: str, opts: GenerateOptions) -> GenerateSummary:
    """The asynchronous core of ``generate``."""
    if opts.max_asks < 1:
        raise CbtLlmError(f"--max-asks must be at least 1, got {opts.max_asks}")
    template = get_prompt(opts.prompt, opts.language)
    questions = select_questions(read_questions(input), opts.limit)
    summary = GenerateSummary(Path(output), price_input=opts.price_input, price_output=opts.price_output)
    resolve_api_key(opts.api_key_env, opts.base_url)  # a missing key fails before the output is touched
    store, todo = resume(output, questions, lambda q: q.id, summary, done_statuses=("ok", "rejected"))
    params = opts.params()

    async def answer(engine: RequestEngine, q: Question) -> dict:
        payload = build_payload(q, template, model, params)
        estimated = estimate_message_tokens(payload["messages"]) + (opts.max_tokens or 800)
        reasons = ""
        response, steps, source = "", None, {}
        for ask in range(1, opts.max_asks + 1):
            try:
                reply = await engine.request(payload, estimated_tokens=estimated if opts.tpm else 0)
            except RequestFailed as err:
                summary.reasons[reason_key(err.reason)] += 1
                return make_record(q, "failed", err.reason, source=record_source(model, template, None, None, ask))
            content, finish = answer_of(reply.body)
            result = check_answer(content, opts.language, template.structured, finish, opts.quality)
            response, steps = result.response, (result.steps if template.structured else None)
            source = record_source(model, template, reply.body, finish, ask)
            if result.ok:
                return make_record(q, "ok", "", response, steps, source)
            reasons = result.reason
        reason = f"quality: {reasons} ({opts.max_asks} answers)"
        summary.reasons[reason_key(reason)] += 1
        return make_record(q, "rejected", reason, response, steps, source)

    await run_requests(todo, answer, store, opts, summary, desc="generate", progress=opts.progress)
    count_output(summary, opts.duplicate_threshold)
    return summary


def count_output(summary: GenerateSummary, duplicate_threshold: float) -> None:
    """Statuses and near-duplicate ok answers over the whole output file, after a run or a batch ingest."""
    final = JsonlStore(summary.output).read().records
    summary.file_counts = Counter(r.get("status") for r in final.values())
    ok_texts = {i: r.get("response", "") for i, r in final.items() if r.get("status") == "ok"}
    summary.duplicates = near_duplicates(ok_texts, threshold=duplicate_threshold)


def record_source(model: str, template: PromptTemplate, body: dict | None, finish: str | None, asks: int) -> dict:
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
