"""One way to load a causal LM, with or without a LoRA adapter, and its tokenizer.

``predict``, ``chat``, ``merge`` and ``cbt_llm.hub.load_adapter`` all call
``load_model_and_tokenizer``, so they share one policy: an adapter is a local folder or a Hub
repo (pinned to one commit), its base comes from its PEFT config unless ``model_name_or_path`` names
another, the tokenizer is the adapter's when it ships one, dtype is bfloat16 on a GPU that has it and
float32 elsewhere, and the model is returned in eval mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cbt_llm.errors import CbtLlmError, first_line

ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
TRAINING_RECIPE = "training_recipe.yaml"  # the resolved recipe `cbt-llm train` saves beside the adapter
# the help of every --model_name_or_path that names a base model to load (chat, app, merge)
MODEL_NAME_OR_PATH_HELP = "base model (Hub id, folder or cbt-llm/tiny-random-llama)"
# peft (0.21) reads PreTrainedModel.is_gradient_checkpointing each time it wraps a model (PeftModel.__init__), a
# name transformers 5 deprecates with a FutureWarning; cbt-llm itself uses only the new activation_checkpointing
# names. That one warning, matched by its text, is left out around the calls that wrap a model, and nothing else.
PEFT_CHECKPOINTING_PROBE = r"`is_gradient_checkpointing` is deprecated"


@contextmanager
def peft_wrapping() -> Iterator[None]:
    """Around a call that wraps a model with peft: no FutureWarning for peft's own read of the deprecated name."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_PROBE, category=FutureWarning)
        yield


def _adapter_source(adapter: str, revision: str | None, token: str | None) -> tuple[str, str | None, bool, str]:
    """``(source, revision, ships_tokenizer, base_model)`` of an adapter folder or Hub repo."""
    local = Path(adapter).expanduser()
    if local.is_dir():
        if not (local / ADAPTER_CONFIG).is_file():
            raise CbtLlmError(f"{local} is not an adapter folder (no {ADAPTER_CONFIG})")
        source, revision, has_tokenizer = str(local), None, (local / TOKENIZER_CONFIG).is_file()
    else:
        from huggingface_hub import HfApi

        from cbt_llm.hub.client import check_repo_id, hub_errors

        check_repo_id(adapter)
        with hub_errors("load", adapter, "model", revision or "main", token):
            info = HfApi(token=token).model_info(adapter, revision=revision)
        names = {s.rfilename for s in info.siblings or []}
        if ADAPTER_CONFIG not in names:
            raise CbtLlmError(f"model repo {adapter} has no {ADAPTER_CONFIG}; it is not a PEFT adapter")
        source, revision, has_tokenizer = adapter, info.sha, TOKENIZER_CONFIG in names  # every file from one commit
    return source, revision, has_tokenizer, base_model_of(source, revision, token)


def read_recipe(adapter: str | None, revision: str | None = None) -> dict:
    """The adapter's ``training_recipe.yaml`` (local folder, or a Hub repo); {} when it has none or the
    Hub cannot be reached (flags and defaults apply). A rejected token or a missing repo is an error."""
    if not adapter:
        return {}
    import yaml

    path = Path(adapter).expanduser() / TRAINING_RECIPE
    if not path.is_file():
        if Path(adapter).expanduser().exists():
            return {}
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, OfflineModeIsEnabled

        from cbt_llm.hub.client import hub_errors

        with hub_errors("read the training recipe of", adapter, "model", revision or "main"):
            try:
                path = Path(hf_hub_download(adapter, TRAINING_RECIPE, revision=revision))
            except (EntryNotFoundError, OfflineModeIsEnabled):  # no recipe, or offline and not cached
                return {}
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return recipe if isinstance(recipe, dict) else {}


def base_model_of(adapter: str, revision: str | None = None, token: str | None = None) -> str:
    """The base model an adapter was trained on (``base_model_name_or_path`` of its PEFT config)."""
    from peft import PeftConfig

    try:
        return PeftConfig.from_pretrained(adapter, revision=revision, token=token).base_model_name_or_path
    except Exception as err:  # noqa: BLE001 - peft raises ValueError/OSError for a missing config
        raise CbtLlmError(f"{adapter}: not a PEFT adapter folder or repo ({first_line(err, 200)})") from None


def _dtype(dtype: str | None, device: str) -> Any:
    import torch

    if dtype == "auto":
        return "auto"  # the checkpoint's own
    if dtype:
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise CbtLlmError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
        return value
    return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32


def _device(device: str) -> str:
    """``auto`` is CUDA when present, else CPU; any other name is kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _load(base: str, source: str | None, revision: str | None, has_tokenizer: bool, token: str | None,
          dtype: Any, device: str):
    """``(model, tokenizer)`` as transformers (and peft, for an adapter at ``source``) load them, with one error."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cbt_llm.hub.client import hub_errors, is_network_error

    placement = {"device_map": "auto"} if device == "cuda" else {}
    try:
        with hub_errors("load", source or base, "model", revision, token):
            lm = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, token=token, **placement)
            if source:
                from peft import PeftModel

                with peft_wrapping():
                    lm = PeftModel.from_pretrained(lm, source, revision=revision, token=token)
            tokenizer = AutoTokenizer.from_pretrained(source if has_tokenizer else base,
                                                      revision=revision if has_tokenizer else None, token=token)
    except (OSError, ValueError) as err:
        if is_network_error(err) or type(err).__module__.startswith("huggingface_hub"):
            raise
        raise CbtLlmError(f"cannot load {source or base}: {first_line(err, 200)}") from None
    if not placement:
        lm.to(device)
    return lm, tokenizer


def load_model_and_tokenizer(model_name_or_path: str | None = None, adapter: str | Path | None = None, *,
                             revision: str | None = None, token: str | None = None, device: str = "auto",
                             dtype: str | None = None, padding_side: str | None = None):
    """``(model, tokenizer)``: ``model_name_or_path`` (a Hub id, a folder, or the tiny model's name) with
    ``adapter`` on it.

    ``adapter`` alone loads on the base its config names; ``revision`` pins the adapter's repo.
    ``device`` "auto" is CUDA when present (spread with ``device_map="auto"``), else CPU. A tokenizer
    without a pad token pads with its end-of-sequence token.
    """
    from cbt_llm.hub.client import resolve_token
    from cbt_llm.models.tiny import resolve_model_name

    if not model_name_or_path and not adapter:
        raise CbtLlmError("name a model (--model_name_or_path) or an adapter (--adapter)")
    device = _device(device)
    token = resolve_token(token, required=False)
    source, has_tokenizer, base = None, False, model_name_or_path
    if adapter:
        source, revision, has_tokenizer, configured = _adapter_source(str(adapter), revision, token)
        base = model_name_or_path or configured
    lm, tokenizer = _load(resolve_model_name(base), source, revision, has_tokenizer, token, _dtype(dtype, device),
                          device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side:
        tokenizer.padding_side = padding_side
    lm.eval()
    return lm, tokenizer
