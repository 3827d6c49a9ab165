"""The rule layer: every lexicon pattern over the normalised message, each hit weighed in its sentence and clause.

Hyperbole is masked first; a hit is then set aside (negated, distant, someone else's, in the past, in a
title or a game) or kept at its level, as a typed :class:`~cbt_llm.safety.risk.Hit`; cues (a plan, a time, a
farewell in disguise) count only together or with distress. Latin words typed in pinyin meet the
lexicon's pinyin patterns. Each pattern runs once over the text, so the cost is linear in its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cbt_llm.errors import CbtLlmError
from cbt_llm.safety.lexicon import LanguageRules, Lexicon, Rule, detect_language, load_lexicon, normalize
from cbt_llm.safety.normalize import pinyin_runs
from cbt_llm.safety.risk import RANK, Hit, Risk, RiskLevel

_SENTENCE_END = re.compile(r"[。！？!?\n；;]+|\.(?=\s|$)|…+")
_CLAUSE_BREAK = {
    # 、 lists nouns inside one clause; a space between Chinese characters separates clauses (posts often use no commas)
    "zh": re.compile(r"[，,：:]+|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])|但是|可是|不过|只是"),
    "en": re.compile(r"[,:]+|\b(?:but|though|although|however)\b"),
}
_QUOTES = {"“": "”", '"': '"', "「": "」", "『": "』", "《": "》"}
_SCRIPT = {"zh": re.compile(r"[\u3400-\u9fff\uf900-\ufaff]"), "en": re.compile(r"[a-z]")}


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


def mask_hyperbole(text: str, lexicon: Lexicon, hits: list) -> str:
    """``text`` (normalised) with every hyperbole span blanked out, a ``hyperbole`` hit per span appended to ``hits``."""
    for lang in lexicon.languages:
        for rule in lang.hyperbole:
            def blank(m, rule=rule):
                hits.append(Hit("rules", rule.id, RiskLevel.NONE, "hyperbole", m.span(), m.group(0)))
                return " " * len(m.group(0))
            text = rule.regex.sub(blank, text)
    return text


@dataclass(frozen=True)
class _Where:
    """Where a hit lies: its sentence index, the sentence text, its clause's bounds and the clause text before it."""

    s_idx: int
    sentence: str
    c_end: int
    prefix: str


def _where(ctx: _Context, m: re.Match) -> _Where:
    s_idx = _containing(ctx.sentences, m.start())
    s_start, s_end = ctx.sentences[s_idx]
    clauses = ctx.clauses[s_idx]
    c_start, c_end = clauses[_containing(clauses, m.start())]
    return _Where(s_idx, ctx.text[s_start:s_end], c_end, ctx.text[c_start:m.start()])


def _in_title(ctx: _Context, where: _Where, pos: int) -> bool:
    """True when ``pos`` is inside a 《title》 opened earlier in its sentence."""
    s_start = ctx.sentences[where.s_idx][0]
    opened = ctx.text.rfind("《", s_start, pos)
    return opened >= 0 and ctx.text.find("》", opened, pos) < 0


def _framing(ctx: _Context, rule: Rule, m: re.Match, where: _Where) -> tuple[str, str] | None:
    """A reading that needs no subject: a denial, a title, a game (level, kind), or None."""
    if rule.negatable and ctx.lang.negation.search(where.prefix):
        return ("concern", "negated") if rule.level == "crisis" else ("none", "negated")
    if rule.subject == "any":
        return None
    if _in_title(ctx, where, m.start()):
        return "none", "title"
    if rule.level != "cue" and ctx.lang.game.search(where.sentence):
        return "none", "game"
    return None


def _subject(ctx: _Context, rule: Rule, where: _Where, m: re.Match) -> tuple[str | None, int]:
    if rule.subject == "first":
        return _quote_speaker(ctx, where.s_idx, m.start()) or ("first", -1)
    if rule.subject == "third":
        return "third", -1
    return _resolve_subject(ctx, where.s_idx, m)


def _distant(ctx: _Context, rule: Rule, m: re.Match, where: _Where, subject: tuple[str | None, int]) -> bool:
    """True when the sentence talks about the topic at a distance (a documentary, a paper, prevention ...)."""
    lang, (who, pos) = ctx.lang, subject
    if lang.distance.search(where.sentence):
        cue_between = pos >= 0 and lang.distance.search(ctx.text, pos, m.start()) is not None
        # a topic word that names the subject of a distant thing: 关于...自杀, 自杀预防的论文, "suicide prevention"
        about = rule.subject == "topic" and (lang.about.search(where.prefix)
                                             or lang.distance.search(ctx.text, m.end(), where.c_end))
        if who != "first" or cue_between or about:
            return True
    # a bare topic word in a message that talks about a lecture, an article ...
    return rule.subject == "topic" and who is None and lang.distance.search(ctx.text) is not None


def _crisis_reading(ctx: _Context, rule: Rule, who: str | None, sentence: str) -> tuple[str, str | None]:
    lang = ctx.lang
    past = lang.past.search(sentence) and not lang.present.search(sentence)
    if who == "third":
        return ("crisis", "third_party_emergency") if rule.emergency and not past else ("concern", "third_party")
    if past:
        return "concern", "past"
    if rule.subject == "topic" and who is None and not lang.personal_event.search(sentence):
        return "concern", "topic"
    return "crisis", None


def _judge_hit(ctx: _Context, rule: Rule, m: re.Match) -> tuple[str, str | None]:
    """(level, kind) for one hit; level 'none' with a kind when set aside.

    Cue rules come back as level 'cue' (first person) or 'none'; concern rules as 'concern' with the
    kind None (about the writer) or 'third_party'.
    """
    where = _where(ctx, m)
    framed = _framing(ctx, rule, m, where)
    if framed:
        return framed
    if rule.subject == "any":
        return rule.level, None
    if rule.level == "cue":
        who, _ = _resolve_subject(ctx, where.s_idx, m)
        return ("none", "cue_third_party") if who == "third" else ("cue", None)
    subject = _subject(ctx, rule, where, m)
    if _distant(ctx, rule, m, where, subject):
        return "none", "distance"
    if rule.level != "crisis":
        return ("concern", "third_party") if subject[0] == "third" else ("concern", None)
    return _crisis_reading(ctx, rule, subject[0], where.sentence)


def _lexicon_of(lexicon) -> Lexicon:
    if lexicon is None:
        return load_lexicon()
    if isinstance(lexicon, Lexicon):
        return lexicon
    return load_lexicon(lexicon)


def _language_hits(norm: str, lang: LanguageRules, sentences: list) -> list[Hit]:
    """Every hit of one language's rules, judged in its sentence and clause."""
    ctx = _Context(norm, lang, sentences)
    ctx.clauses = [[(s + a, s + b) for a, b in _spans(norm[s:e], _CLAUSE_BREAK[lang.language])] for s, e in sentences]
    hits = []
    reply = lang.reply.search(norm)
    if reply:
        hits.append(Hit("rules", f"{lang.language}.reply", RiskLevel.NONE, "reply", reply.span(),
                        reply.group(0).strip(" .!?")))
    for rule in lang.rules:
        for m in rule.regex.finditer(norm):
            if m.group(0).strip():
                level, kind = _judge_hit(ctx, rule, m)
                kind = "cue" if level == "cue" else kind
                level = RiskLevel.NONE if level == "cue" else RiskLevel(level)
                hits.append(Hit("rules", rule.id, level, kind, m.span(), m.group(0).strip()))
    return hits


def _pinyin_hits(norm: str, lexicon: Lexicon) -> list[Hit]:
    """Hits of the pinyin patterns on the runs of Latin words typed in pinyin."""
    rules = [rule for lang in lexicon.languages for rule in lang.pinyin]
    if not rules or not _SCRIPT["en"].search(norm):
        return []
    hits = []
    for start, end, syllables in pinyin_runs(norm):
        hits += [Hit("rules", rule.id, RiskLevel.CRISIS, None, (start, end), norm[start:end])
                 for rule in rules if rule.regex.search(syllables)]
    return hits


def _distinct_cues(hits: list[Hit]) -> dict:
    """The cue hits by rule, each rule once and no two overlapping: one phrase is one cue."""
    cues: dict = {}
    for hit in sorted((h for h in hits if h.kind == "cue"), key=lambda h: h.span):
        apart = all(hit.span[0] >= c.span[1] or hit.span[1] <= c.span[0] for c in cues.values())
        if hit.rule not in cues and apart:
            cues[hit.rule] = hit
    return cues


def _escalate(hits: list[Hit]) -> list[Hit]:
    """A cue (a plan, a set time, a disguised farewell) with distress about oneself, or two different cues in
    different places: crisis."""
    cues = _distinct_cues(hits)
    first_concern = [h for h in hits if h.level is RiskLevel.CONCERN and h.kind is None and h.layer == "rules"]
    top = max((h.level.rank for h in hits), default=0)
    if cues and top < RANK["crisis"] and (first_concern or len(cues) >= 2):
        text = " + ".join(h.label() for h in [*first_concern, *cues.values()])
        return [*hits, Hit("rules", "escalated", RiskLevel.CRISIS, None, (-1, -1), text)]
    return hits


def verdict_of(hits: list[Hit], language: str) -> Risk:
    """The :class:`Risk` the hits make: the highest level; reasons from the hits that weigh, notes from the rest."""
    level = max((h.level for h in hits), key=lambda lv: lv.rank, default=RiskLevel.NONE)
    reasons = tuple(dict.fromkeys(h.label() for h in hits if h.level is not RiskLevel.NONE))
    notes = tuple(f"cue({h.rule}: {h.text})" if h.kind == "cue" else h.label()
                  for h in hits if h.level is RiskLevel.NONE)
    return Risk(level, reasons, language, notes, tuple(hits))


def read_rules(text: str, lexicon: Lexicon | str | Path | None = None) -> tuple[Risk, str]:
    """The rules' verdict and the text they read (normalised, hyperbole blanked), which the classifier reads too."""
    if not isinstance(text, str):
        raise CbtLlmError(f"assess_risk expects text, got {type(text).__name__}")
    lex = _lexicon_of(lexicon)
    hits: list = []
    norm = mask_hyperbole(normalize(text, lex), lex, hits)
    sentences = _spans(norm, _SENTENCE_END)
    for lang in lex.languages:
        if _SCRIPT[lang.language].search(norm):
            hits += _language_hits(norm, lang, sentences)
    hits = _escalate(hits + _pinyin_hits(norm, lex))
    return verdict_of(hits, detect_language(text)), norm


def assess_lexicon(text: str, lexicon: Lexicon | str | Path | None = None) -> Risk:
    """The rule-based verdict alone (what :func:`assess_risk` returns without the classifier or a model guard)."""
    return read_rules(text, lexicon)[0]
