"""Stage 1: answer questions with a teacher model through the five CBT steps.

With no --base_url it starts `transformers serve` on loopback with the library's tiny offline model,
so it runs anywhere; its answers are gibberish and the quality check rejects them, which is the
point of the check. Point it at a real teacher to get a dataset (the API key is read from the
environment, as `cbt-llm generate` reads it):

    python examples/01_generate.py --base_url https://api.openai.com/v1 --model gpt-4o-mini
"""

import argparse
import contextlib

from cbt_llm.data.splits import sample_questions_path
from cbt_llm.generation.generate import GenerateConfig, generate
from cbt_llm.models.serve import transformers_serve
from cbt_llm.models.tiny import tiny_model_path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--input", default=str(sample_questions_path()), help="questions (PsyQA .json, .jsonl, .csv)")
parser.add_argument("--output_file", default="examples_output/generations.jsonl")
parser.add_argument("--base_url", help="OpenAI-compatible endpoint (default: a local transformers serve)")
parser.add_argument("--model", help="model name on that endpoint")
parser.add_argument("--limit", type=int, default=4)
args = parser.parse_args()

with contextlib.ExitStack() as stack:
    if args.base_url:
        base_url, model = args.base_url, args.model
    else:
        model = str(tiny_model_path())
        base_url = stack.enter_context(transformers_serve(model))
    summary = generate(GenerateConfig(input=args.input, output_file=args.output_file, model=model, base_url=base_url,
                                      limit=args.limit, max_new_tokens=64, max_asks=1, concurrency=4, progress=False))
print(summary.format())
