"""One resumable loop for every stage that asks a server once per item: generate, annotate, judge, predict.

``resume(output, items, key, stats)`` opens the stage's JSON Lines output (``JsonlStore``) and
returns the items still to do; ``run_requests(todo, work, store, endpoint, stats)`` sends them
through one ``RequestEngine`` and appends each record the moment ``work`` returns it (a fatal
error names the question it was raised for); ``RunStats`` is the common part of every stage's
summary, and its ``failure()`` is the one line the CLI exits 1 with when every item failed. A
stage only says how to ask for one item.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cbt_llm.engine.client import FatalAPIError, RequestEngine, for_each
from cbt_llm.engine.config import EndpointConfig
from cbt_llm.engine.store import JsonlStore, ResumeState, clean_stale_temp_files

T = TypeVar("T")


@dataclass
class RunStats:
    """What a resumable run did; each stage's summary extends it."""

    output: Path
    total: int = 0
    skipped: int = 0
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    errors: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rate_limit_events: int = 0
    learned_rate: float | None = None
    resume: ResumeState | None = None

    def take_engine_stats(self, engine: RequestEngine) -> None:
        stats = engine.stats
        self.requests, self.retries, self.errors = stats.sent, stats.retries, stats.errors
        self.prompt_tokens, self.completion_tokens = stats.prompt_tokens, stats.completion_tokens
        self.rate_limit_events = engine.limiter.rate_limit_events
        self.learned_rate = engine.limiter.last_measured

    def failure(self) -> str | None:
        """One line when the run had items to do and every one of them failed (the CLI exits 1), else None."""
        failed = self.counts.get("failed", 0)
        if not failed or failed < sum(self.counts.values()):
            return None
        return (f"all {failed} items failed, none came back done; their reasons are in {self.output} "
                "(the same command again retries them)")


class Progress:
    """A tqdm bar on stderr with the status counts; shown only on a terminal."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        if enabled and total and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="q", desc=desc, file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def update(self, counts: Counter, tokens: int | None = None, n: int = 1) -> None:
        if self.bar is not None:
            shown = " ".join(f"{k}={v}" for k, v in counts.items()) + (f" tok={tokens}" if tokens else "")
            self.bar.set_postfix_str(shown, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def item_id(item: Any) -> str:
    """An item's id for messages: a question's ``id``, a record's ``"id"``, or the item itself (an id)."""
    return str(item.get("id") if isinstance(item, dict) else getattr(item, "id", item))


def resume(output: str | Path, items: list[T], key: Callable[[T], str], stats: RunStats,
           done_statuses: Iterable[str] = ("ok",),
           check: Callable[[dict[str, dict]], None] | None = None) -> tuple[JsonlStore, list[T]]:
    """Open ``output`` for appending after repairing it; the items whose id has no done line yet.

    Failed lines of these items are dropped so they are asked again; ``stats`` gets the totals. ``check``
    (see ``JsonlStore.open``) may refuse the file's records before it is touched.
    """
    store = JsonlStore(output)
    clean_stale_temp_files(store.path)
    ids = [key(item) for item in items]
    state = store.open(retry=set(ids), check=check)
    done_statuses = set(done_statuses)
    done = {i for i, r in state.records.items() if r.get("status", "ok") in done_statuses}  # no status: a plain record
    todo = [item for item, i in zip(items, ids) if i not in done]
    stats.total, stats.skipped, stats.resume = len(items), len(items) - len(todo), state
    return store, todo


async def run_requests(todo: list[T], work: Callable[[RequestEngine, T], Awaitable[dict[str, Any]]],
                       store: JsonlStore, endpoint: EndpointConfig, stats: RunStats, *, desc: str,
                       progress: bool = True) -> None:
    """Ask for every item (``work(engine, item)`` returns its record), ``endpoint.concurrency`` at once.

    Each record is appended as soon as it is made; the store and the engine are closed and ``stats``
    filled even when a fatal error stops the run.
    """
    engine = endpoint.engine()
    bar = Progress(len(todo), progress, desc)
    started = time.monotonic()

    async def handle(item: T) -> None:
        try:
            record = await work(engine, item)
        except FatalAPIError as err:
            raise err.about(item_id(item)) from None
        store.append(record)
        stats.counts[record.get("status", "ok")] += 1
        bar.update(stats.counts, engine.stats.prompt_tokens + engine.stats.completion_tokens)

    try:
        await for_each(todo, handle, endpoint.concurrency)
    finally:
        bar.close()
        store.close()
        await engine.aclose()
        stats.seconds = time.monotonic() - started
        stats.take_engine_stats(engine)
