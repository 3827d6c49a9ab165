import json

import pytest

from cbt_llm.cli import main
from cbt_llm.data.sources import Question, SourceError, read_questions

GOOD_JSONL = (
    '{"id": "q1", "question": "考试前总是失眠怎么办？", "description": "下周就要考试了。", "keywords": ["学习", "考试焦虑"]}\n'
    '{"id": 2, "question": "和室友相处不来", "keywords": "人际,室友"}\n'
)
EXPECTED = [
    Question("q1", "考试前总是失眠怎么办？", "下周就要考试了。", ("学习", "考试焦虑")),
    Question("2", "和室友相处不来", "", ("人际", "室友")),
]
GOOD_CSV = 'id,question,description,keywords\nq1,考试前总是失眠怎么办？,下周就要考试了。,"学习,考试焦虑"\n2,和室友相处不来,,"人际,室友"\n'


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_reads_the_real_psyqa_sample(psyqa_example):
    questions = read_questions(psyqa_example)
    raw = json.loads(psyqa_example.read_text(encoding="utf-8"))
    assert len(questions) == len(raw) == 100
    assert [q.id for q in questions] == [str(r["questionID"]) for r in raw]
    first = questions[0]
    assert first.question == raw[0]["question"].strip()
    assert first.keywords == tuple(k.strip() for k in raw[0]["keywords"].split(",") if k.strip())
    assert sum(len(q.description) for q in questions) / 100 > 100


@pytest.mark.parametrize(("name", "content"), [("q.jsonl", GOOD_JSONL), ("q.csv", GOOD_CSV)])
def test_jsonl_and_csv(tmp_path, name, content):
    assert read_questions(write(tmp_path, name, content)) == EXPECTED


@pytest.mark.parametrize(("name", "content"), [("q.jsonl", GOOD_JSONL), ("q.csv", GOOD_CSV)])
def test_bom_and_crlf_read_the_same(tmp_path, name, content):
    messy = "\ufeff" + content.replace("\n", "\r\n")
    assert read_questions(write(tmp_path, name, messy)) == EXPECTED


def test_psyqa_array_with_bom_and_crlf(tmp_path):
    records = [{"question": "Q", "description": "D", "keywords": "情绪,焦虑", "answers": [], "questionID": 7}]
    path = write(tmp_path, "p.json", "\ufeff" + json.dumps(records, ensure_ascii=False, indent=2).replace("\n", "\r\n"))
    assert read_questions(path) == [Question("7", "Q", "D", ("情绪", "焦虑"))]


def test_missing_id_gets_a_stable_content_hash(tmp_path):
    path = write(tmp_path, "q.jsonl", '{"question": "A"}\n{"question": "B"}\n')
    ids = [q.id for q in read_questions(path)]
    assert ids == [q.id for q in read_questions(path)] and len(set(ids)) == 2 and all(len(i) == 16 for i in ids)


# (file name, content, expected pieces of the message: line or index, field, what)
MALFORMED = {
    "invalid json in array": ("a.json", '[\n {"question": "ok"},\n {"question": "bad",,}\n]', [":3:", "[index 1]", "invalid JSON"]),
    "invalid json line": ("a.jsonl", '{"question": "ok"}\n{"question": nope}\n{"question": "x"}\n', [":2:", "invalid JSON"]),
    "missing question": ("a.jsonl", '{"question": "ok"}\n{"description": "no title"}\n', [":2:", "field 'question'", "missing"]),
    "blank question": ("a.jsonl", '{"question": "ok"}\n{"question": "   "}\n', [":2:", "field 'question'", "blank"]),
    "non-string question": ("a.json", '[{"question": "ok"},\n{"question": 42}]', [":2:", "[index 1]", "field 'question'", "must be a string, got a number"]),
    "null question in array": ("a.json", '[{"question": null}]', [":1:", "[index 0]", "field 'question'", "missing"]),
    "top-level object": ("a.json", '{"question": "ok"}', [":1:", "top-level JSON value is an object, expected an array"]),
    "element not an object": ("a.json", '[{"question": "ok"}, "just text"]', ["[index 1]", "expected a JSON object, got a string"]),
    "empty file": ("a.jsonl", "", ["file is empty"]),
    "whitespace only": ("a.json", " \n\r\n ", ["file is empty"]),
    "not utf-8": ("a.jsonl", '{"question": "ok"}\n{"question": "'.encode() + "坏".encode("gbk") + b'"}\n', [":2:", "not valid UTF-8"]),
    "truncated last line": ("a.jsonl", '{"question": "ok"}\n{"question": "cut off he', [":2:", "truncated last line"]),
    "duplicate ids jsonl": ("a.jsonl", '{"id": "x", "question": "a"}\n{"id": "y", "question": "b"}\n{"id": "x", "question": "c"}\n', [":3:", "field 'id'", "duplicate id 'x'", "first seen at", ":1"]),
    "duplicate psyqa ids": ("a.json", '[{"question": "a", "questionID": 5},\n {"question": "b", "questionID": 5}]', [":2:", "[index 1]", "duplicate id '5'", "[index 0]"]),
    "truncated inside a character": ("a.jsonl", '{"question": "ok"}\n{"question": "'.encode() + "好".encode()[:2], [":2:", "truncated last line"]),
    "bad keywords": ("a.jsonl", '{"question": "a", "keywords": 3}\n', [":1:", "field 'keywords'"]),
    "bad id type": ("a.jsonl", '{"question": "a", "id": [1]}\n', [":1:", "field 'id'", "string or an integer"]),
    "csv without question column": ("a.csv", "id,title\n1,hello\n", [":1:", "no 'question' column"]),
    "csv blank question": ("a.csv", 'id,question\n1,ok\n2,\n', [":3:", "field 'question'", "blank"]),
    "csv duplicate ids": ("a.csv", 'id,question\n1,a\n"1",b\n', [":3:", "duplicate id '1'"]),
    "unknown extension": ("a.txt", "question\n", ["unknown file type '.txt'"]),
    # regression: a 17M-token question passed validate and failed the teacher's request mid-run
    "too long with its description": ("a.jsonl", '{"question": "ok"}\n' + json.dumps(
        {"question": "失眠", "description": "描" * 20_000}, ensure_ascii=False) + "\n",
        [":2:", "field 'description'", "question and description are 20,002 characters together, over the limit of "
         "20,000"]),
    "too long question in csv": ("a.csv", "id,question\n1,ok\n2," + "q" * 20_001 + "\n",
                                 [":3:", "field 'question'", "20,001 characters together, over the limit of 20,000"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_names_file_line_and_field(tmp_path, case):
    name, content, pieces = MALFORMED[case]
    path = write(tmp_path, name, content)
    with pytest.raises(SourceError) as err:
        read_questions(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for piece in pieces:
        assert piece in message, f"{piece!r} not in {message!r}"


@pytest.mark.parametrize("case", list(MALFORMED))
def test_validate_cli_reports_malformed_input_without_traceback(tmp_path, capsys, case):
    name, content, pieces = MALFORMED[case]
    path = write(tmp_path, name, content)
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"cbt-llm validate: error: {path}") and pieces[-1] in captured.err


def test_an_input_up_to_the_length_bound_is_read(tmp_path):
    from cbt_llm.data.sources import MAX_INPUT_CHARS

    row = {"question": "问" * 100, "description": "描" * (MAX_INPUT_CHARS - 100)}
    path = write(tmp_path, "q.jsonl", json.dumps(row, ensure_ascii=False) + "\n")
    assert len(read_questions(path)[0].description) == MAX_INPUT_CHARS - 100


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        read_questions(tmp_path / "nope.jsonl")


def test_validate_console_script_on_psyqa_and_on_a_bad_file(cli, psyqa_example, tmp_path):
    ok = cli("validate", psyqa_example)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{psyqa_example}: 100 questions"
    bad = cli("validate", write(tmp_path, "bad.jsonl", '{"question": 1}\n'))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "bad.jsonl:1: field 'question': must be a string, got a number" in bad.stderr
