"""Generate CBT answers for a questions file with any OpenAI-compatible model: fast, resumable, nothing lost.

``generate(GenerateConfig(input=..., output_file=..., model=...))`` (and ``cbt-llm generate``) sends
one request per question through ``cbt_llm.engine.client.RequestEngine`` (concurrency, optional
rpm/tpm, adaptive backoff on 429, retries), checks every answer with ``cbt_llm.generation.quality``
(re-asking up to a bound) and writes one JSON line per question id to the output file:

* the ``default`` record fields plus ``status`` (``ok``, ``rejected``, ``failed``) and ``reason``;
* each line is written whole with one ``write`` call as soon as its answer is done;
* a run killed at any moment and started again with the same arguments skips the ids that are
  done (ok or rejected), retries the failed ones and repairs a torn last line. Before appending,
  the file is compacted (torn tail, failed lines to retry, any duplicate) into a temporary file
  that atomically replaces it, so an id never appears twice, even across crashes;
* a run asked to add to an output whose done records came from another ``model``, prompt or
  language stops with one line (``check_same_settings``) instead of mixing them.

:func:`answer_record` turns one reply into an ok or rejected record, for this loop and for the
Batch API's ingest alike. Importing this module does not import torch, transformers or datasets.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cbt_llm.config import option, python_only
from cbt_llm.data.prompts import STEP_KEYS, PromptTemplate, get_prompt
from cbt_llm.data.sources import Question, read_questions
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.config import ServedModelConfig
from cbt_llm.engine.endpoints import answer_of, estimate_message_tokens, resolve_api_key
from cbt_llm.engine.runner import RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now
from cbt_llm.errors import CbtLlmError
from cbt_llm.generation.dedup import duplicate_groups, near_duplicates
from cbt_llm.generation.quality import QualityConfig, check_answer

# Assumed answer lengths for --dry_run (tokens), from the bundled sample (~580 Chinese characters).
EXPECTED_COMPLETION_TOKENS = {"zh": 700, "en": 500}
DONE_STATUSES = ("ok", "rejected")  # a resumed run or a new batch skips these ids


@dataclass(kw_only=True)
class GenerateConfig(ServedModelConfig):
    """Everything ``generate`` (and the Batch API mode, and the dry run) reads: ``cbt-llm generate``'s flags."""

    input: str = option(help="questions: PsyQA .json, .jsonl or .csv", metavar="QUESTIONS")
    output_file: str = option(help="records file (resumable)", metavar="OUT.jsonl")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")
    prompt: str = option("paper", "paper (fluent answer), structured (JSON per step) or a Jinja template FILE")
    language: Literal["zh", "en"] = option("zh", "prompt and answer language")
    limit: int | None = option(None, "only the first N questions", metavar="N")
    temperature: float | None = option(0.7, "sampling temperature")
    top_p: float | None = option(None, "nucleus sampling")
    max_new_tokens: int | None = option(None, "answer length cap in tokens", metavar="N")
    seed: int | None = option(None, "sampling seed, where the server supports it")
    max_asks: int = option(3, "answers asked per question before one failing the quality check is kept as "
                           "rejected", metavar="N")
    price_input: float | None = option(None, "price per million prompt tokens", metavar="USD")
    price_output: float | None = option(None, "price per million completion tokens", metavar="USD")
    duplicate_threshold: float = python_only(0.8, help="character 5-gram Jaccard similarity from which two ok "
                                             "answers are reported as near duplicates")
    quality: QualityConfig = python_only(default_factory=QualityConfig, help="bounds of the answer check")

    def __post_init__(self) -> None:
        self.input, self.output_file = str(self.input), str(self.output_file)  # a Path is welcome too
        if self.limit is not None and self.limit < 0:
            raise CbtLlmError(f"--limit must be >= 0, got {self.limit}")
        if self.max_asks < 1:
            raise CbtLlmError(f"--max_asks must be at least 1, got {self.max_asks}")
        if Path(self.input).resolve() == Path(self.output_file).resolve():
            raise CbtLlmError("--output_file must differ from --input (generate writes records, not questions)")

    def params(self) -> dict[str, Any]:
        """The sampling fields of the request body (the API's name for the length cap is ``max_tokens``)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_new_tokens,
                "seed": self.seed}


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


def record_source(model: str, template: PromptTemplate, body: dict | None, finish: str | None, asks: int) -> dict:
    """The record's ``source``: who answered (the model the server named, and the one asked for), with which
    prompt and language, when, and how many asks it took."""
    usage = (body or {}).get("usage") or {}
    return {
        "model": str((body or {}).get("model") or model),
        **run_settings(model, template),
        "created_at": utc_now(),
        "finish_reason": finish or "",
        "prompt_tokens": usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None,
        "completion_tokens": usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None,
        "asks": asks,
    }


def answer_record(question: Question, body: dict, config: GenerateConfig, template: PromptTemplate, asks: int,
                  answers: str) -> dict:
    """A reply checked into an ok record, or a rejected one whose reason ends with ``(answers)``.

    The one place a reply becomes a record: ``generate``'s loop and the Batch API's ingest both use it.
    """
    content, finish = answer_of(body)
    result = check_answer(content, config.language, template.structured, finish, config.quality)
    steps = result.steps if template.structured else None
    source = record_source(config.model, template, body, finish, asks)
    if result.ok:
        return make_record(question, "ok", "", result.response, steps, source)
    return make_record(question, "rejected", f"quality: {result.reason} ({answers})", result.response, steps, source)


def reason_key(reason: str) -> str:
    """A reason with its numbers masked, so the summary groups alike reasons (kept whole: the engine
    already bounds a server's message at a word boundary)."""
    return re.sub(r"\d+", "N", reason.split(" (after")[0])


# ---------------------------------------------------------------------------------------------
# The settings an output file's records were made with
# ---------------------------------------------------------------------------------------------
SETTINGS_SHOWN = {"requested_model": "--model", "prompt_version": "prompt", "language": "--language"}


def run_settings(model: str, template: PromptTemplate) -> dict[str, str]:
    """What every record of one output file must share, as its ``source`` keeps it."""
    return {"requested_model": model, "prompt_version": template.version, "language": template.language}


def check_same_settings(path: str | Path, records: dict[str, dict], config: GenerateConfig,
                        template: PromptTemplate) -> None:
    """Refuse to add to ``path`` when its done records were made with another model, prompt or language.

    Only what a record's ``source`` keeps is compared: records written before the requested model and
    language were kept are compared by prompt version.
    """
    wanted = run_settings(config.model, template)
    for record_id, record in records.items():
        if record.get("status", "ok") not in DONE_STATUSES:
            continue  # failed lines are asked again with this run's settings
        source = record.get("source") if isinstance(record.get("source"), dict) else {}
        made = {key: source.get(key) for key in wanted}
        changed = [f"{shown} {made[key]!r} (this run: {wanted[key]!r})" for key, shown in SETTINGS_SHOWN.items()
                   if made[key] is not None and made[key] != wanted[key]]
        if changed:
            raise CbtLlmError(f"{path}: its records were made with {', '.join(changed)} (record {record_id}); "
                              "adding to it would mix them: write to a new --output_file, or run again with "
                              "the settings that made them")


def settings_check(config: GenerateConfig, template: PromptTemplate) -> Callable[[dict[str, dict]], None]:
    """``check_same_settings`` for this run's output, as ``resume`` takes it."""
    return lambda records: check_same_settings(config.output_file, records, config, template)


def done_records(config: GenerateConfig, template: PromptTemplate) -> dict[str, dict]:
    """The output file's done (ok or rejected) records by id, after checking the file is generate's output
    made with this run's settings (an error otherwise)."""
    records = JsonlStore(config.output_file).read(strict=True).records
    check_same_settings(config.output_file, records, config, template)
    return {i: r for i, r in records.items() if r.get("status", "ok") in DONE_STATUSES}


def count_reason(summary: GenerateSummary, record: dict) -> None:
    """Count why a record is not ok (for the summary's 'not ok' line)."""
    if record["status"] != "ok":
        summary.reasons[reason_key(record["reason"])] += 1


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
def token_cost(prompt_tokens: int, completion_tokens: int, price_input: float | None,
               price_output: float | None) -> float | None:
    """USD for the tokens at the prices per million; None when no price is given."""
    if price_input is None and price_output is None:
        return None
    return (prompt_tokens * (price_input or 0) + completion_tokens * (price_output or 0)) / 1e6


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
        return token_cost(self.prompt_tokens, self.completion_tokens, self.price_input, self.price_output)

    def format(self) -> str:
        lines = [self._run_line(), self._requests_line(), self._tokens_line(), *self._resume_lines()]
        if self.reasons:
            lines.append("not ok: " + "; ".join(f"{why} x{n}" for why, n in self.reasons.most_common(5)))
        if self.file_counts:
            lines.append(f"{self.output}: " + ", ".join(f"{k} {self.file_counts[k]}" for k in ("ok", "rejected", "failed"))
                         + " (cbt-llm build --input takes the ok records)")
        lines.append(self._duplicates_line())
        return "\n".join(lines)

    def _run_line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        return (f"generated {self.done} of {self.total} questions in {self.seconds:.1f} s ({rate:.2f}/s): "
                f"ok {self.counts['ok']}, rejected {self.counts['rejected']}, failed {self.counts['failed']}"
                + (f"; {self.skipped} already done" if self.skipped else ""))

    def _requests_line(self) -> str:
        return (f"requests {self.requests}, retries {self.retries}"
                + (", errors: " + ", ".join(f"{k} x{n}" for k, n in self.errors.most_common()) if self.errors else "")
                + (f"; slowed down {self.rate_limit_events}x for 429s (server accepted about "
                   f"{self.learned_rate:.1f} req/s)" if self.rate_limit_events and self.learned_rate else ""))

    def _tokens_line(self) -> str:
        cost = self.cost()
        return (f"tokens: prompt {self.prompt_tokens}, completion {self.completion_tokens}"
                + (f"; cost about ${cost:.4f}" if cost is not None else ""))

    def _resume_lines(self) -> list[str]:
        state = self.resume
        if not state or not (state.torn_tail or state.bad_lines or state.duplicates or state.retried_failed):
            return []
        return [f"resumed: retried {state.retried_failed} failed"
                + (", repaired a torn last line" if state.torn_tail else "")
                + (f", dropped {state.bad_lines} unreadable lines" if state.bad_lines else "")
                + (f", removed {state.duplicates} duplicate ids" if state.duplicates else "")]

    def _duplicates_line(self) -> str:
        if not self.duplicates:
            return "near-duplicate answers: none"
        shown = ", ".join(f"{p.first}~{p.second} ({p.similarity:.2f})" for p in self.duplicates[:5])
        groups = duplicate_groups(self.duplicates)
        return (f"near-duplicate answers: {len(self.duplicates)} pairs in {len(groups)} clusters "
                f"(largest: {len(groups[0])} answers, {groups[0][0]} ...), e.g. {shown}")


def count_output(summary: GenerateSummary, duplicate_threshold: float) -> None:
    """Statuses and near-duplicate ok answers over the whole output file, after a run or a batch ingest."""
    final = JsonlStore(summary.output).read().records
    summary.file_counts = Counter(r.get("status") for r in final.values())
    ok_texts = {i: r.get("response", "") for i, r in final.items() if r.get("status") == "ok"}
    summary.duplicates = near_duplicates(ok_texts, threshold=duplicate_threshold)


# ---------------------------------------------------------------------------------------------
# Dry run
# ---------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    """What a run would send and cost: ``cbt-llm generate --dry_run``."""

    questions: int
    todo: int
    prompt_tokens: int
    completion_tokens: int
    price_input: float | None
    price_output: float | None

    def cost(self) -> float | None:
        return token_cost(self.prompt_tokens, self.completion_tokens, self.price_input, self.price_output)

    def format(self) -> str:
        lines = [f"dry run: {self.questions} questions valid, {self.todo} to generate "
                 f"({self.questions - self.todo} already done); nothing was sent",
                 f"estimated tokens: prompt {self.prompt_tokens}, completion {self.completion_tokens} "
                 "(approximate: no tokenizer, answers assumed full length, re-asks not counted)"]
        cost = self.cost()
        if cost is None:
            lines.append("cost: pass --price_input and --price_output (USD per million tokens) for an estimate")
        else:
            lines.append(f"estimated cost: ${cost:.2f} (Batch API: about ${cost / 2:.2f})")
        return "\n".join(lines)


def select_questions(config: GenerateConfig) -> list[Question]:
    """The questions of ``config.input`` (validated), the first ``config.limit`` of them."""
    questions = read_questions(config.input)
    return questions if config.limit is None else questions[:config.limit]


def questions_to_do(questions: list[Question], config: GenerateConfig, template: PromptTemplate) -> list[Question]:
    """The questions without a done (ok or rejected) line in the output file yet (see ``done_records``)."""
    done = done_records(config, template)
    return [q for q in questions if q.id not in done]


def estimate(config: GenerateConfig) -> Estimate:
    """Validate the input and estimate tokens and cost for what is left to generate; sends nothing."""
    template = get_prompt(config.prompt, config.language)
    questions = select_questions(config)
    todo = questions_to_do(questions, config, template)
    prompt_tokens = sum(estimate_message_tokens(build_payload(q, template, "", {})["messages"]) + 8 for q in todo)
    per_answer = EXPECTED_COMPLETION_TOKENS[config.language]
    if config.max_new_tokens:
        per_answer = min(per_answer, config.max_new_tokens)
    return Estimate(len(questions), len(todo), prompt_tokens, per_answer * len(todo), config.price_input,
                    config.price_output)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
def generate(config: GenerateConfig) -> GenerateSummary:
    """Answer every question of ``config.input`` into ``config.output_file`` (see the module docstring)."""
    return asyncio.run(agenerate(config))


async def agenerate(config: GenerateConfig) -> GenerateSummary:
    """The asynchronous core of ``generate``."""
    template = get_prompt(config.prompt, config.language)
    questions = select_questions(config)
    summary = GenerateSummary(Path(config.output_file), price_input=config.price_input,
                              price_output=config.price_output)
    resolve_api_key(config.api_key_env, config.base_url)  # a missing key fails before the output is touched
    store, todo = resume(config.output_file, questions, lambda q: q.id, summary, done_statuses=DONE_STATUSES,
                         check=settings_check(config, template))  # other settings fail before the file is touched

    async def answer(engine: RequestEngine, question: Question) -> dict:
        record = await _ask(engine, question, config, template)
        count_reason(summary, record)
        return record

    await run_requests(todo, answer, store, config, summary, desc="generate", progress=config.progress)
    count_output(summary, config.duplicate_threshold)
    return summary


async def _ask(engine: RequestEngine, question: Question, config: GenerateConfig, template: PromptTemplate) -> dict:
    """Ask up to ``max_asks`` times: the first answer that passes the check, else the last one, rejected."""
    payload = build_payload(question, template, config.model, config.params())
    estimated = estimate_message_tokens(payload["messages"]) + (config.max_new_tokens or 800) if config.tpm else 0
    for asks in range(1, config.max_asks + 1):
        try:
            reply = await engine.request(payload, estimated_tokens=estimated)
        except RequestFailed as err:
            return make_record(question, "failed", err.reason,
                               source=record_source(config.model, template, None, None, asks))
        record = answer_record(question, reply.body, config, template, asks, f"{config.max_asks} answers")
        if record["status"] == "ok":
            break
    return record
