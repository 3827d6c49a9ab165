"""Throughput of `cbt-llm bench`: a served model against a loopback server's capacity, and a local model batched vs
one item at a time.

Served (the method of benchmarks/generate_throughput.py, whose table helpers it uses): a ChatServer with K
slots and latency L answers CPsyExam items; the real `cbt-llm bench` CLI runs in a subprocess and the
answers per second are counted at the server and compared with the capacity K/L; then the same with
10% 429s and 2% 500s injected. Local: `bench` on the tiny model over a fixed CBT-Bench slice with
--batch_size 1 and 8 (greedy), items per second and whether both gave the same replies.

    .venv/bin/python benchmarks/bench_throughput.py [--data_dir ../shared/data/bench] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from generate_throughput import ChatServer, print_table, row  # noqa: E402

from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV  # noqa: E402


def cli_bench(server: ChatServer, data_dir: Path, output: Path, n: int, concurrency: int) -> str:
    """The real CLI: CPsyExam only (no judge), the first ``n`` items of the seeded sample."""
    cli = Path(sys.executable).parent / "cbt-llm"
    env = {**os.environ, DEFAULT_API_KEY_ENV: "sk-bench"}
    result = subprocess.run([str(cli), "bench", "--tasks", "cpsyexam", "--data_dir", str(data_dir), "--output_dir",
                             str(output), "--limit", str(n), "--base_url", server.base_url, "--model", "bench",
                             "--concurrency", str(concurrency), "--no_progress"],
                            env=env, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return result.stdout


def served(args, tmp: Path) -> list[list[str]]:
    capacity = args.slots / args.latency
    rows = []
    for label, faults in (("clean", {}), ("10% 429 + 2% 500", {"p429": 0.10, "p500": 0.02, "retry_after": 1.0})):
        with ChatServer(slots=args.slots, latency=args.latency, seed=1, answer=lambda prompt, body: "答案：A",
                        **faults) as server:
            scenario = f"{label}, K={args.slots} L={args.latency:g}"
            started = time.monotonic()
            stdout = cli_bench(server, args.data_dir, tmp / f"served-{len(rows)}", args.n, args.concurrency)
            rows.append(row(scenario, f"cbt-llm bench (n={args.n}, c={args.concurrency})", server, capacity))
            rows.append([scenario, "capacity K/L", "", "", f"{capacity:.1f}", "1.000", "", ""])
            print(f"# {scenario}: cbt-llm bench took {time.monotonic() - started:.1f} s wall (incl. start-up and "
                  f"loading the archive)\n# " + stdout.strip().replace("\n", "\n# "), file=sys.stderr)
    return rows


def local(args, tmp: Path) -> None:
    """Items/s of the tiny model over one CBT-Bench slice, one prompt per generate call vs batches of 8."""
    from cbt_llm.bench import BenchConfig, bench
    from cbt_llm.models.tiny import tiny_model_path

    model = str(tiny_model_path())
    results, replies = [], {}
    for batch_size in (1, 8):
        out = tmp / f"local-{batch_size}"
        started = time.perf_counter()
        bench(BenchConfig(tasks="cbt_bench", data_dir=str(args.data_dir), output_dir=out, model_name_or_path=model,
                          limit=args.local_n, max_new_tokens=args.max_new_tokens, batch_size=batch_size,
                          model_card=False, progress=False))
        seconds = time.perf_counter() - started
        lines = [json.loads(line) for line in (out / "records" / "cbt_bench.jsonl").read_text().splitlines()]
        replies[batch_size] = {r["id"]: r["reply"] for r in lines}
        results.append((batch_size, len(lines), seconds))
    base = results[0][1] / results[0][2]
    print(f"\nlocal tiny model, {args.local_n} CBT-Bench items, greedy, max_new_tokens {args.max_new_tokens} "
          f"(whole bench call: loading, generation, scoring, report)")
    print(f"{'batch size':>10} | {'items':>5} | {'seconds':>7} | {'items/s':>7} | vs one at a time")
    for batch_size, count, seconds in results:
        print(f"{batch_size:>10} | {count:>5} | {seconds:>7.2f} | {count / seconds:>7.2f} | "
              f"{count / seconds / base:.2f}x")
    print(f"same replies with both batch sizes: {replies[1] == replies[8]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", type=Path, default=ROOT.parent / "shared" / "data" / "bench")
    parser.add_argument("--slots", type=int, default=32, help="K: answers served at once")
    parser.add_argument("--latency", type=float, default=0.2, help="L: seconds per answer")
    parser.add_argument("-n", type=int, default=960, help="CPsyExam items for the served runs")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--local-n", type=int, default=48, help="CBT-Bench items for the local runs")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="n=320, local-n=16")
    args = parser.parse_args()
    if args.quick:
        args.n, args.local_n = 320, 16
    if not (args.data_dir / "cpsyexam" / "cpsyexam.zip").is_file():
        print(f"skipped: no benchmark files in {args.data_dir} (give --data_dir with cpsyexam/ and cbt_bench/ in the "
              "authors' layout)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        print_table(served(args, Path(tmp)))
        local(args, Path(tmp))


if __name__ == "__main__":
    main()
