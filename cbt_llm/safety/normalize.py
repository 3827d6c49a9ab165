"""Normalisation before every layer: what the rules, the classifier and a model guard read.

``normalize(text)``: NFKC (full-width -> half-width), lower case, OpenCC traditional -> simplified,
zero-width characters and apostrophes dropped, separators inside a split Chinese word removed
(自 杀, 自-杀, 我 想 死), the lexicon's curated slang rewritten (kms, 人生重开 ...), and homophones of
a few crisis words read as the word (紫砂 / 自鲨 -> 自杀, found through pypinyin; jieba keeps real words
that sound the same, 紫砂壶, 一个完整). ``pinyin_syllables`` and ``pinyin_runs`` give the pinyin channel:
Chinese characters as toneless syllables and Latin words typed in pinyin (``zisha``,
``wo xiang si le``), so pinyin input reaches the same classifier features and the lexicon's pinyin rules.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Iterator

_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff\u00ad]")
# control characters (NUL ...): dropped before OpenCC, whose older releases end a string at its first NUL
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_APOSTROPHE = re.compile(r"['’‘`´]")
_CJK_CHAR = r"[\u3400-\u9fff\uf900-\ufaff]"
# separators typed inside a word to slip past a filter: 自 杀, 自-杀, 自.杀, 自*杀, 自/杀
_SEPARATOR = r"[\s\-_.*·•/|~+=^]+"
# a separator run next to a single CJK character (自 杀, 想 自杀): a word split apart; between two longer runs
# (好累 想躺平了) the space stands for a comma and is kept as a clause break
_SPLIT_WORD = re.compile(rf"(?<!{_CJK_CHAR})({_CJK_CHAR}){_SEPARATOR}(?={_CJK_CHAR})"
                         rf"|(?<={_CJK_CHAR}){_SEPARATOR}({_CJK_CHAR})(?!{_CJK_CHAR})")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_LATIN_TOKEN = re.compile(r"[a-z]+")


@functools.lru_cache(maxsize=1)
def _opencc():
    import opencc  # the field's traditional -> simplified converter (offline dictionaries in the wheel)

    return opencc.OpenCC("t2s")


def _toneless(reading: str) -> str:
    plain = "".join(c for c in unicodedata.normalize("NFD", reading) if not unicodedata.combining(c))
    return plain.replace("ü", "v").replace("u\u0308", "v")


@functools.lru_cache(maxsize=1)
def _readings() -> dict:
    """Code point -> tuple of toneless pinyin readings (first = most common), from pypinyin's dictionary."""
    from pypinyin.constants import PINYIN_DICT

    return {cp: tuple(dict.fromkeys(_toneless(r) for r in value.split(","))) for cp, value in PINYIN_DICT.items()}


@functools.lru_cache(maxsize=1)
def _inventory() -> frozenset:
    """Every toneless pinyin syllable."""
    return frozenset(r for readings in _readings().values() for r in readings if r.isalpha())


@functools.lru_cache(maxsize=1)
def first_readings() -> dict:
    """Character -> its most common toneless reading (characters with a reading only)."""
    return {chr(cp): readings[0] for cp, readings in _readings().items() if readings[0]}


def char_pinyin(ch: str) -> str:
    """The most common toneless reading of one character ('' when it has none)."""
    return first_readings().get(ch, "")


def pinyin_syllables(text: str) -> list[str]:
    """Toneless syllables of the Chinese characters in ``text`` and of its Latin words typed in pinyin."""
    out = []
    for m in re.finditer(rf"{_CJK_CHAR}|[a-z]+", text):
        token = m.group(0)
        out.extend(split_pinyin(token) or () if token.isascii() else [char_pinyin(token)])
    return [s for s in out if s]


@functools.lru_cache(maxsize=4096)
def split_pinyin(token: str) -> tuple[str, ...] | None:
    """``token`` (lower-case Latin letters) cut into pinyin syllables (``zisha`` -> zi, sha), or None."""
    if len(token) > 30:  # no one types a sentence as one word; a long run of letters is not pinyin
        return None
    inventory = _inventory()
    best: list = [None] * (len(token) + 1)
    best[0] = ()
    for end in range(1, len(token) + 1):
        for start in range(max(0, end - 6), end):
            if best[start] is not None and token[start:end] in inventory:
                candidate = (*best[start], token[start:end])
                if best[end] is None or len(candidate) < len(best[end]):
                    best[end] = candidate
    return best[-1]


def pinyin_runs(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, syllables joined by spaces) for each run of Latin words that all read as pinyin."""
    start = end = -1
    syllables: list = []
    for m in _LATIN_TOKEN.finditer(text):
        parts = split_pinyin(m.group(0))
        if parts and (start < 0 or not text[end:m.start()].strip()):
            start = m.start() if start < 0 else start
            end, syllables = m.end(), [*syllables, *parts]
            continue
        if syllables:
            yield start, end, " ".join(syllables)
        start, end, syllables = (m.start(), m.end(), list(parts)) if parts else (-1, -1, [])
    if syllables:
        yield start, end, " ".join(syllables)


def _join_split_words(text: str) -> str:
    return _SPLIT_WORD.sub(lambda m: m.group(1) or m.group(2), text)


def read_homophones(text: str, targets: dict) -> str:
    """Each CJK pair that sounds like a target word (``targets``: syllable pair -> word) replaced by it, when
    jieba reads the pair as one word or as two single characters in its clause (so 紫砂 and 自鲨 become 自杀,
    while 紫砂壶 and 一个完整 keep their words). Linear: one regex finds the few candidate pairs."""
    if not targets:
        return text
    readings = _readings()

    def swap(m: re.Match) -> str:
        pair = m.group(0)
        word = next((targets[(a, b)] for a in readings.get(ord(pair[0]), ()) for b in readings.get(ord(pair[1]), ())
                     if (a, b) in targets), None)
        return word if word and word != pair and _stands_alone(text, m.start()) else pair
    return _pair_finder(tuple(sorted(targets))).sub(swap, text)


def _stands_alone(text: str, start: int) -> bool:
    """True when jieba cuts the two characters at ``start`` as one word or as two one-character words."""
    import jieba  # a dependency already (word features); loaded only when a sound-alike pair turns up

    jieba.setLogLevel(60)
    left = max(0, start - 6)
    offset, cuts = left, set()
    for token in jieba.cut(text[left:start + 8], HMM=False):
        cuts.add((offset, offset + len(token)))
        offset += len(token)
    return (start, start + 2) in cuts or {(start, start + 1), (start + 1, start + 2)} <= cuts


@functools.lru_cache(maxsize=8)
def _pair_finder(pairs: tuple) -> re.Pattern:
    """A regex for two adjacent characters that can read as the first and second syllable of one of ``pairs``."""
    readings = _readings()
    firsts, seconds = {a for a, _ in pairs}, {b for _, b in pairs}

    def chars(syllables: set) -> str:
        return "".join(re.escape(chr(cp)) for cp, rs in readings.items()
                       if 0x3400 <= cp <= 0x9fff and syllables.intersection(rs))
    return re.compile(f"[{chars(firsts)}][{chars(seconds)}]")


def homophone_targets(words) -> dict:
    """(syllable, syllable) -> word for each two-character crisis word."""
    return {(char_pinyin(w[0]), char_pinyin(w[1])): w for w in words if len(w) == 2}


def normalize_text(text: str, slang: re.Pattern | None = None, slang_map: dict | None = None,
                   homophones: dict | None = None) -> str:
    """The text every layer reads; see the module docstring. Offsets refer to this string, not the input."""
    text = _CONTROL.sub("", unicodedata.normalize("NFKC", text).lower())
    text = _opencc().convert(text)
    text = _APOSTROPHE.sub("", _ZERO_WIDTH.sub("", text))
    text = _join_split_words(text)
    if slang is not None:
        text = slang.sub(lambda m: slang_map[m.group(0)], text)
    text = read_homophones(text, homophones or {})
    return _SPACES.sub(" ", text).strip()
