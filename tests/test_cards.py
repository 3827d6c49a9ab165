"""Cards are rendered from their inputs and templates; a push renders the dataset card for its repo, it does not edit text."""

import datetime
import json
import shutil

import pytest
from helpers import SAMPLE_SIZE
from huggingface_hub import ModelCard

from cbt_llm.cards import DATASET_CARD_INPUTS, render_merged_card, replace_section
from cbt_llm.data.build import BuildConfig, build_dataset
from cbt_llm.errors import CbtLlmError
from cbt_llm.hub.push import PushConfig, plan


def dataset_plan(folder, repo_id="org/cbt"):
    return plan(PushConfig(kind="dataset", folder=folder, repo_id=repo_id))


def test_push_renders_the_dataset_card_for_its_repo_from_the_build_inputs(tmp_path):
    build_dataset(BuildConfig(output_dir=tmp_path / "for-repo", repo_id="org/cbt"))
    build_dataset(BuildConfig(output_dir=tmp_path / "local"))
    inputs = json.loads((tmp_path / "local" / DATASET_CARD_INPUTS).read_text(encoding="utf-8"))
    assert inputs["repo_id"] == "cbt_qa" and inputs["num_records"] == SAMPLE_SIZE
    local_card = (tmp_path / "local" / "README.md").read_text(encoding="utf-8")
    assert 'load_dataset("cbt_qa")' in local_card

    pushed = dataset_plan(tmp_path / "local")["README.md"].decode("utf-8")
    assert pushed == (tmp_path / "for-repo" / "README.md").read_text(encoding="utf-8")
    assert ".cbt_llm/dataset_card.json" not in dataset_plan(tmp_path / "local")


def test_a_folder_built_before_card_inputs_existed_pushes_its_card_as_it_is(tmp_path):
    build_dataset(BuildConfig(output_dir=tmp_path / "old"))
    shutil.rmtree(tmp_path / "old" / ".cbt_llm")
    pushed = dataset_plan(tmp_path / "old")["README.md"].decode("utf-8")
    assert pushed == (tmp_path / "old" / "README.md").read_text(encoding="utf-8")


def test_build_config_checks_the_split_ratios_and_the_questions_source():
    assert BuildConfig(output_dir="o", split_ratios=[1, 0, 0]).split_ratios == [1.0, 0.0, 0.0]
    with pytest.raises(CbtLlmError, match="split ratios must be three non-negative numbers adding up to 1"):
        BuildConfig(output_dir="o", split_ratios=[0.5, 0.1, 0.1])
    with pytest.raises(CbtLlmError, match="questions_source must be one of psyqa, other, got 'web'"):
        BuildConfig(output_dir="o", questions_source="web")


def test_a_marked_section_is_replaced_inserted_before_a_heading_or_appended():
    start, end = "<!-- s -->", "<!-- e -->"
    section = f"{start}\n## Links\n{end}"
    assert replace_section("# x\n\n## How to use\n", section, start, end, before="\n## How to use") == \
        f"# x\n\n{section}\n\n## How to use\n"
    appended = replace_section("# x\n\ntext  \n\n", section, start, end)
    assert appended == f"# x\n\ntext\n\n{section}\n"
    assert replace_section(appended, f"{start}\nnew\n{end}", start, end) == f"# x\n\ntext\n\n{start}\nnew\n{end}\n"


def test_merged_card_links_a_hub_base_but_not_a_local_path():
    card = render_merged_card("Qwen/Qwen2.5-7B-Instruct", "me/cbt-lora", license="apache-2.0",
                              date=datetime.date(2025, 1, 2))
    data = ModelCard(card).data
    assert (data.base_model, data.base_model_relation, data.license) == ("Qwen/Qwen2.5-7B-Instruct", "merge", "apache-2.0")
    assert data.library_name == "transformers" and "merged" in data.tags
    assert "with `cbt-llm merge` on 2025-01-02" in card and "- Adapter: `me/cbt-lora`" in card
    assert "not a substitute for professional counselling" in card and "不能替代专业的心理咨询" in card
    for number in ("12356", "110 / 120", "988", "findahelpline.com"):
        assert number in card
    assert "--base_url URL" in card and "{{" not in card
    for local in ("/data/models/qwen", "cbt-llm/tiny-random-llama"):
        header = render_merged_card(local, "me/cbt-lora").split("---\n")[1]
        assert "base_model" not in header and "license" not in header


def demo_log_history():
    """The tiny-demo recipe's log: 14 steps an epoch, a training loss every 7 steps, an evaluation every epoch."""
    history = []
    for step in range(7, 211, 7):
        history.append({"step": step, "epoch": step / 14, "loss": 8 - step / 40})
        if step % 14 == 0:
            history.append({"step": step, "epoch": step / 14, "eval_loss": 5 + (step - 84) ** 2 / 10000})
    return history + [{"step": 210, "epoch": 15.0, "train_loss": 4.0, "train_runtime": 60.0}]


def results_rows(card):
    table = card.split("## Training results")[1].split("\n\n")[1].splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def test_the_adapter_card_shows_every_evaluation_loss_not_only_the_last():
    from cbt_llm.cards import render_model_card

    card = render_model_card("org/base", "org/cbt", "apache-2.0", {"lora_r": 32}, demo_log_history(), "system")
    assert "| Step | Epoch | Training loss | Validation loss |" in card
    rows = results_rows(card)
    assert [row[:2] for row in rows] == [[str(14 * e), str(e)] for e in range(1, 16)]
    assert rows[0][2:] == ["7.6500", "5.4900"] and rows[5][2:] == ["5.9000", "5.0000"]  # the best, at epoch 6
    assert all(row[3] for row in rows)
    # without evaluations: the logged training losses, thinned to about 20 rows, the last one kept
    only_train = [entry for entry in demo_log_history() if "eval_loss" not in entry]
    rows = results_rows(render_model_card("org/base", "org/cbt", "apache-2.0", {}, only_train, "system"))
    assert 10 <= len(rows) <= 21 and rows[-1][0] == "210" and not any(row[3] for row in rows)


def test_an_adapter_of_a_local_random_model_says_it_is_a_demo_and_links_no_hub_page(tmp_path):
    from cbt_llm.cards import adapter_card_for_hub, render_model_card
    from cbt_llm.models.tiny import SMALL_MODEL_NAME, TINY_MODEL_NAME

    for base in (SMALL_MODEL_NAME, TINY_MODEL_NAME):
        card = render_model_card(base, "org/cbt", "apache-2.0", {"model_name_or_path": base}, demo_log_history(), "s")
        assert "A demonstration, not a counselling model." in card and "random model memorising a format" in card
        assert f"huggingface.co/{base}" not in card and f"A LoRA adapter for `{base}`" in card
        assert "[`org/cbt`](https://huggingface.co/datasets/org/cbt)" in card
        hub_card = adapter_card_for_hub(card, repo_id="me/lora", base_model=base, dataset_repo_id="org/cbt",
                                        endpoint="https://hf.co", folder=tmp_path)
        assert "random model memorising a format" in hub_card and f"hf.co/{base}" not in hub_card
        assert "base_model" not in hub_card.split("---")[1]
    real = render_model_card("Qwen/Qwen2.5-7B-Instruct", "org/cbt", "apache-2.0", {}, [], "s")
    assert "A demonstration" not in real
    assert "[`Qwen/Qwen2.5-7B-Instruct`](https://huggingface.co/Qwen/Qwen2.5-7B-Instruct)" in real


def test_a_pipe_or_a_newline_in_a_model_name_cannot_split_the_dataset_cards_tables(tmp_path):
    import re

    from helpers import make_record, write_jsonl

    records = [make_record(f"r{i}", source={"model": "team|teacher\nv2", "prompt_version": "mine|v1"})
               for i in range(12)]
    build_dataset(BuildConfig(input=[write_jsonl(tmp_path / "r.jsonl", records)], output_dir=tmp_path / "ds",
                              questions_source="other"))
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    assert "| Teacher model(s) | `team\\|teacher v2` (12) |" in card
    assert "| Prompt version(s) | `mine\\|v1` (12) |" in card
    for table in re.findall(r"(?m)(?:^\|.*\n)+", card):  # every row of a table has its header's cells
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(widths) == 1, table
