"""Training throughput: padding vs packing on the tiny model and the bundled sample, in one run.

    python benchmarks/train_throughput.py [--epochs 2] [--batch-size 4]

Prints trained (non-padding) tokens per second and the share of padding tokens in the batches for
plain padded batches and for TRL's packing. With a CUDA device it also trains LoRA on a random-weight
model built from the Qwen2.5-7B config (no download) and reports tokens/s, peak memory and model
FLOPs utilisation against the GPU's bf16 dense peak (--peak-tflops, default 989 for an H100 SXM).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from cbt_llm.train import CbtScriptArguments, build_trainer


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


def run_7b_lora(steps: int, batch_size: int, seq_len: int, peak_tflops: float) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                         tie_word_embeddings=False)  # Qwen2.5-7B's architecture, random weights
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (batch_size, seq_len), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens_per_s = steps * batch_size * seq_len / seconds
    n_params = sum(p.numel() for p in model.parameters())
    # 6N FLOPs per token for forward+backward, plus one more forward for checkpointing (8N), attention left out.
    achieved = 8 * n_params * tokens_per_s
    return {"tokens_per_s": tokens_per_s, "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "mfu": achieved / (peak_tflops * 1e12), "gpu": torch.cuda.get_device_name()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU bf16 dense peak, for MFU")
    args = parser.parse_args()

    padded = run_tiny(False, args.epochs, args.batch_size)
    packed = run_tiny(True, args.epochs, args.batch_size)
    print(f"\nTiny model, bundled sample, {args.epochs:g} epochs, batch {args.batch_size}, CPU")
    print(f"{'batches':<10}{'trained tokens/s':>18}{'padding share':>15}{'vs padding':>12}")
    for name, row in (("padding", padded), ("packing", packed)):
        print(f"{name:<10}{row['tokens_per_s']:>18,.0f}{row['pad_share']:>15.1%}"
              f"{row['tokens_per_s'] / padded['tokens_per_s']:>11.2f}x")

    import torch

    if torch.cuda.is_available():
        big = run_7b_lora(steps=10, batch_size=4, seq_len=2048, peak_tflops=args.peak_tflops)
        print(f"\nQwen2.5-7B architecture (random weights), LoRA r=16 all-linear, bf16, batch 4 x 2048, {big['gpu']}")
        print(f"tokens/s {big['tokens_per_s']:,.0f}   peak memory {big['peak_gib']:.1f} GiB   "
              f"MFU {big['mfu']:.1%} of {args.peak_tflops:g} TFLOPS")
    else:
        print("\nNo CUDA device: the 7B LoRA measurement is skipped.")


if __name__ == "__main__":
    main()
