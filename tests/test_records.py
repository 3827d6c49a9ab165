import pytest
from helpers import make_record, write_jsonl

from cbt_llm.data.records import looks_like_records, read_records
from cbt_llm.data.sources import SourceError


def test_keeps_ok_records_and_counts_the_dropped_by_reason(tmp_path):
    path = write_jsonl(tmp_path / "gen.jsonl", [
        make_record("a"),
        make_record("b", status="rejected", reason="missing steps"),
        make_record("c", status="failed", response=""),
        make_record("d", response="   "),
        make_record("e", status="ok"),
    ])
    result = read_records([path])
    assert [r["id"] for r in result.records] == ["a", "e"]
    assert result.dropped == {"status rejected": 1, "status failed": 1, "empty response": 1}


def test_record_is_normalised_to_the_schema(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"id": 3, "question": " Q ", "response": "R", "keywords": "a,b"}])
    (record,) = read_records([path]).records
    assert record == {
        "id": "3", "question": "Q", "description": "", "keywords": ["a", "b"], "response": "R",
        "steps": {"validation": "", "key_thought": "", "challenge": "", "strategy": "", "encouragement": ""},
        "distortions": [],
        "source": {"model": "", "prompt_version": "", "created_at": "", "finish_reason": "",
                   "prompt_tokens": None, "completion_tokens": None},
    }


@pytest.mark.parametrize(
    ("record", "pieces"),
    [
        (make_record("a", steps={"empathy": "x"}), ["field 'steps'", "unknown step keys ['empathy']"]),
        (make_record("a", steps=["x"]), ["field 'steps'", "must be an object"]),
        (make_record("a", status="done"), ["field 'status'", "got 'done'"]),
        (make_record("a", source={"prompt_tokens": -1}), ["source.prompt_tokens must be a non-negative integer"]),
        (make_record("a", response=7), ["field 'response'", "must be a string"]),
        (make_record("a", distortions=["catastrophizing", "mind | reading"]),
         ["field 'distortions'", "unknown label 'mind | reading'", "expected keys of the taxonomy: all_or_nothing,"]),
        (make_record("a", distortions=["Catastrophising"]), ["field 'distortions'", "unknown label 'Catastrophising'"]),
    ],
)
def test_bad_records_name_line_and_field(tmp_path, record, pieces):
    path = write_jsonl(tmp_path / "r.jsonl", [make_record("ok"), record])
    with pytest.raises(SourceError) as err:
        read_records([path])
    assert str(err.value).startswith(f"{path}:2:")
    for piece in pieces:
        assert piece in str(err.value)


def test_duplicate_ids_across_files_name_both_places(tmp_path):
    first = write_jsonl(tmp_path / "one.jsonl", [make_record("a")])
    second = write_jsonl(tmp_path / "two.jsonl", [make_record("b"), make_record("a")])
    with pytest.raises(SourceError, match=f"{second}:2: field 'id': duplicate id 'a' \\(first seen at {first}:1\\)"):
        read_records([first, second])


def test_looks_like_records(tmp_path, psyqa_example):
    assert looks_like_records(write_jsonl(tmp_path / "r.jsonl", [make_record("a")]))
    assert not looks_like_records(write_jsonl(tmp_path / "q.jsonl", [{"question": "q"}]))
    assert not looks_like_records(psyqa_example)
