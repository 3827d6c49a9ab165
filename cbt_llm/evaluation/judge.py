"""An LLM judge for CBT answers: relevance, CBT structure and helpfulness, each 0-2, as JSON.

``judge(JudgeConfig(predictions=..., output_file=..., model=..., base_url=...))`` (and ``cbt-llm judge``)
shows any OpenAI-compatible model the asker's question and description and one answer from a
predictions file, with the rubric below, and asks for one JSON object. Requests go through the request
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

from cbt_llm.config import SplitConfig, option
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.config import ServedModelConfig
from cbt_llm.engine.endpoints import answer_of, estimate_message_tokens, json_values, resolve_api_key
from cbt_llm.engine.runner import RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now
from cbt_llm.errors import CbtLlmError

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


def _criterion_score(obj: dict, names: tuple[str, ...]) -> int | None:
    """The first valid 0-2 score of ``obj`` under any of a criterion's names (keys compared lowercased)."""
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    scores = (_score(lowered[name.lower()]) for name in names if name.lower() in lowered)
    return next((score for score in scores if score is not None), None)


def _scores_of_object(obj: dict) -> dict | None:
    """The three scores and the rationale of a JSON object, or None when a score is missing."""
    scores = {criterion: _criterion_score(obj, names) for criterion, names in _ALIASES.items()}
    if None in scores.values():
        return None
    rationale = obj.get("rationale", obj.get("reason", obj.get("理由", "")))
    return {**scores, "rationale": str(rationale or "")}


def _scores_of_lines(body: str) -> dict[str, int]:
    """The scores written as ``relevance: 2`` lines (a reply without a usable object)."""
    scores = {}
    for criterion, names in _ALIASES.items():
        pattern = "|".join(re.escape(n) for n in names)
        match = re.search(rf"[\"']?(?:{pattern})[\"']?\s*[:：=]\s*[\"']?([0-2])(?![\d.])", body, re.IGNORECASE)
        if match:
            scores[criterion] = int(match.group(1))
    return scores


def parse_judgement(text: str) -> dict:
    """The three 0-2 scores (and a rationale) from a judge reply; ``ValueError`` when they are not all there."""
    body = _FENCE.sub("", text or "")
    for obj in (value for value in json_values(body) if isinstance(value, dict)):
        scores = _scores_of_object(obj)
        if scores:
            return scores
    scores = _scores_of_lines(body)
    if len(scores) == len(CRITERIA):
        return {**scores, "rationale": ""}
    missing = [c for c in CRITERIA if c not in scores]
    raise ValueError(f"judge reply has no valid 0-2 score for {', '.join(missing)}")


@dataclass(kw_only=True)
class JudgeConfig(SplitConfig, ServedModelConfig):
    """What ``judge`` reads: ``cbt-llm judge``'s flags (the judge model, the predictions, the output)."""

    predictions: str = option(help="predict's output", metavar="PREDS.jsonl")
    output_file: str = option(help="judgements file (resumable)", metavar="JUDGE.jsonl")
    system: str | None = option(None, "system name stored with the scores (default: the predictions file name)",
                                metavar="NAME")
    temperature: float = option(0.0, "judge temperature")
    max_new_tokens: int = option(300, "judge reply cap", metavar="N")
    max_asks: int = option(3, "asks per answer when the reply has no valid JSON scores", metavar="N")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.predictions, self.output_file = str(self.predictions), str(self.output_file)  # a Path is welcome too
        if self.dataset_config != "default":
            raise CbtLlmError("the judge's rubric scores an answer to a question: judge the default config "
                              "(dialogue turns are scored by `cbt-llm evaluate --dataset_config dialogue`)")
        if self.max_asks < 1:
            raise CbtLlmError(f"--max_asks must be at least 1, got {self.max_asks}")


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


def judge(config: JudgeConfig) -> JudgeSummary:
    """Judge every answer of a predictions file (see the module docstring); the means are in the summary."""
    return asyncio.run(ajudge(config))


def _questions_of(config: JudgeConfig, answers: dict[str, dict]) -> dict[str, dict]:
    """The split's rows by id; every answered id must be one of them."""
    from cbt_llm.evaluation.predict import load_split

    questions = {r["id"]: r for r in load_split(config.dataset, config.split, config.data_files)}
    unknown = [i for i in answers if i not in questions]
    if unknown:
        raise CbtLlmError(f"{config.predictions}: {len(unknown)} ids are not in {config.dataset} split {config.split} "
                          f"(e.g. {unknown[0]}); pass the --dataset/--split the predictions were made on")
    return questions


async def judge_answer(engine: RequestEngine, config: JudgeConfig, system: str, row: dict, answer: str) -> dict:
    """The judgement line of one answer: asked up to ``max_asks`` times until its reply parses."""
    payload = {"model": config.model, "temperature": config.temperature, "max_tokens": config.max_new_tokens,
               "messages": judge_messages(row["question"], row["description"], answer)}
    base = {"id": row["id"], "system": system, "judge_model": config.model, "judge_version": JUDGE_VERSION}
    estimated = estimate_message_tokens(payload["messages"]) + config.max_new_tokens
    reason = ""
    for ask in range(1, config.max_asks + 1):
        try:
            reply = await engine.request(payload, estimated_tokens=estimated if config.tpm else 0)
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


async def ajudge(config: JudgeConfig) -> JudgeSummary:
    """The asynchronous core of ``judge``."""
    from cbt_llm.evaluation.predict import read_predictions

    answers = read_predictions(config.predictions)
    questions = _questions_of(config, answers)
    system = config.system or Path(config.predictions).stem
    resolve_api_key(config.api_key_env, config.base_url)  # a missing key fails before the output is touched
    summary = JudgeSummary(Path(config.output_file), system=system)
    store, todo = resume(config.output_file, list(answers), lambda record_id: record_id, summary)

    async def one(engine: RequestEngine, record_id: str) -> dict:
        return await judge_answer(engine, config, system, questions[record_id], answers[record_id]["prediction"])

    await run_requests(todo, one, store, config, summary, desc="judge", progress=False)
    means = judgement_means(config.output_file)
    summary.means = {c: means[c] for c in CRITERIA if c in means}
    return summary
