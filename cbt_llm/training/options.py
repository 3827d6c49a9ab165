"""The recipe's speed and memory options, checked against this machine before any model is loaded.

Each check names the option and what is missing (a GPU, a package, a companion setting), so a recipe
fails in a second with one line instead of deep inside the trainer, or trains without the option.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
from typing import TYPE_CHECKING

from cbt_llm.errors import CbtLlmError

if TYPE_CHECKING:
    from trl import ModelConfig, SFTConfig

# Flash-attention implementations that transformers runs from an installed package (module, pip hint).
FLASH_PACKAGES = {
    "flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation"),
    "flash_attention_3": ("flash_attn_interface", "install flash-attn-3 (the hopper/ build of flash-attention)"),
    "flash_attention_4": ("flash_attn", "pip install flash-attn-4"),
}
# activation_checkpointing_kwargs keys that transformers handles itself, and the one that torch's checkpoint() takes
# through **kwargs; the rest must be named parameters of checkpoint().
CHECKPOINTING_KEYS = {"every_n_layers", "offload", "preserve_rng_state"}


def use_gpu(training_args: SFTConfig) -> bool:
    """Whether this run trains on a CUDA GPU."""
    import torch

    return torch.cuda.is_available() and not training_args.use_cpu


def require(option: str, *, gpu: bool = False, on_gpu: bool = True, module: str | None = None,
            install: str = "", cpu_hint: str = "") -> None:
    """Raise the one-line error for ``option`` when it needs a GPU this run lacks or a module that is not installed."""
    if gpu and not on_gpu:
        raise CbtLlmError(f"{option} needs a CUDA GPU; none is available here (or use_cpu is set).{cpu_hint}")
    if module is not None and importlib.util.find_spec(module) is None:
        raise CbtLlmError(f"{option} needs the {module} module, which is not installed: {install}")


def check_speed_options(training_args: SFTConfig, model_args: ModelConfig) -> None:
    """Check every speed option of a run against the installed stack and the device, before loading anything."""
    on_gpu = use_gpu(training_args)
    check_quantization(model_args, on_gpu)
    check_attention(model_args.attn_implementation, on_gpu)
    check_padding_free(training_args, model_args)
    check_liger(training_args, on_gpu)
    check_checkpointing(training_args, on_gpu)
    check_compile(training_args, on_gpu)


def check_quantization(model_args: ModelConfig, on_gpu: bool) -> None:
    """QLoRA's 4/8-bit base model: bitsandbytes kernels, CUDA only."""
    if model_args.load_in_4bit or model_args.load_in_8bit:
        require("QLoRA (load_in_4bit/load_in_8bit)", gpu=True, on_gpu=on_gpu, module="bitsandbytes",
                install="pip install bitsandbytes",
                cpu_hint=" Use a LoRA recipe such as qwen2.5-7b-instruct-lora or tiny-cpu instead.")


def is_flash(attn_implementation: str | None) -> bool:
    """Whether an attention implementation is a flash-attention kernel (varlen: it reads packed position ids)."""
    return attn_implementation is not None and "flash" in attn_implementation


def check_attention(attn_implementation: str | None, on_gpu: bool) -> None:
    """Flash attention: a CUDA GPU and its package (or, for a Hub kernel such as kernels-community/flash-attn2, kernels)."""
    if not is_flash(attn_implementation):
        return
    option = f"attn_implementation: {attn_implementation}"
    if "/" in attn_implementation:  # a Hub kernel, fetched by the kernels package when the model loads
        require(option, gpu=True, on_gpu=on_gpu, module="kernels", install="pip install kernels (it downloads "
                "the kernel from the Hub when the model loads)")
    else:
        module, install = FLASH_PACKAGES.get(attn_implementation, ("flash_attn", "pip install flash-attn"))
        require(option, gpu=True, on_gpu=on_gpu, module=module, install=install)


def check_padding_free(training_args: SFTConfig, model_args: ModelConfig) -> None:
    """``padding_free`` flattens a batch into one row: only varlen (flash) attention keeps that as cheap as its parts."""
    if not training_args.padding_free:
        return
    if not is_flash(model_args.attn_implementation):
        raise CbtLlmError(
            f"padding_free: true needs a varlen attention implementation (attn_implementation: flash_attention_2, "
            f"flash_attention_3 or a kernels-community flash-attn kernel), not "
            f"{model_args.attn_implementation or 'the default (sdpa)'}: there the whole flattened batch would be "
            f"one row under a dense block-diagonal mask. Without flash attention use packing: true instead.")
    if not training_args.packing and training_args.max_length is not None:
        raise CbtLlmError(f"padding_free: true without packing does not truncate rows to max_length "
                          f"({training_args.max_length}): set packing: true, or max_length: null on data already "
                          f"short enough.")


def check_liger(training_args: SFTConfig, on_gpu: bool) -> None:
    """Liger's Triton kernels: the liger-kernel package on a CUDA GPU; its fused cross-entropy is TRL's already."""
    if not training_args.use_liger_kernel:
        return
    if (training_args.liger_kernel_config or {}).get("fused_linear_cross_entropy"):
        raise CbtLlmError("liger_kernel_config: fused_linear_cross_entropy is not supported by TRL's SFTTrainer, "
                          "which computes the loss with its own fused LM head (no full logits); leave it out.")
    require("use_liger_kernel", gpu=True, on_gpu=on_gpu, module="liger_kernel", install="pip install liger-kernel")


def check_checkpointing(training_args: SFTConfig, on_gpu: bool) -> None:
    """Activation checkpointing's variants (every_n_layers, offload, torch checkpoint() keywords) and TRL's offloading."""
    kwargs = training_args.activation_checkpointing_kwargs or {}
    if kwargs and not training_args.activation_checkpointing:
        raise CbtLlmError("activation_checkpointing_kwargs has no effect without activation_checkpointing: true")
    from torch.utils.checkpoint import checkpoint

    known = CHECKPOINTING_KEYS | set(inspect.signature(checkpoint).parameters) - {"function", "args", "kwargs"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise CbtLlmError(f"activation_checkpointing_kwargs: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    every = kwargs.get("every_n_layers", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise CbtLlmError(f"activation_checkpointing_kwargs: every_n_layers must be a whole number >= 1, not {every!r}")
    if training_args.activation_offloading:
        require("activation_offloading", gpu=True, on_gpu=on_gpu,
                cpu_hint=" On a CPU the activations are in host memory already.")


def check_compile(training_args: SFTConfig, on_gpu: bool) -> None:
    """``torch_compile`` with inductor: Triton on a GPU, a C++ compiler on a CPU."""
    if not training_args.torch_compile or training_args.torch_compile_backend not in (None, "inductor"):
        return
    if on_gpu:
        require("torch_compile (inductor on CUDA)", module="triton", install="pip install triton")
    elif not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
        raise CbtLlmError("torch_compile (inductor on CPU) needs a C++ compiler: install g++ or clang++, or set CXX")
