"""Dataset and model cards rendered from the Jinja templates in ``dataset_cards/`` and ``model_cards/``."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from cbt_llm import __version__
from cbt_llm.crisis import crisis_resources
from cbt_llm.data.prompts import (
    CBT_STEPS,
    COGNITIVE_DISTORTIONS,
    builtin_prompt_by_version,
)
from cbt_llm.data.records import RecordSet

QUESTION_SOURCES = ("sample", "psyqa", "other")


def template_path(folder: str, name: str) -> Path:
    """A card template: package data in an installed wheel, the top-level folder in a source checkout."""
    packaged = resources.files("cbt_llm") / folder / name
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / folder / name
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(f"card template {folder}/{name} is missing from the cbt_llm installation")


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def _token_total(records: list[dict], name: str) -> int | None:
    counts = [r["source"][name] for r in records if r["source"][name] is not None]
    return sum(counts) if counts else None


DATASET_CARD_INPUTS = ".cbt_llm/dataset_card.json"  # beside the card; hidden, so never pushed or loaded


def dataset_card_inputs(
    record_set: RecordSet,
    splits: dict[str, dict[str, tuple[int, int]]],
    split_ratios: tuple[float, float, float],
    system_prompt: str,
    from_sample: bool = False,
    repo_id: str = "cbt_qa",
    pretty_name: str = "CBT QA",
    license: str | None = None,
    questions_source: str | None = None,
) -> dict[str, Any]:
    """Everything the dataset card says, as plain JSON data: ``build_dataset`` keeps it beside the card so
    that ``cbt-llm push`` renders the same card again for its repo id instead of editing the text.

    ``splits`` maps config -> split -> (rows, parquet bytes). The license defaults to the project's
    Apache-2.0 for the bundled sample and to ``other`` for generated data, whose questions have their
    own terms.
    """
    questions_source = questions_source or ("sample" if from_sample else "psyqa")
    if questions_source not in QUESTION_SOURCES:
        raise ValueError(f"questions_source must be one of {QUESTION_SOURCES}, got {questions_source!r}")
    records = record_set.records
    versions = Counter(r["source"]["prompt_version"] or "unknown" for r in records)
    return {
        "repo_id": repo_id, "pretty_name": pretty_name, "license": license or ("apache-2.0" if from_sample else "other"),
        "from_sample": from_sample, "questions_source": questions_source,
        "splits": {config: {split: list(sizes) for split, sizes in parts.items()} for config, parts in splits.items()},
        "split_ratios": [f"{r:g}" for r in split_ratios], "system_prompt": system_prompt,
        "num_records": len(records), "num_dropped": sum(record_set.dropped.values()),
        "dropped": record_set.dropped.most_common(),
        "models": Counter(r["source"]["model"] or "unknown" for r in records).most_common(),
        "prompt_versions": versions.most_common(),
        "prompt_tokens": _token_total(records, "prompt_tokens"),
        "completion_tokens": _token_total(records, "completion_tokens"),
        "distortions": [(" / ".join(COGNITIVE_DISTORTIONS.get(label, (label,))), n)
                        for label, n in Counter(d for r in records for d in r["distortions"]).most_common()],
    }


def render_dataset_card(inputs: dict[str, Any], repo_id: str | None = None) -> str:
    """The README.md of a dataset folder or repo from ``dataset_card_inputs``: YAML (license, configs,
    features, splits) and body; ``repo_id`` names the repo in the usage snippet (default: the build's)."""
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from cbt_llm.data.builder import FEATURES

    splits = inputs["splits"]
    card_data = DatasetCardData(
        pretty_name=inputs["pretty_name"],
        license=inputs["license"],
        language=["zh"],
        task_categories=["text-generation", "question-answering"],
        size_categories=[_size_category(inputs["num_records"])],
        tags=["cbt", "mental-health", "psychology", "counseling", "sft", "chinese"],
    )
    MetadataConfigs(
        {
            config: {
                "data_files": [{"split": split, "path": f"{config}/{split}-*"} for split in parts],
                **({"default": True} if config == "default" else {}),
            }
            for config, parts in splits.items()
        }
    ).to_dataset_card_data(card_data)
    DatasetInfosDict(
        {
            config: datasets.DatasetInfo(
                features=FEATURES[config],
                splits=datasets.SplitDict(
                    {split: datasets.SplitInfo(split, num_bytes=size, num_examples=n)
                     for split, (n, size) in parts.items()}
                ),
                dataset_size=sum(size for _, size in parts.values()),
            )
            for config, parts in splits.items()
        }
    ).to_dataset_card_data(card_data)
    variables = {k: v for k, v in inputs.items() if k not in ("splits", "license")}
    card = DatasetCard.from_template(
        card_data,
        template_path=str(template_path("dataset_cards", "cbt_qa.md")),
        **{**variables, "repo_id": repo_id or inputs["repo_id"]},
        cbt_llm_version=__version__,
        prompts=[p for p in map(builtin_prompt_by_version, dict(inputs["prompt_versions"])) if p is not None],
        steps=CBT_STEPS,
        split_sizes=[(split, n) for split, (n, _) in splits["default"].items()],
        crisis_resources=[str(r) for r in crisis_resources()],
    )
    return str(card)


CARD_HYPERPARAMETERS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit", "learning_rate",
    "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_length", "packing", "activation_checkpointing", "bf16", "seed",
)
MODEL_TAGS = ["cbt", "mental-health", "lora", "sft", "trl", "peft"]


def _hub_url(repo_id: str, kind: str = "") -> str | None:
    """A Hub link for an ``owner/name`` id; None for a local path or a bare name."""
    if repo_id.count("/") != 1 or Path(repo_id).expanduser().exists() or repo_id.startswith((".", "/", "~")):
        return None
    return f"https://huggingface.co/{kind}{repo_id}"


def _loss_rows(log_history: list[dict], max_rows: int = 20) -> list[tuple]:
    evals = {entry["step"]: entry["eval_loss"] for entry in log_history if "eval_loss" in entry}
    rows = [(e["step"], f"{e['loss']:.4f}", f"{evals[e['step']]:.4f}" if e["step"] in evals else "")
            for e in log_history if "loss" in e]
    if len(rows) > max_rows:
        stride = -(-len(rows) // max_rows)
        rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
    return rows


def render_model_card(
    base_model: str,
    dataset_id: str,
    license: str,
    recipe: dict[str, Any],
    log_history: list[dict],
    system_prompt: str,
    loss_curve: str = "loss_curve.png",
    repo_id: str | None = None,
    model_name: str | None = None,
    hub_links: list[str] | None = None,
) -> str:
    """The README.md of an adapter folder: YAML (base_model, library_name: peft, datasets, ...) and body.

    ``hub_links`` (lines of Markdown) make a "Links" section, for the card of a Hub repo.
    """
    from huggingface_hub import ModelCard, ModelCardData

    repo_id = repo_id or recipe.get("output_dir", "path/to/adapter")
    model_name = model_name or f"CBT LoRA adapter for {base_model.split('/')[-1]}"
    card_data = ModelCardData(
        base_model=base_model,
        library_name="peft",
        datasets=[dataset_id],
        language=["zh"],
        license=license,
        tags=MODEL_TAGS,
        pipeline_tag="text-generation",
        model_name=model_name,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path("model_cards", "cbt_adapter.md")),
        model_name=model_name,
        base_model=base_model,
        base_model_url=_hub_url(base_model),
        dataset_id=dataset_id,
        dataset_url=_hub_url(dataset_id, "datasets/"),
        repo_id=repo_id,
        cbt_llm_version=__version__,
        system_prompt=system_prompt,
        hyperparameters=[(name, recipe[name]) for name in CARD_HYPERPARAMETERS if name in recipe],
        lora_rank=recipe.get("lora_r", 16),
        losses=_loss_rows(log_history),
        loss_curve=loss_curve,
        crisis_resources=[str(r) for r in crisis_resources()],
        hub_links=hub_links or [],
    )
    return str(card)
