"""Training with the tiny-cpu recipe: real TRL SFTTrainer + PEFT LoRA runs on the tiny local model."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cbt_llm.models.serve import free_port
from cbt_llm.training.train import parse_args, shipped_recipes

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

ROOT = Path(__file__).resolve().parents[1]


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


NO_GPU = pytest.mark.skipif(_has_gpu(), reason="checks the error a machine without a CUDA GPU gives")


def losses(output_dir, key="loss"):
    history = json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], entry[key]) for entry in history if key in entry]


@pytest.mark.slow
def test_tiny_cpu_recipe_trains_and_the_loss_falls(tiny_run):
    out, result = tiny_run.out, tiny_run.result
    assert f"trained adapter: {out}" in result.stdout
    train = [loss for _, loss in losses(out)]
    evals = [loss for _, loss in losses(out, "eval_loss")]
    assert len(train) >= 10 and len(evals) >= 2
    assert train[0] > 7.4 and train[-1] < train[0] - 0.8  # from a uniform guess (ln 2048 = 7.62) clearly down
    assert evals[-1] < evals[0]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
                 "training_recipe.yaml", "trainer_state.json", "loss_curve.png", "README.md"):
        assert (out / name).is_file(), name
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_adapter_loads_in_a_fresh_process_and_the_card_describes_it(tiny_run):
    out = tiny_run.out
    code = textwrap.dedent(f"""
        import sys, torch
        from peft import AutoPeftModelForCausalLM
        from transformers import AutoTokenizer
        model = AutoPeftModelForCausalLM.from_pretrained({str(out)!r})
        tokenizer = AutoTokenizer.from_pretrained({str(out)!r})
        ids = tokenizer.apply_chat_template([{{"role": "user", "content": "我总是失眠"}}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.no_grad():
            tuned = model(**ids).logits
            with model.disable_adapter():
                base = model(**ids).logits
        print(type(model).__name__, float((tuned - base).abs().max()), "cbt_llm" in sys.modules)
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=out.parent, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    name, diff, imported = child.stdout.split()
    assert name == "PeftModelForCausalLM" and float(diff) > 1e-3 and imported == "False"

    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "cbt-llm/tiny-random-llama"
    assert card.data.library_name == "peft" and card.data.datasets == ["cbt_qa"]
    assert card.data.pipeline_tag == "text-generation" and card.data.language == ["zh"]
    assert {"cbt", "mental-health", "lora", "sft", "trl"} <= set(card.data.tags)
    for needed in ("Not a substitute for professional help", "12356", "AutoPeftModelForCausalLM",
                   "--enable-lora", "| `lora_r` | `16` |", "![Loss curve](loss_curve.png)", "Na, Hongbin"):
        assert needed in card.text, needed


@pytest.mark.slow
def test_no_secret_reaches_logs_or_saved_files(tiny_run):
    out, result, secret = tiny_run
    assert secret not in result.stdout + result.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_two_process_ddp_on_cpu_shards_the_data_and_keeps_the_loss_scale(tmp_path, tiny_model):
    single, double = tmp_path / "single", tmp_path / "double"
    args = ["--config", "tiny-cpu", "--max_steps", "4", "--eval_strategy", "no", "--save_strategy", "no",
            "--logging_steps", "1"]
    env = {**os.environ, "PROBE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    one = subprocess.run([sys.executable, "-m", "cbt_llm.training.train", *args, "--output_dir", str(single)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), str(ROOT / "tests" / "ddp_probe.py"), *args,
                          "--output_dir", str(double), "--ddp_backend", "gloo"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    rows0, rows1 = set(ranks[0]["rows"]), set(ranks[1]["rows"])
    assert rows0 and rows1 and not rows0 & rows1  # each rank trains on its own shard
    assert len(rows0 | rows1) >= 50  # together they cover the train split (56 rows, minus exact duplicates)
    # The adapter is written once, by rank 0, next to one copy of each run file.
    assert sorted(p.name for p in double.iterdir() if p.suffix in (".safetensors", ".png", ".md")) == [
        "README.md", "adapter_model.safetensors", "loss_curve.png"]
    # Logged loss is per token, not summed over processes: the first steps agree with the one-process run.
    first_single, first_double = losses(single)[0][1], losses(double)[0][1]
    assert abs(first_double - first_single) / first_single < 0.05


def test_shipped_recipes_parse_and_flags_override_them():
    assert shipped_recipes() == ["paper-baichuan-7b", "qwen2.5-7b-instruct-dialogue-lora", "qwen2.5-7b-instruct-lora",
                                 "qwen2.5-7b-instruct-qlora", "tiny-cpu", "tiny-demo", "tiny-dialogue"]
    # The GPU recipes ask for bf16; --use_cpu lets them parse on this CPU-only machine.
    script, training, model = parse_args(["--config", "paper-baichuan-7b", "--use_cpu"])
    assert model.model_name_or_path == "baichuan-inc/Baichuan-7B" and training.trust_remote_code
    assert model.lora_target_modules == "W_pack" and script.dataset_config == "sft"  # TRL unwraps one-item lists
    assert script.system_prompt.startswith("你是一名经验丰富的心理咨询师")
    _, training, model = parse_args(["--config", "qwen2.5-7b-instruct-qlora", "--learning_rate", "1e-5", "--use_cpu"])
    assert model.load_in_4bit and training.learning_rate == 1e-5
    _, _, model = parse_args(["--config", "qwen2.5-7b-instruct-lora", "--use_cpu"])
    assert model.lora_target_modules == "all-linear" and not model.load_in_4bit
    _, _, model = parse_args(["--config", "tiny-demo"])
    assert model.model_name_or_path == "cbt-llm/small-random-llama"
    assert model.lora_modules_to_save == ["lm_head", "embed_tokens"]
    for name in ("tiny-dialogue", "qwen2.5-7b-instruct-dialogue-lora"):  # loss on every counsellor turn only
        script, training, _ = parse_args(["--config", name, "--use_cpu"])
        assert script.dataset_config == "dialogue" and training.assistant_only_loss


@NO_GPU
def test_qlora_without_a_gpu_fails_clearly(cli, tmp_path):
    result = cli("train", "--config", "qwen2.5-7b-instruct-qlora", "--output_dir", tmp_path / "q", "--use_cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "QLoRA (load_in_4bit/load_in_8bit) needs a CUDA GPU" in result.stderr


@NO_GPU
def test_a_gpu_recipe_on_a_cpu_machine_fails_clearly(cli, tmp_path):
    result = cli("train", "--config", "qwen2.5-7b-instruct-lora", "--output_dir", tmp_path / "q")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the recipe's settings were rejected: Your setup doesn't support bf16/gpu" in result.stderr


def test_unknown_recipe_lists_the_shipped_ones(cli):
    result = cli("train", "--config", "nope")
    assert result.returncode == 1 and "no recipe 'nope'" in result.stderr and "tiny-cpu" in result.stderr
