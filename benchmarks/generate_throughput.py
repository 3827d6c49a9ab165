"""Throughput of `cbt-llm generate` against a loopback server with K slots and latency L, measured at the server.

Prints one table: the paper-style sequential loop, `cbt-llm generate` (the real CLI in a
subprocess), and the server's capacity K/L; then the same with 10% 429s and 2% 500s injected;
then a server that allows R requests/s and answers 429 with Retry-After above it (no rate flag).

    .venv/bin/python benchmarks/generate_throughput.py            # K=32, L=0.2, N=960, concurrency 64
    .venv/bin/python benchmarks/generate_throughput.py --quick    # smaller, for a smoke run
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
sys.path.insert(0, str(ROOT / "tests"))

from chat_server import ChatServer  # noqa: E402

from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV  # noqa: E402


def write_questions(path: Path, n: int) -> Path:
    rows = [{"id": f"q{i}", "question": f"第{i}个问题：最近压力很大，总是睡不好怎么办？", "description": f"描述{i}"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def sequential(server: ChatServer, questions: Path, n: int) -> None:
    """The paper-style loop: one blocking request after another."""
    import openai

    from cbt_llm.data.prompts import get_prompt
    from cbt_llm.data.sources import read_questions

    client = openai.OpenAI(api_key="sk-bench", base_url=server.base_url, max_retries=6)
    prompt = get_prompt("paper", "zh")
    for q in read_questions(questions)[:n]:
        client.chat.completions.create(model="bench", messages=[
            {"role": "user", "content": prompt.render(q.question, q.description)}])


def cli_generate(server: ChatServer, questions: Path, output: Path, concurrency: int) -> str:
    cli = Path(sys.executable).parent / "cbt-llm"
    env = {**os.environ, DEFAULT_API_KEY_ENV: "sk-bench"}
    result = subprocess.run([str(cli), "generate", "--input", str(questions), "--output_file", str(output),
                             "--model", "bench", "--base_url", server.base_url, "--concurrency", str(concurrency),
                             "--no_progress"], env=env, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return result.stdout


def row(scenario: str, method: str, server: ChatServer, capacity: float) -> list[str]:
    s = server.stats
    wall = (s.last_answer - s.first_request) if s.answered else 0.0
    per_answer = s.rate_limited + s.injected_429
    return [scenario, method, str(s.answered), f"{wall:.1f}", f"{s.throughput:.1f}", f"{s.throughput / capacity:.3f}",
            f"{per_answer} ({per_answer / max(s.answered, 1):.2f}/ans)", str(s.injected_500)]


def print_table(rows: list[list[str]]) -> None:
    header = ["scenario", "method", "answers", "server s", "answers/s", "share of capacity", "429s", "500s"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=32, help="K: answers served at once")
    parser.add_argument("--latency", type=float, default=0.2, help="L: seconds per answer")
    parser.add_argument("-n", type=int, default=960, help="N: questions for cbt-llm generate")
    parser.add_argument("--sequential-n", type=int, default=50, help="questions for the sequential loop "
                        "(its rate does not depend on N; 960 would take K*N*L/K = 192 s)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate-limit", type=float, default=20.0, help="R: requests/s for the 429 scenario")
    parser.add_argument("--rate-n", type=int, default=600, help="questions for the 429 scenario")
    parser.add_argument("--quick", action="store_true", help="N=320, rate-n=200, sequential-n=20")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rate_n, args.sequential_n = 320, 200, 20
    capacity = args.slots / args.latency
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        questions = write_questions(tmp / "q.jsonl", max(args.n, args.rate_n))
        small = write_questions(tmp / "q_small.jsonl", args.n)
        rate_questions = write_questions(tmp / "q_rate.jsonl", args.rate_n)
        for label, faults in (("clean", {}), ("10% 429 + 2% 500", {"p429": 0.10, "p500": 0.02, "retry_after": 1.0})):
            with ChatServer(slots=args.slots, latency=args.latency, seed=1, **faults) as server:
                scenario = f"{label}, K={args.slots} L={args.latency:g}"
                sequential(server, questions, args.sequential_n)
                rows.append(row(scenario, f"sequential loop (n={args.sequential_n})", server, capacity))
                server.reset_stats()
                out = tmp / f"out-{len(rows)}.jsonl"
                started = time.monotonic()
                stdout = cli_generate(server, small, out, args.concurrency)
                rows.append(row(scenario, f"cbt-llm generate (n={args.n}, c={args.concurrency})", server, capacity))
                rows.append([scenario, "capacity K/L", "", "", f"{capacity:.1f}", "1.000", "", ""])
                print(f"# {scenario}: cbt-llm generate took {time.monotonic() - started:.1f} s wall "
                      f"(incl. start-up)\n# " + stdout.strip().replace("\n", "\n# "), file=sys.stderr)
        with ChatServer(rate_limit=args.rate_limit, latency=0.05, seed=2) as server:
            scenario = f"limit {args.rate_limit:g} req/s + 429/Retry-After"
            stdout = cli_generate(server, rate_questions, tmp / "out-rate.jsonl", args.concurrency)
            rows.append(row(scenario, f"cbt-llm generate (n={args.rate_n}, c={args.concurrency}, no rate flag)",
                            server, args.rate_limit))
            rows.append([scenario, "server limit", "", "", f"{args.rate_limit:.1f}", "1.000", "", ""])
            print("# rate-limited: " + stdout.strip().replace("\n", "\n# "), file=sys.stderr)
    print_table(rows)


if __name__ == "__main__":
    main()
