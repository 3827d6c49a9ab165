"""Crisis detection for the chat: ``assess_risk(text) -> Risk`` with levels none / concern / crisis.

Layers, each able only to raise the level:

1. **rules** (:mod:`.rules`, patterns in ``cbt_llm/data/safety_lexicon.yaml``): readable, with
   hyperbole, negation, subject, distance and past handling;
2. **classifier** (:mod:`.classifier`, ``classifier.json`` shipped here): hashed character n-grams and
   a linear model, trained on labelled messages (see the README's safety section), on by default;
3. **model guard** (:mod:`.model_guard`): optional, for production: Qwen3Guard (served or local) or
   :class:`OpenAIRiskGuard` over any OpenAI-compatible model, passed as ``model_guard=``.

:func:`assess_conversation` also reads the last few user turns together. Levels:

* ``crisis``: the writer talks about wanting to die or not wanting to live (passive wishes included),
  a plan, means or a question about lethal means, a farewell, self-harm, or an overdose already taken;
  also someone else in an emergency that is happening now.
* ``concern``: hopelessness, worthlessness, being a burden, severe distress; someone else at risk; a
  first-person denial; a bare topic word with nobody named; past history.
* ``none``: hyperbole (累死了, 笑死, "this job is killing me"), talk at a distance, everything else.

Nothing heavy is imported here: no torch, no datasets; ``openai`` only when a model guard is built.
"""

from cbt_llm.safety.classifier import RiskClassifier, load_classifier
from cbt_llm.safety.evaluation import EvalReport, evaluate, evaluate_lexicon, main
from cbt_llm.safety.guard import CONTEXT_TURNS, assess_conversation, assess_risk, recent_user_turns
from cbt_llm.safety.lexicon import Lexicon, detect_language, load_lexicon, normalize
from cbt_llm.safety.model_guard import (GUARD_SYSTEM_PROMPT, LocalQwen3Guard, OpenAIRiskGuard, ServedQwen3Guard,
                                       parse_guard_answer, parse_qwen3guard, served_model_guard)
from cbt_llm.safety.risk import LEVELS, Risk, raise_level
from cbt_llm.safety.rules import assess_lexicon

__all__ = [
    "CONTEXT_TURNS", "GUARD_SYSTEM_PROMPT", "LEVELS", "EvalReport", "Lexicon", "LocalQwen3Guard", "OpenAIRiskGuard",
    "Risk", "RiskClassifier", "ServedQwen3Guard", "assess_conversation", "assess_lexicon", "assess_risk",
    "detect_language", "evaluate", "evaluate_lexicon", "load_classifier", "load_lexicon", "main", "normalize",
    "parse_guard_answer", "parse_qwen3guard", "raise_level", "recent_user_turns", "served_model_guard",
]
