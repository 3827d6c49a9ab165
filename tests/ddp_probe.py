"""Run under torchrun: record which training rows each rank's dataloader yields, then train and save as usual."""

import hashlib
import json
import os
import sys

from cbt_llm.training.train import build_trainer, parse_args, train_and_save

script_args, training_args, model_args = parse_args(sys.argv[1:])
trainer = build_trainer(script_args, training_args, model_args)
rows = [hashlib.sha256(str([t for t in ids if t != trainer.processing_class.pad_token_id]).encode()).hexdigest()
        for batch in trainer.get_train_dataloader() for ids in batch["input_ids"].tolist()]
with open(os.path.join(os.environ["PROBE_DIR"], f"rank{trainer.args.process_index}.json"), "w") as f:
    json.dump({"world_size": trainer.args.world_size, "rows": rows}, f)
train_and_save(trainer, script_args, training_args, model_args)
