"""Throughput of `cbt-llm dialogue` (K concurrent dialogues, each a chain of dependent requests) against a loopback
server with K slots and latency L, measured at the server, as a share of its capacity K/L.

A dialogue has one request in flight at a time (plan, then client and counsellor turns in turn), so the
server is kept busy only by running many dialogues at once; this measures how close `--concurrency C`
dialogues come to the server's capacity, with the checks and the crisis guard run between turns. The
teacher is `tests/dialogue_server.py` (it plays each role from the request). Method and table as in
`benchmarks/generate_throughput.py`, whose helpers it reuses.

    .venv/bin/python benchmarks/dialogue_throughput.py            # K=32, L=0.2, 384 dialogues of 4 rounds
    .venv/bin/python benchmarks/dialogue_throughput.py --quick    # 128 dialogues, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dialogue_server import dialogue_server  # noqa: E402
from generate_throughput import print_table, row, write_questions  # noqa: E402

from cbt_llm.engine.endpoints import DEFAULT_API_KEY_ENV  # noqa: E402


def cli_dialogue(base_url: str, questions: Path, output: Path, concurrency: int, max_rounds: int) -> str:
    """The real CLI in a subprocess; its summary."""
    cli = Path(sys.executable).parent / "cbt-llm"
    env = {**os.environ, DEFAULT_API_KEY_ENV: "sk-bench"}
    result = subprocess.run([str(cli), "dialogue", "--input", str(questions), "--output_file", str(output),
                             "--model", "bench", "--base_url", base_url, "--concurrency", str(concurrency),
                             "--max_rounds", str(max_rounds), "--no_progress"],
                            env=env, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=32, help="K: answers served at once")
    parser.add_argument("--latency", type=float, default=0.2, help="L: seconds per answer")
    parser.add_argument("-n", type=int, default=384, help="dialogues")
    parser.add_argument("--max-rounds", type=int, default=4, help="rounds per dialogue (1 + 2 x rounds requests)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64], help="dialogues at once (one run each)")
    parser.add_argument("--quick", action="store_true", help="n=128")
    args = parser.parse_args()
    if args.quick:
        args.n = 128
    capacity = args.slots / args.latency
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        questions = write_questions(Path(tmp) / "q.jsonl", args.n)
        scenario = f"K={args.slots} L={args.latency:g}, {args.n} dialogues x {args.max_rounds} rounds"
        for concurrency in args.concurrency:
            with dialogue_server(slots=args.slots, latency=args.latency) as server:
                started = time.monotonic()
                stdout = cli_dialogue(server.base_url, questions, Path(tmp) / f"out-{concurrency}.jsonl", concurrency,
                                      args.max_rounds)
                rows.append(row(scenario, f"cbt-llm dialogue (c={concurrency} dialogues)", server, capacity))
            print(f"# c={concurrency}: {time.monotonic() - started:.1f} s wall (incl. start-up)\n# "
                  + stdout.strip().replace("\n", "\n# "), file=sys.stderr)
        rows.append([scenario, "capacity K/L", "", "", f"{capacity:.1f}", "1.000", "", ""])
    print_table(rows)


if __name__ == "__main__":
    main()
