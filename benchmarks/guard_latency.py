"""Crisis-guard latency: milliseconds per message for each offline layer and combined, against a naive baseline.

    python benchmarks/guard_latency.py [--repeat 3] [--file tests/data/safety_eval.jsonl]

Runs every message of a labelled file (default: the project's 612 messages, short chat lines and
forum posts) through each layer in one process, after a warm-up pass that loads the lexicon and the
classifier: a naive keyword scan (a substring test against a dozen crisis words: the floor any guard
costs), the rules alone, the classifier alone, rules + classifier (``assess_risk``, the default guard)
and the chat's per-turn check with the last three user turns (``assess_conversation``). Prints mean
and 95th-percentile milliseconds per message and the ratio to the baseline, plus a 5,000-character message
(an ordinary paragraph, so that no layer stops early: the limit is 20 ms) and a 100,000-character one.
The classifier's clause reading is also timed the naive way (each window's text normalised and hashed
again), beside the shipped way (each clause hashed once, windows joined from the clauses' sets).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MS = 20.0  # the guard's budget for a 5,000-character message on CPU
KEYWORDS = ("自杀", "想死", "不想活", "割腕", "跳楼", "安眠药", "suicide", "kill myself", "want to die", "end my life",
            "overdose", "self-harm")


def naive(text: str) -> str:
    """The baseline: crisis when any keyword occurs, else none."""
    lowered = text.lower()
    return "crisis" if any(k in lowered for k in KEYWORDS) else "none"


def naive_clause_reading(model, text: str) -> float:
    """The classifier's highest crisis score with every window of clauses prepared and hashed from its own text."""
    from cbt_llm.safety.classifier import clauses, features, prepared

    parts = clauses(prepared(text))
    spans = ["，".join(parts[max(0, i - 1):i + 2]) for i in range(len(parts))] or [text]
    return max(model.window_scores(features(span, model.buckets))["crisis"] for span in spans)


def timed(fn, texts: list[str], repeat: int) -> list[float]:
    """Milliseconds per call of ``fn`` on each text, the best of ``repeat`` passes per text."""
    out = []
    for text in texts:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            fn(text)
            best = min(best, time.perf_counter() - start)
        out.append(best * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ROOT / "tests" / "data" / "safety_eval.jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from cbt_llm.safety import assess_conversation, assess_lexicon, assess_risk, detect_language, load_classifier

    texts = [json.loads(line)["text"] for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
    classifier = load_classifier()
    history = [{"role": "user", "content": texts[0]}, {"role": "assistant", "content": "..."},
               {"role": "user", "content": texts[1]}, {"role": "assistant", "content": "..."}]
    layers = {
        "naive keyword scan (baseline)": naive,
        "rules": assess_lexicon,
        "classifier": lambda t: classifier.verdict(t, detect_language(t)),
        "classifier, naive clause windows (each window re-read)": lambda t: naive_clause_reading(classifier, t),
        "rules + classifier (assess_risk)": assess_risk,
        "chat turn, 3-turn context (assess_conversation)": lambda t: assess_conversation(history, t),
    }
    for fn in layers.values():  # warm-up: lexicon and classifier loaded, regexes compiled
        fn(texts[0])
    chars = statistics.mean(len(t) for t in texts)
    print(f"{len(texts)} messages from {args.file.name} (mean {chars:.0f} characters), best of {args.repeat} per "
          "message, one process\n")
    print(f"| layer | mean ms/message | p95 ms/message | x baseline | 5,000 chars, ms (limit {LIMIT_MS:.0f}) "
          "| 100,000 chars, ms |")
    print("|---|---:|---:|---:|---:|---:|")
    # an ordinary paragraph with no crisis in it: the worst case, both offline layers run in full
    five_k = ("今天和朋友去爬山了，风景很好，心情也不错。晚上回家做了番茄炒蛋，看了一会儿书。" * 150)[:5_000]
    long_text = ("今天和朋友去爬山了，风景很好，心情也不错。" * 5000)[:100_000]
    base = None
    for name, fn in layers.items():
        ms = timed(fn, texts, args.repeat)
        mean, p95 = statistics.mean(ms), sorted(ms)[int(0.95 * (len(ms) - 1))]
        base = base or mean
        five_ms = min(timed(fn, [five_k], args.repeat))
        long_ms = timed(fn, [long_text], 1)[0]
        print(f"| {name} | {mean:.3f} | {p95:.3f} | {mean / base:.0f} | {five_ms:.1f} | {long_ms:.0f} |")


if __name__ == "__main__":
    main()
