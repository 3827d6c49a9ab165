"""Stage 2: build the cbt_qa dataset folder (parquet per config and split + card) and load it back.

    python examples/02_build_dataset.py                          # the bundled sample
    python examples/02_build_dataset.py --input generations.jsonl # your generated records
"""

import argparse

from datasets import load_dataset

from cbt_llm.data.build import BuildConfig, build_dataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--input", nargs="*", help="records .jsonl files (default: the bundled sample)")
parser.add_argument("--output_dir", default="examples_output/cbt_qa")
args = parser.parse_args()

result = build_dataset(BuildConfig(input=args.input, output_dir=args.output_dir))
print(f"built {result.output_dir}: {result.num_rows}; dropped {dict(result.dropped) or 'none'}")
sft = load_dataset(str(result.output_dir), "sft")  # plain datasets reads the folder
print(sft["train"][0]["prompt"][1]["content"][:60], "->", sft["train"][0]["completion"][0]["content"][:60])
