"""Multi-turn CBT dialogues from a teacher model: ``dialogue(DialogueConfig(...))`` and ``cbt-llm dialogue``.

``simulate`` (the default) asks the teacher for a CBT case plan for each question (key automatic
thought, distortion labels, techniques, session goal), then lets two roles take turns: a client
simulator speaking from the question and description, and a counsellor following the plan through the
five steps, until the counsellor closes (``END_MARK``) or ``max_rounds`` is reached. A client turn the
crisis guard reads as crisis gets a counsellor turn told to follow the crisis protocol, and the session
ends there. ``rewrite`` turns each ok single-turn record (``cbt-llm generate``'s output, or the bundled
sample) into a dialogue with one request.

Every dialogue is one item of the shared engine loop (``engine.runner``): many run at once, each a chain
of dependent requests, and each is written as one JSON line when it is done, after
``generation.dialogue_checks.check_dialogue`` (status ok or rejected, with the reasons); a request that
still fails after its retries makes the dialogue ``failed``, asked again on the next run. A kill loses
only the dialogues in flight: no finished one is lost, none is written twice. Importing this module
loads no torch, transformers or datasets.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cbt_llm.config import option, python_only
from cbt_llm.crisis import format_crisis_resources
from cbt_llm.data.dialogue_prompts import END_MARK, TECHNIQUES, DialoguePrompts, get_dialogue_prompts, plan_text
from cbt_llm.data.prompts import COGNITIVE_DISTORTIONS, STEP_KEYS
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.config import ServedModelConfig
from cbt_llm.engine.endpoints import answer_of, estimate_message_tokens, json_object, resolve_api_key
from cbt_llm.engine.runner import RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now
from cbt_llm.errors import CbtLlmError
from cbt_llm.generation.dialogue_checks import DialogueCheckConfig, check_dialogue
from cbt_llm.generation.generate import reason_key

MODES = ("simulate", "rewrite")
DONE_STATUSES = ("ok", "rejected")
_OPENING = {"zh": "（咨询开始了，请说出你的第一句话。）", "en": "(The session begins. Say your first words.)"}
# A line where the teacher writes the other speaker's words too: a broken turn-taking the checks must see.
_SPEAKER = re.compile(r"^\s*(来访者|心理咨询师|咨询师|client|counsell?or)\s*[：:]\s*", re.IGNORECASE | re.MULTILINE)
_ROLE_OF_SPEAKER = {"来访者": "user", "client": "user"}
_REWRITE_ROLES = {"client": "user", "user": "user", "counsellor": "assistant", "counselor": "assistant",
                  "assistant": "assistant"}


@dataclass(kw_only=True)
class DialogueConfig(ServedModelConfig):
    """What ``dialogue`` reads and sends: ``cbt-llm dialogue``'s flags."""

    input: str = option(help="simulate: questions (PsyQA .json, .jsonl, .csv); rewrite: single-turn records "
                        ".jsonl (generate's output)", metavar="FILE")
    output_file: str = option(help="dialogue records file (resumable)", metavar="OUT.jsonl")
    mode: Literal["simulate", "rewrite"] = option("simulate", "simulate (plan, then client and counsellor take "
                                                  "turns) or rewrite (one request turns an answer into a dialogue)")
    language: Literal["zh", "en"] = option("zh", "prompt and dialogue language")
    max_rounds: int = option(6, "most client-counsellor rounds per simulated dialogue", metavar="N")
    limit: int | None = option(None, "only the first N items", metavar="N")
    temperature: float | None = option(0.8, "sampling temperature")
    max_new_tokens: int | None = option(None, "length cap of each reply in tokens", metavar="N")
    seed: int | None = option(None, "sampling seed, where the server supports it")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")
    checks: DialogueCheckConfig = python_only(default_factory=DialogueCheckConfig, help="bounds of the dialogue checks")

    def __post_init__(self) -> None:
        self.input, self.output_file = str(self.input), str(self.output_file)
        if not self.checks.min_rounds <= self.max_rounds <= self.checks.max_rounds:
            raise CbtLlmError(f"--max_rounds must be between {self.checks.min_rounds} and {self.checks.max_rounds} "
                              f"(the rounds a dialogue may have to pass the checks), got {self.max_rounds}")
        if self.limit is not None and self.limit < 0:
            raise CbtLlmError(f"--limit must be >= 0, got {self.limit}")
        if Path(self.input).resolve() == Path(self.output_file).resolve():
            raise CbtLlmError("--output_file must differ from --input")

    def params(self) -> dict[str, Any]:
        """The sampling fields of every request body."""
        sampling = {"temperature": self.temperature, "max_tokens": self.max_new_tokens, "seed": self.seed}
        return {k: v for k, v in sampling.items() if v is not None}


@dataclass(frozen=True)
class Intake:
    """What a dialogue starts from: the question and description, and for ``rewrite`` the single-turn answer."""

    id: str
    question: str
    description: str = ""
    answer: str = ""


class Rejected(Exception):
    """A teacher reply no dialogue can be made of (no plan, no turns): the dialogue is kept as rejected."""


def read_intakes(config: DialogueConfig) -> list[Intake]:
    """The questions (simulate) or the ok single-turn records (rewrite) of ``config.input``, the first ``limit``."""
    if config.mode == "rewrite":
        from cbt_llm.data.records import read_records

        items = [Intake(r["id"], r["question"], r["description"], r["response"])
                 for r in read_records([config.input]).records]
    else:
        from cbt_llm.data.sources import read_questions

        items = [Intake(q.id, q.question, q.description) for q in read_questions(config.input)]
    return items if config.limit is None else items[:config.limit]


# ---------------------------------------------------------------------------------------------
# One dialogue: a chain of requests
# ---------------------------------------------------------------------------------------------
class Teacher:
    """Asks the teacher for one dialogue's plan and turns, counting the requests it took."""

    def __init__(self, engine: RequestEngine, config: DialogueConfig, prompts: DialoguePrompts, intake: Intake):
        self.engine, self.config, self.prompts, self.intake = engine, config, prompts, intake
        self.requests = 0

    async def ask(self, messages: list[dict[str, str]]) -> str:
        payload = {"model": self.config.model, "messages": messages, **self.config.params()}
        estimated = estimate_message_tokens(messages) + (self.config.max_new_tokens or 400) if self.config.tpm else 0
        self.requests += 1
        reply = await self.engine.request(payload, estimated_tokens=estimated)
        content, finish = answer_of(reply.body)
        if finish == "length":
            raise Rejected(f"reply {self.requests} cut off (finish_reason=length; raise --max_new_tokens)")
        return content.strip()

    def render(self, role: str, **values) -> str:
        return self.prompts.render(role, question=self.intake.question, description=self.intake.description, **values)

    async def plan(self) -> dict[str, Any]:
        reply = await self.ask([{"role": "user", "content": self.render("plan")}])
        return parse_plan(json_object(reply))

    async def client_turn(self, messages: list[dict[str, str]]) -> str:
        flipped = [{"role": "assistant" if m["role"] == "user" else "user", "content": m["content"]} for m in messages]
        opening = [{"role": "user", "content": _OPENING[self.prompts.language]}] if not messages else []
        system = {"role": "system", "content": self.render("client", opening=not messages)}
        return await self.ask([system, *opening, *flipped])

    async def counsellor_turn(self, messages: list[dict[str, str]], plan: dict, round_: int, crisis: bool) -> str:
        language = self.prompts.language
        system = self.render("counsellor", plan_text=plan_text(plan, language), round=round_,
                             max_rounds=self.config.max_rounds, closing=round_ == self.config.max_rounds,
                             crisis=crisis, resources=format_crisis_resources(language) if crisis else "")
        return await self.ask([{"role": "system", "content": system}, *messages])


def parse_plan(obj: dict | None) -> dict[str, Any]:
    """A teacher's plan as the record keeps it; labels outside the taxonomies are left out."""
    if not obj or not isinstance(obj.get("automatic_thought"), str) or not obj["automatic_thought"].strip():
        raise Rejected("plan: the reply is not a JSON object with an automatic_thought")

    def labels(name: str, known: dict) -> list[str]:
        value = obj.get(name)
        return [label for label in value if label in known] if isinstance(value, list) else []

    goal = obj.get("goal")
    return {"automatic_thought": obj["automatic_thought"].strip(),
            "distortions": labels("distortions", COGNITIVE_DISTORTIONS),
            "techniques": labels("techniques", TECHNIQUES), "goal": goal.strip() if isinstance(goal, str) else ""}


def split_speakers(text: str, role: str) -> list[dict[str, str]]:
    """One reply as turns: a reply that also writes the other speaker's lines (``来访者：...``) becomes several."""
    turns: list[dict[str, str]] = []
    pieces = _SPEAKER.split(text)
    if pieces[0].strip():
        turns.append({"role": role, "content": pieces[0].strip()})
    for speaker, content in zip(pieces[1::2], pieces[2::2]):
        if content.strip():
            turns.append({"role": _ROLE_OF_SPEAKER.get(speaker.lower(), "assistant"), "content": content.strip()})
    return turns


async def simulate(teacher: Teacher) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Plan, then client and counsellor turns until the counsellor closes, a crisis is answered, or the limit."""
    from cbt_llm.safety import assess_risk

    plan = await teacher.plan()
    messages: list[dict[str, str]] = []
    for round_ in range(1, teacher.config.max_rounds + 1):
        client = await teacher.client_turn(messages)
        messages += split_speakers(client, "user")
        crisis = assess_risk(client).level == "crisis"
        counsellor = await teacher.counsellor_turn(messages, plan, round_, crisis)
        closed = END_MARK in counsellor
        messages += split_speakers(counsellor.replace(END_MARK, "").strip(), "assistant")
        if closed or crisis:
            break
    return plan, messages


async def rewrite(teacher: Teacher) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """One request: the single-turn answer rewritten as a plan and a list of client and counsellor turns."""
    obj = json_object(await teacher.ask([{"role": "user", "content": teacher.render("rewrite",
                                                                                 answer=teacher.intake.answer)}]))
    turns = obj.get("messages") if obj else None
    if not isinstance(turns, list) or not turns:
        raise Rejected("rewrite: the reply is not a JSON object with a list of messages")
    messages = []
    for i, turn in enumerate(turns, 1):
        role = _REWRITE_ROLES.get(str(turn.get("role", "")).lower()) if isinstance(turn, dict) else None
        if role is None or not isinstance(turn.get("content"), str):
            raise Rejected(f"rewrite: turn {i} is not a client or counsellor turn with content")
        messages.append({"role": role, "content": turn["content"].strip()})
    return parse_plan(obj.get("plan")), messages


def dialogue_record(intake: Intake, config: DialogueConfig, prompts: DialoguePrompts, status: str, reason: str = "",
                    plan: dict | None = None, messages: list | None = None, checks: dict | None = None,
                    requests: int = 0) -> dict[str, Any]:
    """One output line: the dialogue, its plan, its status and reason, the checks' figures and where it came from."""
    return {"id": intake.id, "question": intake.question, "description": intake.description,
            "language": config.language, "messages": messages or [], "plan": plan, "status": status,
            "reason": reason, "checks": checks or {},
            "source": {"mode": config.mode, "model": config.model, **run_settings(config, prompts),
                       "created_at": utc_now(), "requests": requests}}


async def make_dialogue(engine: RequestEngine, intake: Intake, config: DialogueConfig,
                        prompts: DialoguePrompts) -> dict[str, Any]:
    """One dialogue made and checked into an ok, rejected or failed record."""
    teacher = Teacher(engine, config, prompts, intake)
    try:
        plan, messages = await (simulate(teacher) if config.mode == "simulate" else rewrite(teacher))
    except RequestFailed as err:
        return dialogue_record(intake, config, prompts, "failed", err.reason, requests=teacher.requests)
    except Rejected as why:
        return dialogue_record(intake, config, prompts, "rejected", str(why), requests=teacher.requests)
    check = check_dialogue(messages, config.language, config.checks)
    return dialogue_record(intake, config, prompts, "ok" if check.ok else "rejected", check.reason, plan, messages,
                           check.figures(), teacher.requests)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def run_settings(config: DialogueConfig, prompts: DialoguePrompts) -> dict[str, str]:
    """What every record of one output file must share."""
    return {"requested_model": config.model, "prompt_version": prompts.version, "language": prompts.language,
            "mode": config.mode}


def check_same_settings(config: DialogueConfig, prompts: DialoguePrompts):
    """A check for ``resume``: refuse an output whose done dialogues were made with other settings."""
    wanted = run_settings(config, prompts)

    def check(records: dict[str, dict]) -> None:
        for record_id, record in records.items():
            source = record.get("source") if isinstance(record.get("source"), dict) else {}
            changed = [f"{key} {source.get(key)!r} (this run: {value!r})" for key, value in wanted.items()
                       if record.get("status") in DONE_STATUSES and source.get(key) not in (None, value)]
            if changed:
                raise CbtLlmError(f"{config.output_file}: its dialogues were made with {', '.join(changed)} (record "
                                  f"{record_id}); write to a new --output_file, or run with the settings that made them")
    return check


@dataclass
class DialogueSummary(RunStats):
    """What a run did and what the output file holds: ``format()`` is what ``cbt-llm dialogue`` prints."""

    reasons: Counter = field(default_factory=Counter)
    file_counts: Counter = field(default_factory=Counter)
    figures: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        done = sum(self.counts.values())
        lines = [f"dialogues: {done} of {self.total} made in {self.seconds:.1f} s: ok {self.counts['ok']}, rejected "
                 f"{self.counts['rejected']}, failed {self.counts['failed']}"
                 + (f"; {self.skipped} already done" if self.skipped else ""),
                 f"requests {self.requests}, retries {self.retries}; tokens: prompt {self.prompt_tokens}, "
                 f"completion {self.completion_tokens}"]
        if self.reasons:
            lines.append("not ok: " + "; ".join(f"{why} x{n}" for why, n in self.reasons.most_common(5)))
        if self.file_counts:
            lines.append(f"{self.output}: " + ", ".join(f"{k} {self.file_counts[k]}" for k in ("ok", "rejected", "failed"))
                         + " (cbt-llm build --dialogues takes the ok ones)")
        if self.figures:
            f = self.figures
            lines.append(f"ok dialogues: {f['rounds']:.1f} rounds, counsellor asks in {f['question_share']:.0%} of "
                         f"turns, all five steps in {f['all_steps']:.0%}, {f['crisis']:.0f} answered a crisis")
        return "\n".join(lines)


def count_output(summary: DialogueSummary) -> None:
    """Statuses over the whole output file, and the check figures of its ok dialogues."""
    records = JsonlStore(summary.output).read().records.values()
    summary.file_counts = Counter(r.get("status") for r in records)
    checks = [r.get("checks") or {} for r in records if r.get("status") == "ok"]
    if checks:
        summary.figures = {
            "rounds": statistics.mean(c.get("rounds", 0) for c in checks),
            "question_share": statistics.mean(c.get("question_share", 0.0) for c in checks),
            "all_steps": sum(len(c.get("steps", [])) == len(STEP_KEYS) for c in checks) / len(checks),
            "crisis": sum(c.get("crisis_turn") is not None for c in checks)}


def dialogue(config: DialogueConfig) -> DialogueSummary:
    """Make a checked dialogue for every item of ``config.input`` into ``config.output_file`` (see the module)."""
    return asyncio.run(adialogue(config))


async def adialogue(config: DialogueConfig) -> DialogueSummary:
    """The asynchronous core of ``dialogue``."""
    prompts = get_dialogue_prompts(config.language)
    intakes = read_intakes(config)
    summary = DialogueSummary(Path(config.output_file))
    resolve_api_key(config.api_key_env, config.base_url)  # a missing key fails before the output is touched
    store, todo = resume(config.output_file, intakes, lambda item: item.id, summary, done_statuses=DONE_STATUSES,
                         check=check_same_settings(config, prompts))

    async def work(engine: RequestEngine, intake: Intake) -> dict[str, Any]:
        record = await make_dialogue(engine, intake, config, prompts)
        if record["status"] != "ok":
            summary.reasons[reason_key(record["reason"])] += 1
        return record

    await run_requests(todo, work, store, config, summary, desc="dialogue", progress=config.progress)
    count_output(summary)
    return summary
