"""Tokenisation shared by the metrics: jieba words and characters, with whitespace dropped."""

from __future__ import annotations

import logging
import re
import threading

_WHITESPACE = re.compile(r"\s+")
_lock = threading.Lock()
_jieba = None


def _tokenizer():
    global _jieba
    with _lock:
        if _jieba is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" chatter on stderr
            _jieba = jieba.Tokenizer()
        return _jieba


def jieba_words(text: str) -> list[str]:
    """jieba's default (precise, HMM on) segmentation; whitespace tokens are dropped, punctuation kept."""
    return [w for w in _tokenizer().lcut(text or "") if w.strip()]


def characters(text: str) -> list[str]:
    """Every non-whitespace character as one token (Chinese characters, punctuation, Latin letters)."""
    return list(_WHITESPACE.sub("", text or ""))


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
