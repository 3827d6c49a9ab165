"""Merge a LoRA adapter into its base model: one folder for serving stacks that want a plain model.

``merge_adapter(MergeConfig(adapter=..., output_dir=...))`` loads the adapter (a folder or a Hub repo
id) on its base with :func:`cbt_llm.hub.load_adapter`, folds the LoRA weights into the base weights
(``merge_and_unload``; modules the adapter saved whole, such as a trained ``lm_head``, replace the
base's), and writes the merged model in the checkpoint's dtype, the tokenizer with its chat template,
the generation config and a short model card (``cbt_llm.cards.render_merged_card``: base, adapter,
the not-a-substitute statement and the crisis resources). The folder is written beside ``output_dir``
first and renamed into place at the end, so a failed merge leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cbt_llm.cards import adapter_license, render_merged_card
from cbt_llm.config import option
from cbt_llm.errors import CbtLlmError
from cbt_llm.models.loading import MODEL_NAME_OR_PATH_HELP


@dataclass(kw_only=True)
class MergeConfig:
    """``cbt-llm merge``: the adapter, the folder to write, and the base to merge it into when not its own."""

    adapter: str = option(help="adapter folder or Hub repo id", metavar="DIR|REPO")
    output_dir: str = option(help="folder to write (must be empty or new)", metavar="DIR")
    model_name_or_path: str | None = option(None, f"{MODEL_NAME_OR_PATH_HELP} to merge into (default: the "
                                            "adapter's base)")
    revision: str | None = option(None, "Hub branch or commit of the adapter")


def merge_adapter(config: MergeConfig) -> Path:
    """Merge ``config.adapter`` (folder or Hub repo id) into its base (or ``config.model_name_or_path``) and save
    the result to ``config.output_dir``.

    The folder must be new or empty. Returns it. Raises :class:`CbtLlmError` for an adapter that
    cannot be loaded or an output folder that already holds files.
    """
    from cbt_llm.models.loading import load_model_and_tokenizer
    from cbt_llm.models.tiny import TINY_MODEL_NAME, cache_dir

    adapter = str(config.adapter)
    output = Path(config.output_dir).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise CbtLlmError(f"{output} exists and is not an empty folder")
    lm, tokenizer = load_model_and_tokenizer(config.model_name_or_path, adapter, revision=config.revision,
                                             dtype="auto", device="cpu")
    base = config.model_name_or_path or lm.peft_config[lm.active_adapter].base_model_name_or_path or "unknown"
    local = Path(base).expanduser()
    if local.name.startswith("tiny-random-llama-") and local.parent.resolve() == (cache_dir() / "models").resolve():
        base = TINY_MODEL_NAME  # the stable name rather than this machine's cache path
    merged = lm.merge_and_unload()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.merging-", dir=output.parent))
    try:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(render_merged_card(base, adapter, license=adapter_license(adapter)),
                                           encoding="utf-8")
        if output.exists():
            output.rmdir()  # checked empty above
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
