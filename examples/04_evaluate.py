"""Stage 4: answer the test split with the base model and with the adapter, then compare them in a report.

    python examples/04_evaluate.py [--adapter examples_output/adapter] [--bertscore-model DIR]
Writes examples_output/report/ (report.md, report.json, metrics.png, step_coverage.png).
"""

import argparse

from cbt_llm.evaluation.evaluate import evaluate_systems
from cbt_llm.evaluation.predict import predict
from cbt_llm.models.tiny import TINY_MODEL_NAME

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--adapter", default="examples_output/adapter")
parser.add_argument("--base", default=TINY_MODEL_NAME)
parser.add_argument("--bertscore-model", help="a local BERT folder (default: no BERTScore, which needs a download)")
args = parser.parse_args()

settings = {"model": args.base, "split": "test", "max_new_tokens": 96, "do_sample": True, "temperature": 0.8,
            "seed": 0, "progress": False}
predict("examples_output/predictions/base.jsonl", **settings)
predict("examples_output/predictions/adapter.jsonl", adapter=args.adapter, **settings)
report = evaluate_systems(["examples_output/predictions/base.jsonl", "examples_output/predictions/adapter.jsonl"],
                          "examples_output/report", names=["base", "adapter"],
                          bertscore=args.bertscore_model is not None, bertscore_model=args.bertscore_model)
print(open("examples_output/report/report.md", encoding="utf-8").read().split("\n\n")[2])
