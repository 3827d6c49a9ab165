"""The CPsyCounE judge: each counsellor turn the model wrote, scored by a judge model into its own resumable file.

The verdict must parse (``tasks.cpsycoune.parse_verdict``: one JSON object, four integers in range);
an unparsable or out-of-range one is asked again up to ``judge_max_asks`` times, then stored as a
failed line with ``invalid: true`` and the reason naming the field, counted in bench.json and asked
again on the next run. One output folder holds one judge's scores: a different ``--judge_model``
(or judge prompt) is refused, so no table mixes judges.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cbt_llm.bench.tasks import Item
from cbt_llm.bench.tasks.cpsycoune import JUDGE_VERSION, judge_messages, parse_verdict
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.config import EndpointConfig
from cbt_llm.engine.endpoints import answer_of, resolve_api_key
from cbt_llm.engine.runner import RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now
from cbt_llm.errors import CbtLlmError

JUDGE_MAX_TOKENS = 300


def judge_endpoint(config) -> EndpointConfig:
    """The judge's server, with the bench run's concurrency, rate caps and retries."""
    return EndpointConfig(base_url=config.judge_base_url, api_key_env=config.judge_api_key_env, timeout=config.timeout,
                          concurrency=config.concurrency, rpm=config.rpm, tpm=config.tpm,
                          max_attempts=config.max_attempts)


def _one_judge(path: Path, judge_model: str):
    def check(records: dict[str, dict]) -> None:
        for record in records.values():
            if (record.get("judge_model"), record.get("judge_prompt")) != (judge_model, JUDGE_VERSION):
                raise CbtLlmError(f"{path}: holds verdicts of judge {record.get('judge_model')} "
                                  f"({record.get('judge_prompt')}); scores of different judges are not comparable: "
                                  "use another --output_dir for this judge")
    return check


async def judge_turn(engine: RequestEngine, config, item: Item, reply: str) -> dict:
    """The verdict line of one turn: asked until it parses, at most ``judge_max_asks`` times."""
    payload = {"model": config.judge_model, "temperature": 0.0, "max_tokens": JUDGE_MAX_TOKENS,
               "messages": judge_messages(item, reply)}
    base = {"id": item.id, "judge_model": config.judge_model, "judge_prompt": JUDGE_VERSION}
    reason, text, invalid = "", "", False
    for ask in range(1, config.judge_max_asks + 1):
        try:
            answer = await engine.request(payload)
        except RequestFailed as err:
            reason, invalid = f"judge request failed: {err.reason}", False
            break
        text, _ = answer_of(answer.body)
        try:
            verdict = parse_verdict(text)
        except ValueError as err:
            reason, invalid = f"invalid verdict after {ask} asks: {err}", True
            continue
        return {**base, "status": "ok", "verdict": verdict, "asks": ask, "created_at": utc_now()}
    return {**base, "status": "failed", "invalid": invalid, "reason": reason, "last_reply": text[:300],
            "created_at": utc_now()}


def judge_task(config, items: list[Item], replies: dict[str, dict]) -> tuple[RunStats, dict[str, dict]]:
    """Judge every answered turn not judged yet; the run's stats and the verdict lines on file by id."""
    path = Path(config.output_dir) / "records" / "cpsycoune.judge.jsonl"
    answered = [item for item in items if (replies.get(item.id) or {}).get("status") == "ok"]
    stats = RunStats(path)
    endpoint = judge_endpoint(config)
    if answered:
        resolve_api_key(endpoint.api_key_env, endpoint.base_url)
    store, todo = resume(path, answered, lambda item: item.id, stats, check=_one_judge(path, config.judge_model))
    if not todo:
        store.close()
    else:
        async def one(engine: RequestEngine, item: Item) -> dict:
            return await judge_turn(engine, config, item, replies[item.id]["reply"])

        asyncio.run(run_requests(todo, one, store, endpoint, stats, desc="judge", progress=config.progress))
    return stats, JsonlStore(path).read().records
