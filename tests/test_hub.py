"""Hub push and pull, end to end against the loopback Hub server in tests/hub_server.py.

The Hub clients read HF_ENDPOINT and HF_HUB_OFFLINE when they are imported, and this test session
is offline (conftest.py), so everything that talks to the server runs in a fresh process with the
server's environment: the real `cbt-llm` command, and scripts that use only the stock clients
(datasets, huggingface_hub, peft, transformers) and check that cbt_llm was never imported.
Nothing is patched; the server keeps real commits.
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
from helpers import make_record, write_jsonl
from hub_server import HubServer, hub_env

from cbt_llm.data.build import build_dataset
from cbt_llm.errors import CbtLlmError
from cbt_llm.hub import adapter_card_for_hub, push_adapter, push_dataset
from cbt_llm.models.serve import free_port

TOKEN = f"hf_cbtllmTest{uuid.uuid4().hex}"  # unique, so any copy of it in a file is found
OTHER_TOKEN = f"hf_cbtllmOther{uuid.uuid4().hex}"
CLI = Path(sys.executable).parent / "cbt-llm"
OUTPUTS: list[str] = []  # every stdout/stderr the clients printed, checked for the token at the end
PROMPT = "我最近总是失眠，觉得自己什么都做不好。"

pytestmark = pytest.mark.slow


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
    return build_dataset(None, work / "cbt_qa").output_dir  # the bundled sample; the card says load_dataset("cbt_qa")


@pytest.fixture(scope="module")
def pushed_dataset(hub, work, dataset_dir) -> str:
    cli(hub, work, "push", "dataset", dataset_dir, "--repo-id", "alice/cbt_qa")
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
    assert sum(map(len, loaded["rows"]["default"].values())) >= 60
    assert loaded["configs"] == ["default", "sft"]
    assert 'load_dataset("alice/cbt_qa")' in loaded["text"] and 'load_dataset("cbt_qa")' not in loaded["text"]
    assert loaded["private"] is True  # datasets are private unless --public
    assert commits(hub, "dataset", pushed_dataset)[0] == hub.store.repos["datasets/alice/cbt_qa"]["refs"]["main"]
    assert len(commits(hub, "dataset", pushed_dataset)) == 2  # initial commit + one commit for the whole folder


def test_adapter_round_trip_gives_the_same_logits_with_stock_peft(hub, work, adapter, hub_base_model,
                                                                   pushed_dataset):
    import torch

    result = cli(hub, work, "push", "adapter", adapter.folder, "--repo-id", "alice/cbt-lora",
                 "--dataset-repo-id", pushed_dataset, "--base-model", hub_base_model)
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
    first = build_dataset([write_jsonl(work / "v1.jsonl", records)], work / "v1",
                          card={"repo_id": "alice/versions"}).output_dir
    second = build_dataset([write_jsonl(work / "v2.jsonl", records + [make_record(f"w{i}") for i in range(20)])],
                           work / "v2", card={"repo_id": "alice/versions"}).output_dir
    cli(hub, work, "push", "dataset", first, "--repo-id", "alice/versions", "--commit-message", "first version")
    first_sha = commits(hub, "dataset", "alice/versions")[0]
    cli(hub, work, "push", "dataset", second, "--repo-id", "alice/versions")
    second_sha = commits(hub, "dataset", "alice/versions")[0]
    assert second_sha != first_sha and hub.store.repos["datasets/alice/versions"]["commits"][second_sha]["parent"] \
        == first_sha
    assert hub.store.repos["datasets/alice/versions"]["commits"][first_sha]["title"] == "first version"

    old = cli(hub, work, "pull", "dataset", "alice/versions", "--revision", first_sha, "--output", work / "pull-v1")
    assert first_sha in old.stdout
    new = cli(hub, work, "pull", "dataset", "alice/versions", "--output", work / "pull-v2")
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

    cli(hub, work, "push", "adapter", adapter.folder, "--repo-id", "alice/lora-versions", "--private")
    first_sha = commits(hub, "model", "alice/lora-versions")[0]
    changed = work / "adapter-v2"
    shutil.copytree(adapter.folder, changed)
    weights = load_file(changed / "adapter_model.safetensors")
    save_file({name: tensor * 2 for name, tensor in weights.items()}, changed / "adapter_model.safetensors")
    cli(hub, work, "push", "adapter", changed, "--repo-id", "alice/lora-versions")
    assert hub.store.repos["models/alice/lora-versions"]["private"] is True

    cli(hub, work, "pull", "adapter", "alice/lora-versions", "--revision", first_sha, "--output", work / "lora-v1")
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
    result = cli(hub, work, "push", "dataset", dataset_dir, "--repo-id", pushed_dataset, "--branch", "dev",
                 "--commit-message", "on dev")
    refs = hub.store.repos["datasets/alice/cbt_qa"]["refs"]
    assert refs["main"] == main_before and "branch dev" in result.stdout
    # same files as main: the client skips unchanged files, so the branch head is main's commit
    assert refs["dev"] == main_before
    cli(hub, work, "pull", "dataset", pushed_dataset, "--revision", "dev", "--output", work / "pull-dev")
    assert visible_files(work / "pull-dev")["default/train-00000-of-00001.parquet"] == \
        (dataset_dir / "default" / "train-00000-of-00001.parquet").read_bytes()


def test_public_opt_out_and_anonymous_reads(hub, work, dataset_dir):
    cli(hub, work, "push", "dataset", dataset_dir, "--repo-id", "alice/open_qa", "--public")
    assert hub.store.repos["datasets/alice/open_qa"]["private"] is False
    cli(hub, work, "pull", "dataset", "alice/open_qa", "--output", work / "anon", token=None)
    assert "README.md" in visible_files(work / "anon")


# ---------------------------------------------------------------- dry run and cards (no network)

def test_dry_run_writes_exactly_what_would_be_uploaded(tmp_path, dataset_dir, adapter):
    from huggingface_hub import DatasetCard, ModelCard

    result = push_dataset(dataset_dir, "org/cbt", dry_run=tmp_path / "ds")
    written = visible_files(tmp_path / "ds")
    assert sorted(written) == sorted(result.files) == sorted(visible_files(dataset_dir))
    assert result.commit is None and result.private is True
    assert written["default/train-00000-of-00001.parquet"] == \
        (dataset_dir / "default" / "train-00000-of-00001.parquet").read_bytes()
    card = DatasetCard.load(tmp_path / "ds" / "README.md")
    assert 'load_dataset("org/cbt", "sft")' in card.text and [c["config_name"] for c in card.data.configs] == \
        ["default", "sft"]

    result = push_adapter(adapter.folder, "org/lora", dry_run=tmp_path / "ad", dataset_repo_id="org/cbt",
                          base_model="org/base")
    written = visible_files(tmp_path / "ad")
    assert sorted(written) == sorted(result.files)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= set(written)
    assert json.loads(written["adapter_config.json"])["base_model_name_or_path"] == "org/base"
    assert Path(json.loads((adapter.folder / "adapter_config.json").read_text())["base_model_name_or_path"]).is_dir()
    card = ModelCard.load(tmp_path / "ad" / "README.md")
    assert card.data.base_model == "org/base" and card.data.datasets == ["org/cbt"]
    assert card.data.library_name == "peft" and "Keep this line." in card.text

    with pytest.raises(CbtLlmError, match="not empty"):
        push_dataset(dataset_dir, "org/cbt", dry_run=tmp_path / "ds")


def test_a_trained_adapters_card_is_rendered_again_for_its_hub_repo(tmp_path, tiny_adapter):
    from huggingface_hub import ModelCard

    result = push_adapter(tiny_adapter, "org/cbt-tiny", dry_run=tmp_path / "ad", dataset_repo_id="org/cbt",
                          base_model="org/tiny-random-llama")
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
    result = cli(hub, work, "push", "adapter", adapter.folder, "--repo-id", "alice/never", "--dry-run",
                 work / "dry", token=None)
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

    push_adapter(adapter.folder, "org/lora", dry_run=tmp_path / "hook", card_fn=my_card, dataset_repo_id="org/cbt")
    assert (tmp_path / "hook" / "README.md").read_text() == "---\nlibrary_name: peft\n---\n# mine\n"
    assert calls[0]["dataset_repo_id"] == "org/cbt" and calls[0]["repo_id"] == "org/lora"


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("case, args, token, expected", [
    ("no token", ("push", "dataset", "{ds}", "--repo-id", "alice/x"), None, "no Hugging Face token"),
    ("bad token", ("push", "dataset", "{ds}", "--repo-id", "alice/x"), "hf_not_a_valid_token",
     "rejected the token"),
    ("repo not found", ("pull", "dataset", "alice/missing", "--output", "{out}"), TOKEN, "repository not found"),
    ("private, other user", ("pull", "dataset", "alice/cbt_qa", "--output", "{out}"), OTHER_TOKEN,
     "repository not found, or this token has no access"),
    ("private, anonymous", ("pull", "dataset", "alice/cbt_qa", "--output", "{out}"), None,
     "repository not found, or this token has no access"),
    ("no write access", ("push", "dataset", "{ds}", "--repo-id", "alice/cbt_qa"), OTHER_TOKEN, "no write access"),
    ("revision not found", ("pull", "dataset", "alice/cbt_qa", "--revision", "0" * 40, "--output", "{out}"), TOKEN,
     "revision '0000000000000000000000000000000000000000' not found"),
    ("branch not found", ("pull", "dataset", "alice/cbt_qa", "--revision", "nope", "--output", "{out}"), TOKEN,
     "revision 'nope' not found"),
    ("not a dataset folder", ("push", "dataset", "{work}", "--repo-id", "alice/x"), TOKEN, "not a built dataset"),
])
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
    for args in (("push", "dataset", dataset_dir, "--repo-id", "alice/x"),
                 ("pull", "dataset", "alice/cbt_qa", "--output", work / "unreachable")):
        result = cli(hub, work, *args, endpoint=endpoint, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"cannot reach the Hub at {endpoint}" in result.stderr


def test_the_token_is_in_no_file_or_output(hub, work, pushed_dataset):
    # after the round trips above (and at least this push and pull when run alone)
    cli(hub, work, "push", "dataset", work / "cbt_qa", "--repo-id", "alice/token_check")
    cli(hub, work, "pull", "dataset", "alice/token_check", "--output", work / f"pull-{uuid.uuid4().hex[:6]}")
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
    code = ("import json; from cbt_llm.evaluation.predict import read_recipe; "
            "print(json.dumps(read_recipe('alice/no-recipe')))")
    assert run(hub, work, [sys.executable, "-c", code]).stdout.strip() == "{}"
    rejected = run(hub, work, [sys.executable, "-c", code], token="hf_notAValidTokenForThisHub", check=False)
    assert rejected.returncode != 0 and "the Hub rejected the token (401)" in rejected.stderr, rejected.stderr[-2000:]
