"""Helpers shared by the evaluation tests: the sample rows and a tiny local BERT for BERTScore."""

from __future__ import annotations

import json
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "cbt_llm" / "data" / "sample" / "cbt_qa_sample.jsonl"


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_tiny_bert(folder: Path) -> Path:
    """A 2-layer random BERT whose vocabulary is the sample's characters (plus a few Latin ones)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for row in sample_rows() for c in row["response"] + row["question"] if not c.isspace()}
                   | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                      encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), model_max_length=256)
    config = BertConfig(vocab_size=5 + len(chars), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
