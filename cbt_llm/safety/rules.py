"""The rule layer: every lexicon pattern over the message, each hit weighed in its sentence and clause.

Hyperbole is masked first; a hit is then set aside (negated, distant, someone else's, in the past) or
kept at its level; cues (a plan, a time, a farewell in disguise) count only together or with distress.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.lexicon import LanguageRules, Lexicon, Rule, detect_language, load_lexicon, normalize
from cbt_llm.safety.risk import RANK, Risk

_SENTENCE_END = re.compile(r"[。！？!?\n；;]+|\.(?=\s|$)|…+")
_CLAUSE_BREAK = {
    # 、 lists nouns inside one clause; a space between Chinese characters separates clauses (posts often use no commas)
    "zh": re.compile(r"[，,：:]+|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])|但是|可是|不过|只是"),
    "en": re.compile(r"[,:]+|\b(?:but|though|although|however)\b"),
}
_QUOTES = {"“": "”", '"': '"', "「": "」", "『": "』", "《": "》"}


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
    lang: LanguageRules
    sentences: list
    clauses: list = field(default_factory=list)  # per sentence, absolute clause spans


def _mentions(ctx: _Context, start: int, end: int, objects: bool = False) -> list[tuple[int, str]]:
    """Person mentions (position, 'first'|'second'|'third') in text[start:end], in order.

    A mention right after an object marker is skipped unless a relative clause follows it; with
    ``objects`` only those object mentions are returned.
    """
    lang, text = ctx.lang, ctx.text
    found = []
    pos = start
    while pos < end:
        m = lang.mention.search(text, pos, end)
        if not m:
            break
        is_object = lang.object_marker.search(text[max(start, m.start() - 12):m.start()])
        if objects == bool(is_object and not lang.relative_marker.search(text[m.end():end])):
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
    # nearest earlier clause (then earlier sentences) that names someone: its first subject is the topic;
    # a clause whose only subject is the addressee ("你帮帮我闺蜜吧") is about the third person it names
    earlier = [c for c in clauses[:c_idx]][::-1]
    for prev in range(s_idx - 1, -1, -1):
        earlier.extend(ctx.clauses[prev][::-1])
    for c_start, c_end in earlier:
        subjects = _mentions(ctx, c_start, c_end)
        mentions = [m for m in subjects if m[1] != "second"]
        if not mentions and subjects:
            mentions = [m for m in _mentions(ctx, c_start, c_end, objects=True) if m[1] == "third"]
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


def mask_hyperbole(text: str, lexicon: Lexicon, notes: list) -> str:
    """``text`` (normalised) with every hyperbole span blanked out, a note per span appended to ``notes``."""
    for lang in lexicon.languages:
        for rule in lang.hyperbole:
            def blank(m, rule=rule):
                notes.append(f"hyperbole({rule.id}): {m.group(0)}")
                return " " * len(m.group(0))
            text = rule.regex.sub(blank, text)
    return text


def _judge_hit(ctx: _Context, rule: Rule, m: re.Match) -> tuple[str, str | None]:
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
    norm = mask_hyperbole(normalize(text, lex), lex, notes)
    sentences = _spans(norm, _SENTENCE_END)
    level, reasons, cues, first_concern = "none", [], {}, []
    for lang in lex.languages:
        ctx = _Context(norm, lang, sentences)
        ctx.clauses = [[(s + a, s + b) for a, b in _spans(norm[s:e], _CLAUSE_BREAK[lang.language])]
                       for s, e in sentences]
        reply = lang.reply.search(norm)
        if reply:
            notes.append(f"reply({lang.language}.reply): {reply.group(0).strip(' .!?')}")
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
                if RANK[hit_level] > RANK[level]:
                    level = hit_level
    # a cue (a plan, a set time, a disguised farewell) with distress about oneself, or two different cues
    if cues and level != "crisis" and (first_concern or len(cues) >= 2):
        reasons.append("escalated: " + " + ".join([*first_concern, *cues.values()]))
        level = "crisis"
    elif cues:
        notes.extend(f"cue({label})" for label in cues.values())
    return Risk(level, tuple(reasons), language, tuple(notes))

