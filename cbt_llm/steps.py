"""The five CBT steps in a fluent answer: a cue-phrase detector for Chinese and English.

``detect_steps`` finds which steps an answer walks through and whether in order. Generation's quality
check (``cbt_llm.generation.quality``), the CBT-structure score (``cbt_llm.evaluation.structure``) and
the app's dataset explorer all read answers through it. Pure Python; no model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cbt_llm.data.prompts import STEP_KEYS

# ---------------------------------------------------------------------------------------------
# Step cues. Each step has weighted regular expressions; a sentence's score for a step is the
# sum of the weights of the cues it contains. The lists are deliberately specific: generic words
# ("可以", "you") would let an out-of-order answer pass.
# ---------------------------------------------------------------------------------------------
_ZH_CUES: dict[str, tuple[tuple[str, float], ...]] = {
    "validation": (
        (r"理解|体会|感受到|能想象|可想而知|换作任何人|任何人都会|很多人都懂|都懂|我能感受|我很能", 1.0),
        (r"辛苦|不容易|不好受|心疼|委屈|难受|难过|心寒|煎熬|无助|孤单|失落|压抑|疲惫|很累|一定很|真的很|沉重|遗憾|"
         r"局促|慌张|懊恼|坐立难安|心慌|不安(?!全)|沮丧|孤独|愧疚|痛|伤心|悲伤|压力|打击|石头|扛|承受|背负|牵挂|迷茫|空落落|空虚|困扰|困惑|磨人|为难|难怪|这么累|累坏|紧绷|可见你|有多(认真|在意|想|害怕|难|痛|重要)", 1.0),
        (r"人之常情|被看见|愿意(把这些|说出来|讲出来)|说出来|这份|谢谢你|抱抱|我听到|我看到", 1.0),
        (r"很正常|很自然|很常见|值得被", 0.5),
    ),
    "key_thought": (
        (r"想法", 1.0),
        (r"念头|信念|认知|思维|自动思维|核心信念|心里(可能)?(有|在(想|说))|你(可能)?(会)?觉得|告诉自己|规则|"
         r"结论|推断|断定|认定|意味着|等于|就说明|把[^。！？]{1,20}当成", 1.5),
        (r"灾难化|非黑即白|全或无|以偏概全|过度概括|贴标签|读心术|预言未来|心理过滤|情绪化推理|"
         r"否定积极|个人化|应该|绝对化|认知扭曲|扭曲|猜测", 2.0),
    ),
    "challenge": (
        (r"[？?]", 1.5),  # matched outside quoted speech only, see step_scores
        (r"是否|有没有|是不是|会不会|能不能|真的[^。！？]{0,20}吗|换个角度|另一种可能|"
         r"想一想|想想看|问问自己|回想|如果[^。！？]{0,30}(朋友|别人|同事|同学|家人)", 1.0),
    ),
    "strategy": (
        (r"你可以|您可以|也可以|可以试试|可以试着|试着|试试|不妨|建议|方法|练习|技巧|策略|计划|安排|记录|日记|写下|列出|"
         r"列一个|每天|每周|呼吸|放松|运动|散步|番茄|拆(成|开)|第一步|一是|二是|比如|约|聊一次|坦诚|谈谈|沟通|表达|句式|"
         r"商量|照常|行为实验|缓冲", 1.0),
        (r"^(你|您)?(也|平时|同时)?(可以|不妨|试着)", 1.0),
        (r"(想法|思维|情绪|担忧|证据)(记录|日记)|(记下|写下|记录)[^。！？]{0,12}(想法|念头)", 2.0),
    ),
    "encouragement": (
        (r"慢慢|相信|一步一步|一点一点|一天一天|一小步|循序渐进|起点|开始|值得|加油|需要(一点|一些|一段)?时间|"
         r"不会一下子|不是一下子|一下子就|不会一夜|一夜之间|改变|成长|希望|耐心|进步|温和|走得更远|长跑|迈出|积累|越来越好|没关系|"
         r"可持续|会随着|新的可能", 1.0),
        (r"寻求|专业(人员|帮助|支持|的人)|心理咨询|咨询师|心理老师|心理中心|咨询中心|辅导员|医生|医院|"
         r"精神科|热线|别一个人扛|不必一个人|陪你|如果[^。！？]{0,20}(持续|一直|越来越|加重|很重|严重|长时间|长期)", 2.0),
    ),
}
_EN_CUES: dict[str, tuple[tuple[str, float], ...]] = {
    "validation": (
        (r"\b(understand|understandable|sounds (really |so |very )?(hard|painful|exhausting|difficult|lonely)|"
         r"must (be|feel)|it makes sense|makes sense that|natural to feel|no wonder|I hear|I can see|"
         r"valid|thank you for sharing|brave|not alone|so much on your plate)\b", 1.0),
        (r"\b(exhausting|painful|overwhelming|frustrating|heavy|lonely|hurt|difficult|tough|stressful)\b", 0.5),
    ),
    "key_thought": (
        (r"\b(thought|thoughts|belief|beliefs|thinking|tell yourself|telling yourself|assum\w+|"
         r"conclu\w+|automatic thought|core belief)\b", 1.5),
        (r"\b(all-or-nothing|black-and-white|catastrophi\w+|overgenerali\w+|mind[- ]reading|fortune[- ]telling|"
         r"labell?ing|mental filter|emotional reasoning|personali[sz]\w+|should statements?|cognitive distortions?|"
         r"thinking trap)\b", 2.0),
    ),
    "challenge": (
        (r"\?", 1.0),
        (r"\b(what evidence|is there evidence|evidence|another way|other explanations?|is it possible|"
         r"what would you say|what would you tell|ask yourself|consider whether|is it really|"
         r"would a friend|if a friend)\b", 1.0),
    ),
    "strategy": (
        (r"\b(try|trying|you could|you might|you can|consider|practi[cs]e|exercise|technique|strategy|strategies|"
         r"step|plan|schedule|write down|journal|list|each day|every day|each week|breath\w*|relax\w*|"
         r"for example|one way|start by|small goal)\b", 1.0),
    ),
    "encouragement": (
        (r"\b(step by step|one step at a time|gradually|little by little|over time|takes time|beginning|start|"
         r"believe|hope|hopeful|progress|change is|be patient|be gentle|you can do|worth|deserve|"
         r"keep going|growth|grow)\b", 1.0),
        (r"\b(professional|counsell?or|therapist|psychologist|doctor|helpline|support|reach out)\b", 1.5),
    ),
}
_CUES = {
    "zh": {step: [(re.compile(p), w) for p, w in cues] for step, cues in _ZH_CUES.items()},
    "en": {step: [(re.compile(p, re.IGNORECASE), w) for p, w in cues] for step, cues in _EN_CUES.items()},
}
# Question marks inside quoted speech (a script to say to someone) do not make a challenge.
_QUOTED = re.compile(r"“[^”]*”|\"[^\"]*\"")
_UNQUOTED_ONLY = {r"[？?]", r"\?"}
# A sentence counts for a step when its cue score reaches this.
STEP_THRESHOLD = 1.0

_SENTENCE_SPLIT = {"en": re.compile(r"(?<=[.!?])\s+|\n+")}

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass
class StepDetection:
    """Where the detector found each step: the sentence index chosen for it (None when absent)."""

    sentences: list[str]
    scores: list[dict[str, float]]
    present: dict[str, bool]
    positions: dict[str, int | None]
    in_order: bool

    @property
    def missing(self) -> list[str]:
        return [key for key in STEP_KEYS if not self.present[key]]

    @property
    def count(self) -> int:
        return sum(self.present.values())


_OPEN_QUOTES, _CLOSE_QUOTES = "“‘「『", "”’」』"
_CLOSE_QUOTES_TUPLE = tuple(_CLOSE_QUOTES)
_TERMINATORS = {"zh": "。！？!?；;", "en": ".!?"}


def split_sentences(text: str, language: str = "zh") -> list[str]:
    """Split an answer into sentences at end punctuation and line breaks, keeping quoted speech whole."""
    if language == "en":
        return [s.strip() for s in _SENTENCE_SPLIT["en"].split(text) if s and s.strip()]
    sentences, current, depth = [], [], 0
    for i, char in enumerate(text):
        if char == "\n":
            if depth == 0 or text[i + 1:i + 2] == "\n":  # a line break inside a quote ends it only when doubled
                sentences.append("".join(current))
                current, depth = [], 0
            continue
        current.append(char)
        depth = _quote_depth(char, depth)
        if depth == 0 and _ends_sentence(current) and not text.startswith(_CLOSE_QUOTES_TUPLE, i + 1):
            sentences.append("".join(current))
            current = []
    sentences.append("".join(current))
    return [s.strip() for s in sentences if s.strip()]


def _quote_depth(char: str, depth: int) -> int:
    """How deep in quoted speech the text is after ``char``."""
    if char in _OPEN_QUOTES:
        return depth + 1
    if char in _CLOSE_QUOTES:
        return max(depth - 1, 0)
    return depth


def _ends_sentence(current: list[str]) -> bool:
    """Whether the characters so far end with end punctuation, or with end punctuation and a closing quote."""
    last = current[-1]
    return last in _TERMINATORS["zh"] or (last in _CLOSE_QUOTES and len(current) > 1
                                          and current[-2] in _TERMINATORS["zh"])


def step_scores(sentence: str, language: str = "zh") -> dict[str, float]:
    """The cue score of one sentence for each of the five steps."""
    unquoted = _QUOTED.sub("“”", sentence)
    scores = {}
    for step, cues in _CUES[language].items():
        total = 0.0
        for pattern, weight in cues:
            target = unquoted if pattern.pattern in _UNQUOTED_ONLY else sentence
            total += weight * min(len(pattern.findall(target)), 2)
        scores[step] = total
    return scores


def supported_steps(scores: dict[str, float]) -> list[str]:
    """The steps a sentence supports: those with the highest cue score (ties kept) reaching the threshold."""
    best = max(scores.values(), default=0.0)
    if best < STEP_THRESHOLD:
        return []
    return [key for key in STEP_KEYS if scores[key] == best]


def _weighted_median(points: list[tuple[int, float]]) -> int:
    total = sum(weight for _, weight in points)
    running = 0.0
    for index, weight in points:
        running += weight
        if running >= total / 2:
            return index
    return points[-1][0]


def detect_steps(text: str, language: str = "zh") -> StepDetection:
    """Find the five CBT steps in a fluent answer and whether they come in order.

    Each sentence gets a cue score per step and supports the step(s) with its highest score. A
    step is present when some sentence supports it; its position is the score-weighted median
    of those sentences' indices, which a stray cue elsewhere in the answer hardly moves. The
    steps are in order when the five positions strictly increase.
    """
    if language not in _CUES:
        raise ValueError(f"unknown language {language!r}")
    sentences = split_sentences(text, language)
    scores = [step_scores(s, language) for s in sentences]
    support = [supported_steps(sc) for sc in scores]
    positions: dict[str, int | None] = {}
    for key in STEP_KEYS:
        points = [(i, scores[i][key]) for i, steps in enumerate(support) if key in steps]
        positions[key] = _weighted_median(points) if points else None
    present = {key: positions[key] is not None for key in STEP_KEYS}
    found = [positions[key] for key in STEP_KEYS]
    in_order = all(p is not None for p in found) and all(a < b for a, b in zip(found, found[1:]))
    return StepDetection(sentences, scores, present, positions, in_order)


def language_share(text: str, language: str) -> float:
    """Share of the answer's letters that belong to the language (CJK for zh, Latin for en)."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    total = cjk + latin / (4 if language == "zh" else 1)  # count Latin words for zh, not their letters
    if total == 0:
        return 0.0
    return (cjk if language == "zh" else latin) / total


_QUESTION = re.compile(r"[？?]")


def asks(text: str) -> bool:
    """Whether a counsellor turn asks the client something (a question mark, full or half width)."""
    return bool(_QUESTION.search(text))


def steps_covered(turns: list[str], language: str = "zh") -> list[str]:
    """The five steps the detector finds in at least one of a dialogue's counsellor turns, in step order."""
    found = [detect_steps(text, language).present for text in turns]
    return [key for key in STEP_KEYS if any(present[key] for present in found)]
