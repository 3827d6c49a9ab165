"""The rule lexicon: read ``cbt_llm/data/safety_lexicon.yaml`` (or another file), compile it, normalise text.

The YAML header explains how a message is read; :mod:`cbt_llm.safety.rules` applies the compiled rules.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.normalize import homophone_targets, normalize_text, split_pinyin

_LANGUAGES = ("zh", "en")
_SUBJECT_MODES = ("first", "third", "resolve", "topic", "any")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[a-zA-Z]+")


@dataclass(frozen=True)
class Rule:
    """One compiled lexicon entry (a crisis, concern, cue or hyperbole pattern with its reading modes)."""

    id: str
    level: str
    kind: str
    subject: str
    negatable: bool
    emergency: bool
    regex: re.Pattern
    comment: str


@dataclass(frozen=True)
class LanguageRules:
    """The compiled section of one language: subject, negation, time and distance cues, then the rules."""

    language: str
    third: re.Pattern
    first: re.Pattern
    object_marker: re.Pattern
    relative: re.Pattern
    relative_marker: re.Pattern
    negation: re.Pattern
    personal_event: re.Pattern
    past: re.Pattern
    present: re.Pattern
    distance: re.Pattern
    game: re.Pattern
    reply: re.Pattern
    about: re.Pattern
    mention: re.Pattern
    hyperbole: tuple[Rule, ...]
    rules: tuple[Rule, ...]
    pinyin: tuple[Rule, ...] = ()  # patterns over the pinyin channel of Latin words typed in pinyin


@dataclass(frozen=True)
class Lexicon:
    """The compiled lexicon: build it with :func:`load_lexicon` (cached per path)."""

    path: str
    version: int
    languages: tuple[LanguageRules, ...]
    slang: dict = field(default_factory=dict)  # curated spelling -> plain wording, applied in normalisation
    homophones: tuple[str, ...] = ()  # crisis words whose sound-alikes (紫砂 for 自杀) are read as the word

    @functools.cached_property
    def _normaliser(self) -> dict:
        # a Latin spelling counts as a whole word only (kms, never the kms of "5kms")
        ordered = sorted(self.slang, key=len, reverse=True)
        latin = "|".join(re.escape(k) for k in ordered if k.isascii())
        keys = [re.escape(k) for k in ordered if not k.isascii()] + ([rf"(?<![a-z0-9])(?:{latin})(?![a-z0-9])"] if latin else [])
        return {"slang": re.compile("|".join(keys)) if keys else None, "slang_map": self.slang,
                "homophones": homophone_targets(self.homophones)}

    def rule_ids(self) -> list[str]:
        return [r.id for lang in self.languages for r in (*lang.hyperbole, *lang.rules)]


# "about" right before a topic word, a few modifiers allowed: 关于青少年自杀, "a film about teen suicide"
_ABOUT = {"zh": r"(?:关于|有关|讲|讲述|介绍)[^，,、。]{0,6}$", "en": r"\b(?:about|regarding|on)\s+(?:\w+\s+){0,2}$"}


def _compile(pattern: str, where: str) -> re.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise CbtLlmError(f"safety lexicon: {where}: pattern must be a non-empty string")
    try:
        return re.compile(pattern)
    except re.error as err:
        raise CbtLlmError(f"safety lexicon: {where}: bad regular expression: {err}") from None


def _rules(entries, level: str, language: str, seen: set) -> tuple[Rule, ...]:
    out = []
    for i, entry in enumerate(entries or []):
        where = f"{language}.{level}[{i}]"
        if not isinstance(entry, dict) or "id" not in entry or "pattern" not in entry:
            raise CbtLlmError(f"safety lexicon: {where}: each entry needs an id and a pattern")
        rule_id = str(entry["id"])
        if rule_id in seen:
            raise CbtLlmError(f"safety lexicon: duplicate id {rule_id!r}")
        seen.add(rule_id)
        subject = entry.get("subject", "resolve")
        if subject not in _SUBJECT_MODES:
            raise CbtLlmError(f"safety lexicon: {rule_id}: subject must be one of {', '.join(_SUBJECT_MODES)}")
        out.append(Rule(rule_id, level, str(entry.get("kind", level)), subject, bool(entry.get("negatable", True)),
                         bool(entry.get("emergency", False)), _compile(entry["pattern"], rule_id),
                         str(entry.get("comment", ""))))
    return tuple(out)


def _normalisation(data: dict, path: str) -> dict:
    """The ``normalise`` section: ``slang`` (a mapping) and ``homophones`` (a word list)."""
    section = data.get("normalise") or {}
    slang = section.get("slang") or {}
    if not isinstance(slang, dict) or not all(isinstance(k, str) and isinstance(v, str) and k for k, v in slang.items()):
        raise CbtLlmError(f"safety lexicon {path}: normalise.slang must map spellings to plain text")
    words = {"homophones": tuple(str(w) for w in section.get("homophones") or ())}
    bad = [w for w in words["homophones"] if len(w) != 2]
    if bad:
        raise CbtLlmError(f"safety lexicon {path}: normalise.homophones must be two-character words: {bad[:3]}")
    return {"slang": {k.lower(): v for k, v in slang.items()}, **words}


def _parse_lexicon(data: dict, path: str) -> Lexicon:
    if not isinstance(data, dict):
        raise CbtLlmError(f"safety lexicon {path}: top level must be a mapping")
    seen: set = set()
    languages = []
    for language in _LANGUAGES:
        section = data.get(language)
        if section is None:
            continue
        subjects = section.get("subjects", {})
        try:
            lang = LanguageRules(
                language=language,
                third=_compile(subjects["third"], f"{language}.subjects.third"),
                first=_compile(subjects["first"], f"{language}.subjects.first"),
                object_marker=_compile(subjects.get("object_marker", "^$a"), f"{language}.subjects.object_marker"),
                relative=_compile(subjects.get("relative", "^$a"), f"{language}.subjects.relative"),
                relative_marker=_compile(subjects.get("relative_marker", "^$a"), f"{language}.subjects.relative_marker"),
                negation=_compile(section["negation"], f"{language}.negation"),
                personal_event=_compile(section["personal_event"], f"{language}.personal_event"),
                past=_compile(section["past"], f"{language}.past"),
                present=_compile(section["present"], f"{language}.present"),
                distance=_compile(section["distance"], f"{language}.distance"),
                game=_compile(section.get("game", "^$a"), f"{language}.game"),
                reply=_compile(section.get("reply", "^$a"), f"{language}.reply"),
                about=re.compile(_ABOUT[language]),
                mention=_compile(f"(?P<third>{subjects['third']})|(?P<second>{subjects.get('second', '^$a')})"
                                 f"|(?P<first>{subjects['first']})",
                                 f"{language}.subjects"),
                hyperbole=_rules(section.get("hyperbole"), "hyperbole", language, seen),
                rules=_rules(section.get("crisis"), "crisis", language, seen)
                + _rules(section.get("concern"), "concern", language, seen)
                + _rules(section.get("cues"), "cue", language, seen),
                pinyin=_rules(section.get("pinyin"), "crisis", language, seen),
            )
        except KeyError as err:
            raise CbtLlmError(f"safety lexicon {path}: section {language} lacks {err.args[0]!r}") from None
        languages.append(lang)
    if not languages:
        raise CbtLlmError(f"safety lexicon {path}: no zh or en section")
    return Lexicon(path, int(data.get("version", 1)), tuple(languages), **_normalisation(data, path))


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Read and compile the lexicon (the bundled one by default).

    Compiled once per file version: the cache key includes the file's modification time and size,
    so an edited lexicon is picked up without restarting.
    """
    if path is None:
        return _load_lexicon(None, 0, 0)
    try:
        stat = Path(path).stat()
    except OSError as err:
        raise CbtLlmError(f"{path}: cannot read safety lexicon: {err.strerror}") from None
    return _load_lexicon(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load_lexicon(path: str | None, mtime_ns: int, size: int) -> Lexicon:
    import yaml  # PyYAML: a dependency of datasets and huggingface_hub

    if path is None:
        text = (resources.files("cbt_llm") / "data" / "safety_lexicon.yaml").read_text(encoding="utf-8")
        where = "cbt_llm/data/safety_lexicon.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise CbtLlmError(f"{path}: cannot read safety lexicon: {err.strerror}") from None
        where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CbtLlmError(f"{where}: invalid YAML: {err}") from None
    return _parse_lexicon(data, where)


def detect_language(text: str) -> str:
    """``zh`` when the text has at least as many CJK characters as Latin words, or is all pinyin
    (``wo xiang si le``: at least two syllables, every word one or more), else ``en``."""
    cjk = len(_CJK.findall(text))
    words = _LATIN_WORD.findall(text)
    if cjk and cjk >= len(words):
        return "zh"
    parts = [split_pinyin(w.lower()) for w in words] if not cjk and len(words) <= 12 else [None]
    return "zh" if all(parts) and sum(map(len, parts)) >= 2 else "en"


def normalize(text: str, lexicon: Lexicon | None = None) -> str:
    """The text every layer reads (:func:`cbt_llm.safety.normalize.normalize_text` with the lexicon's slang
    and homophone lists): NFKC, lower case, OpenCC traditional -> simplified, split words joined, slang read.

    Offsets refer to this string, not to the input.
    """
    lexicon = lexicon or load_lexicon()
    return normalize_text(text, **lexicon._normaliser)
