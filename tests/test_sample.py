"""The bundled sample is the demo and test data and the first thing users read: check its substance."""

import json
import re

from helpers import SAMPLE_SIZE

from cbt_llm.data.prompts import COGNITIVE_DISTORTIONS, STEP_KEYS
from cbt_llm.data.records import read_records
from cbt_llm.data.splits import sample_path

TOPICS = ["情绪", "学习", "职场", "人际", "家庭", "恋爱", "婚姻", "成长", "睡眠", "社交", "哀伤"]


def load():
    return read_records([sample_path()]).records


def test_sixty_or_more_valid_records_with_unique_ids():
    records = load()
    assert len(records) == SAMPLE_SIZE >= 60  # enough for three non-empty splits
    assert len({r["id"] for r in records}) == len(records)
    assert len({r["question"] for r in records}) == len(records)


def test_every_answer_walks_through_the_five_stored_steps_in_order():
    for record in load():
        steps = [record["steps"][key] for key in STEP_KEYS]
        assert all(len(step) >= 40 for step in steps), record["id"]
        assert record["response"] == "\n\n".join(steps), record["id"]
        assert not re.search(r"第[一二三四五]步|步骤[1-5一二三四五]", record["response"]), record["id"]


def test_text_is_chinese_and_of_psyqa_like_length():
    for record in load():
        han = sum("\u4e00" <= ch <= "\u9fff" for ch in record["response"])
        assert han / len(record["response"]) > 0.7, record["id"]
        assert 300 <= len(record["response"]) <= 1500, record["id"]
    described = [r for r in load() if r["description"]]
    assert len(described) >= 55


def test_covers_the_usual_psyqa_topics():
    keywords = {k for r in load() for k in r["keywords"]}
    assert [t for t in TOPICS if t not in keywords] == []


def test_distortion_labels_come_from_the_taxonomy():
    labels = [d for r in load() for d in r["distortions"]]
    assert labels and set(labels) <= set(COGNITIVE_DISTORTIONS)
    assert all(r["distortions"] for r in load())


def test_sample_file_is_plain_jsonl():
    lines = sample_path().read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line)["source"]["model"] == "handwritten" for line in lines)
