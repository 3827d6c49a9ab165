"""Small builders of test records, shared by the dataset and records tests, and the bundled sample's size."""

import json

from cbt_llm.data.prompts import STEP_KEYS

# Records in the bundled sample (cbt_llm/data/sample/cbt_qa_sample.jsonl): the one place the tests pin its size.
SAMPLE_SIZE = 66


def make_record(id_, response="一段完整的回答。", **fields):
    """A record in the default schema, with one paragraph per step."""
    record = {
        "id": id_,
        "question": f"问题 {id_}",
        "description": f"描述 {id_}",
        "keywords": ["情绪"],
        "response": response,
        "steps": {key: f"{key} {id_}" for key in STEP_KEYS},
        "distortions": ["catastrophizing"],
        "source": {"model": "teacher-x", "prompt_version": "paper-zh-v1", "created_at": "2026-11-25T00:00:00Z",
                   "finish_reason": "stop", "prompt_tokens": 100, "completion_tokens": 400},
    }
    record.update(fields)
    return record


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
