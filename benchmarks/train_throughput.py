"""Training throughput of each speed option of a recipe, alone and combined, against the measured matmul limit.

    python benchmarks/train_throughput.py [--epochs 3] [--batch-size 4] [--only NAME,...] [--skip-tiny]

Every row trains with TRL's SFTTrainer and the option's recipe settings (the same fields a recipe sets), after
the same checks `cbt-llm train` makes: an option this machine lacks is printed as skipped, with that check's
message. The last row of each table combines, from each group of alternatives (batch shape, kernels,
compilation; not the memory options, which add work), the option that beat the baseline alone.

- CPU: the tiny model on the bundled sample, LoRA r=16 on all linear layers plus lm_head (the tiny-cpu recipe).
- CUDA (skipped without one): Qwen2.5-7B's architecture with random bf16 weights (no download), the
  qwen2.5-7b-instruct-lora recipe's LoRA (r=16, all linear layers), random-token rows of 2048 tokens.

Columns: trained (non-padding) tokens per second after two warm-up steps; peak memory (CUDA: allocated by
torch; CPU: the process's peak resident set); model TFLOP/s and MFU against the matrix-product rate measured on
the same device in the same run (CUDA also against the datasheet peak). Model FLOPs per token: 4 per frozen
linear weight (forward, and backward to the activations; a frozen weight gets no gradient), 6 per trained
weight, and attention as in PaLM's appendix (12 x layers x hidden x mean sequence length); checkpointing's
recomputation is not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# name: (group, recipe fields). The first row is the baseline; a group holds alternatives that are not combined.
OPTIONS: dict[str, tuple[str, dict]] = {
    "baseline (padded batches)": ("", {}),
    "group_by_length": ("batch", {"train_sampling_strategy": "group_by_length"}),
    "packing (bfd: padding-free rows)": ("batch", {"packing": True}),
    "padding_free + flash_attention_2": ("batch", {"padding_free": True, "max_length": None,
                                                   "attn_implementation": "flash_attention_2"}),
    "activation_checkpointing": ("memory", {"activation_checkpointing": True}),
    "checkpointing every_n_layers=2": ("memory", {"activation_checkpointing": True,
                                                  "activation_checkpointing_kwargs": {"every_n_layers": 2}}),
    "checkpointing offload=true": ("memory", {"activation_checkpointing": True,
                                              "activation_checkpointing_kwargs": {"offload": True}}),
    "activation_offloading (TRL)": ("memory", {"activation_offloading": True}),
    "use_liger_kernel": ("kernels", {"use_liger_kernel": True}),
    "torch_compile": ("compile", {"torch_compile": True}),
}
# Rows that measure nothing on a CPU, with the reason printed instead.
GPU_ONLY = {"checkpointing offload=true": "on a CPU the activations are in host memory already (transformers makes "
                                          "offload a no-op there)"}
QWEN_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768, tie_word_embeddings=False)
WARMUP_STEPS = 2


def recipe(base: dict, overrides: dict):
    """(SFTConfig, ModelConfig) from one flat mapping of recipe fields, as a YAML recipe gives them."""
    from trl import ModelConfig, SFTConfig

    fields = {**base, **overrides}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return (SFTConfig(**{k: v for k, v in fields.items() if k not in model_fields}),
            ModelConfig(**{k: v for k, v in fields.items() if k in model_fields}))


def step_clock(cuda: bool):
    """A callback that records (time, trained tokens so far) at the end of every optimizer step."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        marks: list[tuple[float, int]] = []

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

    clock = StepClock()
    clock.marks = []
    return clock


def reset_peak_memory(cuda: bool) -> None:
    """Start a fresh peak: torch's allocator on CUDA, the process's resident-set high-water mark on Linux CPUs."""
    import torch

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    elif Path("/proc/self/clear_refs").exists():
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gib(cuda: bool) -> float | None:
    """Peak memory since ``reset_peak_memory``, in GiB (None where the platform does not say)."""
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return None


def flops_per_token(model, seq_len: float) -> float:
    """Model FLOPs per trained token (see the module docstring); PEFT's frozen copy of a saved module is skipped."""
    import torch

    frozen = trained = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "original_module" not in name:
            if module.weight.requires_grad:
                trained += module.weight.numel()
            else:
                frozen += module.weight.numel()
    config = model.config
    return 4 * frozen + 6 * trained + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def measure(make_trainer: Callable, base: dict, overrides: dict, cuda: bool, seq_len: float) -> dict:
    """Train one configuration: its steady tokens/s, peak memory and model FLOPs per token (a check's error propagates)."""
    import gc

    from cbt_llm.training.options import check_speed_options

    training_args, model_args = recipe(base, overrides)
    check_speed_options(training_args, model_args)
    trainer = make_trainer(training_args, model_args)
    clock = step_clock(cuda)
    trainer.add_callback(clock)
    reset_peak_memory(cuda)
    trainer.train()
    (start, seen), (end, total) = clock.marks[WARMUP_STEPS - 1], clock.marks[-1]
    row = {"tokens_per_s": (total - seen) / (end - start), "peak_gib": peak_memory_gib(cuda),
           "per_token": flops_per_token(trainer.model, seq_len)}
    del trainer  # a 7B model per row would not fit next to the next one
    gc.collect()
    return row


def matmul_tflops(device: str, dtype_name: str, size: int, repeats: int) -> float:
    """The matrix-product rate this device reaches on random data: the ceiling for the training rows."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def combined(results: dict) -> dict:
    """From each speed group, the option that beat the baseline alone by the widest margin, merged into one recipe.

    The memory group is left out: checkpointing and offloading add work, so a row of theirs that beats the baseline
    is noise, and they are for fitting a model, not for speed.
    """
    baseline = results[next(iter(OPTIONS))]["tokens_per_s"]
    best: dict[str, tuple[float, str]] = {}
    for name, row in results.items():
        group = OPTIONS[name][0]
        faster = row["tokens_per_s"] > max(baseline, best.get(group, (0.0, ""))[0])
        if group not in ("", "memory") and faster:
            best[group] = (row["tokens_per_s"], name)
    return {name: OPTIONS[name][1] for _, name in best.values()}


def table(title: str, make_trainer: Callable, base: dict, only: set[str] | None, cuda: bool, seq_len: float,
          limit: float, datasheet: float | None) -> None:
    """Measure every option, then the combination, and print them side by side with the limit."""
    from cbt_llm.errors import CbtLlmError

    results, skipped = {}, []

    names = [name for name in OPTIONS if only is None or name in only or not OPTIONS[name][0]]
    for name in names:
        if not cuda and name in GPU_ONLY:
            skipped.append(f"skipped: {name}: {GPU_ONLY[name]}")
            continue
        try:
            results[name] = measure(make_trainer, base, OPTIONS[name][1], cuda, seq_len)
        except CbtLlmError as err:
            skipped.append(f"skipped: {name}: {err}")
    best = combined(results)
    if len(best) > 1:
        name = "combined: " + " + ".join(best)
        results[name] = measure(make_trainer, base, {k: v for fields in best.values() for k, v in fields.items()}, cuda,
                                seq_len)
    per_token = results[names[0]]["per_token"]
    baseline = results[names[0]]["tokens_per_s"]
    print(f"\n{title}; model FLOPs {per_token / 1e9:.3g} G per token; limit: measured matmul {limit:.3g} TFLOP/s")
    width = max(44, *(len(name) + 2 for name in results))
    header = f"{'run':<{width}}{'tokens/s':>10}{'vs base':>9}{'peak GiB':>10}{'TFLOP/s':>9}{'MFU (limit)':>13}"
    print(header + (f"{'MFU (datasheet)':>17}" if datasheet else ""))
    for name, row in results.items():
        achieved = row["tokens_per_s"] * per_token / 1e12
        peak = f"{row['peak_gib']:>10.2f}" if row["peak_gib"] is not None else f"{'n/a':>10}"
        line = (f"{name:<{width}}{row['tokens_per_s']:>10,.0f}{row['tokens_per_s'] / baseline:>8.2f}x{peak}"
                f"{achieved:>9.3g}{achieved / limit:>13.1%}")
        print(line + (f"{achieved / datasheet:>17.1%}" if datasheet else ""))
    print(f"{'limit: matmul, measured':<{width}}{limit * 1e12 / per_token:>10,.0f}{'':>19}{limit:>9.3g}{1:>13.1%}"
          + (f"{limit / datasheet:>17.1%}" if datasheet else ""))
    for line in skipped:
        print(line)


def tiny_table(epochs: float, batch_size: int, only: set[str] | None) -> None:
    """The CPU table: the tiny-cpu recipe's model and LoRA on the bundled sample."""
    import torch

    from cbt_llm.training.train import CbtScriptArguments, build_trainer

    out = tempfile.mkdtemp(prefix="cbt-bench-")
    base = dict(output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=2e-3,
                max_length=1024, activation_checkpointing=False, logging_steps=1000, save_strategy="no",
                eval_strategy="no", report_to="none", use_cpu=True, bf16=False, seed=0, disable_tqdm=True,
                include_num_input_tokens_seen="non_padding", model_name_or_path="cbt-llm/tiny-random-llama",
                use_peft=True, lora_r=16, lora_alpha=32, lora_target_modules="all-linear",
                lora_modules_to_save=["lm_head"])
    make = lambda training_args, model_args: build_trainer(CbtScriptArguments(), training_args, model_args)  # noqa: E731
    plain = make(*recipe(base, {}))
    seq_len = sum(len(ids) for ids in plain.train_dataset["input_ids"]) / len(plain.train_dataset)
    table(f"Tiny model, bundled sample, {epochs:g} epochs, batch {batch_size}, CPU ({torch.get_num_threads()} threads, "
          f"fp32)", make, base, only, False, seq_len, matmul_tflops("cpu", "float32", 2048, 5), None)


def gpu_table(steps: int, batch_size: int, seq_len: int, datasheet: float, only: set[str] | None) -> None:
    """The CUDA table: a random-weight 7B-architecture model with the LoRA recipe's settings."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config
    from trl import SFTTrainer, get_peft_config

    from cbt_llm.models.tiny import tiny_model_path

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())  # only its pad token is used: the rows are ids
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, QWEN_7B["vocab_size"], ((steps + WARMUP_STEPS) * batch_size, seq_len), generator=generator)
    ids[ids == tokenizer.pad_token_id] += 1
    rows = Dataset.from_dict({"input_ids": ids.tolist()})

    def make(training_args, model_args):
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN_7B), dtype=torch.bfloat16,
                                                     attn_implementation=model_args.attn_implementation or "sdpa")
        return SFTTrainer(model=model, args=training_args, train_dataset=rows, processing_class=tokenizer,
                          peft_config=get_peft_config(model_args))

    base = dict(output_dir=tempfile.mkdtemp(prefix="cbt-bench-"), max_steps=steps + WARMUP_STEPS,
                per_device_train_batch_size=batch_size, learning_rate=1e-4, max_length=seq_len, bf16=True,
                activation_checkpointing=False, logging_steps=1000, save_strategy="no", eval_strategy="no",
                report_to="none", seed=0, disable_tqdm=True, include_num_input_tokens_seen="non_padding",
                use_peft=True, lora_r=16, lora_alpha=32, lora_dropout=0.05, lora_target_modules="all-linear")
    limit = matmul_tflops("cuda", "bfloat16", 8192, 10)
    table(f"Qwen2.5-7B architecture (random weights), LoRA r=16 all-linear, bf16, batch {batch_size} x {seq_len}, "
          f"{torch.cuda.get_device_name()}", make, base, only, True, seq_len, limit, datasheet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3, help="epochs of each tiny CPU row")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--only", help="comma-separated option names to run (the baseline always runs)")
    parser.add_argument("--skip-tiny", action="store_true", help="only the CUDA table")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each 7B row")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="GPU bf16 dense datasheet peak, for MFU (989 for H100/H200 SXM)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - set(OPTIONS)
    if unknown:
        parser.error(f"unknown option {sorted(unknown)[0]!r}; the options are: {', '.join(list(OPTIONS)[1:])}")

    if not args.skip_tiny:
        tiny_table(args.epochs, args.batch_size, only)

    import torch

    if torch.cuda.is_available():
        gpu_table(args.steps, batch_size=4, seq_len=2048, datasheet=args.peak_tflops, only=only)
    else:
        print("\nNo CUDA device: the 7B LoRA table (liger kernels, flash-attention padding-free, offloading) is skipped.")


if __name__ == "__main__":
    main()
