"""CPsyExam (Zhao et al., COLING 2025): Chinese psychology exam questions, single- and multiple-answer; accuracy.

The release is ``cpsyexam.zip`` (in ``DIR/cpsyexam/`` or at the root of the Hub dataset
``CAS-SIAT-XinHai/CPsyExam``) holding ``train/``, ``dev/`` and ``test/``, one JSON list per
subject and question type (``KG-*``: knowledge, ``CA-*``: case analysis). Only ``dev/`` carries
answers, so it is what is scored; few-shot examples come from the same file under ``train/``.
An item counts when the set of letters extracted from the reply equals the answer set
(``extract_choices``), so a multiple-answer item needs every right letter and no wrong one.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

from cbt_llm.bench.tasks.base import Item, Source, field_of, hub_file, parse_json
from cbt_llm.errors import CbtLlmError

NAME = "cpsyexam"
HUB_ID = "CAS-SIAT-XinHai/CPsyExam"
ARCHIVE = "cpsyexam.zip"
SPLIT, SHOT_SPLIT = "dev", "train"
HEADLINE = "accuracy"
PROMPT_VERSION = "cpsyexam-zh-v1"
MAX_NEW_TOKENS = 64
PARTS = {"KG": "knowledge", "CA": "case"}
TYPES = {"single": "单项选择题", "multi": "多项选择题"}
LETTERS = "ABCDE"

SYSTEM = "你是一名熟悉心理学各领域知识的考生，正在参加中国的心理学考试。"
_SEP = r"(?:[\s、,，;；/和及与()（）]|\band\b)*"
_GROUP = rf"([A-E](?:{_SEP}[A-E])*)(?![A-Za-z])"
_OPEN = r"[(（\[【]?"
_MARKERS = [re.compile(p) for p in (
    rf"答案(?:应该|应|是|为|选|：|:|\s)*{_OPEN}{_GROUP}",
    rf"正确(?:的)?选项(?:应该|应|是|为|有|：|:|\s)*{_OPEN}{_GROUP}",
    rf"\b(?i:answers?)\s*(?i:is|are|should\s+be|:)?\s*{_OPEN}{_GROUP}",
    rf"选(?:择)?(?!项)\s*{_OPEN}{_GROUP}",
)]
_BARE = re.compile(rf"^[\s(（\[【]*{_GROUP}[\s)）\]】.。,，:：]*$")
_LEADING = re.compile(rf"^[\s(（\[【]*{_GROUP}[)）\]】]?(?:[.。,，:：、]|\s+(?![A-Za-z])|$)")


def extract_choices(reply: str, allowed: str = LETTERS) -> str:
    """The answer letters a reply gives, sorted and without repeats ("" when it gives none).

    In order: a marked answer (``答案：A C``, ``正确答案是B``, ``选B。``, ``The answer is (C)``), a
    reply that is only letters (``AC``, ``A、C``), letters opening the reply (``B。因为...``). Full-width
    letters count; capital letters inside English words do not.
    """
    text = unicodedata.normalize("NFKC", reply or "").strip()
    for pattern in _MARKERS:
        match = pattern.search(text)
        if match:
            return _letters(match.group(1), allowed)
    for pattern in (_BARE, _LEADING):
        match = pattern.search(text)
        if match:
            return _letters(match.group(1), allowed)
    return ""


def _letters(group: str, allowed: str) -> str:
    return "".join(sorted({c for c in re.sub(r"\band\b", " ", group) if c in allowed}))


def question_text(row: dict) -> str:
    """The question and its non-empty options, one per line, as the prompt shows them."""
    options = "\n".join(f"{k}. {v}" for k, v in row["options"].items() if str(v).strip())
    return f"{row['question'].strip()}\n{options}"


def _instruction(question_type: str) -> str:
    if question_type == "multi":
        return "以下是一道多项选择题，正确答案有两个或以上，请选出所有正确选项。"
    return "以下是一道单项选择题，请选出唯一正确的选项。"


def messages(row: dict, shots: list[dict]) -> list[dict]:
    """System line, then each shot as a question and its answer, then the question; the answer is asked as letters."""
    ask = "请直接回答选项字母，格式：答案：X"
    chat = [{"role": "system", "content": SYSTEM}]
    for shot in shots:
        chat += [{"role": "user", "content": f"{_instruction(shot['question_type'])}\n{question_text(shot)}\n{ask}"},
                 {"role": "assistant", "content": f"答案：{shot['answer']}"}]
    chat.append({"role": "user", "content": f"{_instruction(row['question_type'])}\n{question_text(row)}\n{ask}"})
    return chat


def _check_row(row: dict, where: str) -> None:
    """Raise one line naming the item and the field when a dev question cannot be asked or scored."""
    for key in ("question", "question_type", "id"):
        field_of(row, key, str, where)
    options = field_of(row, "options", dict, where)
    if row["question_type"] not in TYPES:
        raise CbtLlmError(f"{where}: field 'question_type' is {row['question_type']!r}, expected single or multi")
    answer = field_of(row, "answer", str, where)
    allowed = {k for k, v in options.items() if str(v).strip()}
    if not answer or not set(answer) <= allowed:
        raise CbtLlmError(f"{where}: field 'answer' is {answer!r}, not letters of its options "
                          f"{''.join(sorted(allowed))}")


def _usable_shot(row: object) -> bool:
    """Whether a train question can serve as an example (the train files have some answers like ``D、华生``)."""
    try:
        _check_row(row, "")
    except CbtLlmError:
        return False
    return True


def _read_archive(archive: zipfile.ZipFile, where: str, source: Source) -> dict[str, dict[str, list[dict]]]:
    """``{split: {file stem: rows}}`` for the dev and train splits of the release archive."""
    found: dict[str, dict[str, list[dict]]] = defaultdict(dict)
    for name in sorted(archive.namelist()):
        path = PurePosixPath(name)
        if path.suffix != ".json" or len(path.parts) != 2 or path.parts[0] not in (SPLIT, SHOT_SPLIT):
            continue
        data = archive.read(name)
        if path.parts[0] == SPLIT:
            source.add(f"{ARCHIVE}:{name}", data)
        rows = parse_json(data, f"{where}:{name}")
        if not isinstance(rows, list):
            raise CbtLlmError(f"{where}:{name}: expected a JSON list of questions, got {type(rows).__name__}")
        if path.parts[0] == SPLIT:
            for index, row in enumerate(rows):
                _check_row(row, f"{where}:{name} item {index}")
        else:
            rows = [row for row in rows if _usable_shot(row)]
        found[path.parts[0]][path.stem] = rows
    if not found.get(SPLIT):
        raise CbtLlmError(f"{where}: no {SPLIT}/*.json in the archive (expected the CPsyExam release layout)")
    return found


def _archive_path(data_dir: Path | None, source: Source) -> Path:
    if data_dir is None:
        return hub_file(HUB_ID, ARCHIVE, source)
    path = data_dir / NAME / ARCHIVE
    if not path.is_file():
        raise CbtLlmError(f"{path}: no such file (--data_dir needs {NAME}/{ARCHIVE} as the authors release it)")
    return path


def _shots(train: dict[str, list[dict]], stem: str, shots: int) -> list[dict]:
    """``shots`` train questions for a dev file: its own train file first, then others of its part and type."""
    if not shots:
        return []
    part, kind = stem.split("-", 1)[0], stem.rsplit("-", 1)[-1]
    similar = [s for s in sorted(train) if s != stem and s.startswith(part + "-") and s.endswith("-" + kind)]
    pool = [row for s in [stem, *similar] for row in train.get(s, [])]
    return pool[:shots]


def load(data_dir: Path | None, shots: int) -> tuple[list[Item], Source]:
    """Every dev question as an ``Item`` (gold: the answer letters), with ``shots`` train examples of its file."""
    source = Source("hub" if data_dir is None else "data_dir", HUB_ID if data_dir is None else str(data_dir / NAME))
    path = _archive_path(data_dir, source)
    try:
        with zipfile.ZipFile(path) as archive:
            splits = _read_archive(archive, str(path), source)
    except zipfile.BadZipFile as err:
        raise CbtLlmError(f"{path}: not a zip archive ({err})") from None
    items, seen = [], Counter()
    for stem, rows in splits[SPLIT].items():
        part = PARTS.get(stem.split("-", 1)[0])
        if part is None:
            raise CbtLlmError(f"{path}:{SPLIT}/{stem}.json: file name should start with KG- or CA-")
        examples = _shots(splits.get(SHOT_SPLIT, {}), stem, shots)
        if len(examples) < shots:
            raise CbtLlmError(f"{path}: {SHOT_SPLIT}/ has {len(examples)} usable examples for {stem}, --shots asks "
                              f"for {shots}")
        for row in rows:
            seen[row["id"]] += 1  # the release repeats two questions under one id: each is its own item
            items.append(Item(id=row["id"] if seen[row["id"]] == 1 else f"{row['id']}#{seen[row['id']]}", messages=messages(row, examples), gold="".join(sorted(row["answer"])),
                              meta={"part": part, "type": row["question_type"],
                                    "subject": row.get("subject_name") or stem,
                                    "options": "".join(k for k, v in row["options"].items() if str(v).strip())},
                              text=question_text(row)))
    return items, source


def score(item: Item, reply: str) -> dict:
    """The letters the reply chose and whether they are exactly the answer set."""
    chosen = extract_choices(reply, item.meta.get("options") or LETTERS)
    return {"choice": chosen, "correct": chosen == item.gold}


def chance(record: dict) -> float:
    """The accuracy of a uniform guess among the valid answers: one option (single), or a set of two or more (multi)."""
    k = len(record["meta"]["options"])
    return 1 / k if record["meta"]["type"] == "single" else 1 / (2 ** k - 1 - k)


def aggregate(records: list[dict]) -> dict:
    """Accuracy overall and by part (knowledge/case), by type (single/multi) and by subject; unanswered share."""
    def accuracy(rows: list[dict]) -> dict:
        return {"n": len(rows), "accuracy": sum(r["correct"] for r in rows) / len(rows) if rows else None}

    groups: dict[str, dict[str, list[dict]]] = {"by_part": defaultdict(list), "by_type": defaultdict(list),
                                                 "by_subject": defaultdict(list)}
    for r in records:
        for key, meta in (("by_part", "part"), ("by_type", "type"), ("by_subject", "subject")):
            groups[key][r["meta"][meta]].append(r)
    result = {**accuracy(records), "chance": sum(map(chance, records)) / len(records) if records else None,
              "no_answer": sum(not r["choice"] for r in records)}
    for key, grouped in groups.items():
        result[key] = {name: accuracy(rows) for name, rows in sorted(grouped.items())}
    return result
