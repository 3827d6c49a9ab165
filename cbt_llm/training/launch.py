"""``cbt-llm train --num_processes N``: the same command, relaunched as N processes.

On CUDA GPUs the launcher is ``accelerate launch`` with a shipped config (``ddp``, ``fsdp``, ``zero3`` in
``cbt_llm/recipes/accelerate``) or a config file. On a CPU, data-parallel runs use torchrun with the gloo
backend, which shards the data across processes (``accelerate launch --cpu`` started processes that each
trained alone); FSDP runs use ``accelerate launch`` with the same config, without mixed precision, and
gloo (``enable_fsdp_on_cpu`` lets accelerate shard CPU tensors). DeepSpeed runs need CUDA GPUs.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cbt_llm.errors import CbtLlmError
from cbt_llm.training.options import require

if TYPE_CHECKING:
    from trl import ModelConfig

TRAIN_MODULE = "cbt_llm.training.train"
ACCELERATE_CONFIGS = ("ddp", "fsdp", "zero3", "zero3-offload")
# What a config's distributed_type needs beyond accelerate (module, pip hint).
CONFIG_NEEDS = {"DEEPSPEED": ("deepspeed", 'pip install "cbt-llm[deepspeed]" (or pip install deepspeed)')}
SHARDED = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed ZeRO"}  # distributed types that shard the base model's weights
FLOAT_STORAGE = ("bfloat16", "float16", "float32")
FSDP2_ACCELERATE = "1.6.0"  # the first accelerate with FSDP v2 (fsdp_version: 2)


def launched() -> bool:
    """Whether this process is one of a launch's workers (torchrun and accelerate launch set LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def accelerate_config_path(name_or_path: str) -> Path:
    """A shipped accelerate config by name, or a config file by path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = resources.files("cbt_llm") / "recipes" / "accelerate" / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise CbtLlmError(f"accelerate_config {name_or_path!r}: not a file, and not one of the shipped configs "
                      f"({', '.join(ACCELERATE_CONFIGS)})")


def distributed_type(accelerate_config: str) -> str:
    """The config's ``distributed_type`` (MULTI_GPU, FSDP, DEEPSPEED, ...), read by accelerate's own loader."""
    from accelerate.commands.config.config_args import load_config_from_file

    path = accelerate_config_path(accelerate_config)
    try:
        config = load_config_from_file(str(path))
    except (ValueError, TypeError, KeyError) as err:
        raise CbtLlmError(f"accelerate_config {path}: accelerate cannot read it: {err}") from None
    return str(config.distributed_type).rsplit(".", 1)[-1]


def launch_command(argv: Sequence[str], num_processes: int, accelerate_config: str, gpu: bool) -> list[str]:
    """The command that runs ``cbt-llm train ARGV`` as ``num_processes`` workers, on GPUs or on the CPU."""
    entry = ["-m", TRAIN_MODULE, *argv]
    kind = distributed_type(accelerate_config)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(accelerate_config_path(accelerate_config)), "--num_processes", str(num_processes)]
    if gpu:
        return [*accelerate, *entry]
    backend = [] if "--ddp_backend" in argv else ["--ddp_backend", "gloo"]
    if kind == "FSDP":  # CPU tensors have no bf16 autocast to speak of; a free port lets several runs share a machine
        return [*accelerate, "--mixed_precision", "no", "--main_process_port", "0", *entry, *backend]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes),
            *entry, *backend]


def device_count(gpu: bool) -> tuple[int, str]:
    """How many workers this machine has room for: its CUDA GPUs, or on a CPU run its usable cores."""
    if gpu:
        import torch

        return torch.cuda.device_count(), "CUDA GPUs"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores, "CPU cores (a CPU run puts one worker on each)"


def check_launch(num_processes: int, accelerate_config: str, gpu: bool, model_args: ModelConfig | None = None) -> None:
    """The config readable, its packages installed, a device per process and the model shardable, before anything starts."""
    if num_processes < 1:
        raise CbtLlmError(f"num_processes must be 1 or more, not {num_processes}")
    kind = distributed_type(accelerate_config)
    if model_args is not None and num_processes > 1:
        check_quantized_sharding(kind, accelerate_config, model_args)
    module, install = CONFIG_NEEDS.get(kind, (None, ""))
    require(f"accelerate_config {accelerate_config}", module=module, install=install)
    if kind == "FSDP":
        check_fsdp2_support(accelerate_config)
    if kind == "DEEPSPEED" and not gpu:
        raise CbtLlmError(f"accelerate_config {accelerate_config} (DeepSpeed) needs CUDA GPUs; on a CPU use "
                          f"accelerate_config fsdp (sharded) or ddp")
    have, what = device_count(gpu)
    if have < num_processes:
        raise CbtLlmError(f"num_processes {num_processes} needs as many {what}; this machine has {have}")


def check_fsdp2_support(accelerate_config: str) -> None:
    """FSDP (v2, ``fully_shard``) configs need accelerate 1.6 or later; older releases know FSDP1 only."""
    from importlib.metadata import version

    from packaging.version import Version

    if Version(version("accelerate")) < Version(FSDP2_ACCELERATE):
        raise CbtLlmError(f"accelerate_config {accelerate_config} (FSDP v2) needs accelerate>={FSDP2_ACCELERATE}; "
                          f"{version('accelerate')} is installed: pip install -U accelerate")


def check_quantized_sharding(kind: str, accelerate_config: str, model_args: ModelConfig) -> None:
    """QLoRA under FSDP or ZeRO-3: only 4-bit weights stored in a float dtype can be sharded."""
    if kind not in SHARDED or not (model_args.load_in_4bit or model_args.load_in_8bit):
        return
    option = f"accelerate_config {accelerate_config} ({SHARDED[kind]})"
    if model_args.load_in_8bit:
        raise CbtLlmError(f"{option} cannot shard 8-bit weights (load_in_8bit); use load_in_4bit with "
                          f"bnb_4bit_quant_storage: bfloat16, or accelerate_config ddp")
    if model_args.bnb_4bit_quant_storage not in FLOAT_STORAGE:
        raise CbtLlmError(f"{option} with QLoRA (load_in_4bit) needs bnb_4bit_quant_storage: bfloat16 (the "
                          f"model's dtype), not {model_args.bnb_4bit_quant_storage or 'the default (uint8)'}: "
                          f"4-bit weights stored as uint8 are not sharded")


def relaunch(argv: Sequence[str], num_processes: int, accelerate_config: str, gpu: bool, dry_run: bool) -> int:
    """Print the launch command (``dry_run``) or run it and return its exit status (checked by ``check_launch``)."""
    import subprocess

    if num_processes == 1:
        command = [sys.executable, "-m", TRAIN_MODULE, *argv]
    else:
        command = launch_command(argv, num_processes, accelerate_config, gpu)
    if dry_run:
        print(shlex.join(command))
        return 0
    return subprocess.run(command, check=False).returncode


def enable_fsdp_on_cpu() -> None:
    """In a worker launched with an FSDP config that trains on the CPU (use_cpu), let accelerate shard over gloo.

    accelerate turns a launch's FSDP plugin on only for accelerator process groups (MULTI_GPU and its
    kin) and leaves CPU processes (MULTI_CPU) in plain data parallelism; FSDP2's ``fully_shard`` itself
    runs on CPU tensors over gloo. This makes the CPU state take the plugin the same way.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    init = AcceleratorState.__init__
    if getattr(init, "cpu_fsdp", False):  # already let through
        return

    def init_with_cpu_fsdp(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    init_with_cpu_fsdp.cpu_fsdp = True
    AcceleratorState.__init__ = init_with_cpu_fsdp
