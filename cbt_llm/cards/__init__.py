"""Every card cbt-llm writes or edits, rendered from the Jinja templates in ``dataset_cards/`` and ``model_cards/``.

* :mod:`~cbt_llm.cards.dataset`: the dataset card (``dataset_card_inputs``, kept beside it, and
  ``render_dataset_card``);
* :mod:`~cbt_llm.cards.model`: the adapter's card (``render_model_card``) and the merged model's
  (``render_merged_card``);
* :mod:`~cbt_llm.cards.hub`: ``adapter_card_for_hub``, an adapter's card made for its Hub repo;
* :mod:`~cbt_llm.cards.results`: ``update_model_card_with_results``, evaluation numbers in a card.

``replace_section`` is the one helper that splices a marked section into a card's text.
"""

from cbt_llm.cards.common import replace_section, template_path
from cbt_llm.cards.dataset import DATASET_CARD_INPUTS, dataset_card_inputs, render_dataset_card
from cbt_llm.cards.hub import adapter_card_for_hub
from cbt_llm.cards.model import (
    CARD_HYPERPARAMETERS,
    MODEL_TAGS,
    adapter_license,
    render_merged_card,
    render_model_card,
)
from cbt_llm.cards.results import CARD_END, CARD_START, update_model_card_with_results

__all__ = ["CARD_END", "CARD_HYPERPARAMETERS", "CARD_START", "DATASET_CARD_INPUTS", "MODEL_TAGS", "adapter_card_for_hub",
           "adapter_license", "dataset_card_inputs", "render_dataset_card", "render_merged_card", "render_model_card",
           "replace_section", "template_path", "update_model_card_with_results"]
