"""merge_adapter / `cbt-llm merge`: the merged folder computes what the adapter computes, without peft."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from cbt_llm.errors import CbtLlmError
from cbt_llm.training.merge import MergeConfig, merge_adapter

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

PROMPT = [{"role": "system", "content": "你是一位心理咨询师。"}, {"role": "user", "content": "我最近总是睡不好，担心考试"}]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny model with random (non-zero) LoRA weights and a saved lm_head.

    With peft's default init the LoRA B matrices are zero and merging would change nothing, so the
    logits test would pass even for a merge that dropped the adapter; random init makes it count.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cbt_llm.models.tiny import tiny_model_path

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path())
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", modules_to_save=["lm_head"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(1.5)
    out = tmp_path_factory.mktemp("merge") / "adapter"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_path()).save_pretrained(out)
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# tiny adapter\n", encoding="utf-8")
    return out


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(**ids).logits


def test_merged_model_gives_the_adapter_models_logits(adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cbt_llm.hub import load_adapter

    output = merge_adapter(MergeConfig(adapter=str(adapter), output_dir=str(tmp_path / "merged")))
    assert output == tmp_path / "merged"
    assert not (output / "adapter_config.json").exists()
    assert (output / "model.safetensors").is_file() and (output / "generation_config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind

    peft_model, peft_tokenizer = load_adapter(adapter)
    peft_model.eval()
    merged = AutoModelForCausalLM.from_pretrained(output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert tokenizer.chat_template == peft_tokenizer.chat_template and tokenizer.chat_template

    expected = _logits(peft_model, peft_tokenizer)
    got = _logits(merged, tokenizer)
    with peft_model.disable_adapter():
        base = _logits(peft_model, peft_tokenizer)
    assert (expected - base).abs().max() > 1e-2  # the adapter does change the output ...
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)  # ... and the merged model keeps that change
    assert merged.dtype == peft_model.dtype


def test_model_card_names_base_adapter_statement_and_resources(adapter, tmp_path):
    output = merge_adapter(MergeConfig(adapter=str(adapter), output_dir=str(tmp_path / "merged")))
    card = (output / "README.md").read_text(encoding="utf-8")
    data = ModelCard(card).data
    assert data.library_name == "transformers" and data.license == "apache-2.0"  # the adapter card's license
    assert data.base_model is None  # the tiny model is made locally: no Hub id to link
    assert "Base model: `cbt-llm/tiny-random-llama`" in card and f"Adapter: `{adapter}`" in card
    assert "not a substitute for professional counselling" in card and "不能替代专业的心理咨询" in card
    for number in ("12356", "110 / 120", "988", "findahelpline.com"):
        assert number in card
    json.loads((output / "config.json").read_text())  # a plain transformers config


def test_cli_merge_and_refusing_a_non_empty_output(adapter, tmp_path, cli):
    output = tmp_path / "merged"
    done = cli("merge", "--adapter", adapter, "--output", output)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"merged adapter {adapter}" in done.stdout and str(output) in done.stdout
    assert (output / "model.safetensors").is_file()
    again = cli("merge", "--adapter", adapter, "--output", output)
    assert again.returncode == 1 and "is not an empty folder" in again.stderr and "Traceback" not in again.stderr


def test_merge_rejects_a_folder_that_is_not_an_adapter(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CbtLlmError, match="not an adapter folder"):
        merge_adapter(MergeConfig(adapter=str(tmp_path / "plain"), output_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_cli_merge_onto_the_base_named_by_model_name_or_path(adapter, tmp_path, cli):
    import shutil

    from cbt_llm.models.tiny import tiny_model_path

    base = shutil.copytree(tiny_model_path(), tmp_path / "my-base")  # a folder the adapter's config does not name
    done = cli("merge", "--adapter", adapter, "--output_dir", tmp_path / "merged", "--model_name_or_path", base)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Base model: `{base}`" in (tmp_path / "merged" / "README.md").read_text(encoding="utf-8")
    with pytest.raises(CbtLlmError, match="no-such-base"):
        merge_adapter(MergeConfig(adapter=str(adapter), output_dir=str(tmp_path / "again"),
                                  model_name_or_path=str(tmp_path / "no-such-base")))
