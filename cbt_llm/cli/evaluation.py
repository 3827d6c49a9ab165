"""``cbt-llm predict``, ``evaluate`` and ``judge``: answers from the trained model, their scores, an LLM judge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cbt_llm.cli.common import (
    Command,
    DatasetArguments,
    EndpointArguments,
    ServerArguments,
    SplitArguments,
    option,
    values,
)
from cbt_llm.errors import CbtLlmError


@dataclass(kw_only=True)
class PredictArguments(SplitArguments, ServerArguments):
    output_file: str = option(help="predictions file (resumable)", metavar="PREDS.jsonl")
    model_name_or_path: str | None = option(None, "base model to load (Hub id, folder or cbt-llm/tiny-random-llama; "
                                            "default: the adapter's base)")
    model: str | None = option(None, "with --base_url: the model's name on the server (e.g. a vLLM --lora-modules "
                               "name)", metavar="NAME")
    adapter: str | None = option(None, "LoRA adapter folder or Hub repo id", metavar="DIR|REPO")
    limit: int | None = option(None, "only the first N questions", metavar="N")
    overwrite: bool = option(False, "start the output file again")
    progress: bool = option(True, "show a progress bar (--no_progress: none)")
    batch_size: int = option(8, "prompts per generate call", metavar="N")
    system_prompt: str | None = option(None, "system line (default: the adapter recipe's, else the paper's)")
    max_new_tokens: int | None = option(None, "answer length cap (default: the recipe's, else 512)", metavar="N")
    do_sample: bool | None = option(None, "sample instead of greedy decoding (a --temperature above 0 implies it; "
                                    "--do_sample false forces greedy)", nargs="?", const=True)
    temperature: float | None = option(None, "sampling temperature")
    top_p: float | None = option(None, "nucleus sampling")
    repetition_penalty: float | None = option(None, "e.g. 1.1", metavar="X")
    seed: int = option(0, "random seed")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: cuda when available)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", "weights dtype (auto: bfloat16 on a "
                                                                      "GPU that has it, else float32)")
    base_url: str | None = option(None, "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM with "
                                  "--lora-modules, transformers serve, a hosted API); without it, generate locally",
                                  metavar="URL")
    timeout: float = option(300.0, "seconds per request", metavar="S")

    def __post_init__(self):
        if (self.base_url and self.model_name_or_path) or (self.model and not self.base_url):
            raise CbtLlmError("a model to load is --model_name_or_path; a served one is --base_url URL --model NAME")


def predict(args: PredictArguments) -> str:
    """Answer a split's questions with a local model (+ adapter) or an OpenAI-compatible endpoint."""
    from cbt_llm.evaluation.predict import predict as predict_split

    return predict_split(args.output_file, model=args.model or args.model_name_or_path, adapter=args.adapter,
                         **values(args, SplitArguments), **values(args, ServerArguments), limit=args.limit,
                         batch_size=args.batch_size, system_prompt=args.system_prompt,
                         max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                         top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                         device=args.device, dtype=args.dtype, overwrite=args.overwrite,
                         progress=args.progress).format()


@dataclass(kw_only=True)
class EvaluateArguments(DatasetArguments):
    predictions: list[str] = option(help="predict's output files, one per system", metavar="PREDS.jsonl")
    output_dir: str = option(help="report folder", metavar="DIR")
    names: list[str] | None = option(None, "system names (default: the file names)", metavar="NAME")
    references: str = option("test", "a split of --dataset, or a JSONL file with id and response", metavar="SPLIT|FILE")
    bertscore: bool = option(True, "score BERTScore (--no_bertscore: leave it out, no model is loaded)")
    bertscore_model: str | None = option(None, "BERTScore model (default: bert-base-chinese)", metavar="NAME|DIR")
    bertscore_num_layers: int | None = option(None, "layer to use (default: bert-score's choice for known models, "
                                              "else the last)", metavar="N")
    require_bertscore: bool = option(False, "exit non-zero when BERTScore cannot be computed (default: the report "
                                     "says it is missing, and why)")
    judgements: list[str] | None = option(None, "`cbt-llm judge` outputs to add as columns (matched to systems by "
                                          "name)", metavar="JUDGE.jsonl")
    model_card: str | None = option(None, "also write the results into this adapter card's model-index",
                                    metavar="README.md")
    card_system: str | None = option(None, "which system's results go into the card (default: the one predicted "
                                     "with the card's adapter folder)", metavar="NAME")
    dataset_id: str | None = option(None, "dataset id for the card's model-index (default: --dataset)",
                                    metavar="NS/NAME")


def evaluate(args: EvaluateArguments) -> str:
    """Score the predictions files side by side and write the report."""
    from cbt_llm.evaluation.evaluate import evaluate_systems

    return evaluate_systems(args.predictions, args.output_dir, references=args.references, names=args.names,
                            **values(args, DatasetArguments), bertscore_model=args.bertscore_model,
                            bertscore_num_layers=args.bertscore_num_layers, bertscore=args.bertscore,
                            judgements=args.judgements, model_card=args.model_card, card_system=args.card_system,
                            dataset_id=args.dataset_id, require_bertscore=args.require_bertscore).format()


@dataclass(kw_only=True)
class JudgeArguments(SplitArguments, EndpointArguments):
    predictions: str = option(help="predict's output", metavar="PREDS.jsonl")
    output_file: str = option(help="judgements file (resumable)", metavar="JUDGE.jsonl")
    system: str | None = option(None, "system name stored with the scores (default: the predictions file name)",
                                metavar="NAME")
    temperature: float = option(0.0, "judge temperature")
    max_tokens: int = option(300, "judge reply cap", metavar="N")
    max_asks: int = option(3, "asks per answer when the reply has no valid JSON scores", metavar="N")


def judge(args: JudgeArguments) -> str:
    """Rate each answer with the judge model; the means are printed."""
    from cbt_llm.evaluation.judge import judge as judge_answers

    return judge_answers(args.predictions, args.output_file, args.model, **values(args, SplitArguments),
                         system=args.system, max_asks=args.max_asks, temperature=args.temperature,
                         max_tokens=args.max_tokens, **args.endpoint()).format()


COMMANDS = (
    Command("predict", PredictArguments, predict,
            help="answer a split's questions with a model (+ LoRA adapter) or an OpenAI-compatible endpoint",
            description="Batched generation with transformers (left padding, longest prompts first), or requests to "
                        "--base_url with the generation engine's concurrency and retries. The system line and "
                        "generation settings come from the flags, else the adapter's training_recipe.yaml, else "
                        "greedy decoding. Writes one JSON line per id (id, prediction, settings); rerun to resume."),
    Command("evaluate", EvaluateArguments, evaluate,
            help="score predictions files side by side: metrics, CBT structure, report with plots",
            description="Scores every predictions file on the questions they all share: BLEU and chrF (sacrebleu, zh "
                        "tokenizer), BLEU-1..4, METEOR and distinct-1/2 on jieba words, character ROUGE-L, BERTScore, "
                        "and the CBT-structure score with per-step coverage. Writes report.json, report.md (one "
                        "table) and metrics.png / step_coverage.png to --output_dir."),
    Command("judge", JudgeArguments, judge,
            help="rate answers with an LLM judge: relevance, CBT structure, helpfulness (0-2 each)",
            description="Shows an OpenAI-compatible model each question and answer with a fixed rubric (see "
                        "cbt_llm.evaluation.judge) and stores its JSON scores, one line per id; resumable. Means are "
                        "printed and can be added to the report with `cbt-llm evaluate --judgements`."),
)
