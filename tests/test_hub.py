"""Hub push and pull, end to end against the loopback Hub server in tests/hub_server.py.

The Hub clients read HF_ENDPOINT and HF_HUB_OFFLINE when they are imported, and this test session
is offline (conftest.py), so everything that talks to the server runs in a fresh process with the
server's environment: the real `cbt-llm` command, and scripts that use only the stock clients
(datasets, huggingface_hub, peft, transformers) and check that cbt_llm was never imported.
Nothing is patched; the server keeps real commits. Those tests use the ``hub`` or ``tiny_model``
fixtures and so are slow; the configs, plans and error messages at the end are checked in-process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from helpers import SAMPLE_SIZE, make_record, write_jsonl
from hub_server import HubServer, hub_env

from cbt_llm.cards import adapter_card_for_hub
from cbt_llm.data.build import BuildConfig, build_dataset
from cbt_llm.errors import CbtLlmError
from cbt_llm.hub import PullConfig, PullResult, PushConfig, PushResult, hub_errors, plan, push
from cbt_llm.models.serve import free_port

TOKEN = f"hf_cbtllmTest{uuid.uuid4().hex}"  # unique, so any copy of it in a file is found
OTHER_TOKEN = f"hf_cbtllmOther{uuid.uuid4().hex}"
CLI = Path(sys.executable).parent / "cbt-llm"
OUTPUTS: list[str] = []  # every stdout/stderr the clients printed, checked for the token at the end
PROMPT = "我最近总是失眠，觉得自己什么都做不好。"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hub-work")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = HubServer(tmp_path_factory.mktemp("hub-root"), tokens={TOKEN: "alice", OTHER_TOKEN: "bob"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_unimplemented_routes(request):
    yield
    if "hub" in request.fixturenames:
        server = request.getfixturevalue("hub")
        assert not server.unimplemented, f"clients called routes the test Hub lacks: {server.unimplemented}"


def run(hub, work, args, token=TOKEN, endpoint=None, check=True):
    """A fresh process with the Hub clients pointed at the server (cwd outside the checkout)."""
    env = hub_env(endpoint or hub.endpoint, token, work / "hf_home")
    cwd = work / "cwd"
    cwd.mkdir(exist_ok=True)
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    OUTPUTS.extend([result.stdout, result.stderr])
    if check and result.returncode != 0:
        raise AssertionError(f"{args[:3]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}")
    return result


def cli(hub, work, *args, **kwargs):
    return run(hub, work, [CLI, *args], **kwargs)


def stock(hub, work, script, *args, **kwargs):
    """Run a script that uses only the stock clients, and asserts it never imported cbt_llm."""
    code = textwrap.dedent(script) + "\nimport sys\nassert not any(m.startswith('cbt_llm') for m in sys.modules)\n"
    path = work / f"script_{uuid.uuid4().hex[:8]}.py"
    path.write_text(code, encoding="utf-8")
    return run(hub, work, [sys.executable, path, *args], **kwargs)


def commits(hub, repo_type, repo_id):
    """The server's commit ids of main, newest first."""
    repo = hub.store.repos[f"{repo_type}s/{repo_id}"]
    sha, out = repo["refs"]["main"], []
    while sha:
        out.append(sha)
        sha = repo["commits"][sha]["parent"]
    return out


def local_rows(folder: Path, config: str) -> dict[str, list[dict]]:
    return {path.name.split("-")[0]: pq.read_table(path).to_pylist()
            for path in sorted((folder / config).glob("*.parquet"))}


def visible_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


@pytest.fixture(scope="module")
def dataset_dir(work) -> Path:
    return build_dataset(BuildConfig(output_dir=work / "cbt_qa")).output_dir  # the sample; its card: load_dataset("cbt_qa")


@pytest.fixture(scope="module")
def pushed_dataset(hub, work, dataset_dir) -> str:
    cli(hub, work, "push", "dataset", dataset_dir, "--repo_id", "alice/cbt_qa")
    return "alice/cbt_qa"


# ---------------------------------------------------------------- adapter helpers

def make_adapter(tiny_model: Path, folder: Path, seed: int) -> SimpleNamespace:
    """A small LoRA adapter on the tiny model, lora_B set so that it changes the logits; and its logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\ntags:\n- cbt\n---\n\n# Tiny CBT adapter\n\nTrained for the tests. Keep this line.\n",
        encoding="utf-8")
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    model.eval()
    with torch.no_grad():
        logits = model(ids).logits
        with model.disable_adapter():
            base_logits = model(ids).logits
    assert not torch.allclose(logits, base_logits, atol=1e-3), "the adapter must change the logits"
    return SimpleNamespace(folder=folder, ids=ids.tolist(), logits=logits)


@pytest.fixture(scope="module")
def adapter(tiny_model, work) -> SimpleNamespace:
    return make_adapter(tiny_model, work / "adapter", seed=7)


@pytest.fixture(scope="module")
def hub_base_model(hub, work, tiny_model) -> str:
    """The tiny base model published on the server, so that the adapter resolves its base from the Hub too."""
    stock(hub, work, """
        import sys
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo("alice/tiny-random-llama", exist_ok=True)
        api.upload_folder(repo_id="alice/tiny-random-llama", folder_path=sys.argv[1], commit_message="tiny base")
    """, tiny_model)
    return "alice/tiny-random-llama"


LOGITS_SCRIPT = """
    import json, sys, torch
    from peft import AutoPeftModelForCausalLM
    from huggingface_hub import ModelCard
    repo, ids_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    revision = sys.argv[4] if len(sys.argv) > 4 else None
    model = AutoPeftModelForCausalLM.from_pretrained(repo, revision=revision)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(json.loads(open(ids_path).read()))).logits
    card = ModelCard.load(repo)
    torch.save({"logits": logits, "card": card.data.to_dict(), "text": card.text,
                "base": model.peft_config["default"].base_model_name_or_path}, out)
"""


# ---------------------------------------------------------------- round trips

def test_dataset_round_trip_loads_with_plain_load_dataset(hub, work, dataset_dir, pushed_dataset):
    out = work / "loaded.json"
    stock(hub, work, """
        import json, sys
        import datasets
        from huggingface_hub import DatasetCard, HfApi
        datasets.config.USE_PARQUET_EXPORT = False  # no datasets-server behind the test Hub
        repo = sys.argv[1]
        rows = {c: {s: d.to_list() for s, d in datasets.load_dataset(repo, c).items()} for c in ("default", "sft")}
        card = DatasetCard.load(repo, repo_type="dataset")
        info = HfApi().dataset_info(repo)
        json.dump({"rows": rows, "configs": [c["config_name"] for c in card.data.configs],
                   "text": card.text, "private": info.private}, open(sys.argv[2], "w"), ensure_ascii=False)
    """, pushed_dataset, out)
    loaded = json.loads(out.read_text(encoding="utf-8"))
    for config in ("default", "sft"):
        assert loaded["rows"][config] == local_rows(dataset_dir, config), config
    assert sum(map(len, loaded["rows"]["default"].values())) == SAMPLE_SIZE
    assert loaded["configs"] == ["default", "sft"]
    assert 'load_dataset("alice/cbt_qa")' in loaded["text"] and 'load_dataset("cbt_qa")' not in loaded["text"]
    assert loaded["private"] is True  # datasets are private unless --private false
    assert commits(hub, "dataset", pushed_dataset)[0] == hub.store.repos["datasets/alice/cbt_qa"]["refs"]["main"]
    assert len(commits(hub, "dataset", pushed_dataset)) == 2  # initial commit + one commit for the whole folder


def test_adapter_round_trip_gives_the_same_logits_with_stock_peft(hub, work, adapter, hub_base_model,
                                                                   pushed_dataset):
    import torch

    result = cli(hub, work, "push", "adapter", adapter.folder, "--repo_id", "alice/cbt-lora",
                 "--dataset_repo_id", pushed_dataset, "--base_model", hub_base_model)
    assert "(public)" in result.stdout and "adapter_model.safetensors" in result.stdout
    ids = work / "ids.json"
    ids.write_text(json.dumps(adapter.ids))
    stock(hub, work, LOGITS_SCRIPT, "alice/cbt-lora", ids, work / "remote.pt")
    remote = torch.load(work / "remote.pt")
    assert torch.allclose(remote["logits"], adapter.logits, atol=1e-5)
    assert remote["base"] == hub_base_model  # the base came from the Hub, not the local path
    card = remote["card"]
    assert card["library_name"] == "peft" and card["base_model"] == hub_base_model
    assert card["datasets"] == [pushed_dataset] and card["license"] == "apache-2.0" and card["tags"] == ["cbt"]
    assert "Keep this line." in remote["text"] and f"/datasets/{pushed_dataset})" in remote["text"]
    # the local folder is unchanged: its config still names the local base model
    local_config = json.loads((adapter.folder / "adapter_config.json").read_text())
    assert Path(local_config["base_model_name_or_path"]).is_dir()


def test_second_push_then_pull_at_first_revision_gives_the_old_files(hub, work):
    records = [make_record(f"v{i}", response=f"第一版回答 {i}。") for i in range(30)]
    first = build_dataset(BuildConfig(input=[write_jsonl(work / "v1.jsonl", records)], output_dir=work / "v1",
                                      repo_id="alice/versions")).output_dir
    more = write_jsonl(work / "v2.jsonl", records + [make_record(f"w{i}") for i in range(20)])
    second = build_dataset(BuildConfig(input=[more], output_dir=work / "v2", repo_id="alice/versions")).output_dir
    cli(hub, work, "push", "dataset", first, "--repo_id", "alice/versions", "--commit_message", "first version")
    first_sha = commits(hub, "dataset", "alice/versions")[0]
    cli(hub, work, "push", "dataset", second, "--repo_id", "alice/versions")
    second_sha = commits(hub, "dataset", "alice/versions")[0]
    assert second_sha != first_sha and hub.store.repos["datasets/alice/versions"]["commits"][second_sha]["parent"] \
        == first_sha
    assert hub.store.repos["datasets/alice/versions"]["commits"][first_sha]["title"] == "first version"

    old = cli(hub, work, "pull", "dataset", "--repo_id", "alice/versions", "--revision", first_sha,
              "--output_dir", work / "pull-v1")
    assert first_sha in old.stdout
    new = cli(hub, work, "pull", "dataset", "--repo_id", "alice/versions", "--output_dir", work / "pull-v2")
    assert second_sha in new.stdout
    assert visible_files(work / "pull-v1") == visible_files(first)
    assert visible_files(work / "pull-v2") == visible_files(second)
    assert visible_files(first) != visible_files(second)


def test_adapter_pull_and_load_adapter_at_a_pinned_revision(hub, work, tiny_model, adapter):
    import torch
    from safetensors.torch import load_file, save_file

    from cbt_llm.hub import load_adapter

    # load_adapter on a local folder (in this offline process)
    model, tokenizer = load_adapter(adapter.folder)
    with torch.no_grad():
        logits = model(tokenizer(PROMPT, return_tensors="pt").input_ids).logits
    assert torch.allclose(logits, adapter.logits, atol=1e-5)

    cli(hub, work, "push", "adapter", adapter.folder, "--repo_id", "alice/lora-versions", "--private")
    first_sha = commits(hub, "model", "alice/lora-versions")[0]
    changed = work / "adapter-v2"
    shutil.copytree(adapter.folder, changed)
    weights = load_file(changed / "adapter_model.safetensors")
    save_file({name: tensor * 2 for name, tensor in weights.items()}, changed / "adapter_model.safetensors")
    cli(hub, work, "push", "adapter", changed, "--repo_id", "alice/lora-versions")
    assert hub.store.repos["models/alice/lora-versions"]["private"] is True

    cli(hub, work, "pull", "adapter", "--repo_id", "alice/lora-versions", "--revision", first_sha,
        "--output_dir", work / "lora-v1")
    pulled = visible_files(work / "lora-v1")
    assert pulled["adapter_model.safetensors"] == (adapter.folder / "adapter_model.safetensors").read_bytes()
    assert pulled["adapter_config.json"] == (adapter.folder / "adapter_config.json").read_bytes()
    assert set(pulled) == set(visible_files(adapter.folder))

    ids = work / "ids.json"
    ids.write_text(json.dumps(adapter.ids))
    run(hub, work, [sys.executable, "-c", textwrap.dedent("""
        import json, sys, torch
        from cbt_llm.hub import load_adapter
        out = {}
        for name, revision in (("old", sys.argv[1]), ("new", None)):
            model, tokenizer = load_adapter("alice/lora-versions", revision=revision)
            with torch.no_grad():
                out[name] = model(torch.tensor(json.loads(open(sys.argv[2]).read()))).logits
        torch.save(out, sys.argv[3])
    """), first_sha, ids, work / "versions.pt"])
    versions = torch.load(work / "versions.pt")
    assert torch.allclose(versions["old"], adapter.logits, atol=1e-5)
    assert not torch.allclose(versions["new"], adapter.logits, atol=1e-3)


def test_push_to_a_branch_leaves_main_alone(hub, work, dataset_dir, pushed_dataset):
    main_before = hub.store.repos["datasets/alice/cbt_qa"]["refs"]["main"]
    result = cli(hub, work, "push", "dataset", dataset_dir, "--repo_id", pushed_dataset, "--revision", "dev",
                 "--commit_message", "on dev")
    refs = hub.store.repos["datasets/alice/cbt_qa"]["refs"]
    assert refs["main"] == main_before and "branch dev" in result.stdout
    # same files as main: the client skips unchanged files, so the branch head is main's commit
    assert refs["dev"] == main_before
    cli(hub, work, "pull", "dataset", "--repo_id", pushed_dataset, "--revision", "dev", "--output_dir", work / "pull-dev")
    assert visible_files(work / "pull-dev")["default/train-00000-of-00001.parquet"] == \
        (dataset_dir / "default" / "train-00000-of-00001.parquet").read_bytes()


def test_public_opt_out_and_anonymous_reads(hub, work, dataset_dir):
    cli(hub, work, "push", "dataset", dataset_dir, "--repo_id", "alice/open_qa", "--private", "false")
    assert hub.store.repos["datasets/alice/open_qa"]["private"] is False
    cli(hub, work, "pull", "dataset", "--repo_id", "alice/open_qa", "--output_dir", work / "anon", token=None)
    assert "README.md" in visible_files(work / "anon")


# ---------------------------------------------------------------- dry run and cards (no network)

def test_dry_run_writes_exactly_what_would_be_uploaded(tmp_path, dataset_dir, adapter):
    from huggingface_hub import DatasetCard, ModelCard

    result = push(PushConfig(kind="dataset", folder=dataset_dir, repo_id="org/cbt", dry_run=True,
                             output_dir=tmp_path / "ds"))
    written = visible_files(tmp_path / "ds")
    assert sorted(written) == sorted(result.files) == sorted(visible_files(dataset_dir))
    assert result.commit is None and result.private is True
    assert written["default/train-00000-of-00001.parquet"] == \
        (dataset_dir / "default" / "train-00000-of-00001.parquet").read_bytes()
    card = DatasetCard.load(tmp_path / "ds" / "README.md")
    assert 'load_dataset("org/cbt", "sft")' in card.text and [c["config_name"] for c in card.data.configs] == \
        ["default", "sft"]

    result = push(PushConfig(kind="adapter", folder=adapter.folder, repo_id="org/lora", dry_run=True,
                             output_dir=tmp_path / "ad", dataset_repo_id="org/cbt", base_model="org/base"))
    written = visible_files(tmp_path / "ad")
    assert sorted(written) == sorted(result.files)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= set(written)
    assert json.loads(written["adapter_config.json"])["base_model_name_or_path"] == "org/base"
    assert Path(json.loads((adapter.folder / "adapter_config.json").read_text())["base_model_name_or_path"]).is_dir()
    card = ModelCard.load(tmp_path / "ad" / "README.md")
    assert card.data.base_model == "org/base" and card.data.datasets == ["org/cbt"]
    assert card.data.library_name == "peft" and "Keep this line." in card.text

    with pytest.raises(CbtLlmError, match="not empty"):
        push(PushConfig(kind="dataset", folder=dataset_dir, repo_id="org/cbt", dry_run=True, output_dir=tmp_path / "ds"))


def test_a_trained_adapters_card_is_rendered_again_for_its_hub_repo(tmp_path, tiny_adapter):
    from huggingface_hub import ModelCard

    result = push(PushConfig(kind="adapter", folder=tiny_adapter, repo_id="org/cbt-tiny", dry_run=True,
                             output_dir=tmp_path / "ad", dataset_repo_id="org/cbt", base_model="org/tiny-random-llama"))
    written = visible_files(tmp_path / "ad")
    assert sorted(written) == sorted(result.files)
    assert "training_recipe.yaml" in written and "loss_curve.png" in written
    card = ModelCard.load(tmp_path / "ad" / "README.md")
    assert card.data.base_model == "org/tiny-random-llama" and card.data.datasets == ["org/cbt"]
    # The template's usage snippets now name the Hub repo, not the training machine's folder.
    assert 'AutoPeftModelForCausalLM.from_pretrained("org/cbt-tiny")' in card.text
    assert "--lora-modules cbt=org/cbt-tiny" in card.text and str(tiny_adapter) not in card.text
    assert "| `lora_r` | `16` |" in card.text and "12356" in card.text


def test_cli_dry_run_lists_the_files_and_uploads_nothing(hub, work, adapter):
    result = cli(hub, work, "push", "adapter", adapter.folder, "--repo_id", "alice/never", "--dry_run",
                 "--output_dir", work / "dry", token=None)
    assert "dry run: would push" in result.stdout and "  adapter_model.safetensors" in result.stdout
    assert "models/alice/never" not in hub.store.repos
    assert set(visible_files(work / "dry")) == {line.strip() for line in result.stdout.splitlines()[1:]}


def test_card_regeneration_is_idempotent_and_takes_a_hook(tmp_path, adapter):
    text = (adapter.folder / "README.md").read_text(encoding="utf-8")
    kwargs = dict(repo_id="org/lora", base_model="org/base", dataset_repo_id="org/cbt", endpoint="https://hf.co",
                  folder=adapter.folder)
    once = adapter_card_for_hub(text, **kwargs)
    twice = adapter_card_for_hub(once, **kwargs)
    assert once == twice and once.count("## Links") == 1
    assert "[org/cbt](https://hf.co/datasets/org/cbt)" in once
    fresh = adapter_card_for_hub(None, **{**kwargs, "base_model": None})
    assert "library_name: peft" in fresh and "base_model" not in fresh.split("---")[1]

    calls = []

    def my_card(card_text, **info):
        calls.append(info)
        return "---\nlibrary_name: peft\n---\n# mine\n"

    push(PushConfig(kind="adapter", folder=adapter.folder, repo_id="org/lora", dry_run=True, output_dir=tmp_path / "hook",
                    dataset_repo_id="org/cbt"), card_fn=my_card)
    assert (tmp_path / "hook" / "README.md").read_text() == "---\nlibrary_name: peft\n---\n# mine\n"
    assert calls[0]["dataset_repo_id"] == "org/cbt" and calls[0]["repo_id"] == "org/lora"


# ---------------------------------------------------------------- errors

ERROR_CASES = [
    ("no token", ("push", "dataset", "{ds}", "--repo_id", "alice/x"), None, "no Hugging Face token"),
    ("bad token", ("push", "dataset", "{ds}", "--repo_id", "alice/x"), "hf_not_a_valid_token",
     "rejected the token"),
    ("repo not found", ("pull", "dataset", "--repo_id", "alice/missing", "--output_dir", "{out}"), TOKEN,
     "repository not found"),
    ("private, other user", ("pull", "dataset", "--repo_id", "alice/cbt_qa", "--output_dir", "{out}"), OTHER_TOKEN,
     "repository not found, or this token has no access"),
    ("private, anonymous", ("pull", "dataset", "--repo_id", "alice/cbt_qa", "--output_dir", "{out}"), None,
     "repository not found, or this token has no access"),
    ("no write access", ("push", "dataset", "{ds}", "--repo_id", "alice/cbt_qa"), OTHER_TOKEN, "no write access"),
    ("revision not found", ("pull", "dataset", "--repo_id", "alice/cbt_qa", "--revision", "0" * 40, "--output_dir",
                            "{out}"), TOKEN, "revision '0000000000000000000000000000000000000000' not found"),
    ("branch not found", ("pull", "dataset", "--repo_id", "alice/cbt_qa", "--revision", "nope", "--output_dir", "{out}"),
     TOKEN, "revision 'nope' not found"),
    ("not a dataset folder", ("push", "dataset", "{work}", "--repo_id", "alice/x"), TOKEN, "not a built dataset"),
]


@pytest.mark.parametrize("case, args, token, expected", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])  # tokens are random
def test_errors_are_one_clear_line(hub, work, dataset_dir, pushed_dataset, case, args, token, expected):
    out = work / f"out-{uuid.uuid4().hex[:6]}"
    args = [a.format(ds=dataset_dir, out=out, work=work) for a in args]
    result = cli(hub, work, *args, token=token, check=False)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"cbt-llm {args[0]}: error: ")
    assert not out.exists()


def test_no_network_is_a_clear_error(hub, work, dataset_dir):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (("push", "dataset", dataset_dir, "--repo_id", "alice/x"),
                 ("pull", "dataset", "--repo_id", "alice/cbt_qa", "--output_dir", work / "unreachable")):
        result = cli(hub, work, *args, endpoint=endpoint, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"cannot reach the Hub at {endpoint}" in result.stderr


def test_the_token_is_in_no_file_or_output(hub, work, pushed_dataset):
    # after the round trips above (and at least this push and pull when run alone)
    cli(hub, work, "push", "dataset", work / "cbt_qa", "--repo_id", "alice/token_check")
    cli(hub, work, "pull", "dataset", "--repo_id", "alice/token_check", "--output_dir", work / f"pull-{uuid.uuid4().hex[:6]}")
    token_store = {Path(work / "hf_home" / "token"), Path(work / "hf_home" / "stored_tokens")}
    checked = 0
    for root in (work, hub.store.root):
        for path in root.rglob("*"):
            if path.is_file() and path not in token_store:
                assert TOKEN.encode() not in path.read_bytes(), path
                checked += 1
    assert checked > 20
    assert OUTPUTS and not any(TOKEN in text for text in OUTPUTS + hub.requests)


def test_predict_stops_on_a_rejected_token_and_uses_defaults_only_without_a_recipe(hub, work):
    hub.store.create_repo("model", "alice/no-recipe", True, "alice")  # private
    code = ("import json; from cbt_llm.models.loading import read_recipe; "
            "print(json.dumps(read_recipe('alice/no-recipe')))")
    assert run(hub, work, [sys.executable, "-c", code]).stdout.strip() == "{}"
    rejected = run(hub, work, [sys.executable, "-c", code], token="hf_notAValidTokenForThisHub", check=False)
    assert rejected.returncode != 0 and "the Hub rejected the token (401)" in rejected.stderr, rejected.stderr[-2000:]


# ---------------------------------------------------------------- configs, plans and errors (in-process)

def test_push_and_pull_configs_check_their_options():
    with pytest.raises(CbtLlmError, match="--dry_run and --output_dir DIR go together"):
        PushConfig(kind="dataset", folder="d", repo_id="me/d", dry_run=True)
    with pytest.raises(CbtLlmError, match="--dry_run and --output_dir DIR go together"):
        PushConfig(kind="dataset", folder="d", repo_id="me/d", output_dir="up")
    with pytest.raises(CbtLlmError, match="repo id must look like NAMESPACE/NAME, got 'me--d'"):
        PushConfig(kind="dataset", folder="d", repo_id="me--d")
    with pytest.raises(CbtLlmError, match="got 'base'"):
        PushConfig(kind="adapter", folder="a", repo_id="me/a", base_model="base")
    with pytest.raises(CbtLlmError, match="kind must be one of dataset, adapter, got 'model'"):
        PullConfig(kind="model", repo_id="me/a", output_dir="o")
    assert PushConfig(kind="dataset", folder="d", repo_id="me/d").is_private is True  # PsyQA-derived terms
    assert PushConfig(kind="adapter", folder="a", repo_id="me/a").is_private is False
    assert PushConfig(kind="dataset", folder="d", repo_id="me/d", private=False).is_private is False
    assert PullConfig(kind="adapter", repo_id="me/a", output_dir="o").repo_type == "model"


def test_results_format_what_the_cli_prints():
    dry = PushResult("me/a", "model", ["README.md", "adapter_model.safetensors"], dry_run_dir=Path("up"))
    assert dry.format() == "dry run: would push 2 files to adapter repo me/a (branch main); wrote them to up:" \
                           "\n  README.md\n  adapter_model.safetensors"
    pushed = PushResult("me/d", "dataset", ["README.md"], "abc", "https://hf.co/c/abc", "dev", True,
                        deleted=["default/old.parquet"])
    assert pushed.format() == "pushed 1 files to dataset repo me/d (private), branch dev, commit abc: " \
                              "https://hf.co/c/abc\n  README.md\n  deleted default/old.parquet"
    pulled = PullResult("me/d", "dataset", Path("d"), "abc", ["README.md", "x.parquet"])
    assert pulled.format() == "pulled dataset repo me/d at commit abc into d (2 files)"


def test_adapter_plan_rewrites_the_base_for_the_hub_and_leaves_trainer_files_out(tmp_path, caplog):
    folder = tmp_path / "adapter"
    folder.mkdir()
    config = {"base_model_name_or_path": str(tmp_path), "r": 4}
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    for name in ("adapter_model.safetensors", "tokenizer.json", "training_args.bin", ".hidden"):
        (folder / name).write_bytes(b"x")
    files = plan(PushConfig(kind="adapter", folder=folder, repo_id="me/a", base_model="org/base"))
    assert list(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json"]
    assert json.loads(files["adapter_config.json"]) == {**config, "base_model_name_or_path": "org/base"}
    assert "base_model: org/base" in files["README.md"].decode()
    assert (folder / "adapter_config.json").read_text(encoding="utf-8") == json.dumps(config)  # the local file stays

    files = plan(PushConfig(kind="adapter", folder=folder, repo_id="me/a"))
    assert files["adapter_config.json"] == folder / "adapter_config.json"  # uploaded byte for byte
    assert "base_model" not in files["README.md"].decode().split("---")[1]  # a local path means nothing on the Hub
    assert "pass --base_model with its Hub id" in caplog.text
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(CbtLlmError, match="has no adapter weights"):
        plan(PushConfig(kind="adapter", folder=folder, repo_id="me/a"))


@pytest.mark.parametrize("error, expected", [
    ("RepositoryNotFoundError", "repository not found, or this token has no access to it (check the id, that it is "
                                "a model repo, and your token)"),
    ("GatedRepoError", "it is gated and this token has not been granted access"),
    ("RevisionNotFoundError", "revision 'dev' not found"),
    (401, "the Hub rejected the token (401); check HF_TOKEN or `hf auth login`"),
    (403, "this token has no write access to it (403)"),
    (500, "the Hub answered 500: server error ***"),
])
def test_hub_errors_become_one_line_without_the_token(error, expected):
    import httpx
    from huggingface_hub import errors

    response = httpx.Response(error if isinstance(error, int) else 404,
                              request=httpx.Request("GET", "https://hub.example/api/models/me/a"))
    cls = errors.HfHubHTTPError if isinstance(error, int) else getattr(errors, error)
    with pytest.raises(CbtLlmError) as raised:
        with hub_errors("push to", "me/a", "model", "dev", token=TOKEN):
            raise cls(f"server error {TOKEN}", response=response)
    assert str(raised.value) == f"cannot push to model repo me/a: {expected}"


def test_hub_errors_name_the_unreachable_hub_and_let_other_errors_through():
    import httpx

    with pytest.raises(CbtLlmError, match="cannot pull dataset repo me/d: cannot reach the Hub at .* "
                                          r"\(no network or connection refused"):
        with hub_errors("pull", "me/d", "dataset"):
            raise httpx.ConnectError("connection refused")
    with pytest.raises(KeyError):
        with hub_errors("pull", "me/d", "dataset"):
            raise KeyError("a bug, not the Hub")


def test_pull_checks_every_file_name_before_it_downloads_and_a_failed_pull_leaves_nothing(tmp_path, monkeypatch):
    import huggingface_hub

    from cbt_llm.hub import pull

    info = SimpleNamespace(sha="a" * 40, siblings=[SimpleNamespace(rfilename=name) for name in
                                                   ("README.md", "default/train.parquet", "../outside.txt")])
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", lambda self, *args, **kwargs: info)
    calls = []

    def snapshot_download(repo_id, *, local_dir, **kwargs):
        """As the real one: the files one by one (its own check stops at a '..' name), or a dropped connection."""
        calls.append(local_dir)
        for sibling in info.siblings:
            if ".." in sibling.rfilename.split("/"):
                raise ValueError(f"Invalid filename '{sibling.rfilename}': cannot contain a '..' path segment.")
            if sibling.rfilename == "default/train.parquet" and failing:
                raise ConnectionError("connection reset by peer")
            target = Path(local_dir) / sibling.rfilename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(sibling.rfilename, encoding="utf-8")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = tmp_path / "pulled"
    config = PullConfig(kind="dataset", repo_id="me/d", output_dir=str(out))
    failing = False
    for _ in range(2):  # the same command again gets the same error, not "exists and is not empty"
        with pytest.raises(CbtLlmError, match=r"^cannot pull dataset repo me/d: its file name '\.\./outside\.txt' has "
                                              r"a '\.\.' part, so it cannot be written safely into .*; nothing was "
                                              r"downloaded$"):
            pull(config)
    assert calls == [] and list(tmp_path.iterdir()) == []

    info.siblings = info.siblings[:2]
    failing = True
    with pytest.raises(CbtLlmError, match="cannot pull dataset repo me/d: cannot reach the Hub"):
        pull(config)
    assert list(tmp_path.iterdir()) == []  # no half-filled folder, no hidden leftover
    failing = False
    result = pull(config)
    assert result.files == ["README.md", "default/train.parquet"] and list(tmp_path.iterdir()) == [out]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == result.files
    here = tmp_path / "here"  # an empty folder that exists, here the working directory, is filled in place
    here.mkdir()
    monkeypatch.chdir(here)
    pull(PullConfig(kind="dataset", repo_id="me/d", output_dir="."))
    assert sorted(p.relative_to(here).as_posix() for p in here.rglob("*") if p.is_file()) == result.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "pulled"]


def test_pull_of_a_repo_with_a_dotdot_file_name_is_one_clear_line(hub, work):
    repo = hub.store.create_repo("dataset", "alice/traversal", False, "alice")
    files = dict(hub.store.files_at(repo, repo["refs"]["main"]))
    for name, data in (("README.md", b"# hi\n"), ("../escaped.txt", b"outside")):
        files[name] = {"sha256": hub.store.put_object(data), "size": len(data), "lfs": False}
    hub.store._add_commit(repo, repo["refs"]["main"], "main", "a name no client should write", "", files, "alice")
    hub.store.save()
    out = work / "traversal" / "pulled"
    for _ in range(2):  # the rerun gets the same line, not "exists and is not empty"
        result = cli(hub, work, "pull", "dataset", "--repo_id", "alice/traversal", "--output_dir", out, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip() == (f"cbt-llm pull: error: cannot pull dataset repo alice/traversal: its file "
                                          f"name '../escaped.txt' has a '..' part, so it cannot be written safely into "
                                          f"{out}; nothing was downloaded")
        assert not (work / "traversal").exists()


def test_one_filter_keeps_links_hidden_files_and_trainer_state_at_home(tmp_path, caplog):
    from cbt_llm.hub.files import shareable_files

    folder = tmp_path / "adapter"
    for name in ("checkpoint-3/optimizer.pt", "checkpoint-3/adapter_model.safetensors", ".git/config", ".env",
                 "sub/extra.txt", "rng_state.pth", "scheduler.pt", "optimizer.pt", "adapter_model.safetensors",
                 "tokenizer.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}), encoding="utf-8")
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the folder", encoding="utf-8")
    (folder / "link.txt").symlink_to(outside)
    (folder / "linked").symlink_to(tmp_path, target_is_directory=True)
    assert [p.relative_to(folder).as_posix() for p in shareable_files(folder)] == \
        ["adapter_config.json", "adapter_model.safetensors", "sub/extra.txt", "tokenizer.json"]
    assert f"left out {folder / 'link.txt'}: a symbolic link" in caplog.text
    files = plan(PushConfig(kind="adapter", folder=folder, repo_id="me/a"))
    assert list(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json"]
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.safetensors").symlink_to(outside)  # weights behind a link are not published either
    with pytest.raises(CbtLlmError, match="has no adapter weights .*a symbolic link is not published"):
        plan(PushConfig(kind="adapter", folder=folder, repo_id="me/a"))


def test_an_adapters_run_files_go_up_without_this_machines_paths(tmp_path):
    import yaml

    folder, base = tmp_path / "outputs" / "adapter", tmp_path / "models" / "base"
    folder.mkdir(parents=True)
    base.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}), encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    recipe = {"model_name_or_path": str(base), "output_dir": str(folder), "dataset_name": str(tmp_path / "cbt_qa"),
              "dataset_config": "sft", "lora_r": 8, "learning_rate": 0.001, "num_train_epochs": 1}
    (folder / "training_recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    (folder / "trainer_state.json").write_text(json.dumps({"best_model_checkpoint": str(folder / "checkpoint-9"),
                                                           "log_history": [{"step": 1, "loss": 7.0}]}), encoding="utf-8")
    files = plan(PushConfig(kind="adapter", folder=folder, repo_id="me/cbt-lora", base_model="org/base"))
    assert yaml.safe_load(files["training_recipe.yaml"]) == {**recipe, "model_name_or_path": "org/base",
                                                            "output_dir": "adapter", "dataset_name": "cbt_qa"}
    assert json.loads(files["trainer_state.json"])["best_model_checkpoint"] == "checkpoint-9"
    published = [source if isinstance(source, bytes) else source.read_bytes() for source in files.values()]
    assert not any(str(tmp_path).encode() in data for data in published)
    assert "datasets:\n- cbt_qa" in files["README.md"].decode()  # the card, made from the run files, too
    assert yaml.safe_load((folder / "training_recipe.yaml").read_text(encoding="utf-8")) == recipe  # left as it is
