"""LoRA fine-tuning on the ``cbt_qa`` sft config with TRL's ``SFTTrainer``, in TRL's script style.

``cbt-llm train --config RECIPE [--field value ...]``, ``python -m cbt_llm.training.train ...`` and
``accelerate launch -m cbt_llm.training.train ...`` all parse a YAML recipe (a path or the name of one
shipped in ``cbt_llm/recipes``) with ``TrlParser`` and call ``main(script_args, training_args, model_args)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
from cbt_llm.errors import CbtLlmError
from cbt_llm.models.loading import TRAINING_RECIPE

if TYPE_CHECKING:
    from trl import ModelConfig, SFTConfig, SFTTrainer

LOSS_CURVE = "loss_curve.png"
# Options that older transformers/TRL recipes name differently, for the error that names an unknown one.
RENAMED_OPTIONS = {"group_by_length": "train_sampling_strategy: group_by_length"}
HELP_ALL = "--help-all"  # `--help` prints the short usage; this flag, every TrlParser option after it


@dataclass
class CbtScriptArguments:
    """Which data to train on and how the adapter is described; the rest lives in SFTConfig and ModelConfig."""

    dataset_name: str = field(default="cbt_qa", metadata={"help": "'cbt_qa' (the bundled sample, or the records "
                              "in --dataset_data_files), a folder written by `cbt-llm build`, or a Hub dataset id."})
    dataset_config: str = field(default="sft", metadata={"help": "Dataset config: sft (prompt/completion rows), "
                                "dialogue (multi-turn messages; pair with assistant_only_loss), or several joined "
                                "by commas (sft,dialogue) to mix them as conversations."})
    dataset_data_files: list[str] | None = field(default=None, metadata={"help": "Records .jsonl files for the "
                                                 "cbt_qa builder (generate's output)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(default="validation", metadata={"help": "Split to evaluate on, when present."})
    system_prompt: str = field(default=SYSTEM_PROMPT_ZH, metadata={"help": "System line of every training prompt "
                               "(default: the CBT-LLM paper's)."})
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Hub id of the training data, for the "
                                       "model card (default: dataset_name)."})
    model_license: str = field(default="apache-2.0", metadata={"help": "License of the adapter, usually the "
                               "base model's (model card)."})
    num_processes: int = field(default=1, metadata={"help": "Training processes: above 1, `cbt-llm train` relaunches "
                               "itself under `accelerate launch` (one per GPU) or, on a CPU, torchrun with gloo."})
    accelerate_config: str = field(default="ddp", metadata={"help": "Set-up for --num_processes: ddp, fsdp, zero3, "
                                   "zero3-offload (shipped in cbt_llm/recipes/accelerate) or an accelerate config "
                                   "file. On a CPU: ddp or fsdp (gloo)."})
    dry_run: bool = field(default=False, metadata={"help": "Print the command that would train and exit."})


def recipe_path(name_or_path: str) -> Path:
    """A recipe file: a path as given, or the name of a recipe shipped in the package."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = resources.files("cbt_llm") / "recipes" / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise CbtLlmError(f"no recipe {name_or_path!r}: not a file, and not one of the shipped recipes "
                      f"({', '.join(shipped_recipes())})")


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped in ``cbt_llm/recipes``."""
    folder = resources.files("cbt_llm") / "recipes"
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def recipe_summary(name: str) -> str:
    """The first sentence of a shipped recipe's opening comment."""
    lines = []
    for line in recipe_path(name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or line.strip() == "#":
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    return text[: text.find(". ") + 1] if ". " in text else text


def usage() -> str:
    """What ``cbt-llm train --help`` prints: how to name a recipe, the shipped ones, the common flags."""
    import textwrap

    width = max(map(len, shipped_recipes()))
    recipes = "".join(textwrap.fill(recipe_summary(name), 100, initial_indent=f"  {name:<{width}} ",
                                    subsequent_indent=" " * (width + 3), break_on_hyphens=False) + "\n"
                      for name in shipped_recipes())
    return ("usage: cbt-llm train --config RECIPE [--FIELD VALUE ...]\n\n"
            "LoRA fine-tuning with TRL's SFTTrainer from a YAML recipe: a recipe file, or the name of one\n"
            f"shipped with cbt-llm:\n{recipes}\n"
            "Any recipe field can be given as a flag, which overrides the recipe, for example:\n"
            "  cbt-llm train --config tiny-cpu --output_dir outputs/mine --num_train_epochs 2\n\n"
            "Often used:\n"
            "  --config RECIPE             a recipe file or a shipped recipe's name (above)\n"
            "  --output_dir DIR            where the adapter, its model card and loss curve go\n"
            "  --model_name_or_path ID     the base model (Hub id or folder)\n"
            "  --dataset_name NAME         cbt_qa (the bundled sample), a folder from `cbt-llm build`, a Hub id\n"
            "  --num_processes N           train on N GPUs (or N CPU processes)\n"
            "  --dry_run                   print the command that would train, and exit\n\n"
            f"Every option (this script's, TRL's SFTConfig and ModelConfig): cbt-llm train {HELP_ALL}\n")


def make_parser(old_checkpointing_name: bool = False):
    """``TrlParser`` over the script arguments, ``SFTConfig`` and ``ModelConfig``.

    TRL's configs default the deprecated ``gradient_checkpointing`` to True, which made transformers warn
    (FutureWarning) on every parse that named neither spelling; the parser gives that default under the
    new name, ``activation_checkpointing``. A recipe or flag that still sets the old name
    (``old_checkpointing_name``) keeps transformers' own mapping, and its warning.
    """
    from trl import ModelConfig, SFTConfig, TrlParser

    parser = TrlParser((CbtScriptArguments, SFTConfig, ModelConfig), prog="cbt-llm train")
    if not old_checkpointing_name:
        parser.set_defaults(gradient_checkpointing=None, activation_checkpointing=True)
    return parser


def sets_old_checkpointing_name(args: Sequence[str], recipe: Path | None) -> bool:
    """Whether the command line or the recipe sets ``gradient_checkpointing``, the old name of activation_checkpointing."""
    import yaml

    flags = {arg.split("=")[0] for arg in args}
    if flags & {"--gradient_checkpointing", "--gradient-checkpointing", "--no_gradient_checkpointing"}:
        return True
    settings = yaml.safe_load(recipe.read_text(encoding="utf-8")) if recipe else None
    return isinstance(settings, dict) and "gradient_checkpointing" in settings


def parse_args(argv: Sequence[str] | None = None) -> tuple[CbtScriptArguments, SFTConfig, ModelConfig]:
    """Parse ``--config RECIPE`` plus flag overrides; a shipped recipe can be named without its path."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    recipe = None
    if "--config" in args:
        index = args.index("--config") + 1
        if index >= len(args):
            raise CbtLlmError("--config needs a recipe name or path")
        recipe = recipe_path(args[index])
        args[index] = str(recipe)
    try:
        return make_parser(sets_old_checkpointing_name(args, recipe)).parse_args_and_config(args)
    except ValueError as err:  # SFTConfig's own checks, e.g. bf16 asked for on a machine without a GPU
        renamed = [f"{old} is now {new}" for old, new in RENAMED_OPTIONS.items() if f"'--{old}'" in str(err)]
        raise CbtLlmError(f"the recipe's settings were rejected: {err}" + "".join(f" ({r})" for r in renamed)) from None


def build_trainer(script_args: CbtScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> SFTTrainer:
    """The SFTTrainer for a recipe: model, tokenizer, LoRA config and data, ready to train."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    from cbt_llm.models.loading import peft_wrapping
    from cbt_llm.models.tiny import resolve_model_name
    from cbt_llm.training.data import load_training_dataset
    from cbt_llm.training.launch import enable_fsdp_on_cpu
    from cbt_llm.training.options import check_speed_options

    check_speed_options(training_args, model_args)
    enable_fsdp_on_cpu()
    model_path = resolve_model_name(model_args.model_name_or_path)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    tokenizer = AutoTokenizer.from_pretrained(model_path, revision=model_args.model_revision,
                                              trust_remote_code=training_args.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if training_args.assistant_only_loss and not training_args.chat_template_path:
        check_assistant_markers(tokenizer, model_args.model_name_or_path)
    dataset = load_training_dataset(script_args)
    eval_dataset = None
    if training_args.eval_strategy != "no" and script_args.dataset_test_split in dataset:
        eval_dataset = dataset[script_args.dataset_test_split]
    elif training_args.eval_strategy != "no":
        training_args.eval_strategy = "no"  # nothing to evaluate on, e.g. a tiny data file
    with peft_wrapping():  # SFTTrainer wraps the model with peft's LoRA here
        return SFTTrainer(
            model=model_path,
            args=training_args,
            train_dataset=dataset[script_args.dataset_train_split],
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            quantization_config=get_quantization_config(model_args),
            peft_config=get_peft_config(model_args),
        )


def check_assistant_markers(tokenizer, model_name: str) -> None:
    """For ``assistant_only_loss``: the chat template marks the assistant's turns, or TRL has a marked copy of it."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        if tokenizer.chat_template:
            get_training_chat_template(tokenizer)
            return
    except ValueError:
        pass
    raise CbtLlmError(f"assistant_only_loss: the chat template of {model_name} does not mark the assistant's turns "
                      "({% generation %} ... {% endgeneration %}) and TRL has no marked copy of it: pass "
                      "--chat_template_path FILE, a template with the markers around each assistant turn's text and "
                      "its end-of-turn token")


def last_checkpoint(output_dir: str) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``output_dir``, to resume an interrupted run.

    The Trainer writes ``trainer_state.json`` last: a folder without it is a save cut short by a kill,
    which is skipped (the next save of that step replaces it).
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    folder = Path(output_dir)
    steps = sorted((int(path.name.rsplit("-", 1)[1]), path) for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                   if path.name.rsplit("-", 1)[1].isdigit() and (path / "trainer_state.json").is_file())
    return str(steps[-1][1]) if steps else None


def main(script_args: CbtScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> Path:
    """Train a recipe and save the adapter with the files that describe the run."""
    return train_and_save(build_trainer(script_args, training_args, model_args), script_args, training_args,
                          model_args)


def train_and_save(trainer: SFTTrainer, script_args: CbtScriptArguments, training_args: SFTConfig,
                   model_args: ModelConfig) -> Path:
    """Train (resuming from the last checkpoint in output_dir, if any), then save from the main process only."""
    checkpoint = training_args.resume_from_checkpoint or last_checkpoint(training_args.output_dir)
    if checkpoint and trainer.is_world_process_zero():
        print(f"cbt-llm train: resuming from {checkpoint}", flush=True)
    trainer.train(resume_from_checkpoint=checkpoint)
    output_dir = Path(training_args.output_dir)
    save_whole_model(trainer, output_dir)
    if trainer.is_world_process_zero():
        write_run_files(trainer, output_dir, script_args, training_args, model_args)
    trainer.accelerator.wait_for_everyone()
    if hasattr(trainer, "end"):
        trainer.end()
    return output_dir


def save_whole_model(trainer: SFTTrainer, output_dir: Path) -> None:
    """The adapter (or model) and tokenizer, whole, written by the main process.

    Under FSDP with ``fsdp_state_dict_type: SHARDED_STATE_DICT`` the Trainer's ``save_model`` writes nothing
    (transformers 5.25); the checkpoints stay sharded, but the final save gathers the state as FULL_STATE_DICT does.
    """
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if plugin is not None and "FULL_STATE_DICT" not in str(plugin.state_dict_type):
        plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(output_dir))


def write_run_files(trainer: SFTTrainer, output_dir: Path, script_args: CbtScriptArguments,
                    training_args: SFTConfig, model_args: ModelConfig) -> None:
    """The files that describe the run: resolved recipe, trainer state, loss curve, model card."""
    import yaml

    from cbt_llm.cards import render_model_card
    from cbt_llm.data.dialogue_prompts import model_system_prompt

    recipe = resolved_recipe(script_args, training_args, model_args)
    (output_dir / TRAINING_RECIPE).write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=True),
                                              encoding="utf-8")
    trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
    plot_loss_curve(trainer.state.log_history, output_dir / LOSS_CURVE)
    card = render_model_card(
        base_model=model_args.model_name_or_path,
        dataset_id=script_args.hub_dataset_id or script_args.dataset_name,
        license=script_args.model_license,
        recipe=recipe,
        log_history=trainer.state.log_history,
        system_prompt=model_system_prompt(script_args.system_prompt, script_args.dataset_config),
        loss_curve=LOSS_CURVE,
    )
    (output_dir / "README.md").write_text(card, encoding="utf-8")


def resolved_recipe(script_args: CbtScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> dict:
    """Every setting of the run as one flat mapping (the YAML recipe format), without tokens or secrets."""
    merged: dict[str, Any] = {}
    for part in (asdict(script_args), training_args.to_dict(), asdict(model_args)):
        merged.update(part)
    # hub_token, push_to_hub_token and the like are credentials; eos_token and pad_token are settings.
    clean = {k: v for k, v in merged.items() if not k.endswith("_token") or k in ("eos_token", "pad_token")}
    return json.loads(json.dumps(clean, default=str))


def plot_loss_curve(log_history: list[dict], path: Path) -> None:
    """Training (and evaluation) loss against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        if points:
            axis.plot(*zip(*points), marker="o" if key == "eval_loss" else None, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title("CBT LoRA fine-tuning")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def without_flag(args: list[str], flag: str) -> list[str]:
    """``args`` without a boolean ``flag`` (either spelling, bare or followed by its true/false value)."""
    spellings = [a for a in args if a in (flag, flag.replace("_", "-"))]
    if not spellings:
        return args
    index = args.index(spellings[0])
    has_value = index + 1 < len(args) and args[index + 1].lower() in ("true", "false", "yes", "no", "1", "0")
    return args[:index] + args[index + 1 + has_value:]


def cli_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m cbt_llm.training.train`` and ``accelerate launch -m cbt_llm.training.train``."""
    import sys

    from cbt_llm.training.launch import check_launch, launched, relaunch
    from cbt_llm.training.options import check_speed_options, use_gpu

    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help", HELP_ALL} & set(args):
        print(usage())
        if HELP_ALL in args:
            make_parser().print_help()
        return 0
    try:
        script_args, training_args, model_args = parse_args(args)
        if script_args.dry_run or (script_args.num_processes > 1 and not launched()):
            gpu = use_gpu(training_args)
            check_launch(script_args.num_processes, script_args.accelerate_config, gpu, model_args)
            check_speed_options(training_args, model_args)
            return relaunch(without_flag(args, "--dry_run"), script_args.num_processes, script_args.accelerate_config,
                            gpu, script_args.dry_run)
        output_dir = main(script_args, training_args, model_args)
    except CbtLlmError as err:
        print(f"cbt-llm train: error: {err}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained adapter: {output_dir} (model card: {output_dir / 'README.md'}, loss curve: "
              f"{output_dir / LOSS_CURVE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main())
