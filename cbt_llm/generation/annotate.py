"""Label questions with cognitive distortions from a fixed taxonomy (``cbt-llm annotate``).

The taxonomy is ``cbt_llm.data.prompts.COGNITIVE_DISTORTIONS`` (Beck/Burns: all-or-nothing thinking,
overgeneralisation, mental filter, disqualifying the positive, mind reading, fortune telling,
catastrophising, emotional reasoning, should statements, labelling, personalisation). The teacher
sees the question, the description and the answer, and replies with a JSON object of label keys;
labels outside the taxonomy are dropped. Each ``ok`` record is copied to the output with its
``distortions``; other records are copied unchanged. The output follows generate's contract (one
line per id, resumable; a failed labelling is retried on the next run). The dataset card shows the
labels' distribution.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cbt_llm.config import option
from cbt_llm.data.prompts import COGNITIVE_DISTORTIONS
from cbt_llm.data.sources import iter_json_objects
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.config import ServedModelConfig
from cbt_llm.engine.endpoints import answer_of, json_values, resolve_api_key
from cbt_llm.engine.runner import RunStats, resume, run_requests
from cbt_llm.engine.store import utc_now
from cbt_llm.errors import CbtLlmError

DEFINITIONS = {
    "all_or_nothing": ("seeing things in two categories only, success or total failure",
                       "只用两个极端看事情，不是完美就是彻底失败"),
    "overgeneralization": ("one event taken as a never-ending pattern (always, never)",
                           "把一次事件当成永远如此的规律（总是、从不）"),
    "mental_filter": ("dwelling on one negative detail and ignoring the rest", "只盯着一个负面细节，忽略其余"),
    "disqualifying_positive": ("positive experiences dismissed as not counting", "把积极的经历说成不算数"),
    "mind_reading": ("assuming what others think without evidence", "没有证据就认定别人在想什么"),
    "fortune_telling": ("predicting that things will turn out badly", "预先断定事情会变糟"),
    "catastrophizing": ("expecting the worst possible outcome, blowing things out of proportion",
                        "把事情往最坏的结局想、夸大后果"),
    "emotional_reasoning": ("taking feelings as evidence of facts (I feel it, so it is true)",
                            "把感受当成事实的证据（我感觉如此，所以就是如此）"),
    "should_statements": ("rigid rules of should and must for oneself or others", "用“应该”“必须”的僵硬规则要求自己或他人"),
    "labeling": ("a global negative label instead of describing a behaviour", "给自己或他人贴上整体的负面标签"),
    "personalization": ("blaming oneself for events not (fully) under one's control", "把不（完全）由自己掌控的事归咎于自己"),
}
assert set(DEFINITIONS) == set(COGNITIVE_DISTORTIONS)


def annotation_prompt(record: dict, language: str = "zh") -> str:
    """The labelling prompt for one record."""
    if language == "zh":
        items = "\n".join(f"- {key}：{COGNITIVE_DISTORTIONS[key][1]}（{DEFINITIONS[key][1]}）" for key in DEFINITIONS)
        return ("你是一名认知行为疗法专家。请判断下面这位来访者的提问中体现了哪些认知扭曲，只能从以下列表中选择（可以不选）：\n"
                f"{items}\n\n问题：{record['question']}\n描述：{record.get('description', '')}\n"
                f"咨询师的回答：{record.get('response', '')}\n\n"
                '只输出一个 JSON 对象，例如 {"distortions": ["catastrophizing"]}；没有时输出 {"distortions": []}。')
    items = "\n".join(f"- {key}: {COGNITIVE_DISTORTIONS[key][0]} ({DEFINITIONS[key][0]})" for key in DEFINITIONS)
    return ("You are a cognitive behavioural therapy expert. Which cognitive distortions does the asker's question "
            f"show? Choose only from this list (possibly none):\n{items}\n\nQuestion: {record['question']}\n"
            f"Description: {record.get('description', '')}\nCounsellor's answer: {record.get('response', '')}\n\n"
            'Reply with one JSON object only, e.g. {"distortions": ["catastrophizing"]}, or {"distortions": []}.')


_NAMES = {key: key for key in COGNITIVE_DISTORTIONS}
for _key, (_en, _zh) in COGNITIVE_DISTORTIONS.items():
    _NAMES[_en.lower()] = _key
    _NAMES[_zh] = _key
    _NAMES[_zh.strip("“”")] = _key


def parse_labels(text: str) -> tuple[list[str], list[str]] | None:
    """The taxonomy keys in a reply and the unknown labels dropped; None when the reply has no JSON."""
    values = list(json_values(text))
    obj = next((v for v in values if isinstance(v, dict) and "distortions" in v), None)
    value: Any = obj["distortions"] if obj is not None else next((v for v in values if isinstance(v, list)), None)
    if not isinstance(value, list):
        return None
    labels, unknown = [], []
    for item in value:
        key = _NAMES.get(str(item).strip().lower()) or _NAMES.get(str(item).strip())
        if key is None:
            unknown.append(str(item))
        elif key not in labels:
            labels.append(key)
    return labels, unknown


@dataclass
class AnnotateSummary(RunStats):
    """What a labelling run did; ``format()`` is the summary the command prints."""

    labels: Counter = field(default_factory=Counter)
    unknown: Counter = field(default_factory=Counter)

    def format(self) -> str:
        lines = [f"annotated {self.counts['ok']} records in {self.seconds:.1f} s (failed {self.counts['failed']}, "
                 f"copied unchanged {self.counts['copied']}, already done {self.skipped}) -> {self.output}"]
        if self.labels:
            lines.append("distortions: " + ", ".join(f"{k} {n}" for k, n in self.labels.most_common()))
        if self.unknown:
            lines.append("dropped labels outside the taxonomy: " + ", ".join(f"{k} x{n}" for k, n in
                                                                             self.unknown.most_common(5)))
        return "\n".join(lines)


@dataclass(kw_only=True)
class AnnotateConfig(ServedModelConfig):
    """What ``annotate`` reads: ``cbt-llm annotate``'s flags."""

    input: str = option(help="generate's output", metavar="RECORDS.jsonl")
    output_file: str = option(help="labelled records (resumable)", metavar="OUT.jsonl")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")
    language: Literal["zh", "en"] = option("zh", "prompt language")
    temperature: float | None = option(0.0, "sampling temperature")
    max_new_tokens: int | None = option(200, "label answer cap", metavar="N")

    def __post_init__(self) -> None:
        self.input, self.output_file = str(self.input), str(self.output_file)  # a Path is welcome too
        if Path(self.input).resolve() == Path(self.output_file).resolve():
            raise CbtLlmError("--output_file must differ from --input (annotate writes a labelled copy)")


def annotate(config: AnnotateConfig) -> AnnotateSummary:
    """Label the ok records of ``config.input`` into ``config.output_file`` (see the module docstring)."""
    return asyncio.run(aannotate(config))


async def aannotate(config: AnnotateConfig) -> AnnotateSummary:
    """The asynchronous core of ``annotate``."""
    records = [obj for _, obj in iter_json_objects(config.input)]
    resolve_api_key(config.api_key_env, config.base_url)  # a missing key fails before the output is touched
    summary = AnnotateSummary(Path(config.output_file))
    store, todo = resume(config.output_file, records, lambda r: str(r.get("id")), summary,
                         done_statuses=("ok", "rejected"))
    params = {k: v for k, v in (("temperature", config.temperature), ("max_tokens", config.max_new_tokens))
              if v is not None}

    async def label(engine: RequestEngine, record: dict) -> dict:
        record = dict(record)
        if record.get("status", "ok") != "ok":
            summary.counts["copied"] += 1
            return record
        prompt = annotation_prompt(record, config.language)
        payload = {"model": config.model, "messages": [{"role": "user", "content": prompt}], **params}
        parsed = None
        for _ in range(2):
            try:
                reply = await engine.request(payload)
            except RequestFailed as err:
                return {**record, "status": "failed", "reason": f"annotate: {err.reason}"}
            parsed = parse_labels(answer_of(reply.body)[0])
            if parsed is not None:
                break
        if parsed is None:
            return {**record, "status": "failed", "reason": "annotate: the reply had no JSON list of labels"}
        labels, unknown = parsed
        record["distortions"] = labels
        record["annotation"] = {"model": config.model, "created_at": utc_now(), "taxonomy": "cbt_llm-v1"}
        summary.labels.update(labels)
        summary.unknown.update(unknown)
        return record

    await run_requests(todo, label, store, config, summary, desc="annotate", progress=config.progress)
    return summary
