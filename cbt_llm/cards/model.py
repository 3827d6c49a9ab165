"""Model cards: the adapter's (``model_cards/cbt_adapter.md``) and the merged model's (``model_cards/cbt_merged.md``)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from cbt_llm import __version__
from cbt_llm.cards.common import table_cell, template_path
from cbt_llm.crisis import crisis_resources, format_crisis_resources

CARD_HYPERPARAMETERS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit", "learning_rate",
    "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_length", "packing", "activation_checkpointing", "bf16", "seed",
)
MODEL_TAGS = ["cbt", "mental-health", "lora", "sft", "trl", "peft"]
MERGED_TAGS = ["cbt-llm", "mental-health", "cbt", "lora", "merged"]


def _hub_url(repo_id: str, kind: str = "") -> str | None:
    """A Hub link for an ``owner/name`` id; None for a local path, a bare name or a model cbt-llm makes locally."""
    from cbt_llm.hub.client import is_local_model

    if repo_id.count("/") != 1 or is_local_model(repo_id):
        return None
    return f"https://huggingface.co/{kind}{repo_id}"


def _thin(rows: list[tuple], max_rows: int) -> list[tuple]:
    """At most about ``max_rows`` rows, evenly spaced, the first and the last kept."""
    if len(rows) <= max_rows:
        return rows
    stride = -(-len(rows) // max_rows)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


def _loss_rows(log_history: list[dict], max_rows: int = 20) -> list[tuple]:
    """The results table: (step, epoch, training loss, validation loss) as text.

    With evaluations, one row per evaluation (every one up to ``max_rows``), with the training loss
    last logged at or before its step; without, the logged training losses.
    """
    trained = [(e["step"], e.get("epoch"), e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e.get("epoch"), e["eval_loss"]) for e in log_history if "eval_loss" in e]

    def row(step: int, epoch: float | None, loss: float | None, eval_loss: float | None) -> tuple:
        return (step, "" if epoch is None else f"{round(epoch, 2):g}", "" if loss is None else f"{loss:.4f}",
                "" if eval_loss is None else f"{eval_loss:.4f}")

    if not evals:
        return [row(step, epoch, loss, None) for step, epoch, loss in _thin(trained, max_rows)]
    last_loss = {}  # eval step -> the training loss logged last at or before it
    for step, _, _ in evals:
        logged = [loss for s, _, loss in trained if s <= step]
        last_loss[step] = logged[-1] if logged else None
    return [row(step, epoch, last_loss[step], eval_loss) for step, epoch, eval_loss in _thin(evals, max_rows)]


def _random_base(base_model: str, recipe: dict[str, Any]) -> bool:
    """Whether the adapter was trained on one of the random models cbt-llm makes locally (``cbt_llm.models.tiny``)."""
    from cbt_llm.hub.client import RANDOM_MODEL_NAMES

    return base_model in RANDOM_MODEL_NAMES or recipe.get("model_name_or_path") in RANDOM_MODEL_NAMES


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

    ``hub_links`` (lines of Markdown) make a "Links" section, for the card of a Hub repo. A base model
    with no Hub page (a local path, or a random model cbt-llm makes) is not linked; an adapter of one of
    cbt-llm's random models says it is a demonstration that memorises a format, not a counselling model.
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
        hyperparameters=[(name, table_cell(recipe[name])) for name in CARD_HYPERPARAMETERS if name in recipe],
        lora_rank=recipe.get("lora_r", 16),
        losses=_loss_rows(log_history),
        random_base=_random_base(base_model, recipe),
        loss_curve=loss_curve,
        crisis_resources=[str(r) for r in crisis_resources()],
        hub_links=hub_links or [],
    )
    return str(card)


def adapter_license(adapter: str | Path) -> str | None:
    """The ``license`` in a local adapter folder's card, if any (the merged weights carry the base's terms)."""
    card = Path(adapter).expanduser() / "README.md"
    if not card.is_file():
        return None
    try:
        from huggingface_hub import ModelCard

        return ModelCard(card.read_text(encoding="utf-8")).data.to_dict().get("license")
    except Exception:  # noqa: BLE001 - a card we cannot read just means no license line
        return None


def render_merged_card(base: str, adapter: str, *, license: str | None = None,
                       date: datetime.date | None = None) -> str:
    """The merged folder's README.md: metadata, where the weights come from, the statement, the resources.

    ``base_model`` is set only for a Hub id: not a path on this machine, nor the tiny model made locally.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from cbt_llm.hub.client import is_local_model

    hub_base = bool(base) and not is_local_model(base)
    card_data = ModelCardData(library_name="transformers", pipeline_tag="text-generation", tags=MERGED_TAGS,
                              base_model=base if hub_base else None,
                              base_model_relation="merge" if hub_base else None, license=license)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path("model_cards", "cbt_merged.md")),
        date=(date or datetime.date.today()).isoformat(),
        base=base,
        adapter=adapter,
        crisis_resources_zh=format_crisis_resources("zh"),
        crisis_resources_en=format_crisis_resources("en"),
    )
    return str(card)
