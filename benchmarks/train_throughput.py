"""Training throughput: padding vs packing on the tiny model, and LoRA on a 7B-class model on a GPU, in one run.

    python benchmarks/train_throughput.py [--epochs 2] [--batch-size 4] [--skip-tiny]

Prints trained (non-padding) tokens per second and the share of padding tokens in the batches for
plain padded batches and for TRL's packing on the tiny model and the bundled sample (CPU). With a
CUDA device it also trains LoRA (the qwen2.5-7b-instruct-lora recipe's settings) on a random-weight
model built from the Qwen2.5-7B config (no download), with and without activation checkpointing, and
sets both against the limit: the bf16 matrix-product rate measured on the same GPU in the same run.
MFU counts model FLOPs only: 4 per frozen linear weight per token (forward, and backward to the
activations; frozen weights get no gradient), 6 per LoRA weight, and attention as in PaLM's
appendix (12 x layers x hidden x sequence per token); checkpointing's recomputation is not counted.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def batch_token_counts(trainer) -> tuple[int, int]:
    """(real tokens, all token slots) over one pass of the trainer's train dataloader."""
    real = slots = 0
    for batch in trainer.get_train_dataloader():
        slots += batch["input_ids"].numel()
        mask = batch.get("attention_mask")
        real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
    return real, slots


def run_tiny(packing: bool, epochs: float, batch_size: int) -> dict:
    from trl import ModelConfig, SFTConfig

    from cbt_llm.training.train import CbtScriptArguments, build_trainer

    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, packing=packing, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                         learning_rate=2e-3, max_length=1024, logging_steps=1000, save_strategy="no", eval_strategy="no",
                         report_to="none", use_cpu=True, bf16=False, seed=0, disable_tqdm=True)
        model = ModelConfig(model_name_or_path="cbt-llm/tiny-random-llama", use_peft=True, lora_r=16, lora_alpha=32,
                            lora_target_modules="all-linear", lora_modules_to_save=["lm_head"])
        trainer = build_trainer(CbtScriptArguments(), args, model)
        real, slots = batch_token_counts(trainer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"tokens_per_s": real * epochs / seconds, "pad_share": 1 - real / slots, "seconds": seconds}


QWEN_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768, tie_word_embeddings=False)


def matmul_tflops(size: int = 8192, repeats: int = 10) -> float:
    """The bf16 matrix-product rate this GPU reaches on random data: the ceiling for the training rows."""
    import torch

    a, b = (torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def lora_7b_model():
    """Qwen2.5-7B's architecture with random bf16 weights on the GPU, wrapped in the recipe's LoRA."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**QWEN_7B)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.enable_input_require_grads()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    return config, get_peft_model(model, lora)


def flops_per_token(model, config, seq_len: int) -> float:
    """Model FLOPs per trained token for LoRA on a frozen base (see the module docstring)."""
    import torch

    frozen = lora = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            if "lora_" in name:
                lora += module.weight.numel()
            elif not module.weight.requires_grad:
                frozen += module.weight.numel()
    return 4 * frozen + 6 * lora + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def run_7b_lora(model, checkpointing: bool, steps: int, batch_size: int, seq_len: int, vocab_size: int) -> dict:
    """Tokens/s and peak memory of ``steps`` LoRA training steps after two warm-up steps."""
    import torch

    if checkpointing:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), device="cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 2):
        if step == 2:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del optimizer
    return {"tokens_per_s": steps * batch_size * seq_len / seconds, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def gpu_table(steps: int, batch_size: int, seq_len: int, datasheet_tflops: float) -> None:
    """The 7B LoRA rows and the measured limit, printed side by side."""
    import torch

    ceiling = matmul_tflops()
    config, model = lora_7b_model()
    per_token = flops_per_token(model, config, seq_len)
    rows = [("LoRA, activation checkpointing (recipe)", run_7b_lora(model, True, steps, batch_size, seq_len,
                                                                    config.vocab_size)),
            ("LoRA, no checkpointing", run_7b_lora(model, False, steps, batch_size, seq_len, config.vocab_size))]
    print(f"\nQwen2.5-7B architecture (random weights), LoRA r=16 all-linear, bf16, sdpa, batch {batch_size} x "
          f"{seq_len}, {torch.cuda.get_device_name()}; model FLOPs {per_token / 1e9:.1f} G per token")
    print(f"{'run':<42}{'tokens/s':>10}{'peak GiB':>10}{'TFLOP/s':>9}{'MFU (datasheet)':>17}{'vs limit':>10}")
    for name, row in rows:
        achieved = row["tokens_per_s"] * per_token / 1e12
        print(f"{name:<42}{row['tokens_per_s']:>10,.0f}{row['peak_gib']:>10.1f}{achieved:>9.0f}"
              f"{achieved / datasheet_tflops:>17.1%}{achieved / ceiling:>10.1%}")
    print(f"{'limit: bf16 8192^3 matmul, measured':<42}{ceiling * 1e12 / per_token:>10,.0f}{'':>10}{ceiling:>9.0f}"
          f"{ceiling / datasheet_tflops:>17.1%}{1:>10.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--skip-tiny", action="store_true", help="only the GPU measurement")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of the 7B run")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="GPU bf16 dense datasheet peak, for MFU (989 for H100/H200 SXM)")
    args = parser.parse_args()

    if not args.skip_tiny:
        padded = run_tiny(False, args.epochs, args.batch_size)
        packed = run_tiny(True, args.epochs, args.batch_size)
        print(f"\nTiny model, bundled sample, {args.epochs:g} epochs, batch {args.batch_size}, CPU")
        print(f"{'batches':<10}{'trained tokens/s':>18}{'padding share':>15}{'vs padding':>12}")
        for name, row in (("padding", padded), ("packing", packed)):
            print(f"{name:<10}{row['tokens_per_s']:>18,.0f}{row['pad_share']:>15.1%}"
                  f"{row['tokens_per_s'] / padded['tokens_per_s']:>11.2f}x")

    import torch

    if torch.cuda.is_available():
        gpu_table(args.steps, batch_size=4, seq_len=2048, datasheet_tflops=args.peak_tflops)
    else:
        print("\nNo CUDA device: the 7B LoRA measurement is skipped.")


if __name__ == "__main__":
    main()
