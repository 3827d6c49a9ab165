"""The whole pipeline end to end, offline on a CPU, on the bundled data: what `make demo` runs.

    python examples/demo.py [--output demo_output]

Each stage prints one line saying what it made and where; the libraries' own progress output goes
to OUTPUT/logs/STAGE.log. The tiny model makes the numbers meaningless; the plumbing is real.
"""

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from cbt_llm.data.build import build_dataset  # noqa: E402
from cbt_llm.data.splits import sample_path, sample_questions_path  # noqa: E402
from cbt_llm.evaluation.evaluate import evaluate_systems  # noqa: E402
from cbt_llm.evaluation.predict import predict  # noqa: E402
from cbt_llm.generation.generate import generate  # noqa: E402
from cbt_llm.hub import push_adapter, push_dataset  # noqa: E402
from cbt_llm.models.serve import transformers_serve  # noqa: E402
from cbt_llm.models.tiny import TINY_MODEL_NAME, tiny_model_path  # noqa: E402
from cbt_llm.training.train import main as train  # noqa: E402
from cbt_llm.training.train import parse_args


@contextlib.contextmanager
def stage(name: str, logs: Path):
    """Send a stage's own output to logs/NAME.log and time it."""
    started = time.monotonic()
    with open(logs / f"{name}.log", "w", encoding="utf-8") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    print(f"[{name:<8} {time.monotonic() - started:5.1f} s] ", end="", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--generate-limit", type=int, default=4, help="questions sent to the local teacher")
    args = parser.parse_args()
    out = Path(args.output)
    if out.exists():
        shutil.rmtree(out)
    logs = out / "logs"
    logs.mkdir(parents=True)

    with stage("generate", logs):
        with transformers_serve(tiny_model_path()) as base_url:
            gen = generate(sample_questions_path(), out / "generations.jsonl", str(tiny_model_path()),
                           base_url=base_url, limit=args.generate_limit, max_tokens=96, max_asks=1,
                           concurrency=4, progress=False)
    print(f"{out / 'generations.jsonl'}: {gen.counts['ok']} ok, {gen.counts['rejected']} rejected by the "
          f"five-step check (a tiny random teacher, served by `transformers serve`)")

    with stage("build", logs):
        built = build_dataset([sample_path(), out / "generations.jsonl"], out / "cbt_qa",
                              card={"pretty_name": "CBT QA (demo)", "license": "apache-2.0",
                                    "questions_source": "other"})
    rows = built.num_rows["default"]
    print(f"{built.output_dir}: dataset folder, {sum(rows.values())} records ({', '.join(f'{k} {v}' for k, v in rows.items())}), "
          f"{sum(built.dropped.values())} dropped; card {built.output_dir / 'README.md'}")

    with stage("train", logs):
        adapter = train(*parse_args(["--config", "tiny-cpu", "--output_dir", str(out / "adapter"),
                                     "--dataset_name", str(out / "cbt_qa"), "--disable_tqdm", "true"]))
    print(f"{adapter}: LoRA adapter (tiny-cpu recipe), loss curve {adapter / 'loss_curve.png'}, "
          f"model card {adapter / 'README.md'}")

    with stage("predict", logs):
        # Sampling, not greedy: a minute of training teaches the tiny model character frequencies, and its
        # greedy answer is the most frequent token (a newline) over and over.
        common = {"model": TINY_MODEL_NAME, "dataset": str(out / "cbt_qa"), "split": "test", "max_new_tokens": 96,
                  "do_sample": True, "temperature": 0.8, "top_p": 0.95, "seed": 0, "progress": False}
        predict(out / "predictions" / "base.jsonl", **common)
        predict(out / "predictions" / "cbt-lora.jsonl", adapter=str(adapter), **common)
    print(f"{out / 'predictions'}: test-split answers from the base model and from the adapter")

    with stage("evaluate", logs):
        evaluate_systems([out / "predictions" / "base.jsonl", out / "predictions" / "cbt-lora.jsonl"],
                          out / "report", names=["base", "cbt-lora"], dataset=str(out / "cbt_qa"),
                          bertscore=False, model_card=adapter / "README.md", card_system="cbt-lora")
    print(f"{out / 'report'}: report.md, report.json and PNG plots, base vs adapter side by side, also written "
          f"into the model card (tiny models: the numbers show the plumbing, not quality; BERTScore needs a BERT "
          f"on disk, --bertscore-model PATH)")

    with stage("upload", logs):
        pushed = [push_dataset(out / "cbt_qa", "your-name/cbt_qa", dry_run=out / "upload" / "dataset"),
                  push_adapter(adapter, "your-name/cbt-lora-tiny", dataset_repo_id="your-name/cbt_qa",
                               dry_run=out / "upload" / "adapter")]
    print(f"{out / 'upload'}: exactly what `cbt-llm push` would upload ({', '.join(f'{p.repo_type} {len(p.files)} files' for p in pushed)})")

    print(f"\nOpen {out / 'report' / 'report.md'} and its PNGs, the dataset card {out / 'cbt_qa' / 'README.md'}, "
          f"the model card {adapter / 'README.md'}, and the Hub upload folders in {out / 'upload'}.")
    print("Chat with the adapter: cbt-llm chat --adapter " + str(adapter))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
