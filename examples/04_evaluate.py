"""Stage 4: answer the test split with the base model and with the adapter, then compare them in a report.

    python examples/04_evaluate.py [--adapter examples_output/adapter] [--bertscore_model DIR]
Writes examples_output/report/ (report.md, report.json, metrics.png, step_coverage.png).
"""

import argparse

from cbt_llm.evaluation.evaluate import EvaluateConfig, evaluate_systems
from cbt_llm.evaluation.predict import PredictConfig, predict
from cbt_llm.models.tiny import TINY_MODEL_NAME

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--adapter", default="examples_output/adapter")
parser.add_argument("--model_name_or_path", default=TINY_MODEL_NAME, help="the adapter's base model")
parser.add_argument("--bertscore_model", help="a local BERT folder (default: no BERTScore, which needs a download)")
args = parser.parse_args()

settings = {"model_name_or_path": args.model_name_or_path, "split": "test", "max_new_tokens": 96, "do_sample": True,
            "temperature": 0.8, "seed": 0, "progress": False}
predict(PredictConfig(output_file="examples_output/predictions/base.jsonl", **settings))
predict(PredictConfig(output_file="examples_output/predictions/adapter.jsonl", adapter=args.adapter, **settings))
evaluate_systems(EvaluateConfig(
    predictions=["examples_output/predictions/base.jsonl", "examples_output/predictions/adapter.jsonl"],
    output_dir="examples_output/report", names=["base", "adapter"], bertscore=args.bertscore_model is not None,
    bertscore_model=args.bertscore_model))
print(open("examples_output/report/report.md", encoding="utf-8").read().split("\n\n")[2])
