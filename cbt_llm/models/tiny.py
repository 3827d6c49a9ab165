"""Tiny random Llamas with a tokenizer trained on the bundled sample, made locally for offline CPU runs.

The ``tiny-cpu`` recipe and the tests use ``cbt-llm/tiny-random-llama``; the ``tiny-demo`` recipe uses
``cbt-llm/small-random-llama`` (twice as wide, same tokenizer), which learns the sample's five-step
layout within `make demo`'s few minutes. Nothing is downloaded, the same files come out every time,
and each lives at a stable path so an adapter's ``base_model_name_or_path`` still resolves later.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_MODEL_NAME = "cbt-llm/tiny-random-llama"
SMALL_MODEL_NAME = "cbt-llm/small-random-llama"
_VERSION = "v2"
# name: (cache folder stem, LlamaConfig sizes); both share the tokenizer and the seed.
_MODELS: dict[str, tuple[str, dict[str, int]]] = {
    TINY_MODEL_NAME: ("tiny-random-llama", {"hidden_size": 64, "intermediate_size": 128}),
    SMALL_MODEL_NAME: ("small-random-llama", {"hidden_size": 128, "intermediate_size": 256}),
}
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, with {% generation %} marks around each assistant turn's content and its <|im_end|>, so TRL's
# assistant_only_loss trains on every counsellor turn of a dialogue, and on its stop token, and on nothing else.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_dir() -> Path:
    """Where cbt-llm keeps what it makes: ``$CBT_LLM_CACHE``, else ``~/.cache/cbt_llm``."""
    return Path(os.environ.get("CBT_LLM_CACHE", Path.home() / ".cache" / "cbt_llm")).expanduser()


def tiny_model_path(name: str = TINY_MODEL_NAME) -> Path:
    """The folder of a local random model (``TINY_MODEL_NAME`` or ``SMALL_MODEL_NAME``), created on first use
    (about a second) and reused after."""
    if name not in _MODELS:
        raise ValueError(f"no local model {name!r}; the local ones are {', '.join(_MODELS)}")
    target, sizes = _folder(name), _MODELS[name][1]
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        _write_tiny_model(staging, sizes)
        try:
            staging.rename(target)  # atomic: a concurrent creator either wins or finds it done
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _folder(name: str) -> Path:
    """Where the local random model ``name`` lives (made or not)."""
    return cache_dir() / "models" / f"{_MODELS[name][0]}-{_VERSION}"


def random_model_name(path: str | Path) -> str | None:
    """The name of the local random model whose folder ``path`` is (an adapter's base as saved), else None."""
    return next((name for name in _MODELS if Path(path).expanduser() == _folder(name)), None)


def resolve_model_name(name: str) -> str:
    """Map a local random model's name to its folder; any other name or path is returned as is."""
    return str(tiny_model_path(name)) if name in _MODELS else name


def _training_texts() -> list[str]:
    from cbt_llm.data.prompts import SYSTEM_PROMPT_EN, SYSTEM_PROMPT_ZH
    from cbt_llm.data.records import read_records
    from cbt_llm.data.splits import sample_path

    texts = [SYSTEM_PROMPT_ZH, SYSTEM_PROMPT_EN]
    for record in read_records([sample_path()]).records:
        texts += [record["question"], record["description"], record["response"]]
    return texts


def tiny_tokenizer():
    """The local random models' tokenizer (a byte-level BPE trained on the sample, with ``CHAT_TEMPLATE``), made
    in memory in well under a second: what the models' folders hold, for checks that need no model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(_training_texts(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        model_max_length=2048)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _write_tiny_model(folder: Path, sizes: dict[str, int]) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), **sizes, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, max_new_tokens=256)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
