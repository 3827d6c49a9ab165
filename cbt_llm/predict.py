"""Answers for a split's questions, from a local model (+ LoRA adapter) or an OpenAI-compatible endpoint.

``predict(output, model=..., adapter=..., split="test")`` (and ``cbt-llm predict``) asks every
question of a ``cbt_qa`` split with the training prompt (the recipe's system line plus the
question and description) and writes one JSON line per question id::

    {"id": ..., "prediction": ..., "status": "ok", "finish_reason": "stop", "new_tokens": 231,
     "settings": {"mode": "transformers", "model": ..., "adapter": ..., "system_prompt": ..., "max_new_tokens": ...}}

No reference goes into the file, so it can be shared and scored later (``cbt-llm evaluate``).

* **transformers**: batched ``generate`` with left padding, longest prompts first so that a
  batch holds prompts of similar length; the adapter is a local folder or a Hub repo (PEFT). The
  system line and generation settings come from flags, else from the adapter's
  ``training_recipe.yaml`` (``system_prompt``, and ``max_new_tokens``/``temperature``/... when the
  recipe has them, top level or under ``generation``), else greedy decoding with 512 new tokens.
* **endpoint** (``base_url``): the generation engine's ``RequestEngine`` (concurrency, retries,
  adaptive backoff on 429) against vLLM (``--model`` names the LoRA module), ``transformers serve``
  or a hosted API.

The output is resumable with the generation engine's ``OutputFile``: a rerun skips ids already
answered, retries failed ones, repairs a torn last line, and refuses to mix in answers made with
other settings (pass ``overwrite=True`` to start again).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CbtLlmError
from .generate import OutputFile, answer_of, clean_stale_temp_files, resolve_api_key, utc_now
from .prompts import SYSTEM_PROMPT_ZH, chat_prompt

GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty")
DEFAULT_GENERATION = {"max_new_tokens": 512, "do_sample": False, "temperature": None, "top_p": None,
                      "repetition_penalty": None}
RECIPE_FILE = "training_recipe.yaml"


# ---------------------------------------------------------------------------------------------
# Questions and settings
# ---------------------------------------------------------------------------------------------
def load_split(dataset: str = "cbt_qa", split: str = "test", data_files: list[str] | None = None) -> list[dict]:
    """The rows (``default`` config) of one split of ``cbt_qa`` (sample or ``data_files``), a built folder or a Hub id."""
    from datasets import load_dataset

    import cbt_llm  # noqa: F401 - registers cbt_qa

    kwargs: dict[str, Any] = {"data_files": data_files} if data_files else {}
    try:
        loaded = load_dataset(dataset, "default", **kwargs)
    except (FileNotFoundError, ValueError) as err:
        raise CbtLlmError(f"cannot load dataset {dataset!r}: {str(err).splitlines()[0][:200]}") from None
    if split not in loaded:
        raise CbtLlmError(f"dataset {dataset!r} has no split {split!r} (it has: {', '.join(loaded)})")
    return [dict(row) for row in loaded[split]]


def read_recipe(adapter: str | None) -> dict:
    """The adapter's ``training_recipe.yaml`` (local folder, or a Hub repo when reachable); {} when none."""
    if not adapter:
        return {}
    import yaml

    path = Path(adapter).expanduser() / RECIPE_FILE
    if not path.is_file():
        if Path(adapter).expanduser().exists():
            return {}
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(adapter, RECIPE_FILE))
        except Exception:  # noqa: BLE001 - offline, private or no recipe: flags and defaults apply
            return {}
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return recipe if isinstance(recipe, dict) else {}


def resolve_settings(recipe: dict, system_prompt: str | None = None, **flags: Any) -> dict:
    """Generation settings: flags first, then the recipe (top level or ``generation:``), then the defaults."""
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
    settings["system_prompt"] = system_prompt or recipe.get("system_prompt") or SYSTEM_PROMPT_ZH
    return settings


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
@dataclass
class PredictSummary:
    output: Path
    total: int = 0
    skipped: int = 0
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
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
    return {k: v for k, v in settings.items() if k not in ("created_at",)}


def _open_output(path: str | Path, ids: list[str], settings: dict, overwrite: bool) -> tuple[OutputFile, set[str]]:
    out = OutputFile(path)
    if overwrite and out.path.is_file():
        out.path.unlink()
    clean_stale_temp_files(out.path)
    existing = out.read().records
    for record in existing.values():
        if record.get("status") == "ok" and _comparable(record.get("settings") or {}) != _comparable(settings):
            theirs = json.dumps(_comparable(record.get("settings") or {}), ensure_ascii=False)
            raise CbtLlmError(f"{out.path} holds predictions made with other settings ({theirs[:300]}); "
                              "write to another --output, or pass --overwrite to start again")
    state = out.open(retry=set(ids))
    done = {i for i, r in state.records.items() if r.get("status") == "ok"}
    return out, done


def _record(row: dict, prediction: str, settings: dict, status: str = "ok", reason: str = "",
            finish_reason: str = "", new_tokens: int | None = None) -> dict:
    return {"id": row["id"], "prediction": prediction, "status": status, "reason": reason,
            "finish_reason": finish_reason, "new_tokens": new_tokens, "created_at": utc_now(), "settings": settings}


def _progress(total: int, enabled: bool):
    if enabled and total and sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="q", desc="predict", file=sys.stderr, dynamic_ncols=True)
    return None


# ---------------------------------------------------------------------------------------------
# Local model
# ---------------------------------------------------------------------------------------------
def base_model_of(adapter: str) -> str:
    """The base model an adapter was trained on (``base_model_name_or_path`` of its PEFT config)."""
    from peft import PeftConfig

    try:
        return PeftConfig.from_pretrained(adapter).base_model_name_or_path
    except Exception as err:  # noqa: BLE001 - peft raises ValueError/OSError for a missing config
        raise CbtLlmError(f"{adapter}: not a PEFT adapter folder or repo ({str(err).splitlines()[0][:200]})") from None


def load_model(model: str | None, adapter: str | None = None, device: str | None = None, dtype: str | None = None):
    """Tokenizer (left padding; the adapter's own when it ships one) and model (with the adapter), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .tiny_model import resolve_model_name

    if not model and not adapter:
        raise CbtLlmError("name a model (--model) or an adapter (--adapter)")
    base = resolve_model_name(model or base_model_of(adapter))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype) if dtype and dtype != "auto" else (
        torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32)
    tokenizer_source = base
    if adapter and Path(adapter).expanduser().joinpath("tokenizer_config.json").is_file():
        tokenizer_source = adapter
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, padding_side="left")
        lm = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    except OSError as err:
        raise CbtLlmError(f"cannot load model {base!r}: {str(err).splitlines()[0][:200]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
    lm.to(device).eval()
    return tokenizer, lm


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


def _predict_local(rows, out, summary, settings, tokenizer, lm, batch_size, progress) -> None:
    import torch

    prompts = {r["id"]: chat_prompt(r["question"], r["description"], settings["system_prompt"]) for r in rows}
    texts = {i: tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for i, p in prompts.items()}
    lengths = {i: len(tokenizer(t, add_special_tokens=False)["input_ids"]) for i, t in texts.items()}
    ordered = sorted(rows, key=lambda r: -lengths[r["id"]])
    if settings.get("seed") is not None:
        torch.manual_seed(settings["seed"])
    bar = _progress(len(ordered), progress)
    try:
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start:start + batch_size]
            answers = generate_batch(tokenizer, lm, [prompts[r["id"]] for r in batch], settings)
            for row, (text, finish, n) in zip(batch, answers):
                out.append(_record(row, text, settings, finish_reason=finish, new_tokens=n))
                summary.counts["ok"] += 1
                summary.new_tokens += n
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------------------------------------
# Endpoint
# ---------------------------------------------------------------------------------------------
async def _predict_endpoint(rows, out, summary, settings, *, base_url, api_key_env, concurrency, timeout,
                            max_attempts, progress) -> None:
    from .client import RequestEngine, RequestFailed, for_each

    api_key = resolve_api_key(api_key_env, base_url)
    params = {"max_tokens": settings["max_new_tokens"], "temperature": settings["temperature"] or 0.0,
              "top_p": settings["top_p"], "seed": settings.get("seed"),
              "repetition_penalty": settings["repetition_penalty"]}  # vLLM and transformers serve take it
    params = {k: v for k, v in params.items() if v is not None}
    bar = _progress(len(rows), progress)

    async def one(engine, row) -> None:
        payload = {"model": settings["model"],
                   "messages": chat_prompt(row["question"], row["description"], settings["system_prompt"]), **params}
        try:
            reply = await engine.request(payload)
        except RequestFailed as err:
            record = _record(row, "", settings, status="failed", reason=err.reason)
        else:
            text, finish = answer_of(reply.body)
            usage = reply.body.get("usage") or {}
            tokens = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None
            record = _record(row, text.strip(), settings, finish_reason=finish or "", new_tokens=tokens)
        out.append(record)
        summary.counts[record["status"]] += 1
        summary.new_tokens += record["new_tokens"] or 0
        if bar is not None:
            bar.update(1)

    async with RequestEngine(base_url=base_url, api_key=api_key, concurrency=concurrency, timeout=timeout,
                             max_attempts=max_attempts) as engine:
        try:
            await for_each(rows, lambda row: one(engine, row), concurrency)
        finally:
            if bar is not None:
                bar.close()


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def predict(output: str | Path, *, model: str | None = None, adapter: str | None = None,
            base_url: str | None = None, dataset: str = "cbt_qa", split: str = "test",
            data_files: list[str] | None = None, limit: int | None = None, batch_size: int = 8,
            system_prompt: str | None = None, max_new_tokens: int | None = None, do_sample: bool | None = None,
            temperature: float | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
            seed: int | None = 0, device: str | None = None, dtype: str | None = None,
            api_key_env: str = "OPENAI_API_KEY", concurrency: int = 16, timeout: float = 300.0,
            max_attempts: int = 6, overwrite: bool = False, progress: bool = True) -> PredictSummary:
    """Answer the split's questions into ``output`` (see the module docstring); returns the summary."""
    if batch_size < 1:
        raise CbtLlmError(f"--batch-size must be at least 1, got {batch_size}")
    if base_url and adapter:
        raise CbtLlmError("--adapter is for local generation; with --base-url, name the served LoRA module "
                          "with --model (e.g. vllm serve BASE --enable-lora --lora-modules cbt=ADAPTER)")
    if base_url and not model:
        raise CbtLlmError("--base-url needs --model (the model name on the server)")
    rows = load_split(dataset, split, data_files)
    if limit is not None:
        rows = rows[:max(limit, 0)]
    recipe = read_recipe(adapter)
    settings = resolve_settings(recipe, system_prompt, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty)
    settings = {"mode": "endpoint" if base_url else "transformers",
                "model": model if base_url else (model or base_model_of(adapter)),
                "adapter": None if base_url else adapter, "dataset": dataset, "split": split,
                **settings, "seed": seed}
    if base_url:
        settings["base_url"] = base_url
    out, done = _open_output(output, [r["id"] for r in rows], settings, overwrite)
    todo = [r for r in rows if r["id"] not in done]
    summary = PredictSummary(out.path, total=len(rows), skipped=len(rows) - len(todo), settings=settings)
    started = time.monotonic()
    try:
        if todo and base_url:
            asyncio.run(_predict_endpoint(todo, out, summary, settings, base_url=base_url, api_key_env=api_key_env,
                                          concurrency=concurrency, timeout=timeout, max_attempts=max_attempts,
                                          progress=progress))
        elif todo:
            tokenizer, lm = load_model(model, adapter, device, dtype)
            _predict_local(todo, out, summary, settings, tokenizer, lm, batch_size, progress)
    finally:
        out.close()
        summary.seconds = time.monotonic() - started
    return summary


def read_predictions(path: str | Path) -> dict[str, dict]:
    """The ok lines of a predictions file by id (the last one wins)."""
    path = Path(path)
    if not path.is_file():
        raise CbtLlmError(f"{path}: no such predictions file")
    records = OutputFile(path).read().records
    return {i: r for i, r in records.items() if r.get("status", "ok") == "ok" and isinstance(r.get("prediction"), str)}
