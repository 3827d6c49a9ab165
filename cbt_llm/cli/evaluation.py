"""``cbt-llm predict``, ``evaluate`` and ``judge``: answers from the trained model, their scores, an LLM judge.

Each command parses its stage's config (``PredictConfig``, ``EvaluateConfig``, ``JudgeConfig``) and
hands it whole to the stage function.
"""

from __future__ import annotations

from cbt_llm.cli.common import Command
from cbt_llm.evaluation.evaluate import EvaluateConfig, evaluate_systems
from cbt_llm.evaluation.judge import JudgeConfig, judge
from cbt_llm.evaluation.predict import PredictConfig, predict


COMMANDS = (
    Command("predict", PredictConfig, predict,
            help="answer a split's questions with a model (+ LoRA adapter) or an OpenAI-compatible endpoint",
            description="Batched generation with transformers (left padding, longest prompts first), or requests to "
                        "--base_url with the request engine's concurrency and retries. The system line and "
                        "generation settings come from the flags, else the adapter's training_recipe.yaml, else "
                        "greedy decoding. Writes one JSON line per id (id, prediction, settings); rerun to resume."),
    Command("evaluate", EvaluateConfig, evaluate_systems,
            help="score predictions files side by side: metrics, CBT structure, report with plots",
            description="Scores every predictions file on the questions they all share: BLEU and chrF (sacrebleu, zh "
                        "tokenizer), BLEU-1..4, METEOR and distinct-1/2 on jieba words, character ROUGE-L, BERTScore, "
                        "and the CBT-structure score with per-step coverage. Writes report.json, report.md (one "
                        "table) and metrics.png / step_coverage.png to --output_dir."),
    Command("judge", JudgeConfig, judge,
            help="rate answers with an LLM judge: relevance, CBT structure, helpfulness (0-2 each)",
            description="Shows an OpenAI-compatible model each question and answer with a fixed rubric (see "
                        "cbt_llm.evaluation.judge) and stores its JSON scores, one line per id; resumable. Means are "
                        "printed and can be added to the report with `cbt-llm evaluate --judgements`."),
)
