"""Training that is killed and run again: one process, two DDP processes and two FSDP (v2) processes on CPU (gloo).

Each run is the line a user types, ``cbt-llm train --config tiny-cpu ... [--num_processes 2 --accelerate_config
fsdp]``, SIGKILLed (the launcher and every worker, each in its own process group) once its first checkpoint is
complete, then started again with the same command: it resumes from that checkpoint and finishes.
"""

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cbt_llm.training.train import last_checkpoint

pytestmark = pytest.mark.slow  # every test here trains in subprocesses

CLI = str(Path(sys.executable).parent / "cbt-llm")
MAX_STEPS = 6
PROMPT = [{"role": "user", "content": "我总是失眠，担心明天的面试。"}]


@dataclass
class Resumed:
    """A run killed after its first checkpoint and run again: its folder and what each attempt printed."""

    out: Path
    killed_log: str
    rerun_log: str

    def steps_and_losses(self) -> list[tuple[int, float]]:
        history = json.loads((self.out / "trainer_state.json").read_text())["log_history"]
        return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


def descendants(pid: int) -> list:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def kill_job(process: subprocess.Popen) -> None:
    """SIGKILL the launcher's process group and each worker's (torchrun starts every worker in a new session)."""
    import psutil

    try:
        processes = descendants(process.pid)
    except psutil.NoSuchProcess:
        processes = []
    for group in {os.getpgid(p.pid) for p in processes if p.is_running()}:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=60)
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, f"orphaned after the kill: {alive}"


def kill_after_first_checkpoint(command: list[str], out: Path, log: Path, env: dict) -> str:
    """Start ``command``, SIGKILL the whole job once a checkpoint is complete, return what it printed."""
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while last_checkpoint(str(out)) is None:
                assert process.poll() is None, f"ended before its first checkpoint:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.2)
        finally:
            kill_job(process)
    return log.read_text()


def run_to_the_end(command: list[str], log: Path, env: dict) -> str:
    """Run ``command`` to its end (or kill the whole job after 600 s), check it succeeded, return what it printed."""
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                kill_job(process)
    assert process.returncode == 0, log.read_text()[-3000:]
    return log.read_text()


def killed_and_rerun(tmp_path: Path, *launch: str) -> Resumed:
    out = tmp_path / "run"
    command = [CLI, "train", "--config", "tiny-cpu", "--output_dir", str(out), *launch, "--max_steps",
               str(MAX_STEPS), "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "2",
               "--logging_steps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    killed_log = kill_after_first_checkpoint(command, out, tmp_path / "killed.log", env)
    return Resumed(out, killed_log, run_to_the_end(command, tmp_path / "rerun.log", env))


def assert_resumed_without_gaps_or_repeats(run: Resumed) -> None:
    assert "trained adapter:" not in run.killed_log  # the first attempt really was cut short
    resumed_from = int(run.rerun_log.split("cbt-llm train: resuming from ")[1].split()[0].rsplit("-", 1)[1])
    assert resumed_from >= 2 and resumed_from % 2 == 0
    logged = run.steps_and_losses()
    assert [step for step, _ in logged] == list(range(1, MAX_STEPS + 1))  # global step continues, none twice
    # The steps up to the checkpoint are the killed attempt's own (printed as the Trainer rounds them).
    printed = [ast.literal_eval(match)["loss"] for match in re.findall(r"\{'loss': [^}]*\}", run.killed_log)]
    assert len(printed) >= resumed_from
    assert [f"{loss:.4g}" for _, loss in logged[:resumed_from]] == printed[:resumed_from]
    state = json.loads((run.out / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    losses = [loss for _, loss in logged]
    assert losses[-1] < losses[0] - 0.05 and min(losses[-2:]) < min(losses[:2])  # the loss falls across the kill
    assert run.rerun_log.count("trained adapter:") == 1  # rank 0 reports, once


def fixed_input_logits(model, tokenizer):
    import torch

    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(**ids).logits


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory, tiny_model):
    return killed_and_rerun(tmp_path_factory.mktemp("fsdp"), "--num_processes", "2", "--accelerate_config", "fsdp")


def test_fsdp_run_killed_after_its_first_checkpoint_resumes_with_the_same_command(fsdp_run):
    assert_resumed_without_gaps_or_repeats(fsdp_run)


def test_fsdp_checkpoints_are_gathered_as_the_config_says(fsdp_run):
    import torch
    from safetensors.torch import load_file

    # fsdp.yaml: fsdp_state_dict_type FULL_STATE_DICT -> one gathered model file and one optimizer file per
    # checkpoint (SHARDED_STATE_DICT would write pytorch_model_fsdp_0/ with one .distcp file per process).
    checkpoint = fsdp_run.out / f"checkpoint-{MAX_STEPS}"
    names = {path.name for path in checkpoint.iterdir()}
    assert {"pytorch_model_fsdp.bin", "optimizer.bin", "adapter_model.safetensors"} <= names
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= names and not any(n.endswith("fsdp_0") for n in names)
    gathered = torch.load(checkpoint / "pytorch_model_fsdp.bin", map_location="cpu", weights_only=True)
    adapter = load_file(fsdp_run.out / "adapter_model.safetensors")
    lora = [name for name in gathered if "lora_A" in name]
    assert len(lora) == len([name for name in adapter if "lora_A" in name]) > 0
    for name in lora:  # full shapes (r x in_features), not one process's half
        short = name.replace(".default", "")
        assert gathered[name].shape == adapter[short].shape and torch.equal(gathered[name], adapter[short])


def assert_adapter_matches_the_model_in_training(out: Path, state: dict, peft_names: bool = False) -> None:
    """The adapter in ``out`` loads in this one process and gives the logits of the trained ``state`` (all ranks').

    ``peft_names``: the state names its tensors as an adapter file does (``lora_A.weight``), not as the module does.
    """
    import torch
    from peft import AutoPeftModelForCausalLM, LoraConfig, get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    saved = AutoPeftModelForCausalLM.from_pretrained(out).eval()
    config = LoraConfig.from_pretrained(out)
    training = get_peft_model(AutoModelForCausalLM.from_pretrained(config.base_model_name_or_path), config).eval()
    if peft_names:
        loaded = set_peft_model_state_dict(training, state)
        missing, unexpected = loaded.missing_keys, loaded.unexpected_keys
    else:
        missing, unexpected = training.load_state_dict(state, strict=False)
    assert not unexpected and not [name for name in missing if "lora" in name or "modules_to_save" in name]
    expected, got = fixed_input_logits(training, tokenizer), fixed_input_logits(saved, tokenizer)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4), float((got - expected).abs().max())
    with saved.disable_adapter():
        base = fixed_input_logits(saved, tokenizer)
    assert float((got - base).abs().max()) > 1e-3  # the adapter changes the output: it was trained


def test_fsdp_adapter_loads_in_one_process_and_matches_the_model_in_training(fsdp_run):
    import torch

    # The model in training, gathered from the two processes' shards into the last checkpoint.
    state = torch.load(fsdp_run.out / f"checkpoint-{MAX_STEPS}" / "pytorch_model_fsdp.bin", map_location="cpu",
                       weights_only=True)
    assert_adapter_matches_the_model_in_training(fsdp_run.out, state)


def test_fsdp_with_sharded_checkpoints_saves_one_shard_per_process_and_a_whole_adapter(tmp_path, tiny_model):
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from cbt_llm.training.launch import accelerate_config_path

    config = tmp_path / "fsdp-sharded.yaml"  # a user's copy of the shipped config, as the README describes
    config.write_text(accelerate_config_path("fsdp").read_text().replace("fsdp_state_dict_type: FULL_STATE_DICT",
                                                                           "fsdp_state_dict_type: SHARDED_STATE_DICT"))
    out = tmp_path / "run"
    run_to_the_end([CLI, "train", "--config", "tiny-cpu", "--output_dir", str(out), "--num_processes", "2",
                    "--accelerate_config", str(config), "--max_steps", "2", "--eval_strategy", "no", "--save_strategy",
                    "steps", "--save_steps", "2", "--logging_steps", "1"], tmp_path / "run.log",
                   {**os.environ, "OMP_NUM_THREADS": "1"})
    checkpoint = out / "checkpoint-2"
    for folder in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert sorted(path.name for path in (checkpoint / folder).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not (checkpoint / "pytorch_model_fsdp.bin").exists() and not (checkpoint / "adapter_model.safetensors").exists()
    dcp_to_torch_save(checkpoint / "pytorch_model_fsdp_0", tmp_path / "merged.pt")  # both shards, in one process
    state = torch.load(tmp_path / "merged.pt", map_location="cpu", weights_only=True)["model"]
    assert_adapter_matches_the_model_in_training(out, state, peft_names=True)


def test_ddp_run_killed_after_its_first_checkpoint_resumes_with_the_same_command(tmp_path, tiny_model):
    from datasets import load_dataset

    import cbt_llm  # noqa: F401 - registers cbt_qa

    run = killed_and_rerun(tmp_path, "--num_processes", "2")  # accelerate_config ddp: torchrun with gloo on CPU
    assert_resumed_without_gaps_or_repeats(run)
    # Two workers of 4 rows each take 8 rows a step: an epoch is half as many steps as one process takes.
    rows = len(load_dataset("cbt_qa", "sft", split="train"))
    history = json.loads((run.out / "trainer_state.json").read_text())["log_history"]
    assert history[0]["step"] == 1 and history[0]["epoch"] == pytest.approx(1 / -(-rows // 8), rel=1e-3)
    names = {path.name for path in (run.out / f"checkpoint-{MAX_STEPS}").iterdir()}
    assert {"adapter_model.safetensors", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth"} <= names
    assert "pytorch_model_fsdp.bin" not in names


def test_one_process_run_killed_after_its_first_checkpoint_resumes_with_the_same_command(tmp_path, tiny_model):
    run = killed_and_rerun(tmp_path)
    assert_resumed_without_gaps_or_repeats(run)
