"""The training speed options (checked against this machine before a model loads) and `--num_processes N`."""

import importlib.metadata
import importlib.util
import shlex
import sys
import warnings
from pathlib import Path

import pytest

from cbt_llm.errors import CbtLlmError
from cbt_llm.training.launch import ACCELERATE_CONFIGS, accelerate_config_path, check_launch, launch_command
from cbt_llm.training.options import check_attention, check_speed_options
from cbt_llm.training.train import parse_args, recipe_path, shipped_recipes, without_flag


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


NO_GPU = pytest.mark.skipif(_has_gpu(), reason="checks the error a machine without a CUDA GPU gives")


def check(*flags: str) -> None:
    """Parse the tiny-cpu recipe with ``flags`` and run the checks `cbt-llm train` runs before loading the model."""
    _, training_args, model_args = parse_args(["--config", "tiny-cpu", *flags])
    check_speed_options(training_args, model_args)


def test_every_option_parses_from_flags_onto_the_recipe():
    script, training, model = parse_args([
        "--config", "tiny-cpu", "--use_liger_kernel", "true", "--padding_free", "true", "--packing", "true",
        "--attn_implementation", "flash_attention_2", "--activation_checkpointing", "true",
        "--activation_checkpointing_kwargs", '{"every_n_layers": 2, "offload": true}', "--activation_offloading",
        "true", "--torch_compile", "true", "--train_sampling_strategy", "group_by_length", "--num_processes", "2",
        "--accelerate_config", "fsdp", "--dry_run"])
    assert training.use_liger_kernel and training.padding_free and training.packing and training.torch_compile
    assert training.activation_checkpointing and training.activation_offloading
    assert training.activation_checkpointing_kwargs == {"every_n_layers": 2, "offload": True}
    assert training.train_sampling_strategy == "group_by_length" and model.attn_implementation == "flash_attention_2"
    assert (script.num_processes, script.accelerate_config, script.dry_run) == (2, "fsdp", True)


@pytest.mark.parametrize("recipe", shipped_recipes())
def test_each_shipped_recipe_passes_the_checks_or_names_the_gpu_it_needs(recipe):
    try:
        _, training_args, model_args = parse_args(["--config", recipe])
    except CbtLlmError as err:  # a GPU recipe (bf16) on this CPU machine: refused before any model loads
        assert not _has_gpu() and "doesn't support bf16/gpu" in str(err)
        return
    assert training_args.use_cpu or _has_gpu()
    check_speed_options(training_args, model_args)  # raises CbtLlmError when a check fails


@pytest.mark.parametrize("flags", [
    ("--packing", "true", "--train_sampling_strategy", "group_by_length"),
    ("--activation_checkpointing", "true", "--activation_checkpointing_kwargs",
     '{"every_n_layers": 2, "offload": true, "use_reentrant": false}'),
])
def test_cpu_compatible_speed_options_on_the_cpu_recipe_pass_the_checks(flags):
    _, training_args, _ = parse_args(["--config", "tiny-cpu", *flags])
    assert getattr(training_args, flags[0].removeprefix("--")) is True  # the flag reached the recipe
    check(*flags)  # raises CbtLlmError when a check fails


@pytest.mark.parametrize("flags, message", [
    (["--padding_free", "true"], "padding_free: true needs a varlen attention implementation (attn_implementation: "
                                 "flash_attention_2"),
    (["--padding_free", "true", "--attn_implementation", "sdpa"], "not sdpa: there the whole flattened batch"),
    (["--activation_checkpointing", "false", "--activation_checkpointing_kwargs", '{"every_n_layers": 2}'],
     "activation_checkpointing_kwargs has no effect without activation_checkpointing: true"),
    (["--activation_checkpointing", "true", "--activation_checkpointing_kwargs", '{"every_n_layer": 2}'],
     "activation_checkpointing_kwargs: unknown key 'every_n_layer' (known: context_fn, debug"),
    (["--activation_checkpointing", "true", "--activation_checkpointing_kwargs", '{"every_n_layers": 0}'],
     "every_n_layers must be a whole number >= 1, not 0"),
])
def test_a_misconfigured_option_is_named_with_what_it_lacks(flags, message):
    with pytest.raises(CbtLlmError) as err:
        check(*flags)
    assert message in str(err.value)


def test_the_old_group_by_length_name_points_to_its_new_one():
    with pytest.raises(CbtLlmError, match=r"group_by_length is now train_sampling_strategy: group_by_length"):
        parse_args(["--config", "tiny-cpu", "--group_by_length", "true"])


def test_liger_fused_cross_entropy_in_a_recipe_is_refused(tmp_path):
    # liger_kernel_config is a mapping, so it comes from a YAML recipe rather than a flag.
    recipe = tmp_path / "liger.yaml"
    recipe.write_text(recipe_path("tiny-cpu").read_text(encoding="utf-8") + "use_liger_kernel: true\n"
                      "liger_kernel_config:\n  fused_linear_cross_entropy: true\n", encoding="utf-8")
    _, training_args, model_args = parse_args(["--config", str(recipe)])
    assert training_args.liger_kernel_config == {"fused_linear_cross_entropy": True}
    with pytest.raises(CbtLlmError, match="liger_kernel_config: fused_linear_cross_entropy is not supported by TRL"):
        check_speed_options(training_args, model_args)


@NO_GPU
@pytest.mark.parametrize("flags, option", [
    (["--use_liger_kernel", "true"], "use_liger_kernel"),
    (["--attn_implementation", "flash_attention_2"], "attn_implementation: flash_attention_2"),
    (["--attn_implementation", "kernels-community/flash-attn2"], "attn_implementation: kernels-community/flash-attn2"),
    (["--activation_offloading", "true"], "activation_offloading"),
])
def test_a_gpu_only_option_on_this_cpu_machine_says_so(flags, option):
    with pytest.raises(CbtLlmError, match="needs a CUDA GPU; none is available here") as err:
        check(*flags)
    assert str(err.value).startswith(option + " needs")


@pytest.mark.parametrize("implementation, module", [("flash_attention_2", "flash_attn"),
                                                    ("flash_attention_3", "flash_attn_interface"),
                                                    ("kernels-community/flash-attn2", "kernels")])
def test_flash_attention_on_a_gpu_names_the_missing_package(implementation, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(CbtLlmError, match=f"attn_implementation: {implementation} needs the {module} module"):
        check_attention(implementation, on_gpu=True)


@NO_GPU
def test_torch_compile_on_cpu_needs_a_cpp_compiler(monkeypatch, tmp_path):
    check("--torch_compile", "true")  # g++ is on this machine's PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(CbtLlmError, match=r"torch_compile \(inductor on CPU\) needs a C\+\+ compiler"):
        check("--torch_compile", "true")
    check("--torch_compile", "true", "--torch_compile_backend", "aot_eager")  # no C++ needed


def test_launch_command_on_gpus_is_accelerate_launch_with_the_chosen_config():
    argv = ["--config", "qwen2.5-7b-instruct-lora", "--num_processes", "8"]
    for name in ACCELERATE_CONFIGS:
        command = launch_command(argv, 8, name, gpu=True)
        assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
        config = Path(command[command.index("--config_file") + 1])
        assert config.name == f"{name}.yaml" and config.is_file()
        assert command[command.index("--num_processes") + 1] == "8"
        assert command[-6:] == ["-m", "cbt_llm.training.train", *argv]


def test_launch_command_on_cpu_is_torchrun_with_gloo_and_fsdp_is_accelerate_launch():
    command = launch_command(["--config", "tiny-cpu"], 2, "ddp", gpu=False)
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                       "cbt_llm.training.train", "--config", "tiny-cpu", "--ddp_backend", "gloo"]
    assert launch_command(["--ddp_backend", "mpi"], 2, "ddp", gpu=False).count("--ddp_backend") == 1
    # FSDP on a CPU: the shipped config through accelerate launch, without bf16, on a free port, over gloo.
    command = launch_command(["--config", "tiny-cpu"], 2, "fsdp", gpu=False)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert Path(command[command.index("--config_file") + 1]) == accelerate_config_path("fsdp")
    assert command[command.index("--mixed_precision") + 1] == "no"
    assert command[command.index("--main_process_port") + 1] == "0"
    assert command[-6:] == ["-m", "cbt_llm.training.train", "--config", "tiny-cpu", "--ddp_backend", "gloo"]


def cpu_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_a_launch_needs_a_device_for_each_process():
    import torch

    with pytest.raises(CbtLlmError, match="num_processes must be 1 or more, not 0"):
        check_launch(0, "ddp", gpu=False)
    check_launch(1, "ddp", gpu=False)
    too_many = torch.cuda.device_count() + 1
    with pytest.raises(CbtLlmError, match=f"num_processes {too_many} needs as many CUDA GPUs; this machine has "
                                          f"{too_many - 1}"):
        check_launch(too_many, "ddp", gpu=True)
    with pytest.raises(CbtLlmError, match=rf"num_processes {cpu_cores() + 1} needs as many CPU cores \(a CPU run "
                                          rf"puts one worker on each\); this machine has {cpu_cores()}"):
        check_launch(cpu_cores() + 1, "ddp", gpu=False)


def train_error(capsys, *flags: str) -> str:
    """What `cbt-llm train FLAGS` prints when it fails: one line, no traceback, nothing loaded or started."""
    from cbt_llm.training.train import cli_main

    assert cli_main(list(flags)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("cbt-llm train: error: ")
    return err


def test_qlora_under_fsdp_or_zero3_needs_float_storage_and_8_bit_is_refused(capsys):
    qlora = ["--config", "qwen2.5-7b-instruct-qlora", "--use_cpu", "--num_processes", "2"]
    err = train_error(capsys, *qlora, "--accelerate_config", "fsdp", "--bnb_4bit_quant_storage", "uint8")
    assert ("accelerate_config fsdp (FSDP) with QLoRA (load_in_4bit) needs bnb_4bit_quant_storage: bfloat16 (the "
            "model's dtype), not uint8: 4-bit weights stored as uint8 are not sharded") in err
    err = train_error(capsys, *qlora, "--accelerate_config", "fsdp", "--load_in_4bit", "false", "--load_in_8bit")
    assert "accelerate_config fsdp (FSDP) cannot shard 8-bit weights (load_in_8bit)" in err
    from trl import ModelConfig

    from cbt_llm.training.launch import check_quantized_sharding

    # The shipped QLoRA recipe stores its 4-bit weights as bfloat16, which FSDP and ZeRO-3 can shard.
    _, _, shipped = parse_args(["--config", "qwen2.5-7b-instruct-qlora", "--use_cpu"])
    check_quantized_sharding("FSDP", "fsdp", shipped)
    check_quantized_sharding("DEEPSPEED", "zero3", shipped)
    with pytest.raises(CbtLlmError, match=r"accelerate_config zero3 \(DeepSpeed ZeRO\) with QLoRA"):
        check_quantized_sharding("DEEPSPEED", "zero3", ModelConfig(load_in_4bit=True))
    check_quantized_sharding("MULTI_GPU", "ddp", ModelConfig(load_in_8bit=True))  # DDP keeps a whole copy per GPU


def test_too_many_processes_and_deepspeed_configs_fail_before_the_model_loads(capsys, monkeypatch):
    err = train_error(capsys, "--config", "tiny-cpu", "--num_processes", str(cpu_cores() + 1))
    assert f"num_processes {cpu_cores() + 1} needs as many CPU cores" in err
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    err = train_error(capsys, "--config", "tiny-cpu", "--num_processes", "2", "--accelerate_config", "zero3")
    assert ('accelerate_config zero3 needs the deepspeed module, which is not installed: pip install '
            '"cbt-llm[deepspeed]" (or pip install deepspeed)') in err
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    installed = importlib.metadata.version
    with monkeypatch.context() as patch:  # accelerate at the floor of setup.cfg, before FSDP v2
        patch.setattr(importlib.metadata, "version", lambda name: "1.4.0" if name == "accelerate" else installed(name))
        err = train_error(capsys, "--config", "tiny-cpu", "--num_processes", "2", "--accelerate_config", "fsdp")
    assert "accelerate_config fsdp (FSDP v2) needs accelerate>=1.6.0; 1.4.0 is installed: pip install -U accelerate" in err
    if find_spec("deepspeed") is not None and not _has_gpu():
        err = train_error(capsys, "--config", "tiny-cpu", "--num_processes", "2", "--accelerate_config", "zero3")
        assert "accelerate_config zero3 (DeepSpeed) needs CUDA GPUs; on a CPU use accelerate_config fsdp" in err


def test_shipped_accelerate_configs_load_and_unknown_ones_are_listed(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    for name in ACCELERATE_CONFIGS:
        config = ClusterConfig.from_yaml_file(accelerate_config_path(name))
        assert config.num_machines == 1 and config.mixed_precision == "bf16"
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    assert accelerate_config_path(str(own)) == own
    with pytest.raises(CbtLlmError, match=r"accelerate_config 'nope': .* \(ddp, fsdp, zero3, zero3-offload\)"):
        accelerate_config_path("nope")


@pytest.mark.parametrize("name, offload", [("zero3", "none"), ("zero3-offload", "cpu")])
def test_zero3_configs_pass_accelerates_launcher_and_deepspeeds_own_config_parser(name, offload):
    """ZeRO-3 is not run on this CPU machine (DeepSpeed needs CUDA here): its configs go through the same parsers."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, patch_environment
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_command_parser().parse_args(["--config_file", str(accelerate_config_path(name)), "--num_processes",
                                               "8", "-m", "cbt_llm.training.train"])
    args, defaults, _ = _validate_launch_command(args)
    assert args.use_deepspeed and not args.use_fsdp and args.mixed_precision == "bf16"
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)  # what `accelerate launch` hands each worker
    with patch_environment(**{key: value for key, value in env.items() if key.startswith("ACCELERATE_")}):
        plugin = DeepSpeedPlugin()
    zero = plugin.deepspeed_config["zero_optimization"]
    assert plugin.zero_stage == 3 and zero["stage3_gather_16bit_weights_on_model_save"]
    assert zero["offload_param"]["device"] == zero["offload_optimizer"]["device"] == offload
    pytest.importorskip("deepspeed", reason='DeepSpeed\'s parser needs pip install "cbt-llm[deepspeed]"')
    from deepspeed.runtime.config import DeepSpeedConfig

    # The Trainer fills the "auto" fields from the recipe (here qwen2.5-7b-instruct-lora's: 2 x 8 per GPU).
    filled = {**plugin.deepspeed_config, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 8,
              "train_batch_size": 16, "gradient_clipping": 1.0, "bf16": {"enabled": True}}
    config = DeepSpeedConfig(filled)
    assert config.zero_optimization_stage == 3 and config.train_batch_size == 16
    assert config.zero_config.offload_param.device == config.zero_config.offload_optimizer.device == offload


def test_dry_run_flag_is_dropped_from_the_printed_command():
    assert without_flag(["--config", "x", "--dry_run", "--max_steps", "2"], "--dry_run") == [
        "--config", "x", "--max_steps", "2"]
    assert without_flag(["--dry_run", "true", "--config", "x"], "--dry_run") == ["--config", "x"]
    assert without_flag(["--config", "x"], "--dry_run") == ["--config", "x"]
    assert without_flag(["--dry-run", "--config", "x"], "--dry_run") == ["--config", "x"]


@pytest.mark.slow
def test_a_rejected_option_fails_before_the_model_loads_without_a_traceback(cli, tmp_path):
    result = cli("train", "--config", "tiny-cpu", "--output_dir", tmp_path / "out", "--padding_free", "true")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cbt-llm train: error: padding_free: true needs a varlen attention implementation" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dry_run_prints_the_launch_command_and_trains_nothing(cli, tmp_path):
    result = cli("train", "--config", "tiny-cpu", "--output_dir", tmp_path / "out", "--num_processes", "2",
                 "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    command = shlex.split(result.stdout.strip().splitlines()[-1])
    assert command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert "--dry_run" not in command and command[-2:] == ["--ddp_backend", "gloo"]
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- `cbt-llm train --help`
def test_train_help_is_short_names_the_recipes_and_points_to_every_option(capsys):
    from cbt_llm.cli import main

    assert main(["train", "--help"]) == 0
    short = capsys.readouterr().out
    assert short.splitlines()[0] == "usage: cbt-llm train --config RECIPE [--FIELD VALUE ...]"
    assert len(short.splitlines()) < 50 and "--per_device_train_batch_size" not in short
    assert all(f"  {name} " in short for name in shipped_recipes()) and "--config RECIPE" in short
    assert short.rstrip().endswith("cbt-llm train --help-all")
    assert main(["train", "-h"]) == 0 and capsys.readouterr().out == short
    assert main(["train", "--config", "tiny-cpu", "--help-all"]) == 0
    full = capsys.readouterr().out
    assert full.startswith(short) and "--per_device_train_batch_size" in full and len(full.splitlines()) > 500


# ------------------------------------------- transformers' deprecated gradient-checkpointing names, nowhere
CHECKPOINTING_FUTURE_WARNING = r".*`(is_)?gradient_checkpointing\w*` is deprecated"


@pytest.mark.parametrize("flags", [("--config", "tiny-cpu"), ("--config", "tiny-demo"), ("--use_cpu", "true"),
                                   ("--config", "qwen2.5-7b-instruct-lora", "--use_cpu", "--bf16", "false"),
                                   ("--config", "tiny-cpu", "--activation_checkpointing", "false")])
def test_parsing_a_recipe_uses_only_the_new_checkpointing_names(flags):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", CHECKPOINTING_FUTURE_WARNING, FutureWarning)
        _, training, _ = parse_args(list(flags))
    # TRL's default (on) under its new name, unless the recipe or a flag says otherwise
    assert training.activation_checkpointing == ("--activation_checkpointing" not in flags)


def test_the_old_checkpointing_name_still_works_and_is_the_only_one_warned_about():
    with pytest.warns(FutureWarning, match="`gradient_checkpointing` is deprecated"):
        _, training, _ = parse_args(["--config", "tiny-cpu", "--gradient_checkpointing", "false"])
    assert training.activation_checkpointing is False


def test_loading_an_adapter_and_building_the_trainer_warn_nothing_about_checkpointing(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from cbt_llm.models.loading import load_model_and_tokenizer
    from cbt_llm.models.tiny import tiny_model_path
    from cbt_llm.training.train import build_trainer

    with warnings.catch_warnings():  # making the adapter here is not what is checked
        warnings.simplefilter("ignore")
        lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_path()),
                              LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    lora.save_pretrained(tmp_path / "adapter")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", CHECKPOINTING_FUTURE_WARNING, FutureWarning)
        model, _ = load_model_and_tokenizer(adapter=str(tmp_path / "adapter"), device="cpu")
        trainer = build_trainer(*parse_args(["--config", "tiny-cpu", "--output_dir", str(tmp_path / "out"),
                                             "--max_steps", "1", "--report_to", "none"]))
    assert type(model).__name__ == "PeftModelForCausalLM" and trainer.args.activation_checkpointing
