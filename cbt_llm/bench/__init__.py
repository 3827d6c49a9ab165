"""Public benchmarks for counselling models: CPsyExam, CPsyCounE and CBT-Bench level II (``cbt-llm bench``)."""

from cbt_llm.bench.run import BenchConfig, BenchSummary, bench

__all__ = ["BenchConfig", "BenchSummary", "bench"]
