"""Stage 3: LoRA fine-tuning with TRL's SFTTrainer from a YAML recipe (the same as `cbt-llm train`).

    python examples/03_train.py                                   # tiny-cpu: offline, about a minute on CPU
    python examples/03_train.py --config qwen2.5-7b-instruct-lora # a GPU recipe
Any recipe field can be overridden: --learning_rate 1e-4, --dataset_name examples_output/cbt_qa, ...
"""

import sys

from cbt_llm.training.train import main, parse_args

argv = sys.argv[1:]
if "--config" not in argv:
    argv = ["--config", "tiny-cpu", *argv]
if "--output_dir" not in argv:
    argv += ["--output_dir", "examples_output/adapter"]
output_dir = main(*parse_args(argv))
print(f"adapter, model card and loss curve in {output_dir}")
