"""SFT on CBT dialogues: the loss falls on every counsellor turn and on nothing else, token by token.

The fast tests tokenise the bundled dialogues with the tiny model's tokenizer (made in memory) exactly as
TRL's SFTTrainer does for ``assistant_only_loss`` and compare the mask with one worked out from the text;
the slow test builds a folder with ``cbt-llm build --dialogues``, checks the labels the real trainer made
against the same reference, trains the tiny-dialogue recipe on it, and runs the stock ``trl sft`` on it.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cbt_llm.data.dialogue_prompts import (
    DIALOGUE_SYSTEM_PROMPTS,
    dataset_configs,
    model_system_prompt,
    recipe_system_prompts,
)
from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH, SYSTEM_PROMPTS
from cbt_llm.errors import CbtLlmError
from cbt_llm.training.data import load_training_dataset
from cbt_llm.training.train import parse_args

END = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer():
    from cbt_llm.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


def recipe_data(*flags):
    script_args, _, _ = parse_args(["--config", "tiny-dialogue", *flags])
    return load_training_dataset(script_args)


def expected_mask(tokenizer, messages, edge=""):
    """The reference: 1 exactly for the tokens inside an assistant turn's text and its end-of-turn token (and
    ``edge``, the template's text on either side, where a template puts it in the loss too).

    Worked out from the rendered text and the tokens' character offsets, not from the template's markers.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, cursor = [], 0
    for message in messages:
        header = f"<|im_start|>{message['role']}\n"
        cursor = text.index(header, cursor) + len(header)
        end = cursor + len(message["content"]) + len(END)
        assert text[cursor:end] == message["content"] + END
        if message["role"] == "assistant":
            spans.append((cursor - len(edge), end + len(edge)))
        cursor = end
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = []
    for start, stop in encoded["offset_mapping"]:
        inside = [a <= start and stop <= b for a, b in spans]
        overlaps = [start < b and a < stop for a, b in spans]
        assert inside == overlaps, f"a token straddles a turn's edge at {start}:{stop}"
        mask.append(int(any(inside)))
    return encoded["input_ids"], mask


def check_mask(tokenizer, messages, input_ids, mask, edge=""):
    """``mask`` over ``input_ids`` is 1 on every counsellor token (and its stop token) and 0 on all else."""
    reference_ids, reference = expected_mask(tokenizer, messages, edge)
    assert list(input_ids) == reference_ids
    assert list(mask) == reference  # token by token
    assistant = [edge + m["content"] + END + edge for m in messages if m["role"] == "assistant"]
    assert tokenizer.decode([t for t, m in zip(input_ids, mask) if m]) == "".join(assistant)
    others = tokenizer.decode([t for t, m in zip(input_ids, mask) if not m])
    assert all(m["content"] in others for m in messages if m["role"] != "assistant")
    assert others.count("<|im_start|>") == len(messages)  # every turn's header stays out of the loss


def test_the_assistant_mask_covers_every_counsellor_turn_and_nothing_else(tokenizer):
    dataset = recipe_data()
    rows = [row for split in dataset.values() for row in split]
    assert len(rows) == 12  # the bundled sample's dialogues, in the recipe's two splits
    for row in rows:
        messages = row["messages"]
        assert messages[0] == {"role": "system", "content": DIALOGUE_SYSTEM_PROMPTS[
            "en" if messages[1]["content"].isascii() else "zh"]}
        assert sum(m["role"] == "assistant" for m in messages) >= 2
        # What TRL's SFTTrainer calls for a conversational row when assistant_only_loss is on.
        encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
        assert len(encoded["input_ids"]) < 2048  # the recipe's max_length keeps whole dialogues
        check_mask(tokenizer, messages, encoded["input_ids"], encoded["assistant_masks"])


def test_single_turn_and_dialogue_configs_mix_as_conversations():
    mixed = recipe_data("--dataset_config", "sft, dialogue")
    single, dialogue = recipe_data("--dataset_config", "sft"), recipe_data()
    assert {split: len(rows) for split, rows in mixed.items()} == {"train": 56 + 8, "validation": 4 + 4, "test": 6}
    assert mixed["train"].column_names == ["messages"]
    first = mixed["train"][0]["messages"]  # a single-turn row: its prompt, then its answer
    row = single["train"][0]
    assert first == row["prompt"] + row["completion"] and first[0]["content"] == SYSTEM_PROMPT_ZH
    assert mixed["train"][56:]["messages"] == dialogue["train"]["messages"]
    # A recipe's own system line reaches both kinds of row.
    own = recipe_data("--dataset_config", "sft,dialogue", "--system_prompt", "你是咨询师。")
    assert {rows[0]["content"] for rows in own["train"]["messages"]} == {"你是咨询师。"}
    # The line the trained model expects, for its card: the dialogues' own only when they alone are trained on.
    args = {spec: parse_args(["--config", "tiny-dialogue", "--dataset_config", spec])[0]
            for spec in ("dialogue", "sft", "sft,dialogue")}
    lines = {spec: model_system_prompt(a.system_prompt, a.dataset_config) for spec, a in args.items()}
    assert lines == {"dialogue": DIALOGUE_SYSTEM_PROMPTS["zh"], "sft": SYSTEM_PROMPT_ZH, "sft,dialogue": SYSTEM_PROMPT_ZH}
    # Per language, as the chat sends it for an adapter's saved recipe; a line set on purpose wins in both.
    assert recipe_system_prompts({"dataset_config": "dialogue", "system_prompt": SYSTEM_PROMPT_ZH}) == \
        DIALOGUE_SYSTEM_PROMPTS
    assert recipe_system_prompts({"dataset_config": "sft"}) == SYSTEM_PROMPTS
    assert recipe_system_prompts({}) == SYSTEM_PROMPTS  # a recipe from before dataset_config existed
    assert recipe_system_prompts({"dataset_config": "dialogue", "system_prompt": "你是咨询师。"}) == \
        {"zh": "你是咨询师。", "en": "你是咨询师。"}


def test_bad_config_lists_fail_clearly(tmp_path):
    assert dataset_configs("dialogue") == ["dialogue"]
    for spec in ("", " , ", "sft,sft"):
        with pytest.raises(CbtLlmError, match="name one config, or several joined by commas"):
            dataset_configs(spec)
    records = tmp_path / "records.jsonl"
    records.write_text("", encoding="utf-8")
    with pytest.raises(CbtLlmError, match="build a folder with `cbt-llm build --dialogues"):
        recipe_data("--dataset_config", "sft,dialogue", "--dataset_data_files", str(records))
    with pytest.raises(CbtLlmError, match="config 'default' has neither prompt/completion nor messages"):
        recipe_data("--dataset_config", "default")


@pytest.mark.slow
def test_tiny_dialogue_recipe_trains_on_a_built_folder_and_stock_trl_sft_does_too(tmp_path, tiny_model):
    from cbt_llm.data.build import BuildConfig, build_dataset
    from cbt_llm.training.train import build_trainer, train_and_save

    built = tmp_path / "built"
    summary = build_dataset(BuildConfig(output_dir=str(built), dialogues=["sample"]))
    assert summary.num_rows["dialogue"] == {"train": 8, "validation": 4}
    out = tmp_path / "adapter"
    raw = recipe_data("--dataset_name", str(built))["train"]  # parsed first: a later parse resets accelerate's state
    args = parse_args(["--config", "tiny-dialogue", "--dataset_name", str(built), "--output_dir", str(out)])
    trainer = build_trainer(*args)
    # The labels the real trainer will learn from: every counsellor token, nothing else.
    assert len(trainer.train_dataset) == len(raw) == 8
    for row, messages in zip(trainer.train_dataset, raw["messages"]):
        check_mask(trainer.processing_class, messages, row["input_ids"], [int(x != -100) for x in row["labels"]])
    train_and_save(trainer, *args)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    train = [entry["loss"] for entry in history if "loss" in entry]
    evals = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    assert len(train) >= 10 and len(evals) >= 4
    assert train[0] > 7.4 and train[-1] < train[0] - 1.0  # from a uniform guess (ln 2048 = 7.62) clearly down
    assert evals[-1] < evals[0] - 0.3
    assert (out / "adapter_model.safetensors").is_file()
    assert f"System line: `{DIALOGUE_SYSTEM_PROMPTS['zh']}`" in (out / "README.md").read_text(encoding="utf-8")

    # The stock TRL command line, knowing nothing of cbt_llm, on the built folder's dialogue config.
    stock = tmp_path / "stock"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "trl"), "sft", "--model_name_or_path", str(tiny_model),
         "--dataset_name", str(built), "--dataset_config", "dialogue", "--assistant_only_loss", "true",
         "--max_steps", "3", "--per_device_train_batch_size", "2", "--logging_steps", "1", "--learning_rate", "2e-3",
         "--use_cpu", "--bf16", "false", "--report_to", "none", "--save_strategy", "no", "--output_dir", str(stock)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (stock / "model.safetensors").is_file()
    assert "Traceback" not in result.stderr and "no assistant tokens" not in result.stderr


def test_qwen25_template_gets_trl_training_markers_that_mask_the_same_turns(tokenizer):
    # The 7B dialogue recipe's base ships Qwen2.5's template, without generation markers; with assistant_only_loss
    # TRL swaps in its marked training version. Same ChatML tokens as the tiny tokenizer, so the check applies;
    # TRL's version also puts the newline on either side of each turn's text in the loss (template text, harmless).
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers, qwen2_5_chat_template

    qwen = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token=END, pad_token="<|endoftext|>")
    qwen.chat_template = qwen2_5_chat_template
    assert not has_generation_markers(qwen.chat_template)
    training = get_training_chat_template(qwen)
    assert training and has_generation_markers(training)
    for messages in recipe_data()["train"]["messages"]:
        encoded = qwen.apply_chat_template(messages, tokenize=True, return_dict=True, chat_template=training,
                                           return_assistant_tokens_mask=True)
        check_mask(qwen, messages, encoded["input_ids"], encoded["assistant_masks"], edge="\n")


def test_a_template_without_assistant_markers_is_refused_with_the_fix(tokenizer):
    from cbt_llm.models.tiny import CHAT_TEMPLATE
    from cbt_llm.training.train import check_assistant_markers

    check_assistant_markers(tokenizer, "tiny")  # marked: accepted
    unmarked = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token=END)
    unmarked.chat_template = CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    with pytest.raises(CbtLlmError, match="chat template of my/base does not mark .* --chat_template_path FILE"):
        check_assistant_markers(unmarked, "my/base")
    unmarked.chat_template = None
    with pytest.raises(CbtLlmError, match="does not mark the assistant's turns"):
        check_assistant_markers(unmarked, "my/base")
