"""``cbt-llm train --num_processes N``: the same command, relaunched as N processes.

On CUDA GPUs the launcher is ``accelerate launch`` with a shipped config (``ddp``, ``fsdp``, ``zero3`` in
``cbt_llm/recipes/accelerate``) or a config file; on a CPU it is torchrun with the gloo backend, which
shards the data across processes (``accelerate launch --cpu`` started processes that each trained alone).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from cbt_llm.errors import CbtLlmError
from cbt_llm.training.options import require

TRAIN_MODULE = "cbt_llm.training.train"
ACCELERATE_CONFIGS = ("ddp", "fsdp", "zero3")
# What a config needs beyond accelerate (module, pip hint).
CONFIG_NEEDS = {"zero3": ("deepspeed", "pip install deepspeed")}


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


def launch_command(argv: Sequence[str], num_processes: int, accelerate_config: str, gpu: bool) -> list[str]:
    """The command that runs ``cbt-llm train ARGV`` as ``num_processes`` workers, on GPUs or on the CPU."""
    entry = ["-m", TRAIN_MODULE, *argv]
    if gpu:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(accelerate_config_path(accelerate_config)), "--num_processes", str(num_processes), *entry]
    if accelerate_config != "ddp":
        raise CbtLlmError(f"accelerate_config {accelerate_config} needs CUDA GPUs; on a CPU --num_processes runs "
                          f"data-parallel workers with torchrun and gloo (accelerate_config: ddp)")
    backend = [] if "--ddp_backend" in argv else ["--ddp_backend", "gloo"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes),
            *entry, *backend]


def check_launch(num_processes: int, accelerate_config: str, gpu: bool) -> None:
    """Enough GPUs for the processes, and the packages the config needs, before anything starts."""
    if num_processes < 1:
        raise CbtLlmError(f"num_processes must be 1 or more, not {num_processes}")
    if not gpu:
        return
    import torch

    if torch.cuda.device_count() < num_processes:
        raise CbtLlmError(f"num_processes {num_processes} needs as many CUDA GPUs; this machine has "
                          f"{torch.cuda.device_count()}")
    module, install = CONFIG_NEEDS.get(accelerate_config, (None, ""))
    require(f"accelerate_config {accelerate_config}", module=module, install=install)


def relaunch(argv: Sequence[str], num_processes: int, accelerate_config: str, gpu: bool, dry_run: bool) -> int:
    """Print the launch command (``dry_run``) or run it and return its exit status."""
    import subprocess

    check_launch(num_processes, accelerate_config, gpu)
    if num_processes == 1:
        command = [sys.executable, "-m", TRAIN_MODULE, *argv]
    else:
        command = launch_command(argv, num_processes, accelerate_config, gpu)
    if dry_run:
        print(shlex.join(command))
        return 0
    return subprocess.run(command, check=False).returncode
