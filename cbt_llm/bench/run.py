"""``cbt-llm bench``: score a model on CPsyExam, CPsyCounE and CBT-Bench, offline, one JSON line per item as it comes.

``bench(BenchConfig(tasks="cpsyexam,cbt_bench", data_dir=..., output_dir=OUT, base_url=..., model=...))``
reads each task (``cbt_llm.bench.tasks``) from ``--data_dir`` (the authors' release layout) or from
its Hub dataset, asks the model every item, a local one in batches (``models.loading`` and predict's
``generate_batch``) or a served one through the request engine, and appends each reply to
``OUT/records/TASK.jsonl`` the moment it comes (``engine.runner.resume``: a rerun asks only what is
missing; replies made with other settings are refused). CPsyCounE replies are then scored by the
judge model into ``OUT/records/cpsycoune.judge.jsonl`` (one judge per folder). The scores are
computed from the stored replies and written to ``OUT/bench.json``, ``OUT/bench.md`` and
``OUT/bench.png`` (``bench.report``); a local adapter's model card gets them in its model-index.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from cbt_llm.bench import judging
from cbt_llm.bench.tasks import JUDGED, Item, get_task, task_names
from cbt_llm.config import option
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.config import ModelChoiceConfig
from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV, answer_of, resolve_api_key
from cbt_llm.engine.runner import Progress, RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now
from cbt_llm.errors import CbtLlmError


@dataclass(kw_only=True)
class BenchConfig(ModelChoiceConfig):
    """What ``bench`` reads: ``cbt-llm bench``'s flags. A model to load is ``model_name_or_path`` (+ ``adapter``);
    a served one is ``base_url`` plus ``model``; CPsyCounE also needs a judge (``judge_model``)."""

    output_dir: str = option(help="folder for records/, bench.json, bench.md and bench.png (resumable)", metavar="OUT")
    tasks: str = option("cpsyexam,cpsycoune,cbt_bench", "comma-separated tasks: cpsyexam, cpsycoune, cbt_bench")
    data_dir: str | None = option(None, "folder with one subfolder per task in the authors' release layout "
                                  "(cpsyexam/cpsyexam.zip, cpsycoune/TOPIC/N.json, cbt_bench/*_test.json); without "
                                  "it, tasks load from their upstream Hub datasets", metavar="DIR")
    limit: int | None = option(None, "at most N items per task, a fixed sample drawn with --seed", metavar="N")
    shots: int = option(0, "few-shot examples per prompt, from the task's train (CPsyExam) or seed (CBT-Bench) "
                        "files; CPsyCounE is zero-shot", metavar="K")
    seed: int = option(0, "seed of the --limit sample and of generation")
    max_new_tokens: int | None = option(None, "reply cap for every task (default: 64 CPsyExam, 96 CBT-Bench, "
                                        "256 CPsyCounE)", metavar="N")
    temperature: float = option(0.0, "0: greedy decoding")
    batch_size: int = option(8, "local model: prompts per generate call", metavar="N")
    judge_base_url: str | None = option(None, "CPsyCounE judge's OpenAI-compatible server (default: OpenAI or "
                                        "$OPENAI_BASE_URL)", metavar="URL")
    judge_model: str | None = option(None, "CPsyCounE judge model name; scores of different judges are never "
                                     "mixed", metavar="NAME")
    judge_api_key_env: str = option(DEFAULT_API_KEY_ENV, "environment variable with the judge's key", metavar="NAME")
    judge_max_asks: int = option(3, "asks per turn when the judge's verdict is unparsable or out of range",
                                 metavar="N")
    train_dataset: str | None = option(None, "contamination check: a built CBT QA folder or a JSONL file whose "
                                       "text is compared with every item", metavar="DIR|FILE")
    ngram: int = option(13, "contamination check: character n-gram length", metavar="N")
    overlap: float = option(0.5, "contamination check: share of an item's n-grams found in the training data "
                            "that flags it", metavar="X")
    model_card: bool = option(True, "write the scores into a local --adapter's README.md model-index")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")

    def __post_init__(self) -> None:
        self.output_dir = str(self.output_dir)
        self.task_list = task_names(self.tasks)
        self.check_model_choice()
        if set(self.task_list) & JUDGED and not self.judge_model:
            raise CbtLlmError("cpsycoune is scored by a judge model: give --judge_model (and --judge_base_url)")
        for name, value, low in (("--shots", self.shots, 0), ("--limit", self.limit, 1),
                                 ("--batch_size", self.batch_size, 1), ("--judge_max_asks", self.judge_max_asks, 1),
                                 ("--ngram", self.ngram, 4)):
            if value is not None and value < low:
                raise CbtLlmError(f"{name} must be at least {low}, got {value}")


@dataclass
class BenchSummary:
    """What a bench run did: per task, the items asked and failed, the headline figures and where they are."""

    output_dir: Path
    results: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # task -> RunStats of the replies (and "TASK judge")
    card: Path | None = None
    seconds: float = 0.0

    def format(self) -> str:
        lines = []
        for task, result in self.results.items():
            run = self.runs.get(task)
            asked = f"{sum(run.counts.values())} asked, {run.skipped} already done, " if run else ""
            head = get_task(task).HEADLINE
            value = result.get(head)
            shown = "-" if value is None else f"{value:.4f}"
            extra = (f", judge {result['judge_model']}, {result['invalid_verdicts']} invalid verdicts"
                     if task in JUDGED else "")
            lines.append(f"{task}: {head} {shown} on {result['n']} items ({asked}{result['failed']} failed{extra})")
        lines.append(f"{self.output_dir / 'bench.json'}, bench.md, bench.png ({self.seconds:.1f} s)"
                     + (f"; scores written into {self.card}" if self.card else ""))
        return "\n".join(lines)

    def failure(self) -> str | None:
        """One line when a task got no score at all: every reply failed, or the judge gave no valid verdict."""
        for task, result in self.results.items():
            if result.get("items") and not result["n"]:
                why = result.get("first_problem") or "every request failed"
                return (f"{task}: no item could be scored ({why}); the records are kept in "
                        f"{self.output_dir / 'records'} and the same command again retries them")
        return None


def sample(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """``limit`` items drawn by a seeded hash of their ids (the same slice every run), in their own order."""
    if limit is None or limit >= len(items):
        return items
    keep = set(sorted((hashlib.sha256(f"{seed}:{i.id}".encode()).hexdigest(), i.id) for i in items)[:limit])
    ids = {i for _, i in keep}
    return [item for item in items if item.id in ids]


def reply_settings(config: BenchConfig, task: str) -> dict:
    """What every reply of a task records; a rerun refuses replies made with other settings."""
    module = get_task(task)
    return {"mode": "endpoint" if config.base_url else "transformers", "model": config.model_meant(),
            "adapter": config.adapter, "prompt": module.PROMPT_VERSION,
            "shots": 0 if task in JUDGED else config.shots, "max_new_tokens": config.max_new_tokens or
            module.MAX_NEW_TOKENS, "temperature": config.temperature, "seed": config.seed}


def _refuse_other_settings(path: Path, settings: dict):
    def check(records: dict[str, dict]) -> None:
        for record in records.values():
            if record.get("status") == "ok" and record.get("settings") != settings:
                raise CbtLlmError(f"{path}: holds replies made with other settings ({record.get('settings')}); use "
                                  "another --output_dir, or remove that file to start the task again")
    return check


def _record(item: Item, task: str, reply: str, settings: dict, status: str = "ok", reason: str = "",
            finish_reason: str = "", new_tokens: int | None = None) -> dict:
    scored = get_task(task).score(item, reply) if status == "ok" else {}
    return {"id": item.id, "status": status, "reply": reply, **scored, "reason": reason,
            "finish_reason": finish_reason, "new_tokens": new_tokens, "settings": settings, "created_at": utc_now()}


class LocalModel:
    """The model loaded here once, on first use, for every task; batches of similar prompt length."""

    def __init__(self, config: BenchConfig):
        self.config, self.loaded = config, None

    def answer(self, items: list[Item], task: str, settings: dict, store: JsonlStore, stats: RunStats) -> None:
        import torch

        from cbt_llm.evaluation.predict import generate_batch
        from cbt_llm.models.loading import load_model_and_tokenizer

        if self.loaded is None:
            self.loaded = load_model_and_tokenizer(self.config.model_name_or_path, self.config.adapter,
                                                   device=self.config.device or "auto", dtype=self.config.dtype,
                                                   padding_side="left")
        lm, tokenizer = self.loaded
        generation = {"max_new_tokens": settings["max_new_tokens"], "do_sample": settings["temperature"] > 0,
                      "temperature": settings["temperature"] or None}
        torch.manual_seed(self.config.seed)
        ordered = sorted(items, key=lambda i: -sum(len(m["content"]) for m in i.messages))
        bar, size = Progress(len(ordered), self.config.progress, task), self.config.batch_size
        started = time.monotonic()
        try:
            for start in range(0, len(ordered), size):
                batch = ordered[start:start + size]
                for item, (text, finish, n) in zip(batch, generate_batch(tokenizer, lm, [i.messages for i in batch],
                                                                        generation)):
                    store.append(_record(item, task, text, settings, finish_reason=finish, new_tokens=n))
                    stats.counts["ok"] += 1
                bar.update(stats.counts, n=len(batch))
        finally:
            bar.close()
            store.close()
            stats.seconds = time.monotonic() - started


async def _answer_served(items: list[Item], task: str, settings: dict, store: JsonlStore, stats: RunStats,
                         config: BenchConfig) -> None:
    params = {"model": config.model, "max_tokens": settings["max_new_tokens"], "temperature": config.temperature,
              "seed": config.seed}

    async def one(engine: RequestEngine, item: Item) -> dict:
        try:
            reply = await engine.request({**params, "messages": item.messages})
        except RequestFailed as err:
            return _record(item, task, "", settings, status="failed", reason=err.reason)
        text, finish = answer_of(reply.body)
        tokens = (reply.body.get("usage") or {}).get("completion_tokens")
        return _record(item, task, text.strip(), settings, finish_reason=finish or "",
                       new_tokens=tokens if isinstance(tokens, int) else None)

    await run_requests(items, one, store, config, stats, desc=task, progress=config.progress)


def answer_task(config: BenchConfig, task: str, items: list[Item], local: LocalModel) -> tuple[RunStats, dict]:
    """Ask the model every item of a task not answered yet; the run's stats and the replies on file by id."""
    path = Path(config.output_dir) / "records" / f"{task}.jsonl"
    settings = reply_settings(config, task)
    stats = RunStats(path)
    store, todo = resume(path, items, lambda item: item.id, stats, check=_refuse_other_settings(path, settings))
    if not todo:
        store.close()
    elif config.base_url:
        asyncio.run(_answer_served(todo, task, settings, store, stats, config))
    else:
        local.answer(todo, task, settings, store, stats)
    return stats, JsonlStore(path).read().records


def task_result(task: str, items: list[Item], replies: dict[str, dict], verdicts: dict[str, dict] | None) -> dict:
    """The task's scores from the replies on file (scored again, so a better parser needs no new replies)."""
    module = get_task(task)
    scored, problems = [], []
    for item in items:
        reply = replies.get(item.id)
        if not reply or reply.get("status") != "ok":
            problems.append(f"item {item.id}: {(reply or {}).get('reason') or 'no reply'}")
            continue
        record = {"id": item.id, "gold": item.gold, "meta": item.meta, **module.score(item, reply.get("reply", ""))}
        if verdicts is not None:
            verdict = verdicts.get(item.id) or {}
            if verdict.get("status") != "ok":
                problems.append(f"item {item.id}: {verdict.get('reason') or 'not judged'}")
                scored.append({**record, "invalid": bool(verdict.get("invalid"))})
                continue
            record.update(verdict=verdict["verdict"], judge_model=verdict["judge_model"])
        scored.append(record)
    result = module.aggregate(scored)
    failed = sum(1 for i in items if (replies.get(i.id) or {}).get("status") != "ok")
    return {**result, "items": len(items), "failed": failed, "first_problem": problems[0] if problems else None}


def bench(config: BenchConfig) -> BenchSummary:
    """Score the model on the chosen tasks (see the module docstring); the summary says what came out."""
    from cbt_llm.bench.contamination import contamination
    from cbt_llm.bench.report import write_report

    started = time.monotonic()
    data_dir = Path(config.data_dir).expanduser() if config.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise CbtLlmError(f"{data_dir}: no such folder (--data_dir)")
    loaded = {task: get_task(task).load(data_dir, config.shots) for task in config.task_list}  # all input checked first
    tasks = {task: sample(items, config.limit, config.seed) for task, (items, _) in loaded.items()}
    checked = contamination(tasks, config.train_dataset, config.ngram, config.overlap) if config.train_dataset else None
    if config.base_url:
        resolve_api_key(config.api_key_env, config.base_url)  # a missing key fails before any file is touched
    if set(config.task_list) & JUDGED:
        resolve_api_key(config.judge_api_key_env, config.judge_base_url)  # the judge's too
    summary, local = BenchSummary(Path(config.output_dir)), LocalModel(config)
    for task, items in tasks.items():
        summary.runs[task], replies = answer_task(config, task, items, local)
        verdicts = None
        if task in JUDGED:
            summary.runs[f"{task} judge"], verdicts = judging.judge_task(config, items, replies)
        summary.results[task] = task_result(task, items, replies, verdicts)
    summary.seconds = time.monotonic() - started
    sources = {task: source for task, (_, source) in loaded.items()}
    summary.card = write_report(config, summary.results, sources, checked)
    return summary
