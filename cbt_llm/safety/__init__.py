"""Crisis detection for the chat: ``assess_risk(text) -> Risk`` with levels none / concern / crisis.

Every layer reads the normalised text (:mod:`.normalize`: NFKC, OpenCC traditional -> simplified, split words
joined, curated slang, homophones and pinyin input). Layers are registered by name (:data:`LAYERS`,
:func:`register_layer`), run in order, and each can only raise the level; their signals are typed
(:class:`RiskLevel`, :class:`Hit`), and :attr:`Risk.set_aside` is the one reading of what may be set aside:

1. **rules** (:mod:`.rules`, patterns in ``cbt_llm/data/safety_lexicon.yaml``): readable, with
   hyperbole, negation, subject, distance and past handling;
2. **classifier** (:mod:`.classifier`, ``classifier.json`` shipped here): hashed clause features (character
   n-grams, words, pinyin) and a linear model read clause by clause, trained on labelled real messages
   (see the README's safety section), on by default;
3. **model guard** (:mod:`.model_guard`): optional, for production: Qwen3Guard (served or local) or
   :class:`OpenAIRiskGuard` over any OpenAI-compatible model, passed as ``model_guard=``.

:func:`assess_conversation` also reads the last few user turns together. The severity policy (:mod:`.risk`):

* ``crisis`` (fixed reply, model not called): active ideation or intent, plans, preparations and goodbyes,
  means questions, attempts and overdoses, self-harm acts or intent, someone in danger now; a passive
  wish to be dead (活着没意思, never waking up) is at least ``concern`` and may be ``crisis``.
* ``concern`` (the model is told: a safety instruction joins its system prompt; resources follow the
  reply): distress without a wish, hopelessness, someone else at risk, a denial, past history.
* ``none``: hyperbole (累死了, 笑死, "this job is killing me"), talk at a distance, other people's
  stories, games and titles, everything else.

Nothing heavy is imported here: no torch, no datasets; ``openai`` only when a model guard is built.
"""

from cbt_llm.safety.classifier import RiskClassifier, load_classifier
from cbt_llm.safety.evaluation import EvalReport, evaluate, evaluate_lexicon, main
from cbt_llm.safety.guard import (CONTEXT_TURNS, LAYERS, GuardRun, assess_conversation, assess_risk, recent_user_turns,
                                  register_layer, run_layers)
from cbt_llm.safety.lexicon import Lexicon, detect_language, load_lexicon, normalize
from cbt_llm.safety.model_guard import (GUARD_SYSTEM_PROMPT, LocalQwen3Guard, OpenAIRiskGuard, ServedQwen3Guard,
                                       parse_guard_answer, parse_qwen3guard, served_model_guard)
from cbt_llm.safety.risk import LEVELS, SET_ASIDE_KINDS, Hit, Risk, RiskLevel, raise_level
from cbt_llm.safety.rules import assess_lexicon

__all__ = [
    "CONTEXT_TURNS", "GUARD_SYSTEM_PROMPT", "LAYERS", "LEVELS", "SET_ASIDE_KINDS", "EvalReport", "GuardRun", "Hit",
    "Lexicon", "LocalQwen3Guard", "OpenAIRiskGuard", "Risk", "RiskClassifier", "RiskLevel", "ServedQwen3Guard",
    "assess_conversation", "assess_lexicon", "assess_risk", "detect_language", "evaluate", "evaluate_lexicon",
    "load_classifier", "load_lexicon", "main", "normalize", "parse_guard_answer", "parse_qwen3guard", "raise_level",
    "recent_user_turns", "register_layer", "run_layers", "served_model_guard",
]
