"""Answers for a split's questions, from a local model (+ LoRA adapter) or an OpenAI-compatible endpoint.

``predict(PredictConfig(output_file=..., adapter=..., split="test"))`` (and ``cbt-llm predict``) asks
every question of a ``cbt_qa`` split with the training prompt (the recipe's system line plus the
question and description) and writes one JSON line per question id::

    {"id": ..., "prediction": ..., "status": "ok", "finish_reason": "stop", "new_tokens": 231,
     "settings": {"mode": "transformers", "model": ..., "adapter": ..., "system_prompt": ..., "max_new_tokens": ...}}

No reference goes into the file, so it can be shared and scored later (``cbt-llm evaluate``). With
``dataset_config="dialogue"`` each counsellor turn of the split's dialogues is a row (id ``<dialogue id>#<n>``),
answered after the dialogue's reference history with the line the model was trained with (a dialogue
adapter's: the dialogues' own); see ``cbt_llm.evaluation.dialogue``.

* **transformers** (``model_name_or_path`` and/or ``adapter``): batched ``generate`` with left padding,
  longest prompts first so that a batch holds prompts of similar length; the adapter is a local folder
  or a Hub repo (PEFT). The system line and generation settings come from the config, else from the
  adapter's ``training_recipe.yaml`` (``system_prompt``, and ``max_new_tokens``/``temperature``/... when
  the recipe has them, top level or under ``generation``), else greedy decoding with 512 new tokens.
* **endpoint** (``base_url`` and ``model``): the request engine's ``RequestEngine`` (concurrency,
  retries, adaptive backoff on 429) against vLLM (``model`` names the LoRA module), ``transformers
  serve`` or a hosted API.

The output is resumable through the request engine's ``JsonlStore`` (``cbt_llm.engine.runner.resume``):
a rerun skips ids already answered, retries failed ones, repairs a torn last line, and refuses to mix in
answers made with other settings (``overwrite=True`` starts again).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbt_llm.config import SplitConfig, option
from cbt_llm.data.dialogue_prompts import model_system_prompt
from cbt_llm.data.prompts import chat_prompt
from cbt_llm.engine.client import RequestEngine, RequestFailed
from cbt_llm.engine.config import ModelChoiceConfig
from cbt_llm.engine.endpoints import answer_of, resolve_api_key
from cbt_llm.engine.runner import Progress, RunStats, resume, run_requests
from cbt_llm.engine.store import JsonlStore, utc_now
from cbt_llm.errors import CbtLlmError
from cbt_llm.models.loading import load_model_and_tokenizer, read_recipe

GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty")
DEFAULT_GENERATION = {"max_new_tokens": 512, "do_sample": False, "temperature": None, "top_p": None,
                      "repetition_penalty": None}


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class PredictConfig(SplitConfig, ModelChoiceConfig):
    """What ``predict`` reads: ``cbt-llm predict``'s flags. A model to load is ``model_name_or_path``
    (and/or ``adapter``); a served one is ``base_url`` plus ``model``."""

    output_file: str = option(help="predictions file (resumable)", metavar="PREDS.jsonl")
    limit: int | None = option(None, "only the first N questions", metavar="N")
    overwrite: bool = option(False, "start the output file again")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")
    batch_size: int = option(8, "prompts per generate call", metavar="N")
    system_prompt: str | None = option(None, "system line (default: the adapter recipe's, else the paper's)")
    max_new_tokens: int | None = option(None, "answer length cap (default: the recipe's, else 512)", metavar="N")
    do_sample: bool | None = option(None, "sample instead of greedy decoding (a --temperature above 0 implies it; "
                                    "--do_sample false forces greedy)", nargs="?", const=True)
    temperature: float | None = option(None, "sampling temperature")
    top_p: float | None = option(None, "nucleus sampling")
    repetition_penalty: float | None = option(None, "e.g. 1.1", metavar="X")
    seed: int | None = option(0, "random seed")
    def __post_init__(self) -> None:
        super().__post_init__()
        self.output_file = str(self.output_file)  # a Path is welcome too
        if self.batch_size < 1:
            raise CbtLlmError(f"--batch_size must be at least 1, got {self.batch_size}")
        self.check_model_choice()


# ---------------------------------------------------------------------------------------------
# Questions and settings
# ---------------------------------------------------------------------------------------------
def load_split(dataset: str = "cbt_qa", split: str = "test", data_files: list[str] | None = None,
               dataset_config: str = "default") -> list[dict]:
    """The rows of one split of ``cbt_qa`` (sample or ``data_files``), a built folder or a Hub id: the ``default``
    config's questions, or for ``dialogue`` one row per counsellor turn (``cbt_llm.evaluation.dialogue``)."""
    from datasets import load_dataset

    import cbt_llm  # noqa: F401 - registers cbt_qa
    from cbt_llm.evaluation.dialogue import turn_rows

    kwargs: dict[str, Any] = {"data_files": data_files} if data_files else {}
    try:
        loaded = load_dataset(dataset, dataset_config, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        raise CbtLlmError(f"cannot load dataset {dataset!r} config {dataset_config!r}: "
                          f"{str(err).splitlines()[0][:200]}") from None
    if split not in loaded:
        raise CbtLlmError(f"dataset {dataset!r} has no split {split!r} (it has: {', '.join(loaded)})")
    rows = [dict(row) for row in loaded[split]]
    return turn_rows(rows) if dataset_config == "dialogue" else rows


def prompt_of(row: dict, system_prompt: str) -> list[dict]:
    """The chat a row is answered from: the system line, then a dialogue turn's history or the question."""
    if "history" in row:
        return [{"role": "system", "content": system_prompt}, *row["history"]]
    return chat_prompt(row["question"], row["description"], system_prompt)


def resolve_settings(recipe: dict, system_prompt: str | None = None, dataset_config: str = "default",
                     **flags: Any) -> dict:
    """Generation settings: flags first, then the recipe (top level or ``generation:``), then the defaults. The
    system line: ``system_prompt``, else the one the adapter was trained with (its recipe), else the one of
    ``dataset_config``'s rows (the dialogues' own for dialogue turns, the paper's for questions)."""
    nested = recipe.get("generation") if isinstance(recipe.get("generation"), dict) else {}
    settings = {}
    for key in GENERATION_KEYS:
        for source in (flags, nested, recipe, DEFAULT_GENERATION):
            if source.get(key) is not None:
                settings[key] = source[key]
                break
        else:
            settings[key] = None
    if settings["temperature"] is not None and flags.get("do_sample") is None and settings["temperature"] > 0:
        settings["do_sample"] = True  # asking for a temperature means sampling
    if not settings["do_sample"]:
        settings["temperature"] = settings["top_p"] = None
    if not isinstance(settings["max_new_tokens"], int) or settings["max_new_tokens"] < 1:
        raise CbtLlmError(f"max_new_tokens must be a positive integer, got {settings['max_new_tokens']!r}")
    settings["system_prompt"] = system_prompt or model_system_prompt(recipe.get("system_prompt"),
                                                                      recipe.get("dataset_config") or dataset_config)
    return settings


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
@dataclass
class PredictSummary(RunStats):
    """What a predict run did: the run's counts, the new tokens made and the settings every line records."""

    new_tokens: int = 0
    settings: dict = field(default_factory=dict)

    def format(self) -> str:
        done = sum(self.counts.values())
        rate = done / self.seconds if self.seconds > 0 else 0.0
        text = (f"predicted {done} of {self.total} questions in {self.seconds:.1f} s ({rate:.2f} answers/s, "
                f"{self.new_tokens} new tokens): ok {self.counts['ok']}, failed {self.counts['failed']}"
                + (f"; {self.skipped} already done" if self.skipped else ""))
        where = self.settings.get("adapter") or self.settings.get("model")
        return f"{text}\n{self.output} ({self.settings.get('mode')}: {where}); score it with cbt-llm evaluate"


def _comparable(settings: dict) -> dict:
    """The settings two runs must share for their answers to go into one file."""
    return {k: v for k, v in settings.items() if k not in ("created_at",)}


def _check_settings(path: str | Path, settings: dict, overwrite: bool) -> None:
    """Refuse to mix answers made with other settings into ``path`` (or delete it with ``overwrite``)."""
    store = JsonlStore(path)
    if overwrite and store.path.is_file():
        store.path.unlink()
    for record in store.read().records.values():
        if record.get("status") == "ok" and _comparable(record.get("settings") or {}) != _comparable(settings):
            theirs = json.dumps(_comparable(record.get("settings") or {}), ensure_ascii=False)
            raise CbtLlmError(f"{store.path} holds predictions made with other settings ({theirs[:300]}); "
                              "write to another --output_file, or pass --overwrite to start again")


def _record(row: dict, prediction: str, settings: dict, status: str = "ok", reason: str = "",
            finish_reason: str = "", new_tokens: int | None = None) -> dict:
    """One line of the predictions file."""
    return {"id": row["id"], "prediction": prediction, "status": status, "reason": reason,
            "finish_reason": finish_reason, "new_tokens": new_tokens, "created_at": utc_now(), "settings": settings}


# ---------------------------------------------------------------------------------------------
# Local model
# ---------------------------------------------------------------------------------------------
def generate_batch(tokenizer, lm, prompts: list[list[dict]], settings: dict) -> list[tuple[str, str, int]]:
    """Answers for a batch of chat prompts: (text, finish_reason, new tokens) each."""
    import torch

    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
    kwargs = {k: settings[k] for k in GENERATION_KEYS if settings.get(k) is not None}
    eos = tokenizer.eos_token_id
    with torch.inference_mode():
        output = lm.generate(**encoded, **kwargs, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
    new = output[:, encoded["input_ids"].shape[1]:]
    results = []
    for row in new:
        ids = row.tolist()
        stopped = eos in ids
        if stopped:
            ids = ids[:ids.index(eos)]
        ids = [i for i in ids if i != tokenizer.pad_token_id] if tokenizer.pad_token_id != eos else ids
        finish = "stop" if stopped or len(ids) < settings["max_new_tokens"] else "length"
        results.append((tokenizer.decode(ids, skip_special_tokens=True).strip(), finish, len(ids)))
    return results


def _predict_local(rows: list[dict], store: JsonlStore, summary: PredictSummary, config: PredictConfig) -> None:
    """Answer ``rows`` with the model loaded here, ``config.batch_size`` prompts per ``generate`` call."""
    import torch

    lm, tokenizer = load_model_and_tokenizer(config.model_name_or_path, config.adapter, device=config.device or "auto",
                                             dtype=config.dtype, padding_side="left")
    settings, batch_size = summary.settings, config.batch_size
    prompts = {r["id"]: prompt_of(r, settings["system_prompt"]) for r in rows}
    texts = {i: tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for i, p in prompts.items()}
    lengths = {i: len(tokenizer(t, add_special_tokens=False)["input_ids"]) for i, t in texts.items()}
    ordered = sorted(rows, key=lambda r: -lengths[r["id"]])
    if settings.get("seed") is not None:
        torch.manual_seed(settings["seed"])
    bar = Progress(len(ordered), config.progress, "predict")
    started = time.monotonic()
    try:
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start:start + batch_size]
            answers = generate_batch(tokenizer, lm, [prompts[r["id"]] for r in batch], settings)
            for row, (text, finish, n) in zip(batch, answers):
                store.append(_record(row, text, settings, finish_reason=finish, new_tokens=n))
                summary.counts["ok"] += 1
                summary.new_tokens += n
            bar.update(summary.counts, n=len(batch))
    finally:
        bar.close()
        store.close()
        summary.seconds = time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Endpoint
# ---------------------------------------------------------------------------------------------
async def _predict_endpoint(rows: list[dict], store: JsonlStore, summary: PredictSummary,
                            config: PredictConfig) -> None:
    """Ask the served model for ``rows`` through the request engine, ``config.concurrency`` at once."""
    settings = summary.settings
    params = {"max_tokens": settings["max_new_tokens"], "temperature": settings["temperature"] or 0.0,
              "top_p": settings["top_p"], "seed": settings.get("seed"),
              "repetition_penalty": settings["repetition_penalty"]}  # vLLM and transformers serve take it
    params = {k: v for k, v in params.items() if v is not None}

    async def one(engine: RequestEngine, row: dict) -> dict:
        payload = {"model": settings["model"],
                   "messages": prompt_of(row, settings["system_prompt"]), **params}
        try:
            reply = await engine.request(payload)
        except RequestFailed as err:
            return _record(row, "", settings, status="failed", reason=err.reason)
        text, finish = answer_of(reply.body)
        usage = reply.body.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None
        summary.new_tokens += tokens or 0
        return _record(row, text.strip(), settings, finish_reason=finish or "", new_tokens=tokens)

    await run_requests(rows, one, store, config, summary, desc="predict", progress=config.progress)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def run_settings(config: PredictConfig) -> dict:
    """The settings every prediction line records: mode, model, adapter, split, the resolved generation
    settings (``resolve_settings``) and the seed; ``base_url`` too for a served model."""
    generation = resolve_settings(read_recipe(config.adapter), config.system_prompt, config.dataset_config,
                                  max_new_tokens=config.max_new_tokens, do_sample=config.do_sample,
                                  temperature=config.temperature, top_p=config.top_p,
                                  repetition_penalty=config.repetition_penalty)
    if config.base_url:
        return {"mode": "endpoint", "model": config.model, "adapter": None, "dataset": config.dataset,
                "dataset_config": config.dataset_config, "split": config.split, **generation, "seed": config.seed,
                "base_url": config.base_url}
    return {"mode": "transformers", "model": config.model_meant(),
            "adapter": config.adapter, "dataset": config.dataset, "dataset_config": config.dataset_config,
            "split": config.split, **generation, "seed": config.seed}


def predict(config: PredictConfig) -> PredictSummary:
    """Answer the split's questions into ``config.output_file`` (see the module docstring); returns the summary."""
    rows = load_split(config.dataset, config.split, config.data_files, config.dataset_config)
    if config.limit is not None:
        rows = rows[:max(config.limit, 0)]
    settings = run_settings(config)
    _check_settings(config.output_file, settings, config.overwrite)
    if config.base_url:
        resolve_api_key(config.api_key_env, config.base_url)  # a missing key fails before the output is touched
    summary = PredictSummary(Path(config.output_file), settings=settings)
    store, todo = resume(config.output_file, rows, lambda r: r["id"], summary)
    if not todo:
        store.close()
    elif config.base_url:
        asyncio.run(_predict_endpoint(todo, store, summary, config))
    else:
        _predict_local(todo, store, summary, config)
    return summary


def read_predictions(path: str | Path) -> dict[str, dict]:
    """The ok lines of a predictions file by id (the last one wins)."""
    path = Path(path)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no such predictions file")
    records = JsonlStore(path).read().records
    return {i: r for i, r in records.items() if r.get("status", "ok") == "ok" and isinstance(r.get("prediction"), str)}
