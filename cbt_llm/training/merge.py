"""Merge a LoRA adapter into its base model: one folder for serving stacks that want a plain model.

``merge_adapter(adapter, output)`` loads the adapter (a folder or a Hub repo id) on its base with
:func:`cbt_llm.hub.load_adapter`, folds the LoRA weights into the base weights
(``merge_and_unload``; modules the adapter saved whole, such as a trained ``lm_head``, replace the
base's), and writes the merged model in the checkpoint's dtype, the tokenizer with its chat template,
the generation config and a short model card (base, adapter, the not-a-substitute statement and the
crisis resources). The folder is written beside ``output`` first and renamed into place at the end,
so a failed merge leaves nothing half-written.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from pathlib import Path

from cbt_llm.errors import CbtLlmError

NOT_A_SUBSTITUTE = {
    "en": "This model is a research artifact for CBT-structured mental-health question answering. It is not a "
          "substitute for professional counselling, diagnosis or treatment, and it must not be used to assess "
          "risk or to handle an emergency. Put a crisis guard in front of it (cbt-llm's `respond()` / "
          "`cbt-llm chat` do this) and show the resources below.",
    "zh": "本模型是用于认知行为疗法（CBT）结构化心理问答的研究产物，不能替代专业的心理咨询、诊断或治疗，"
          "也不能用于评估风险或处理紧急情况。部署时请在模型之前加上危机识别（cbt-llm 的 `respond()` / "
          "`cbt-llm chat` 已经这样做），并向用户展示下列求助资源。",
}


def _adapter_license(adapter: str) -> str | None:
    """The ``license`` in a local adapter folder's card, if any (the merged weights carry the base's terms)."""
    card = Path(adapter).expanduser() / "README.md"
    if not card.is_file():
        return None
    try:
        from huggingface_hub import ModelCard

        return ModelCard(card.read_text(encoding="utf-8")).data.to_dict().get("license")
    except Exception:  # noqa: BLE001 - a card we cannot read just means no license line
        return None


def model_card(base: str, adapter: str, *, license: str | None = None, date: datetime.date | None = None) -> str:
    """The merged folder's README.md: metadata, where the weights come from, the statement, the resources."""
    from cbt_llm.crisis import format_crisis_resources
    from cbt_llm.hub.client import looks_like_local_path
    from cbt_llm.models.tiny import TINY_MODEL_NAME

    meta = {"library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["cbt-llm", "mental-health", "cbt", "lora", "merged"]}
    # base_model must be a Hub id: not a path on this machine, nor the tiny model made locally
    if base and base != TINY_MODEL_NAME and not looks_like_local_path(base):
        meta["base_model"] = base
        meta["base_model_relation"] = "merge"
    if license:
        meta["license"] = license
    header = "".join(f"{key}: {json.dumps(value, ensure_ascii=False)}\n" for key, value in meta.items())
    date = date or datetime.date.today()
    return f"""---
{header}---

# Merged CBT QA model

A LoRA adapter merged into its base model with `cbt-llm merge` on {date.isoformat()}: one folder that
`AutoModelForCausalLM.from_pretrained(...)`, vLLM or TGI load without peft.

- Base model: `{base}`
- Adapter: `{adapter}`
- The tokenizer and chat template are the adapter's (or the base's when the adapter ships none).
- The base model's license and terms apply to these weights.

## Not a substitute for professional help

{NOT_A_SUBSTITUTE["en"]}

{NOT_A_SUBSTITUTE["zh"]}

## Crisis resources

{format_crisis_resources("zh")}

{format_crisis_resources("en")}

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")
tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")
```

For a terminal chat behind the crisis guard: serve this folder with an OpenAI-compatible server and run
`cbt-llm chat --base-url URL --model NAME`, or chat with the adapter directly: `cbt-llm chat --adapter {adapter}`.
"""


def merge_adapter(adapter: str | Path, output: str | Path, *, model: str | None = None,
                  revision: str | None = None) -> Path:
    """Merge ``adapter`` (folder or Hub repo id) into its base (or ``model``) and save the result to ``output``.

    ``output`` must be new or empty. Returns ``output``. Raises :class:`CbtLlmError` for an adapter
    that cannot be loaded or an output folder that already holds files.
    """
    from cbt_llm.models.loading import load_model_and_tokenizer

    adapter = str(adapter)
    output = Path(output).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise CbtLlmError(f"{output} exists and is not an empty folder")
    lm, tokenizer = load_model_and_tokenizer(model, adapter, revision=revision, dtype="auto", device="cpu")
    config = lm.peft_config[lm.active_adapter]
    base = model or config.base_model_name_or_path or "unknown"
    from cbt_llm.models.tiny import TINY_MODEL_NAME, cache_dir

    local = Path(base).expanduser()
    if local.name.startswith("tiny-random-llama-") and local.parent.resolve() == (cache_dir() / "models").resolve():
        base = TINY_MODEL_NAME  # the stable name rather than this machine's cache path
    merged = lm.merge_and_unload()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.merging-", dir=output.parent))
    try:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(model_card(base, adapter, license=_adapter_license(adapter)),
                                           encoding="utf-8")
        if output.exists():
            output.rmdir()  # checked empty above
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
