"""The web app without a browser: the explorer's data side, the report, the Space folder, the CLI, and the
stock ``gradio_client`` against `cbt-llm app` serving a loopback OpenAI-compatible server that counts requests.

(The browser tests are in test_app_browser.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from app_helpers import app_process, make_report
from chat_server import ChatServer
from helpers import SAMPLE_SIZE

from cbt_llm.app import AppConfig, build_app, export_space
from cbt_llm.app.chat_tab import GuardedChat
from cbt_llm.app.explore_tab import (
    answer_segments,
    filter_records,
    load_records,
    read_report,
    render_record,
)
from cbt_llm.chat import EndpointBackend, LocalBackend, notice
from cbt_llm.cli import main, parse_args
from cbt_llm.crisis import format_crisis_resources
from cbt_llm.data.prompts import CBT_STEPS, STEP_KEYS
from cbt_llm.errors import CbtLlmError
from cbt_llm.models.serve import free_port

NORMAL = "我最近总是睡不好，一想到考试就很担心"
CONCERN = "最近活着好累，每天都在哭"
CRISIS = "我不想活了，药都准备好了"


@pytest.fixture(scope="module")
def records():
    return load_records("cbt_qa")  # the bundled sample through datasets.load_dataset


# ------------------------------------------------------------------------------------------ explorer
def test_the_sample_loads_with_every_split(records):
    assert len(records) == SAMPLE_SIZE and {r["split"] for r in records} == {"train", "validation", "test"}


def test_filters_by_keyword_and_distortion(records):
    hits = filter_records(records, "考研")
    assert hits and all("考研" in json.dumps(r, ensure_ascii=False) for r in hits)
    assert len(hits) < len(records)
    labelled = filter_records(records, distortion="catastrophizing")
    assert labelled and all("catastrophizing" in r["distortions"] for r in labelled)
    assert len(labelled) < len(records)
    both = filter_records(records, "焦虑", "catastrophizing")
    assert both == [r for r in labelled if r in filter_records(records, "焦虑")]
    assert filter_records(records, "ANXIETY-NOT-THERE") == [] and filter_records(records, "") == records


def test_answers_are_cut_at_the_records_own_five_steps(records):
    record = records[0]
    segments, from_record = answer_segments(record)
    assert from_record
    assert "".join(text for text, _ in segments) == record["response"]  # nothing lost, nothing added
    labelled = [(text, key) for text, key in segments if key]
    assert [key for _, key in labelled] == list(STEP_KEYS)
    assert [text for text, _ in labelled] == [record["steps"][key].strip() for key in STEP_KEYS]


def test_answers_without_steps_are_labelled_by_the_detector(records):
    record = {**records[0], "steps": {key: "" for key in STEP_KEYS}}
    segments, from_record = answer_segments(record)
    assert not from_record
    assert "".join(text for text, _ in segments) == record["response"]
    assert {key for _, key in segments if key} == set(STEP_KEYS)  # the sample answer has all five steps
    stale = {**records[0], "steps": {**records[0]["steps"], "challenge": "这句话不在回答里。"}}
    assert answer_segments(stale)[1] is False  # steps that are not in the answer are not trusted


def test_a_record_renders_with_step_names_and_distortion_names(records):
    header, pieces = render_record(records[0], "en")
    assert records[0]["question"] in header and "Catastrophising" in header
    assert [label for _, label in pieces if label] == [f"{i} {s.name_en}" for i, s in enumerate(CBT_STEPS, 1)]
    assert render_record(None, "zh")[0] == "没有符合条件的记录。"


def test_an_unknown_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(CbtLlmError, match="cannot load dataset"):
        load_records(str(tmp_path / "missing"))


def test_the_report_tab_shows_the_table_and_the_plots(tmp_path):
    folder = make_report(tmp_path / "report")
    table, images = read_report(folder)
    assert "| cut-60 | 6 |" in table and "![" not in table  # the plots are shown as images instead
    assert [p.name for p in images] == ["metrics.png", "step_coverage.png"]
    with pytest.raises(CbtLlmError, match=r"no report\.md"):
        read_report(tmp_path)


# ----------------------------------------------------------------------------------------- the page
def test_the_page_names_the_model_but_not_its_server_or_local_paths(tmp_path):
    served = EndpointBackend("cbt-lora", "http://user@10.9.8.7:8000/v1")  # never called: the page is only built
    config = build_app(AppConfig(dataset=None, language="en"), served).config
    status = next(c["props"]["value"] for c in config["components"] if c["props"].get("elem_id") == "chat-model")
    assert "model cbt-lora" in status and "10.9.8.7" not in status
    assert served.describe() == "model cbt-lora at http://user@10.9.8.7:8000/v1"  # the operator's terminal keeps it
    adapter = tmp_path / "home" / "me" / "outputs" / "tiny"
    adapter.mkdir(parents=True)
    local = LocalBackend.__new__(LocalBackend)  # describe() only: no model is loaded
    local.adapter, local.model_name_or_path = str(adapter), "cbt-llm/tiny-random-llama"
    assert local.describe(public=True) == "adapter tiny on cbt-llm/tiny-random-llama"
    assert local.describe() == f"adapter {adapter} on cbt-llm/tiny-random-llama"


def test_build_app_lays_out_the_notice_and_the_api(tmp_path):
    backend = EndpointBackend("test-model", "http://127.0.0.1:9/v1")  # never called: the page is only built
    app = build_app(AppConfig(report_dir=str(make_report(tmp_path / "report")), language="en"), backend)
    config = app.config
    html = [c["props"].get("value") for c in config["components"] if c["props"].get("elem_id") == "cbt-notice-box"]
    assert html and notice("en") in html[0]
    apis = {d["api_name"] for d in config["dependencies"] if d.get("api_visibility") == "public"}
    assert apis == {"chat", "reset"}
    explorer_only = build_app(AppConfig(dataset=None))
    assert explorer_only.cbt_chat is None
    assert {d["api_name"] for d in explorer_only.config["dependencies"] if d.get("api_visibility") == "public"} \
        == {"reset"}


def test_the_cli_binds_loopback_and_never_shares_by_default():
    _, args = parse_args(["app"])
    assert (args.host, args.share, args.trace_file, args.dataset) == ("127.0.0.1", False, None, "cbt_qa")
    _, args = parse_args(["app", "--base-url", "http://x/v1", "--model", "m", "--export-space", "out", "--share"])
    assert (args.base_url, args.model, args.export_space, args.share) == ("http://x/v1", "m", "out", True)


def test_the_served_model_and_the_model_to_load_are_two_options(capsys):
    _, served = parse_args(["app", "--base_url", "http://x/v1", "--model", "m", "--guard_model", "g"])
    assert (served.model, served.model_name_or_path, served.guard_model) == ("m", None, "g")
    _, local = parse_args(["app", "--adapter", "a", "--model_name_or_path", "base"])
    assert (local.adapter, local.model_name_or_path, local.model) == ("a", "base", None)
    _, old = parse_args(["app", "--adapter", "a", "--model", "base"])  # the old spelling of the model to load
    assert (old.model_name_or_path, old.model) == ("base", None)
    assert "--model without --base_url is deprecated" in capsys.readouterr().err
    with pytest.raises(CbtLlmError, match="not both"):
        AppConfig(model_name_or_path="base", model="m")
    with pytest.raises(CbtLlmError, match="--base_url needs --model"):
        AppConfig(base_url="http://x/v1", model_name_or_path="base")


def test_build_app_makes_the_served_backend_and_the_guard_model_from_the_config():
    config = AppConfig(base_url="http://127.0.0.1:9/v1", model="served", max_new_tokens=64, dataset=None,
                       guard_model="Qwen/Qwen3Guard-Gen-4B", guard_base_url="http://127.0.0.1:8/v1")
    chat = build_app(config).cbt_chat  # nothing is sent: the page is only built
    assert isinstance(chat.backend, EndpointBackend) and chat.backend.model == "served"
    assert chat.backend.settings.max_new_tokens == 64 and chat.model_guard.model == "Qwen/Qwen3Guard-Gen-4B"


# ------------------------------------------------------------------------------------------- Space
@pytest.fixture(autouse=True)
def _released(monkeypatch):
    """Every export in this module is as from an installed release (requirements.txt pins it); test_app_space.py
    takes the other routes."""
    monkeypatch.setattr("cbt_llm.app.space.installed_from", lambda: None)


def test_export_space_writes_a_space_folder(tmp_path, monkeypatch):
    import gradio

    from cbt_llm import __version__

    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-written")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}", encoding="utf-8")
    report = make_report(tmp_path / "report")
    out = export_space(AppConfig(adapter=str(adapter), dataset="someone/cbt_qa", report_dir=str(report),
                                 export_space=str(tmp_path / "space")))
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter", "app.py", "report", "requirements.txt"]
    app_py = (out / "app.py").read_text(encoding="utf-8")
    compile(app_py, "app.py", "exec")
    assert "adapter=_here('adapter')" in app_py and "dataset='someone/cbt_qa'" in app_py
    assert "report_dir=_here('report')" in app_py and "launch_app(demo)" in app_py
    assert "api_key_env" not in app_py and "host" not in app_py  # defaults and this machine's serving stay out
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "report" / "metrics.png").is_file()
    requirements = (out / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert [line for line in requirements if not line.startswith("#")] == [
        "--extra-index-url https://download.pytorch.org/whl/cpu", f"cbt-llm[app]=={__version__}"]
    readme = (out / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(readme.split("---\n")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert header["sdk_version"] == gradio.__version__ and header["title"] == "CBT-LLM"
    assert notice("zh") in readme and notice("en") in readme and "12356" in readme
    assert not any("sk-never-written" in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
    with pytest.raises(CbtLlmError, match="must be empty or new"):
        export_space(AppConfig(export_space=str(out)))


def test_export_space_for_a_served_model_names_the_secret(tmp_path):
    out = export_space(AppConfig(model="cbt", base_url="https://api.example.org/v1", api_key_env="CBT_KEY",
                                 export_space=str(tmp_path / "space")))
    app_py = (out / "app.py").read_text(encoding="utf-8")
    assert "base_url='https://api.example.org/v1'" in app_py and "model='cbt'" in app_py
    assert "api_key_env='CBT_KEY'" in app_py
    space = {"__file__": str(out / "app.py"), "__name__": "space_app"}
    exec(compile(app_py, "app.py", "exec"), space)  # the Space builds the same app (nothing is sent)
    assert space["demo"].cbt_chat.backend.describe() == "model cbt at https://api.example.org/v1"
    assert "Space secret `CBT_KEY`" in (out / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------- servers (slow tier)
@pytest.mark.slow
def test_importing_the_app_loads_no_gradio_and_no_ml_stack():
    code = "import sys, cbt_llm.app; print(sorted(m for m in ('gradio', 'torch', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_failing_model_shows_the_error_and_still_the_resources_on_a_concern_turn(tmp_path):
    with ChatServer(p500=1.0) as server:
        chat = GuardedChat(EndpointBackend("test-model", server.base_url, max_retries=0),
                           trace_file=tmp_path / "trace.jsonl")
        shown = list(chat.turn(NORMAL, []))[-1][0]
        assert "HTTP 500" in shown[-1]["content"] and shown[-2] == {"role": "user", "content": NORMAL}
        shown = list(chat.turn(CONCERN, shown))[-1][0]
        assert "HTTP 500" in shown[-1]["content"] and format_crisis_resources("zh") in shown[-1]["content"]
        assert server.stats.requests == 2
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(t["turn"], t["level"], t["backend_calls"], "HTTP 500" in t["error"]) for t in trace] == [
        (1, "none", 1, True), (2, "concern", 1, True)]


@pytest.fixture
def served_app(tmp_path):
    """`cbt-llm app` in a process on a free port, chatting with a ChatServer; yields (url, server, trace, output:
    the lines it has printed so far)."""
    trace = tmp_path / "trace.jsonl"
    port = free_port()
    with ChatServer() as server:
        argv = [str(Path(sys.executable).parent / "cbt-llm"), "app", "--base_url", server.base_url, "--model",
                "test-model", "--port", str(port), "--trace_file", str(trace), "--dataset", "cbt_qa"]
        with app_process(argv, port, 180, "cbt-llm app") as (url, output):
            yield url, server, trace, output


@pytest.mark.slow
def test_gradio_client_streams_a_turn_and_a_crisis_never_reaches_the_model(served_app):
    from gradio_client import Client

    url, server, trace, output = served_app
    config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
    assert config["run_history"] is False  # Gradio would otherwise keep every call's inputs and outputs
    client = Client(url, verbose=False)
    job = client.submit(NORMAL, "zh", api_name="/chat")
    final, box = job.result(timeout=120)
    outputs = job.outputs()
    assert box == "" and final[0]["role"] == "user" and NORMAL in json.dumps(final[0], ensure_ascii=False)
    answer = final[-1]["content"]
    answer = answer if isinstance(answer, str) else "".join(part["text"] for part in answer)
    assert len(answer) > 100 and server.stats.requests == 1
    assert len(outputs) > 3  # the answer came in pieces (the server sends 8 characters per event)

    crisis, _ = client.predict(CRISIS, "zh", api_name="/chat")
    reply = crisis[-1]["content"]
    reply = reply if isinstance(reply, str) else "".join(part["text"] for part in reply)
    assert "12356" in reply and server.stats.requests == 1  # counted at the server: the model was not asked
    assert len(crisis) == 4  # the session kept the first turn

    assert client.predict(api_name="/reset")[0] == []
    after, _ = client.predict(NORMAL, "zh", api_name="/chat")
    assert len(after) == 2 and server.stats.requests == 2
    levels = [json.loads(line)["level"] for line in trace.read_text(encoding="utf-8").splitlines()]
    assert levels == ["none", "crisis", "none"]
    log = "".join(output)  # the start-up log speaks to a CLI user, not to a Python caller of launch()
    assert f"cbt-llm app: serving on {url}" in log and "--share adds a public link" in log
    assert "launch()" not in log and "share=True" not in log


def test_the_cli_writes_a_space_folder(tmp_path, capsys):
    assert main(["app", "--model_name_or_path", "cbt-llm/tiny-random-llama", "--export_space",
                 str(tmp_path / "space")]) == 0
    assert f"wrote the Space folder {tmp_path / 'space'}" in capsys.readouterr().out
    app_py = (tmp_path / "space" / "app.py").read_text(encoding="utf-8")
    assert "model_name_or_path='cbt-llm/tiny-random-llama'" in app_py and "model=" not in app_py


# ------------------------------------------------------------------- what a Space export publishes
def _adapter_as_training_leaves_it(root: Path, base: str) -> Path:
    """An adapter folder as `cbt-llm train` leaves it, with everything that must not reach a Space: checkpoints
    and trainer state, a hidden .env, symbolic links to files outside, and this machine's paths in the run files."""
    adapter = root / "outputs" / "run"
    checkpoint = adapter / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    for name in ("optimizer.pt", "rng_state.pth", "scheduler.pt", "training_args.bin", "adapter_model.safetensors"):
        (checkpoint / name).write_bytes(b"trainer state")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "peft_type": "LORA",
                                                             "r": 4}), encoding="utf-8")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    (adapter / "tokenizer.json").write_text("{}", encoding="utf-8")
    (adapter / "training_args.bin").write_bytes(b"a pickle")
    (adapter / ".env").write_text("OPENAI_API_KEY=sk-from-the-env-file\n", encoding="utf-8")
    (root / "private.txt").write_text("a file from outside the adapter\n", encoding="utf-8")
    (adapter / "notes.txt").symlink_to(root / "private.txt")
    (adapter / "more").symlink_to(root, target_is_directory=True)
    recipe = {"model_name_or_path": base, "output_dir": str(adapter), "dataset_name": str(root / "data" / "cbt_qa"),
              "dataset_data_files": [str(root / "data" / "records.jsonl")], "lora_r": 4, "num_train_epochs": 1,
              "learning_rate": 0.002}
    (adapter / "training_recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    (adapter / "trainer_state.json").write_text(json.dumps({
        "best_model_checkpoint": str(checkpoint), "log_history": [{"step": 1, "loss": 7.5}, {"step": 2, "loss": 7.1}]}),
        encoding="utf-8")
    (adapter / "README.md").write_text(f"---\nbase_model: {base}\nlibrary_name: peft\n---\n\n# run\n\n"
                                       f'`AutoPeftModelForCausalLM.from_pretrained("{adapter}")`\n', encoding="utf-8")
    return adapter


def test_export_space_copies_what_push_would_publish_of_an_adapter(tmp_path):
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    adapter = _adapter_as_training_leaves_it(tmp_path, str(base))
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# Report\n", encoding="utf-8")
    (report / ".env").write_text("HF_TOKEN=hf-from-the-env-file\n", encoding="utf-8")
    (report / "report.json").write_text(json.dumps({"dataset": str(tmp_path / "data" / "cbt_qa"), "n": 6, "systems": [
        {"name": "cbt-lora", "file": str(tmp_path / "predictions" / "cbt-lora.jsonl"), "adapter": str(adapter)}]}),
        encoding="utf-8")
    out = export_space(AppConfig(adapter=str(adapter), model_name_or_path="org/base-model", report_dir=str(report),
                                 export_space=str(tmp_path / "space")))
    exported = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir())
    assert exported == ["README.md", "adapter/README.md", "adapter/adapter_config.json",
                        "adapter/adapter_model.safetensors", "adapter/tokenizer.json", "adapter/trainer_state.json",
                        "adapter/training_recipe.yaml", "app.py", "report/report.json", "report/report.md",
                        "requirements.txt"]
    assert json.loads((out / "report" / "report.json").read_text(encoding="utf-8")) == {"dataset": "cbt_qa", "n": 6,
        "systems": [{"name": "cbt-lora", "file": "cbt-lora.jsonl", "adapter": "run"}]}
    assert not any(p.is_symlink() for p in out.rglob("*"))
    for path in (p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert str(tmp_path).encode() not in data, path  # no path of this machine, in any file
        assert b"from-the-env-file" not in data and b"a file from outside" not in data, path
    config = json.loads((out / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert config == {"base_model_name_or_path": "org/base-model", "peft_type": "LORA", "r": 4}
    recipe = yaml.safe_load((out / "adapter" / "training_recipe.yaml").read_text(encoding="utf-8"))
    assert (recipe["model_name_or_path"], recipe["output_dir"], recipe["dataset_name"]) == \
        ("org/base-model", "run", "cbt_qa")
    assert recipe["dataset_data_files"] == ["records.jsonl"] and recipe["lora_r"] == 4
    state = json.loads((out / "adapter" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["best_model_checkpoint"] == "checkpoint-2" and len(state["log_history"]) == 2
    assert 'from_pretrained("adapter")' in (out / "adapter" / "README.md").read_text(encoding="utf-8")
    assert (adapter / "training_args.bin").is_file() and json.loads(  # the local folder is left as it is
        (adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"] == str(base)


def test_export_space_needs_a_base_model_the_space_can_load(tmp_path):
    from cbt_llm.models.tiny import SMALL_MODEL_NAME, cache_dir

    adapter = _adapter_as_training_leaves_it(tmp_path, str(tmp_path / "models" / "base"))
    for _ in range(2):  # the refusal leaves no half-written Space folder behind, so the rerun says the same
        with pytest.raises(CbtLlmError, match="a folder on this machine that the Space cannot load .* pass "
                                              "--model_name_or_path"):
            export_space(AppConfig(adapter=str(adapter), export_space=str(tmp_path / "space")))
        assert not (tmp_path / "space").exists()

    random_base = str(cache_dir() / "models" / "small-random-llama-v2")  # cbt-llm makes it locally, on the Space too
    adapter = _adapter_as_training_leaves_it(tmp_path / "demo", random_base)
    out = export_space(AppConfig(adapter=str(adapter), export_space=str(tmp_path / "demo-space")))
    config = json.loads((out / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["base_model_name_or_path"] == SMALL_MODEL_NAME
    assert not any(random_base.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("base_url", ["https://alice:sk-secret-123@api.example.org/v1",
                                      "https://api.example.org/v1?api-key=sk-secret-123",
                                      "https://api.example.org/v1?x=1&access_token=sk-secret-123"])
def test_export_space_refuses_a_base_url_with_a_credential(tmp_path, base_url):
    out = tmp_path / "space"
    with pytest.raises(CbtLlmError, match="--base_url carries a credential .* Space secret named by --api_key_env"):
        export_space(AppConfig(model="cbt", base_url=base_url, export_space=str(out)))
    assert not out.exists()
    fine = export_space(AppConfig(model="cbt", base_url="https://api.example.org/v1?api-version=2024-06-01",
                                  export_space=str(tmp_path / "fine")))
    assert "api-version=2024-06-01" in (fine / "app.py").read_text(encoding="utf-8")
