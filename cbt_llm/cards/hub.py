"""An adapter's card made for its Hub repo: the default ``card_fn`` of ``cbt_llm.hub.push``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cbt_llm.cards.common import replace_section
from cbt_llm.cards.model import render_model_card
from cbt_llm.data.dialogue_prompts import model_system_prompt
from cbt_llm.models.loading import TRAINING_RECIPE

LINKS_START, LINKS_END = "<!-- cbt-llm:hub-links:start -->", "<!-- cbt-llm:hub-links:end -->"
TRAINER_STATE = "trainer_state.json"


def _hub_links(repo_id: str, base_model: str | None, dataset_repo_id: str | None, endpoint: str) -> list[str]:
    """Lines of Markdown linking the dataset and base model repos, and how to load the adapter."""
    links = []
    if dataset_repo_id:
        links.append(f"Training data: [{dataset_repo_id}]({endpoint}/datasets/{dataset_repo_id}) "
                     f'(`load_dataset("{dataset_repo_id}", "sft")`)')
    if base_model:
        links.append(f"Base model: [{base_model}]({endpoint}/{base_model})")
    links.append(f'Load: `AutoPeftModelForCausalLM.from_pretrained("{repo_id}")` (peft)')
    return links


def adapter_card_for_hub(card_text: str | None, *, repo_id: str, base_model: str | None,
                         dataset_repo_id: str | None, endpoint: str, folder: Path) -> str:
    """The adapter's README.md for the Hub. This is the default ``PushConfig.card_fn``.

    An adapter trained by cbt-llm (its folder has the resolved recipe and trainer state) gets its card
    rendered again from those run files for this repo, links to the dataset and base model repos
    included; its evaluation results carry over. Any other card keeps its body, with a links section
    added (or refreshed). Both get ``library_name: peft``, ``base_model`` (a Hub id; a local path is
    left out) and ``dataset_repo_id`` merged into ``datasets``.
    """
    from huggingface_hub import ModelCard

    from cbt_llm.hub.client import is_local_model

    if base_model and is_local_model(base_model):
        base_model = None  # no Hub page to link (cbt-llm's random models are made locally)
    if not card_text or not card_text.strip():
        card_text = (f"---\n---\n\n# {repo_id.split('/')[-1]}\n\nA LoRA adapter trained with cbt-llm on CBT-structured "
                     "mental-health QA. It is a research artifact, not a clinical tool.\n")
    card = ModelCard(card_text)
    links = _hub_links(repo_id, base_model, dataset_repo_id, endpoint)
    if (folder / TRAINING_RECIPE).is_file() and (folder / TRAINER_STATE).is_file():
        card = _regenerated_card(card, folder, repo_id, base_model, dataset_repo_id, links)
    else:  # a card cbt-llm did not write: its body stays, the links section is added or refreshed
        section = f"{LINKS_START}\n## Links\n\n" + "\n".join(f"- {line}" for line in links) + f"\n{LINKS_END}"
        card.text = replace_section(card.text, section, LINKS_START, LINKS_END)
    _set_hub_metadata(card.data, base_model, dataset_repo_id)
    return str(card)


def _set_hub_metadata(data: Any, base_model: str | None, dataset_repo_id: str | None) -> None:
    """``library_name: peft``, the base model's Hub id (never a local path or model) and the dataset repo in
    ``datasets``."""
    from cbt_llm.hub.client import is_local_model

    data.library_name = "peft"
    if base_model:
        data.base_model = base_model
    elif isinstance(data.base_model, str) and is_local_model(data.base_model):
        data.base_model = None  # a path or a model made on the training machine means nothing on the Hub
    if dataset_repo_id:
        datasets = data.datasets or []
        datasets = [datasets] if isinstance(datasets, str) else list(datasets)
        if dataset_repo_id not in datasets:
            datasets.append(dataset_repo_id)
        data.datasets = datasets


def _regenerated_card(old: Any, folder: Path, repo_id: str, base_model: str | None,
                      dataset_repo_id: str | None, links: list[str]) -> Any:
    """Re-render a cbt-llm adapter's card from its run files, for the Hub repo; evaluation results carry over."""
    import yaml
    from huggingface_hub import ModelCard

    recipe = yaml.safe_load((folder / TRAINING_RECIPE).read_text(encoding="utf-8"))
    state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    datasets = old.data.datasets or [recipe.get("hub_dataset_id") or recipe.get("dataset_name") or "cbt_qa"]
    datasets = [datasets] if isinstance(datasets, str) else datasets
    card = ModelCard(render_model_card(
        base_model=base_model or old.data.base_model or recipe["model_name_or_path"],
        dataset_id=dataset_repo_id or datasets[0],
        license=old.data.license or recipe.get("model_license", "apache-2.0"),
        recipe=recipe,
        log_history=state.get("log_history", []),
        system_prompt=model_system_prompt(recipe.get("system_prompt"), recipe.get("dataset_config")),
        repo_id=repo_id,
        hub_links=links,
    ))
    if old.data.eval_results:
        card.data.eval_results = old.data.eval_results
        card.data.model_name = old.data.model_name or card.data.model_name
    return card
