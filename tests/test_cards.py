"""Cards are rendered from their inputs: a push renders the dataset card for its repo, it does not edit text."""

import json
import shutil

from cbt_llm.cards import DATASET_CARD_INPUTS
from cbt_llm.data.build import build_dataset
from cbt_llm.hub.push import plan_dataset


def test_push_renders_the_dataset_card_for_its_repo_from_the_build_inputs(tmp_path):
    build_dataset(output_dir=tmp_path / "for-repo", card={"repo_id": "org/cbt"})
    build_dataset(output_dir=tmp_path / "local")
    inputs = json.loads((tmp_path / "local" / DATASET_CARD_INPUTS).read_text(encoding="utf-8"))
    assert inputs["repo_id"] == "cbt_qa" and inputs["num_records"] >= 60
    local_card = (tmp_path / "local" / "README.md").read_text(encoding="utf-8")
    assert 'load_dataset("cbt_qa")' in local_card

    pushed = plan_dataset(tmp_path / "local", "org/cbt")["README.md"].decode("utf-8")
    assert pushed == (tmp_path / "for-repo" / "README.md").read_text(encoding="utf-8")
    assert ".cbt_llm/dataset_card.json" not in plan_dataset(tmp_path / "local", "org/cbt")


def test_a_folder_built_before_card_inputs_existed_pushes_its_card_as_it_is(tmp_path):
    build_dataset(output_dir=tmp_path / "old")
    shutil.rmtree(tmp_path / "old" / ".cbt_llm")
    pushed = plan_dataset(tmp_path / "old", "org/cbt")["README.md"].decode("utf-8")
    assert pushed == (tmp_path / "old" / "README.md").read_text(encoding="utf-8")
