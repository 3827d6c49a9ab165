"""Crisis detection for the chat: ``assess_risk(text) -> Risk`` with levels none / concern / crisis.

The rules live in ``cbt_llm/data/safety_lexicon.yaml`` (patterns with ids and comments, per language,
plus the hyperbole, negation, subject, distance and past rules); its header explains how a message is
read. Decisions this module makes (also in the README):

* ``crisis``: the writer talks about wanting to die or not wanting to live (passive wishes included:
  "go to sleep and never wake up", 不想活了), a plan, means or a question about lethal means, a farewell,
  self-harm, or an overdose already taken. Also someone else in an emergency that is happening now
  (an overdose taken, 割腕了, on the bridge, not breathing): emergency numbers help whoever is present.
* ``concern``: hopelessness, worthlessness, being a burden, wanting to disappear, severe distress
  (活着好累, 撑不下去了, "can't take this anymore"); someone else at risk ("my friend wants to die",
  "how do I help a suicidal friend"); a first-person denial ("I'm not suicidal, just tired": the
  subject was raised, so resources are offered, but the fixed crisis reply would not fit); a bare
  topic word with nobody named ("is suicide selfish?"); past history ("I attempted suicide when I was 17").
* ``none``: hyperbole (累死了, 笑死, "this job is killing me"), talk about the topic at a distance
  (a documentary, an article, research on suicide prevention) and everything else.

An optional judge (any callable, or :class:`OpenAIRiskJudge` for an OpenAI-compatible server) can only
raise the level. Nothing heavy is imported here: the ``openai`` client is imported when a judge is built.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

from cbt_llm.errors import CbtLlmError

LEVELS = ("none", "concern", "crisis")
_RANK = {level: i for i, level in enumerate(LEVELS)}
_LANGUAGES = ("zh", "en")
_SUBJECT_MODES = ("first", "third", "resolve", "topic", "any")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[a-zA-Z]+")
_SENTENCE_END = re.compile(r"[。！？!?\n；;]+|\.(?=\s|$)|…+")
_CLAUSE_BREAK = {
    "zh": re.compile(r"[，,：:]+|但是|可是|不过|只是"),  # 、 lists nouns inside one clause
    "en": re.compile(r"[,:]+|\b(?:but|though|although|however)\b"),
}
_QUOTES = {"“": "”", '"': '"', "「": "」", "『": "』", "《": "》"}


@dataclass(frozen=True)
class Risk:
    """The verdict on one message.

    ``reasons`` are the signals behind the level, as ``"<rule>: <matched text>"`` with a prefix when a
    rule changed the weight (``third_party(...)``, ``third_party_emergency(...)``, ``negated(...)``,
    ``topic(...)``, ``past(...)``, ``judge``). ``notes`` are signals that were seen and set aside
    (hyperbole, distance, negated concern), for reviewing the lexicon.
    """

    level: str
    reasons: tuple[str, ...] = ()
    language: str = "en"
    notes: tuple[str, ...] = ()

    @property
    def is_crisis(self) -> bool:
        return self.level == "crisis"

    @property
    def third_party_only(self) -> bool:
        """True when every crisis reason is about someone else in an emergency (not the writer)."""
        crisis = [r for r in self.reasons if not r.startswith(("third_party(", "negated(", "topic(", "past("))]
        return bool(crisis) and all(r.startswith("third_party_emergency(") for r in crisis)


# --------------------------------------------------------------------------------------------- lexicon
@dataclass(frozen=True)
class _Rule:
    id: str
    level: str
    kind: str
    subject: str
    negatable: bool
    emergency: bool
    regex: re.Pattern
    comment: str


@dataclass(frozen=True)
class _LanguageRules:
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
    about: re.Pattern
    mention: re.Pattern
    hyperbole: tuple[_Rule, ...]
    rules: tuple[_Rule, ...]


@dataclass(frozen=True)
class Lexicon:
    """The compiled lexicon: build it with :func:`load_lexicon` (cached per path)."""

    path: str
    version: int
    trad_to_simp: dict
    languages: tuple[_LanguageRules, ...]

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


def _rules(entries, level: str, language: str, seen: set) -> tuple[_Rule, ...]:
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
        out.append(_Rule(rule_id, level, str(entry.get("kind", level)), subject, bool(entry.get("negatable", True)),
                         bool(entry.get("emergency", False)), _compile(entry["pattern"], rule_id),
                         str(entry.get("comment", ""))))
    return tuple(out)


def _parse_lexicon(data: dict, path: str) -> Lexicon:
    if not isinstance(data, dict):
        raise CbtLlmError(f"safety lexicon {path}: top level must be a mapping")
    pairs = str(data.get("traditional_to_simplified", "")).split()
    bad = [p for p in pairs if len(p) != 2]
    if bad:
        raise CbtLlmError(f"safety lexicon {path}: traditional_to_simplified entries must be two characters: {bad[:3]}")
    seen: set = set()
    languages = []
    for language in _LANGUAGES:
        section = data.get(language)
        if section is None:
            continue
        subjects = section.get("subjects", {})
        try:
            lang = _LanguageRules(
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
                about=re.compile(_ABOUT[language]),
                mention=_compile(f"(?P<third>{subjects['third']})|(?P<second>{subjects.get('second', '^$a')})"
                                 f"|(?P<first>{subjects['first']})",
                                 f"{language}.subjects"),
                hyperbole=_rules(section.get("hyperbole"), "hyperbole", language, seen),
                rules=_rules(section.get("crisis"), "crisis", language, seen)
                + _rules(section.get("concern"), "concern", language, seen)
                + _rules(section.get("cues"), "cue", language, seen),
            )
        except KeyError as err:
            raise CbtLlmError(f"safety lexicon {path}: section {language} lacks {err.args[0]!r}") from None
        languages.append(lang)
    if not languages:
        raise CbtLlmError(f"safety lexicon {path}: no zh or en section")
    return Lexicon(path, int(data.get("version", 1)), {p[0]: p[1] for p in pairs}, tuple(languages))


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


# ------------------------------------------------------------------------------------------- analysis
def detect_language(text: str) -> str:
    """``zh`` when the text has at least as many CJK characters as Latin words, else ``en``."""
    cjk = len(_CJK.findall(text))
    return "zh" if cjk and cjk >= len(_LATIN_WORD.findall(text)) else "en"


def normalize(text: str, lexicon: Lexicon | None = None) -> str:
    """NFKC, lower case, listed traditional characters to simplified, apostrophes dropped, spaces collapsed.

    The result has the same meaning for the rules; offsets refer to this string, not to the input.
    """
    lexicon = lexicon or load_lexicon()
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.translate(str.maketrans(lexicon.trad_to_simp))
    text = re.sub(r"['’‘`´]", "", text)
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()


def _spans(text: str, breaker: re.Pattern) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in breaker.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return spans


def _containing(spans: list[tuple[int, int]], pos: int) -> int:
    for i, (start, end) in enumerate(spans):
        if start <= pos < end or (pos == end and i == len(spans) - 1):
            return i
    return len(spans) - 1


@dataclass
class _Context:
    text: str
    lang: _LanguageRules
    sentences: list
    clauses: list = field(default_factory=list)  # per sentence, absolute clause spans


def _mentions(ctx: _Context, start: int, end: int) -> list[tuple[int, str]]:
    """Person mentions (position, 'first'|'second'|'third') in text[start:end], in order.

    A mention right after an object marker is skipped unless a relative clause follows it.
    """
    lang, text = ctx.lang, ctx.text
    found = []
    pos = start
    while pos < end:
        m = lang.mention.search(text, pos, end)
        if not m:
            break
        is_object = lang.object_marker.search(text[max(start, m.start() - 12):m.start()])
        if not is_object or lang.relative_marker.search(text[m.end():end]):
            found.append((m.start(), "first" if m.group("first") else "second" if m.group("second") else "third"))
        pos = m.end()
    return found


def _resolve_subject(ctx: _Context, s_idx: int, match: re.Match) -> tuple[str | None, int]:
    """Who the hit at ``match`` is about: ('first'|'third'|None, position of that mention or -1)."""
    lang, text = ctx.lang, ctx.text
    s_start, _ = ctx.sentences[s_idx]
    after = text[match.end():match.end() + 8]
    if lang.relative.search(after):
        return "third", match.start()
    speaker = _quote_speaker(ctx, s_idx, match.start())
    if speaker:
        return speaker
    clauses = ctx.clauses[s_idx]
    c_idx = _containing(clauses, match.start())
    mentions = _mentions(ctx, clauses[c_idx][0], match.start())
    if mentions:  # the addressee named in the same clause ("你去死") is someone else too
        kind = mentions[-1][1]
        return ("third" if kind == "second" else kind), mentions[-1][0]
    # nearest earlier clause (then earlier sentences) that names someone: its first mention is the topic
    earlier = [c for c in clauses[:c_idx]][::-1]
    for prev in range(s_idx - 1, -1, -1):
        earlier.extend(ctx.clauses[prev][::-1])
    for c_start, c_end in earlier:
        mentions = [m for m in _mentions(ctx, c_start, c_end) if m[1] != "second"]
        if mentions:
            return mentions[0][1], mentions[0][0]
    return None, -1


def _quote_speaker(ctx: _Context, s_idx: int, pos: int) -> tuple[str, int] | None:
    """When ``pos`` is inside a quote opened in its sentence and a third person speaks it: ('third', where)."""
    s_start, _ = ctx.sentences[s_idx]
    before = ctx.text[s_start:pos]
    for i in range(len(before) - 1, -1, -1):
        ch = before[i]
        if ch in _QUOTES and _QUOTES[ch] not in before[i + 1:]:
            mentions = _mentions(ctx, s_start, s_start + i)
            if mentions and mentions[-1][1] in ("third", "second"):
                return "third", mentions[-1][0]
            return None
    return None


def _mask(text: str, lexicon: Lexicon, notes: list) -> str:
    for lang in lexicon.languages:
        for rule in lang.hyperbole:
            def blank(m, rule=rule):
                notes.append(f"hyperbole({rule.id}): {m.group(0)}")
                return " " * len(m.group(0))
            text = rule.regex.sub(blank, text)
    return text


def _judge_hit(ctx: _Context, rule: _Rule, m: re.Match) -> tuple[str, str | None]:
    """(level, reason-or-note prefix) for one hit; level 'none' with a note prefix when set aside.

    Cue rules come back as level 'cue' (first person) or 'none'; concern rules as 'concern' with the
    prefix None (about the writer) or 'third_party'.
    """
    lang, text = ctx.lang, ctx.text
    s_idx = _containing(ctx.sentences, m.start())
    s_start, s_end = ctx.sentences[s_idx]
    sentence = text[s_start:s_end]
    clauses = ctx.clauses[s_idx]
    c_start, c_end = clauses[_containing(clauses, m.start())]
    prefix = text[c_start:m.start()]
    crisis = rule.level == "crisis"

    if rule.negatable and lang.negation.search(prefix):
        return ("concern", "negated") if crisis else ("none", "negated")
    if rule.level == "cue":
        subject, _ = _resolve_subject(ctx, s_idx, m)
        return ("none", "cue_third_party") if subject == "third" else ("cue", None)
    if rule.subject == "any":
        return rule.level, None
    if rule.subject == "first":
        subject, where = _quote_speaker(ctx, s_idx, m.start()) or ("first", -1)
    elif rule.subject == "third":
        subject, where = "third", -1
    else:
        subject, where = _resolve_subject(ctx, s_idx, m)

    distance = lang.distance.search(sentence)
    if distance:
        cue_between = where >= 0 and lang.distance.search(text, where, m.start()) is not None
        # a topic word that names the subject of a distant thing: 关于...自杀, 自杀预防的论文, "suicide prevention"
        about = rule.subject == "topic" and (lang.about.search(prefix) or lang.distance.search(text, m.end(), c_end))
        if subject != "first" or cue_between or about:
            return "none", "distance"
    if rule.subject == "topic" and subject is None and lang.distance.search(text):
        return "none", "distance"  # a bare topic word in a message that talks about a lecture, an article ...
    if not crisis:
        return ("concern", "third_party") if subject == "third" else ("concern", None)
    if subject == "third":
        past = lang.past.search(sentence) and not lang.present.search(sentence)
        if rule.emergency and not past:
            return "crisis", "third_party_emergency"
        return "concern", "third_party"
    if rule.subject == "topic" and subject is None and not lang.personal_event.search(sentence):
        return "concern", "topic"
    if lang.past.search(sentence) and not lang.present.search(sentence):
        return "concern", "past"
    return "crisis", None


def _lexicon_of(lexicon) -> Lexicon:
    if lexicon is None:
        return load_lexicon()
    if isinstance(lexicon, Lexicon):
        return lexicon
    return load_lexicon(lexicon)


def assess_lexicon(text: str, lexicon: Lexicon | str | Path | None = None) -> Risk:
    """The rule-based verdict alone (what :func:`assess_risk` returns without a judge)."""
    if not isinstance(text, str):
        raise CbtLlmError(f"assess_risk expects text, got {type(text).__name__}")
    lex = _lexicon_of(lexicon)
    language = detect_language(text)
    notes: list = []
    norm = _mask(normalize(text, lex), lex, notes)
    sentences = _spans(norm, _SENTENCE_END)
    level, reasons, cues, first_concern = "none", [], {}, []
    for lang in lex.languages:
        ctx = _Context(norm, lang, sentences)
        ctx.clauses = [[(s + a, s + b) for a, b in _spans(norm[s:e], _CLAUSE_BREAK[lang.language])]
                       for s, e in sentences]
        for rule in lang.rules:
            for m in rule.regex.finditer(norm):
                if not m.group(0).strip():
                    continue
                hit_level, tag = _judge_hit(ctx, rule, m)
                label = f"{rule.id}: {m.group(0).strip()}" if tag is None else f"{tag}({rule.id}): {m.group(0).strip()}"
                if hit_level == "cue":
                    cues.setdefault(rule.id, label)
                    continue
                if hit_level == "none":
                    notes.append(label)
                    continue
                if rule.level == "concern" and tag is None:
                    first_concern.append(label)
                if label not in reasons:
                    reasons.append(label)
                if _RANK[hit_level] > _RANK[level]:
                    level = hit_level
    # a cue (a plan, a set time, a disguised farewell) with distress about oneself, or two different cues
    if cues and level != "crisis" and (first_concern or len(cues) >= 2):
        reasons.append("escalated: " + " + ".join([*first_concern, *cues.values()]))
        level = "crisis"
    elif cues:
        notes.extend(f"cue({label})" for label in cues.values())
    return Risk(level, tuple(reasons), language, tuple(notes))


def raise_level(risk: Risk, level: str, reason: str) -> Risk:
    """``risk`` at ``level`` if that is higher (never lower), with ``reason`` added."""
    if level not in _RANK:
        raise CbtLlmError(f"unknown risk level {level!r}; expected one of {', '.join(LEVELS)}")
    if _RANK[level] <= _RANK[risk.level]:
        return risk
    return Risk(level, (*risk.reasons, reason), risk.language, risk.notes)


def _judge_verdict(verdict) -> tuple[str, str]:
    if isinstance(verdict, Risk):
        return verdict.level, "; ".join(verdict.reasons)
    if isinstance(verdict, str):
        return verdict.strip().lower(), ""
    if isinstance(verdict, dict):
        reason = verdict.get("reason") or verdict.get("reasons") or ""
        if isinstance(reason, (list, tuple)):
            reason = "; ".join(map(str, reason))
        return str(verdict.get("level", "")).strip().lower(), str(reason)
    level = getattr(verdict, "level", None)
    if level is not None:
        return str(level).strip().lower(), str(getattr(verdict, "reason", "") or "")
    raise CbtLlmError(f"risk judge returned {type(verdict).__name__}; expected a level, a dict or a Risk")


def assess_risk(text: str, judge: Callable | None = None, lexicon: Lexicon | str | Path | None = None) -> Risk:
    """Classify one message as none / concern / crisis, with the reasons.

    ``judge`` is an optional second opinion (a callable taking the text and returning a level string,
    a ``{"level", "reason"}`` dict or a :class:`Risk`; :class:`OpenAIRiskJudge` is one). It is asked
    only when the lexicon did not already say crisis, and it can only raise the level. A judge that
    fails or answers nonsense leaves the lexicon's verdict in place, with a note saying so: the chat
    must not go down because the judge did.
    """
    risk = assess_lexicon(text, lexicon)
    if judge is None or risk.level == "crisis":
        return risk
    try:
        level, reason = _judge_verdict(judge(text))
        if level not in _RANK:
            raise CbtLlmError(f"risk judge answered unknown level {level!r}")
    except Exception as err:  # noqa: BLE001 - any judge failure must leave the lexicon verdict standing
        return Risk(risk.level, risk.reasons, risk.language, (*risk.notes, f"judge_error: {err}"))
    return raise_level(risk, level, f"judge: {reason}".rstrip(": ") if reason else "judge")


# ---------------------------------------------------------------------------------------------- judge
JUDGE_SYSTEM_PROMPT = (
    "You are a safety classifier for a mental-health support chat in Chinese and English. "
    "Classify the user's message into exactly one level:\n"
    '- "crisis": the writer expresses suicidal thoughts or a wish to be dead, a plan, means or a question '
    "about lethal means, a farewell, self-harm, or has already taken an overdose; or someone present is in "
    "a medical emergency now.\n"
    '- "concern": hopelessness, worthlessness, wanting to disappear, severe distress without stated intent, '
    "or worry about another person who may be at risk.\n"
    '- "none": everything else, including hyperbole ("this job is killing me", 累死了) and discussion of '
    "the topic at a distance (articles, research, documentaries).\n"
    'Answer with one JSON object and nothing else: {"level": "none|concern|crisis", "reason": "<short reason>"}'
)


class OpenAIRiskJudge:
    """A model-based risk check over any OpenAI-compatible chat-completions server.

    ``OpenAIRiskJudge(base_url, model, api_key_env="OPENAI_API_KEY")``; calling it with a message
    returns ``{"level": ..., "reason": ...}``. The ``openai`` package is imported when the judge is
    built, never when :mod:`cbt_llm.safety` is imported. Pass it as ``assess_risk(text, judge=...)``.
    """

    def __init__(self, base_url: str | None, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 30.0, max_retries: int = 1, system_prompt: str = JUDGE_SYSTEM_PROMPT):
        import os

        try:
            import openai
        except ImportError:
            raise CbtLlmError("the risk judge needs the openai package: pip install openai") from None
        self.model = model
        self.system_prompt = system_prompt
        api_key = os.environ.get(api_key_env) or ("EMPTY" if base_url else None)
        if not api_key:
            raise CbtLlmError(f"risk judge: set {api_key_env} (or give base_url for a local server)")
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    def __call__(self, text: str) -> dict:
        response = self._client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": self.system_prompt}, {"role": "user", "content": text}],
            temperature=0,
            max_tokens=200,
        )
        content = (response.choices[0].message.content or "").strip()
        return parse_judge_answer(content)


def parse_judge_answer(content: str) -> dict:
    """The ``{"level", "reason"}`` object in a judge's answer (tolerates code fences and chatter)."""
    match = re.search(r"\{.*\}", content, re.S)
    if match:
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and str(data.get("level", "")).strip().lower() in _RANK:
            return {"level": str(data["level"]).strip().lower(), "reason": str(data.get("reason", ""))}
    bare = content.strip().strip('"').lower()
    if bare in _RANK:
        return {"level": bare, "reason": ""}
    raise CbtLlmError(f"risk judge answer has no level: {content[:200]!r}")


# ----------------------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class EvalReport:
    """Confusion table of the lexicon on a labelled JSONL file (``text``, ``label`` and optional ``category``)."""

    confusion: dict  # gold label -> predicted label -> count
    total: int
    crisis_recall: float
    benign_crisis_rate: float  # share of messages not labelled crisis that were flagged crisis
    accuracy: float
    errors: tuple  # (gold, predicted, category, text, reasons)
    by_category: dict  # category -> (correct, total)

    def table(self) -> str:
        """A Markdown confusion table plus the headline numbers."""
        head = "| gold \\ predicted | " + " | ".join(LEVELS) + " | total |"
        lines = [head, "|---" * (len(LEVELS) + 2) + "|"]
        for gold in LEVELS:
            row = self.confusion.get(gold, {})
            lines.append(f"| {gold} | " + " | ".join(str(row.get(p, 0)) for p in LEVELS)
                         + f" | {sum(row.values())} |")
        benign = sum(sum(self.confusion.get(g, {}).values()) for g in LEVELS if g != "crisis")
        lines += ["", f"messages: {self.total}; crisis recall: {self.crisis_recall:.3f}; "
                  f"benign flagged crisis: {self.benign_crisis_rate:.3f} "
                  f"({round(self.benign_crisis_rate * benign)} of {benign}); exact-level accuracy: {self.accuracy:.3f}"]
        return "\n".join(lines)


def evaluate_lexicon(path: str | Path, lexicon: Lexicon | str | Path | None = None,
                     judge: Callable | None = None) -> EvalReport:
    """Run :func:`assess_risk` over a labelled JSONL file and build the confusion table."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CbtLlmError(f"{path}: cannot read evaluation file: {err.strerror}") from None
    confusion = {g: Counter() for g in LEVELS}
    errors, by_category = [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, gold = row["text"], row["label"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CbtLlmError(f"{path}:{number}: expected a JSON object with text and label") from None
        if gold not in _RANK:
            raise CbtLlmError(f"{path}:{number}: label {gold!r} is not one of {', '.join(LEVELS)}")
        risk = assess_risk(text, judge=judge, lexicon=lexicon)
        confusion[gold][risk.level] += 1
        category = row.get("category", gold)
        ok, n = by_category.get(category, (0, 0))
        by_category[category] = (ok + (risk.level == gold), n + 1)
        if risk.level != gold:
            errors.append((gold, risk.level, category, text, risk.reasons))
    total = sum(sum(c.values()) for c in confusion.values())
    if not total:
        raise CbtLlmError(f"{path}: no labelled messages")
    crisis_n = sum(confusion["crisis"].values())
    benign_n = total - crisis_n
    benign_flagged = confusion["none"]["crisis"] + confusion["concern"]["crisis"]
    return EvalReport(
        confusion={g: dict(c) for g, c in confusion.items()},
        total=total,
        crisis_recall=confusion["crisis"]["crisis"] / crisis_n if crisis_n else float("nan"),
        benign_crisis_rate=benign_flagged / benign_n if benign_n else 0.0,
        accuracy=sum(confusion[g][g] for g in LEVELS) / total,
        errors=tuple(errors),
        by_category=by_category,
    )


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m cbt_llm.safety --eval FILE`` prints the confusion table; ``python -m cbt_llm.safety TEXT`` one verdict."""
    parser = argparse.ArgumentParser(prog="python -m cbt_llm.safety", description=main.__doc__)
    parser.add_argument("text", nargs="*", help="messages to assess")
    parser.add_argument("--eval", metavar="FILE", help="labelled JSONL (text, label, category)")
    parser.add_argument("--lexicon", metavar="YAML", help="a lexicon file instead of the bundled one")
    parser.add_argument("--errors", action="store_true", help="with --eval, list the misclassified messages")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.eval:
            report = evaluate_lexicon(args.eval, lexicon=args.lexicon)
            print(report.table())
            if args.errors:
                for gold, predicted, category, text, reasons in report.errors:
                    print(f"- gold {gold}, got {predicted} [{category}]: {text}  {list(reasons)}")
        for text in args.text:
            risk = assess_risk(text, lexicon=args.lexicon)
            print(json.dumps({"text": text, "level": risk.level, "reasons": risk.reasons,
                              "language": risk.language, "notes": risk.notes}, ensure_ascii=False))
        if not args.eval and not args.text:
            parser.print_usage()
            return 2
    except CbtLlmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
