"""An LLM judge for CBT answers: relevance, CBT structure and helpfulness, each 0-2, as JSON.

``judge(predictions, output, model, base_url=...)`` (and ``cbt-llm judge``) shows any
OpenAI-compatible model the asker's question and description and one answer from a predictions
file, with the rubric below, and asks for one JSON object. Requests go through the generation
engine's ``RequestEngine`` (concurrency, retries, adaptive backoff on 429); replies are parsed
robustly (code fences, prose around the object, Chinese key names, "2/2" or "2.0" values) and
re-asked up to ``max_asks`` times when no valid object comes back. The output is one JSON line
per id, resumable like ``generate``'s.

Rubric (the scale follows the CBT-LLM paper's expert rating of CBT structure, 0/1/2):

* **relevance** - 0: does not address the asker's question or situation (off topic, generic
  text that would fit any question); 1: addresses the topic but misses the asker's specific
  circumstances or main concern; 2: responds directly to the specific question and details.
* **cbt_structure** - 0: does not follow CBT (none or only one of the five steps); 1: partly
  (two to four steps, or all five but out of order or only in name); 2: fully (all five steps,
  in order: validation and empathy, the key thought or belief, challenge or reflection,
  strategy or insight, encouragement and foresight).
* **helpfulness** - 0: unhelpful or harmful (platitudes, lecturing, blame, diagnosis,
  medication advice, unsafe suggestions); 1: somewhat helpful (supportive but vague, or
  practical but cold); 2: helpful (warm, concrete, feasible and safe for this person).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

from cbt_llm.engine.endpoints import (
    answer_of,
    estimate_message_tokens,
    json_values,
    resolve_api_key,
)
from cbt_llm.errors import CbtLlmError
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.runner import EndpointConfig, RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now

CRITERIA = ("relevance", "cbt_structure", "helpfulness")
JUDGE_VERSION = "judge-zh-v1"
JUDGE_SYSTEM = """你是一名资深的心理咨询督导，熟悉认知行为疗法（CBT）。请评价一位咨询师对来访者提问的回答。按下面的标准给出三个 0、1、2 的整数分：

relevance（相关性）
0 = 没有回应来访者的问题或处境（跑题，或放在任何问题下都一样的空泛文字）
1 = 回应了话题，但忽略了来访者的具体情况或主要困扰
2 = 直接、具体地回应了来访者的问题和细节

cbt_structure（CBT 结构）
0 = 不符合 CBT（五个步骤一个都没有，或只有一个）
1 = 部分符合（有两到四个步骤，或五个都有但顺序混乱、流于形式）
2 = 完全符合（依次包含：验证与共情、识别关键思维或信念、提出挑战或反思、提供策略或见解、鼓励与展望）

helpfulness（帮助性）
0 = 没有帮助或有害（空话套话、说教、指责、下诊断、推荐药物、不安全的建议）
1 = 有一些帮助（温暖但空泛，或实用但冷漠）
2 = 有帮助（温暖、具体、可行，并且对这位来访者是安全的）

只输出一个 JSON 对象，不要输出其他内容，格式：
{"relevance": 0-2, "cbt_structure": 0-2, "helpfulness": 0-2, "rationale": "一两句理由"}"""

_ALIASES = {
    "relevance": ("relevance", "相关性", "相关"),
    "cbt_structure": ("cbt_structure", "structure", "cbt结构", "CBT结构", "CBT 结构", "结构"),
    "helpfulness": ("helpfulness", "helpful", "帮助性", "有用性"),
}
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


def judge_messages(question: str, description: str, answer: str) -> list[dict]:
    """The chat messages for one judgement."""
    user = f"来访者的问题：{question}\n"
    if description:
        user += f"来访者的描述：{description}\n"
    user += f"\n咨询师的回答：\n{answer}\n\n请按标准评分，只输出 JSON。"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _score(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= value <= 2:
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-2])(?:\.0+)?\s*(?:/\s*2\s*)?(?:分)?\s*", value)
        if match:
            return int(match.group(1))
    if isinstance(value, dict):  # {"score": 2, "reason": ...}
        return _score(value.get("score"))
    return None


def parse_judgement(text: str) -> dict:
    """The three 0-2 scores (and a rationale) from a judge reply; ``ValueError`` when they are not all there."""
    body = _FENCE.sub("", text or "")
    for obj in (value for value in json_values(body) if isinstance(value, dict)):
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        scores = {}
        for criterion, names in _ALIASES.items():
            for name in names:
                if name.lower() in lowered and _score(lowered[name.lower()]) is not None:
                    scores[criterion] = _score(lowered[name.lower()])
                    break
        if len(scores) == len(CRITERIA):
            rationale = obj.get("rationale", obj.get("reason", obj.get("理由", "")))
            return {**scores, "rationale": str(rationale or "")}
    # no usable object: "relevance: 2" lines
    scores = {}
    for criterion, names in _ALIASES.items():
        pattern = "|".join(re.escape(n) for n in names)
        match = re.search(rf"[\"']?(?:{pattern})[\"']?\s*[:：=]\s*[\"']?([0-2])(?![\d.])", body, re.IGNORECASE)
        if match:
            scores[criterion] = int(match.group(1))
    if len(scores) == len(CRITERIA):
        return {**scores, "rationale": ""}
    missing = [c for c in CRITERIA if c not in scores]
    raise ValueError(f"judge reply has no valid 0-2 score for {', '.join(missing)}")


@dataclass
class JudgeSummary(RunStats):
    """What a judging run did, and the mean scores over the whole output file."""

    system: str = ""
    means: dict = field(default_factory=dict)

    def format(self) -> str:
        means = ", ".join(f"{k} {v:.2f}" for k, v in self.means.items()) or "none"
        return (f"judged {sum(self.counts.values())} of {self.total} answers of {self.system} in {self.seconds:.1f} s "
                f"(ok {self.counts['ok']}, failed {self.counts['failed']}"
                + (f"; {self.skipped} already done" if self.skipped else "")
                + f"; requests {self.requests}, retries {self.retries})\nmeans over {self.output} (0-2): {means}")


def judgement_means(path: str | Path) -> dict:
    """Mean score per criterion over the ok lines of a judgements file, plus ``n``."""
    records = [r for r in JsonlStore(path).read().records.values() if r.get("status") == "ok"]
    if not records:
        return {"n": 0}
    return {"n": len(records), **{c: sum(r[c] for r in records) / len(records) for c in CRITERIA}}


def judge(predictions: str | Path, output: str | Path, model: str, *, dataset: str = "cbt_qa",
          split: str = "test", data_files: list[str] | None = None, system: str | None = None,
          max_asks: int = 3, temperature: float = 0.0, max_tokens: int = 300, **endpoint) -> JudgeSummary:
    """Judge every answer of a predictions file (see the module docstring); ``endpoint`` holds the
    ``EndpointConfig`` fields (base_url, api_key_env, concurrency, rpm, tpm, timeout, max_attempts)."""
    return asyncio.run(ajudge(predictions, output, model, EndpointConfig(**endpoint), dataset=dataset, split=split,
                              data_files=data_files, system=system, max_asks=max_asks, temperature=temperature,
                              max_tokens=max_tokens))


async def ajudge(predictions, output, model, endpoint: EndpointConfig, *, dataset, split, data_files, system,
                 max_asks, temperature, max_tokens) -> JudgeSummary:
    """The asynchronous core of ``judge``."""
    from cbt_llm.evaluation.predict import load_split, read_predictions

    if max_asks < 1:
        raise CbtLlmError(f"--max-asks must be at least 1, got {max_asks}")
    answers = read_predictions(predictions)
    questions = {r["id"]: r for r in load_split(dataset, split, data_files)}
    unknown = [i for i in answers if i not in questions]
    if unknown:
        raise CbtLlmError(f"{predictions}: {len(unknown)} ids are not in {dataset} split {split} "
                          f"(e.g. {unknown[0]}); pass the --dataset/--split the predictions were made on")
    system = system or Path(predictions).stem
    resolve_api_key(endpoint.api_key_env, endpoint.base_url)  # a missing key fails before the output is touched
    summary = JudgeSummary(Path(output), system=system)
    store, todo = resume(output, list(answers), lambda record_id: record_id, summary)

    async def one(engine: RequestEngine, record_id: str) -> dict:
        row = questions[record_id]
        payload = {"model": model, "temperature": temperature, "max_tokens": max_tokens,
                   "messages": judge_messages(row["question"], row["description"], answers[record_id]["prediction"])}
        base = {"id": record_id, "system": system, "judge_model": model, "judge_version": JUDGE_VERSION}
        estimated = estimate_message_tokens(payload["messages"]) + max_tokens
        reason = ""
        for ask in range(1, max_asks + 1):
            try:
                reply = await engine.request(payload, estimated_tokens=estimated if endpoint.tpm else 0)
            except RequestFailed as err:
                reason = err.reason
                break
            text, _ = answer_of(reply.body)
            try:
                scores = parse_judgement(text)
            except ValueError as err:
                reason = f"{err} (after {ask} replies)"
                continue
            return {**base, "status": "ok", **scores, "asks": ask, "created_at": utc_now()}
        return {**base, "status": "failed", "reason": reason, "created_at": utc_now()}

    await run_requests(todo, one, store, endpoint, summary, desc="judge", progress=False)
    means = judgement_means(output)
    summary.means = {c: means[c] for c in CRITERIA if c in means}
    return summary
