import hashlib
import json
import os
import subprocess
import sys

import pytest

from cbt_llm.models.tiny import SMALL_MODEL_NAME, TINY_MODEL_NAME, resolve_model_name, tiny_model_path

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains


def digest(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in ("model.safetensors", "tokenizer.json", "config.json")}


def test_tiny_model_is_deterministic_and_cached(tiny_model, tmp_path):
    assert resolve_model_name(TINY_MODEL_NAME) == str(tiny_model)
    assert resolve_model_name("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    other = subprocess.run(
        [sys.executable, "-c", "from cbt_llm.models.tiny import tiny_model_path; print(tiny_model_path())"],
        capture_output=True, text=True, check=True, env={**os.environ, "CBT_LLM_CACHE": str(tmp_path)},
    ).stdout.strip().splitlines()[-1]  # the last line: deepspeed, when installed, logs a line to stdout first
    assert other.startswith(str(tmp_path)) and digest(tiny_model) == digest(type(tiny_model)(other))


def test_tiny_model_speaks_the_chat_template_and_masks_the_assistant_turn(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    messages = [{"role": "system", "content": "你好"}, {"role": "user", "content": "我总是失眠怎么办？"},
                {"role": "assistant", "content": "听起来你很辛苦。"}]
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    assistant = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert tokenizer.decode(assistant) == "听起来你很辛苦。<|im_end|>"
    assert len(tokenizer("一个人在外地工作，牵挂着远方的父母。")["input_ids"]) < 20  # trained on the sample's Chinese
    assert model.config.vocab_size == len(tokenizer) and model.num_parameters() < 1_000_000


def test_the_demo_model_is_a_wider_sibling_with_the_same_tokenizer(tiny_model):
    small = tiny_model_path(SMALL_MODEL_NAME)
    assert resolve_model_name(SMALL_MODEL_NAME) == str(small) and small != tiny_model
    config, tiny_config = (json.loads((folder / "config.json").read_text()) for folder in (small, tiny_model))
    assert (config["hidden_size"], tiny_config["hidden_size"]) == (128, 64)  # the tests' tiny model is unchanged
    assert (small / "tokenizer.json").read_bytes() == (tiny_model / "tokenizer.json").read_bytes()
    with pytest.raises(ValueError, match="no local model 'cbt-llm/nope'"):
        tiny_model_path("cbt-llm/nope")
