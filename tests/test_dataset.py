import json
import subprocess
import sys
import textwrap

import pytest
from datasets import load_dataset
from helpers import SAMPLE_SIZE, make_record, write_jsonl

import cbt_llm
from cbt_llm.data.build import BuildConfig, build_dataset
from cbt_llm.data.builder import FEATURES
from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
from cbt_llm.data.splits import SPLITS, split_of
from cbt_llm.errors import CbtLlmError


def ids_by_split(dataset_dict):
    return {split: set(dataset_dict[split]["id"]) for split in dataset_dict}


def test_load_cbt_qa_gives_the_sample_in_three_disjoint_splits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("cbt_qa")
    assert set(ds) == set(SPLITS)
    assert sum(len(split) for split in ds.values()) == SAMPLE_SIZE
    assert all(len(ds[split]) > 0 for split in SPLITS)
    ids = ids_by_split(ds)
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"])
    assert ds["train"].features == FEATURES["default"]
    assert ds["train"].features["keywords"].feature.dtype == "string"
    row = ds["test"][0]
    assert isinstance(row["keywords"], list) and row["response"] and row["steps"]["strategy"]


def test_files_in_the_working_directory_are_ignored(tmp_path, monkeypatch):
    # A packaged name would make datasets collect these; a bad file here must not matter.
    write_jsonl(tmp_path / "train.jsonl", [{"not": "a record"}])
    (tmp_path / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("cbt_qa")
    assert sum(map(len, ds.values())) == SAMPLE_SIZE


def test_load_cbt_qa_from_data_files_and_data_dir(tmp_path, monkeypatch):
    records = [make_record(f"r{i}") for i in range(40)] + [make_record("bad", status="rejected")]
    (tmp_path / "runs").mkdir()
    path = write_jsonl(tmp_path / "runs" / "gen.jsonl", records)
    monkeypatch.chdir(tmp_path)
    from_files = load_dataset("cbt_qa", data_files=str(path))
    from_dir = load_dataset("cbt_qa", data_dir="runs")
    expected = {split: {r["id"] for r in records[:40] if split_of(r["id"]) == split} for split in SPLITS}
    assert ids_by_split(from_files) == ids_by_split(from_dir) == expected


def test_sft_config_is_conversational_prompt_completion():
    sft = load_dataset("cbt_qa", "sft")
    default = load_dataset("cbt_qa")
    assert ids_by_split(sft) == ids_by_split(default)
    row = sft["train"][0]
    source = default["train"][0]
    assert row["prompt"] == [
        {"role": "system", "content": SYSTEM_PROMPT_ZH},
        {"role": "user", "content": f"{source['question']}\n{source['description']}" if source["description"]
         else source["question"]},
    ]
    assert row["completion"] == [{"role": "assistant", "content": source["response"]}]


def test_split_ratios_and_system_prompt_are_configurable():
    ds = load_dataset("cbt_qa", "sft", split_ratios=(1.0, 0.0, 0.0), system_prompt="SYSTEM")
    assert list(ds) == ["train"] and len(ds["train"]) == SAMPLE_SIZE
    assert ds["train"][0]["prompt"][0] == {"role": "system", "content": "SYSTEM"}
    with pytest.raises(CbtLlmError, match="split ratios must be three non-negative numbers"):
        load_dataset("cbt_qa", split_ratios=(0.5, 0.1, 0.1))


def test_split_is_stable_when_records_are_added(tmp_path):
    small = write_jsonl(tmp_path / "small.jsonl", [make_record(f"r{i}") for i in range(50)])
    large = write_jsonl(tmp_path / "large.jsonl", [make_record(f"r{i}") for i in range(200)])
    before = ids_by_split(load_dataset("cbt_qa", data_files=str(small)))
    after = ids_by_split(load_dataset("cbt_qa", data_files=str(large)))
    for split in SPLITS:
        assert before[split] <= after[split]
    shares = [len(after[s]) / 200 for s in SPLITS]
    assert 0.7 < shares[0] < 0.9 and 0.03 < shares[1] < 0.17 and 0.03 < shares[2] < 0.17


def test_a_bad_record_file_fails_with_its_location(tmp_path):
    path = write_jsonl(tmp_path / "gen.jsonl", [make_record("a"), {"id": "b", "response": "x"}])
    with pytest.raises(CbtLlmError, match=f"{path}:2: field 'question': is missing"):
        load_dataset("cbt_qa", data_files=str(path))


def test_build_then_plain_datasets_reads_both_configs_without_cbt_llm(tmp_path, cli):
    out = tmp_path / "cbt_qa"
    result = cli("build", "--output_dir", out)
    assert result.returncode == 0, result.stderr
    assert f"built {out}" in result.stdout and "dropped: none" in result.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        f"{config}/{split}-00000-of-00001.parquet" for config in ("default", "sft") for split in sorted(SPLITS)
    ]
    script = textwrap.dedent(f"""
        import json, sys
        from datasets import load_dataset
        out = {{}}
        for config in ("default", "sft"):
            ds = load_dataset({str(out)!r}, config)
            out[config] = {{split: ds[split].to_list() for split in ds}}
            out[config + "_features"] = repr(ds["train"].features)
        assert "cbt_llm" not in sys.modules
        print(json.dumps(out, ensure_ascii=False))
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert child.returncode == 0, child.stderr
    loaded = json.loads(child.stdout)
    for config in ("default", "sft"):
        reference = load_dataset("cbt_qa", config)
        assert loaded[config] == {split: reference[split].to_list() for split in reference}
        assert loaded[config + "_features"] == repr(FEATURES[config])
    sft_row = loaded["sft"]["train"][0]
    assert [m["role"] for m in sft_row["prompt"]] == ["system", "user"]
    assert [m["role"] for m in sft_row["completion"]] == ["assistant"]


def test_card_parses_with_license_language_configs_and_split_sizes(tmp_path):
    from huggingface_hub import DatasetCard

    result = build_dataset(BuildConfig(output_dir=tmp_path / "cbt_qa"))
    card = DatasetCard.load(tmp_path / "cbt_qa" / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["language"] == ["zh"]
    assert [c["config_name"] for c in data["configs"]] == ["default", "sft"]
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    for config in ("default", "sft"):
        assert {s["name"]: s["num_examples"] for s in infos[config]["splits"]} == result.num_rows[config]
    assert [f["name"] for f in infos["default"]["features"]] == list(FEATURES["default"])
    for needed in ("Not a substitute for professional help", "12356", "988", "验证与共情", "鼓励与展望",
                   "Na, Hongbin", "PsyQA", "written by hand"):
        assert needed in card.text
    assert "PsyQA terms" not in card.text


def test_build_from_generated_records_counts_drops_and_describes_the_run(tmp_path):
    records = [make_record(f"r{i}") for i in range(30)]
    records += [make_record("x1", status="rejected"), make_record("x2", response=""), make_record("x3", response="")]
    path = write_jsonl(tmp_path / "gen.jsonl", records)
    result = build_dataset(BuildConfig(input=[path], output_dir=tmp_path / "out"))
    assert sum(result.num_rows["default"].values()) == 30
    assert result.dropped == {"status rejected": 1, "empty response": 2}
    text = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "Records dropped: **3** (2 empty response, 1 status rejected)" in text
    assert "`teacher-x` (30)" in text and "`paper-zh-v1` (30)" in text
    assert "Prompt tokens | 3000" in text and "Completion tokens | 12000" in text
    assert cbt_llm.data.prompts.get_prompt("paper", "zh").template.strip().splitlines()[0] in text
    assert "PsyQA terms" in text and "license: other" in text


def test_build_with_nothing_usable_is_an_error(tmp_path, cli):
    path = write_jsonl(tmp_path / "gen.jsonl", [make_record("a", status="failed")])
    result = cli("build", "--input", path, "--output_dir", tmp_path / "out")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "nothing to build" in result.stderr and "1 status failed" in result.stderr


def folder_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_rebuild_leaves_exactly_the_new_split_files_and_push_uploads_only_those(tmp_path):
    from cbt_llm.hub.push import PushConfig, plan

    out = tmp_path / "cbt_qa"
    build_dataset(BuildConfig(output_dir=out))  # the sample: train, validation and test
    two = write_jsonl(tmp_path / "two.jsonl", [make_record("a"), make_record("b")])
    result = build_dataset(BuildConfig(input=[two], output_dir=out, questions_source="other"))
    written = [f"{config}/{split}-00000-of-00001.parquet" for config, splits in result.num_rows.items()
               for split in splits]
    assert folder_files(out) == sorted([".cbt_llm/dataset_card.json", "README.md", *written])
    assert "removed the previous build's default/test-00000-of-00001.parquet" in result.format()
    uploaded = plan(PushConfig(kind="dataset", folder=out, repo_id="me/cbt"))
    assert sorted(uploaded) == sorted(["README.md", *written])
    assert load_dataset(str(out)).num_rows == result.num_rows["default"]


def test_build_refuses_a_folder_that_is_not_a_previous_build(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("my notes", encoding="utf-8")
    (tmp_path / "notes" / "data.parquet").write_bytes(b"mine")
    with pytest.raises(CbtLlmError, match="notes is not empty and is not a folder `cbt-llm build` wrote .*"
                                          "it holds README.md, data.parquet.*name a new or empty folder"):
        build_dataset(BuildConfig(output_dir=tmp_path / "notes"))
    assert (tmp_path / "notes" / "README.md").read_text(encoding="utf-8") == "my notes"
    assert folder_files(tmp_path / "notes") == ["README.md", "data.parquet"]


def test_build_warns_when_psyqa_is_assumed_or_a_split_comes_out_empty(tmp_path):
    six = write_jsonl(tmp_path / "six.jsonl", [make_record(f"r{i}") for i in range(6)])
    assumed = build_dataset(BuildConfig(input=[six], output_dir=tmp_path / "assumed")).format()
    assert len(assumed.splitlines()) == 1
    assert "warning: --questions_source not given: the card says the questions come from PsyQA" in assumed
    assert "PsyQA terms" in (tmp_path / "assumed" / "README.md").read_text(encoding="utf-8")
    assert "warning: no test split: none of the 6 records landed there" in assumed
    said = build_dataset(BuildConfig(input=[six], output_dir=tmp_path / "said", questions_source="other")).format()
    assert "questions_source" not in said and "no test split" in said
    # no warning for the sample, nor for a split whose share is zero on purpose
    assert "warning" not in build_dataset(BuildConfig(output_dir=tmp_path / "sample")).format()
    assert "warning" not in build_dataset(BuildConfig(input=[six], output_dir=tmp_path / "all-train",
                                                      questions_source="psyqa", split_ratios=[1, 0, 0])).format()
