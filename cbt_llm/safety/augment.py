"""Training-time variants of a labelled message, so the classifier learns meaning rather than shape.

Each message also appears with a neutral clause before or after it, with its punctuation stripped or
doubled, and with spaces in place of commas: the level must not depend on any of that. (Traditional
characters, full-width forms and split words need no variants: normalisation maps them back before
any layer reads the text.) The benign look-alikes (games, titles, hyperbole, other people's stories,
short 别劝我 / 躺平 shapes) are rows of ``tests/data/safety_train_lookalikes.jsonl``.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from cbt_llm.safety.evaluation import LabelledMessage

NEUTRAL = {
    "zh": {
        "prefix": ["今天好冷，", "刚下班到家。", "说个事情。", "晚饭吃了面条，", "周末在家待着，", "下雨了。",
                   "最近换了个手机，", "早上起晚了，"],
        "suffix": ["。今天天气还行", "，先这样吧", "。晚饭还没吃", "。明天还要上班", "，窗外在下雨", "。刚洗完衣服"],
    },
    "en": {
        "prefix": ["So, ", "It's cold today. ", "Just got home from work. ", "Anyway. ", "Long day. ",
                   "Not sure where to post this. "],
        "suffix": [" Anyway, it's raining here.", " Thanks for reading.", " Going to make dinner now.",
                   " Sorry for the long post.", " It's late here."],
    },
}
_PUNCT = re.compile(r"[，,。！？!?；;：:、…~]+")


def _strip_punctuation(text: str) -> str:
    return _PUNCT.sub(" ", text).strip()


def _double_punctuation(text: str) -> str:
    return _PUNCT.sub(lambda m: m.group(0) * 2, text) + ("！！" if not _PUNCT.search(text[-1:]) else "")


def variants(message: LabelledMessage, rng: random.Random, count: int = 3) -> list[LabelledMessage]:
    """``count`` variants of ``message`` (same label): neutral text around it, punctuation and spacing changed."""
    words = NEUTRAL.get(message.language, NEUTRAL["en"])
    makers = [
        lambda t: rng.choice(words["prefix"]) + t,
        lambda t: t + rng.choice(words["suffix"]),
        lambda t: rng.choice(words["prefix"]) + t + rng.choice(words["suffix"]),
        _strip_punctuation,
        _double_punctuation,
    ]
    chosen = rng.sample(makers, k=min(count, len(makers)))
    return [replace(message, text=make(message.text)) for make in chosen]
