"""The whole pipeline end to end, offline on a CPU, on the bundled data: what `make demo` runs.

    python examples/demo.py [--output demo_output]

Each stage prints one line saying what it made and where, and training one line per epoch with its
losses; the libraries' own progress output goes to OUTPUT/logs/STAGE.log. The model is random and
small: training teaches it the five-step format of 56 sample answers, which the report shows (the
fine-tuned model beats its base), not counselling skill. The dialogue slice does the same for the
bundled CBT dialogues: a short fine-tune, its counsellor turns scored as dialogues, and a scripted
exchange through the guarded chat.
"""

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from cbt_llm.bench import BenchConfig, bench  # noqa: E402
from cbt_llm.chat import GenerationSettings, LocalBackend, run_chat  # noqa: E402
from cbt_llm.data.build import BuildConfig, build_dataset  # noqa: E402
from cbt_llm.data.splits import sample_path, sample_questions_path  # noqa: E402
from cbt_llm.evaluation.evaluate import EvaluateConfig, evaluate_systems  # noqa: E402
from cbt_llm.evaluation.predict import PredictConfig, predict  # noqa: E402
from cbt_llm.generation.generate import GenerateConfig, generate  # noqa: E402
from cbt_llm.hub import PushConfig, push  # noqa: E402
from cbt_llm.models.serve import transformers_serve  # noqa: E402
from cbt_llm.models.tiny import SMALL_MODEL_NAME, tiny_model_path  # noqa: E402
from cbt_llm.training.train import build_trainer, parse_args, train_and_save  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

BENCH_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench"
BENCH_LIMIT = 12  # items per task in the demo's bench slice
DIALOGUE_STEPS = 160  # the dialogue slice's fine-tune: 20 passes over the sample's 8 training dialogues (~25 s)
# The dialogue slice's scripted client: two ordinary turns the adapter answers, then one the crisis guard answers.
CLIENT_TURNS = ("最近总是失眠，一想到明天的汇报就紧张。", "我怕自己讲砸了，大家都会觉得我不行。", "说实话我真的撑不下去了，不想活了。")

# Measured on 2 CPU cores: 1 min 42 s with nothing else running (training most of it, the dialogue slice 22 s);
# 14 min when four other test runs shared the cores.
EXPECTED_MINUTES = 2


REPORT_NOTE = (
    "Both systems are a small Llama with random weights (no pretraining, nothing downloaded); `cbt-lora` is that "
    "model after a few minutes of LoRA training on the 56 training answers of the bundled sample. What training "
    "visibly teaches it is the answers' surface: five paragraphs in the CBT order, the phrases each step opens "
    "with, the sample's vocabulary. So its answers score higher on chrF and BLEU (shared characters with the "
    "reference) and on the CBT-structure score (the step cues the detector looks for), while the sentences "
    "themselves are mostly incoherent and unrelated to the question. A random model memorising a format is "
    "what these numbers show; they say nothing about counselling quality. Six test questions make every "
    "figure noisy."
)


def summary(report) -> str:
    """One paragraph: base vs fine-tuned on the headline figures, what they mean, and where the plots are."""
    base, tuned = report.systems

    def figures(system) -> str:
        s = system.structure
        return (f"chrF {system.metrics['chrf']:.1f}, BLEU {system.metrics['bleu']:.1f}, CBT structure "
                f"{s['structure_mean']:.2f} of 2, all five steps in {100 * s['structure_full']:.0f}% of answers")

    return (f"On the {report.n} test questions, the base model scores {figures(base)}; after training, "
            f"{tuned.name} scores {figures(tuned)}. The model is random and small: it has learnt the sample "
            f"answers' five-step layout and wording, not how to help anyone (the report says so). Plots: "
            f"{report.output_dir / 'metrics.png'} (metrics), {report.output_dir / 'step_coverage.png'} (share of "
            f"answers with each step) and the adapter's loss curve.")


def dialogue_slice(out: Path) -> str:
    """The dialogue path on the built folder's dialogue config: a short tiny-dialogue fine-tune, its counsellor
    turns scored as dialogues beside the reference turns, and a scripted exchange through the guarded chat."""
    adapter = out / "dialogue-adapter"
    recipe = parse_args(["--config", "tiny-dialogue", "--output_dir", str(adapter), "--dataset_name",
                         str(out / "cbt_qa"), "--max_steps", str(DIALOGUE_STEPS), "--eval_strategy", "no",
                         "--disable_tqdm", "true"])
    train_and_save(build_trainer(*recipe), *recipe)
    turns = out / "predictions" / "dialogue-turns.jsonl"
    predict(PredictConfig(output_file=turns, adapter=str(adapter), dataset=str(out / "cbt_qa"),
                          dataset_config="dialogue", split="validation", max_new_tokens=48, do_sample=False,
                          repetition_penalty=1.1, progress=False))
    report = evaluate_systems(EvaluateConfig(predictions=[turns], names=["dialogue-lora"], dataset=str(out / "cbt_qa"),
                                             dataset_config="dialogue", references="validation",
                                             output_dir=out / "dialogue_report", bertscore=False))
    backend = LocalBackend(str(adapter), settings=GenerationSettings(max_new_tokens=40, temperature=0))
    transcript, turns = out / "dialogue_chat.txt", iter([*CLIENT_TURNS, "/exit"])
    with open(transcript, "w", encoding="utf-8") as text:
        def client(prompt: str) -> str:  # the scripted client, echoed into the transcript as a terminal shows it
            message = next(turns)
            text.write(f"{prompt}{message}\n")
            return message

        run_chat(backend, input_fn=client, output=text)
    model, reference = report.systems[0].dialogue, report.reference.dialogue
    return (f"{adapter}: dialogue adapter ({DIALOGUE_STEPS} steps of the tiny-dialogue recipe, loss on counsellor "
            f"turns only); {report.n} validation turns answered after their history, read back as "
            f"{model['dialogues']} dialogues: it asks in {model['question_share']:.0%} of turns (reference "
            f"{reference['question_share']:.0%}) and covers {model['steps_covered']:.1f} of the five steps per "
            f"dialogue (reference {reference['steps_covered']:.1f}): phrases of the sample a random model has "
            f"memorised, not counselling, {out / 'dialogue_report' / 'report.md'}; "
            f"{len(CLIENT_TURNS)} scripted client turns through the guarded chat: {backend.calls} answered by the "
            f"adapter with its dialogue system line, {len(CLIENT_TURNS) - backend.calls} (the suicidal one) by the "
            f"guard's crisis reply with hotlines, the model not called: {transcript}")


class EpochLines(TrainerCallback):
    """One line per epoch on the terminal (the stage's own output goes to its log): losses and time so far."""

    def __init__(self, terminal):
        self.terminal, self.started, self.loss = terminal, time.monotonic(), float("nan")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        self.loss = float(logs.get("loss", self.loss))
        if "eval_loss" in logs or ("loss" in logs and args.eval_strategy == "no"):
            validation = f", validation loss {float(logs['eval_loss']):.2f}" if "eval_loss" in logs else ""
            print(f"  epoch {round(state.epoch, 2):g} of {args.num_train_epochs:g}: training loss {self.loss:.2f}"
                  f"{validation} ({time.monotonic() - self.started:.0f} s)", file=self.terminal, flush=True)


@contextlib.contextmanager
def stage(name: str, logs: Path):
    """Send a stage's own output to logs/NAME.log and time it."""
    started = time.monotonic()
    with open(logs / f"{name}.log", "w", encoding="utf-8") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    print(f"[{name:<8} {time.monotonic() - started:5.1f} s] ", end="", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--generate-limit", type=int, default=4, help="questions sent to the local teacher")
    parser.add_argument("--bench-data", type=Path, default=BENCH_DATA if BENCH_DATA.is_dir() else None,
                        help="benchmarks in the authors' layout (cpsyexam/, cbt_bench/) for the bench slice "
                             "(default: ../shared/data/bench when present; none: the slice is skipped)")
    args = parser.parse_args()
    out = Path(args.output)
    if out.exists():
        shutil.rmtree(out)
    logs = out / "logs"
    logs.mkdir(parents=True)
    terminal = sys.stdout
    print(f"The demo takes about {EXPECTED_MINUTES} minutes on 2 CPU cores with nothing else running, most of it "
          f"training (one line per epoch below); much longer on a busy machine. Logs: {logs}", flush=True)

    with stage("generate", logs):
        with transformers_serve(tiny_model_path()) as base_url:
            gen = generate(GenerateConfig(input=sample_questions_path(), output_file=out / "generations.jsonl",
                                          model=str(tiny_model_path()), base_url=base_url, limit=args.generate_limit,
                                          max_new_tokens=96, max_asks=1, concurrency=4, progress=False))
    print(f"{out / 'generations.jsonl'}: {gen.counts['ok']} ok, {gen.counts['rejected']} rejected by the "
          f"five-step check (a tiny random teacher, served by `transformers serve`)")

    with stage("build", logs):
        built = build_dataset(BuildConfig(input=[sample_path(), out / "generations.jsonl"], output_dir=out / "cbt_qa",
                                          dialogues=["sample"], pretty_name="CBT QA (demo)", license="apache-2.0",
                                          questions_source="other"))
    rows, dialogues = built.num_rows["default"], built.num_rows["dialogue"]
    print(f"{built.output_dir}: dataset folder, {sum(rows.values())} records ({', '.join(f'{k} {v}' for k, v in rows.items())}), "
          f"{sum(built.dropped.values())} dropped, and a dialogue config of {sum(dialogues.values())} CBT dialogues; "
          f"card {built.output_dir / 'README.md'}")

    print("  training the tiny-demo recipe's LoRA adapter:", flush=True)
    with stage("train", logs):
        recipe = parse_args(["--config", "tiny-demo", "--output_dir", str(out / "adapter"),
                             "--dataset_name", str(out / "cbt_qa"), "--disable_tqdm", "true"])
        trainer = build_trainer(*recipe)
        trainer.add_callback(EpochLines(terminal))
        adapter = train_and_save(trainer, *recipe)
    print(f"{adapter}: LoRA adapter (tiny-demo recipe), loss curve {adapter / 'loss_curve.png'}, "
          f"model card {adapter / 'README.md'}")

    with stage("predict", logs):
        # Greedy, long enough for a whole answer (the sample's run 350-450 tokens), with a mild repetition
        # penalty: without it a model this small loops on one phrase. Base and adapter decode alike.
        common = {"model_name_or_path": SMALL_MODEL_NAME, "dataset": str(out / "cbt_qa"), "split": "test",
                  "max_new_tokens": 512, "do_sample": False, "repetition_penalty": 1.1, "seed": 0, "progress": False}
        predict(PredictConfig(output_file=out / "predictions" / "base.jsonl", **common))
        predict(PredictConfig(output_file=out / "predictions" / "cbt-lora.jsonl", adapter=str(adapter), **common))
    print(f"{out / 'predictions'}: test-split answers from the base model and from the adapter")

    with stage("evaluate", logs):
        report = evaluate_systems(EvaluateConfig(
            predictions=[out / "predictions" / "base.jsonl", out / "predictions" / "cbt-lora.jsonl"],
            output_dir=out / "report", names=["base", "cbt-lora"], dataset=str(out / "cbt_qa"), bertscore=False,
            model_card=adapter / "README.md", card_system="cbt-lora", note=REPORT_NOTE))
    print(f"{out / 'report'}: report.md, report.json and PNG plots, base vs adapter side by side, also written "
          f"into the model card (BERTScore needs a BERT on disk: --bertscore_model PATH)")

    if args.bench_data is None:
        print("[bench    skipped] give --bench-data DIR (CPsyExam and CBT-Bench in the authors' layout) for a "
              "benchmark slice")
    else:
        with stage("bench", logs):
            scores = bench(BenchConfig(tasks="cpsyexam,cbt_bench", data_dir=str(args.bench_data),
                                       output_dir=out / "bench", model_name_or_path=SMALL_MODEL_NAME,
                                       adapter=str(adapter), limit=BENCH_LIMIT, max_new_tokens=8, progress=False))
        exam, cbt = scores.results["cpsyexam"], scores.results["cbt_bench"]
        print(f"{out / 'bench'}: {BENCH_LIMIT} CPsyExam items, accuracy {exam['accuracy']:.2f} ({exam['no_answer']} "
              f"replies with no answer letter; a uniform guess scores {exam['chance']:.2f}); {BENCH_LIMIT} CBT-Bench "
              f"items, weighted F1 {cbt['weighted_f1']:.2f}. A random model scores at chance at best: these figures "
              "show the benchmark pipeline runs end to end, not that the model knows anything")

    with stage("dialogue", logs):
        dialogue = dialogue_slice(out)
    print(dialogue)

    with stage("upload", logs):
        pushed = [push(PushConfig(kind="dataset", folder=out / "cbt_qa", repo_id="your-name/cbt_qa", dry_run=True,
                                  output_dir=out / "upload" / "dataset")),
                  push(PushConfig(kind="adapter", folder=adapter, repo_id="your-name/cbt-lora-tiny",
                                  dataset_repo_id="your-name/cbt_qa", dry_run=True,
                                  output_dir=out / "upload" / "adapter"))]
    print(f"{out / 'upload'}: exactly what `cbt-llm push` would upload ({', '.join(f'{p.repo_type} {len(p.files)} files' for p in pushed)})")

    print("\n" + summary(report))
    print(f"\nOpen {out / 'report' / 'report.md'} and its PNGs, the dataset card {out / 'cbt_qa' / 'README.md'}, "
          f"the model card {adapter / 'README.md'}, and the Hub upload folders in {out / 'upload'}.")
    print("Chat with the adapter: cbt-llm chat --adapter " + str(adapter))
    print(f"Talk with the dialogue adapter (history kept, guard on every turn): cbt-llm chat --adapter "
          f"{out / 'dialogue-adapter'}")
    print(f"In the browser (pip install 'cbt-llm[app]'): cbt-llm app --adapter {adapter} --dataset {out / 'cbt_qa'} "
          f"--report_dir {out / 'report'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
