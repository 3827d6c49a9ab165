"""Prediction throughput: one question at a time vs batched generation, on the tiny model, in one run.

    python benchmarks/predict_throughput.py [--questions 48] [--max-new-tokens 64] [--batch-sizes 1 8 16]

Runs ``cbt_llm.evaluation.predict.predict`` (the real code path: chat template, left padding, longest prompts
first, JSONL output) over the bundled sample's questions with greedy decoding, once per batch size,
after one warm-up batch, and prints answers/s, new tokens/s and the ratio to batch size 1. It also
checks that every batch size produced the same answers (greedy decoding with left padding).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=48, help="questions from the sample (default: 48)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    import torch

    from cbt_llm.data.prompts import chat_prompt
    from cbt_llm.evaluation.predict import PredictConfig, generate_batch, predict
    from cbt_llm.models.loading import load_model_and_tokenizer
    from cbt_llm.models.tiny import tiny_model_path

    model = str(tiny_model_path())
    lm, tokenizer = load_model_and_tokenizer(model, device=args.device or "auto", padding_side="left")
    generate_batch(tokenizer, lm, [chat_prompt("热身", "")] * 4, {"max_new_tokens": 8})  # warm-up
    print(f"tiny model {model}\ndevice {lm.device}, torch threads {torch.get_num_threads()}, "
          f"{args.questions} questions from the sample, greedy, max_new_tokens {args.max_new_tokens}\n")
    rows, answers = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch_size in args.batch_sizes:
            out = Path(tmp) / f"b{batch_size}.jsonl"
            started = time.perf_counter()
            summary = predict(PredictConfig(output_file=out, model_name_or_path=model, split="train",
                                            limit=args.questions, batch_size=batch_size,
                                            max_new_tokens=args.max_new_tokens, device=args.device, progress=False))
            seconds = time.perf_counter() - started
            records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            answers[batch_size] = {r["id"]: r["prediction"] for r in records}
            rows.append((batch_size, len(records), seconds, summary.new_tokens))
    base = rows[0][1] / rows[0][2]
    print(f"{'batch size':>10} | {'answers':>7} | {'seconds':>7} | {'answers/s':>9} | {'new tok/s':>9} | {'vs one at a time':>16}")
    print("-" * 76)
    for batch_size, count, seconds, tokens in rows:
        rate = count / seconds
        print(f"{batch_size:>10} | {count:>7} | {seconds:>7.2f} | {rate:>9.2f} | {tokens / seconds:>9.0f} | "
              f"{rate / base:>15.2f}x")
    same = all(answers[b] == answers[args.batch_sizes[0]] for b in args.batch_sizes)
    print(f"\nsame answers at every batch size: {'yes' if same else 'NO'} "
          "(seconds include loading the model once per run: predict() loads it itself)")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
