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
