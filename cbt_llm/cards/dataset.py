"""The dataset card: its inputs as plain JSON data, and the README.md rendered from ``dataset_cards/cbt_qa.md``."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from cbt_llm import __version__
from cbt_llm.cards.common import table_cell, template_path
from cbt_llm.crisis import crisis_resources
from cbt_llm.data.prompts import (
    CBT_STEPS,
    COGNITIVE_DISTORTIONS,
    builtin_prompt_by_version,
)
from cbt_llm.data.records import RecordSet

if TYPE_CHECKING:
    from cbt_llm.data.build import BuildConfig

DATASET_CARD_INPUTS = ".cbt_llm/dataset_card.json"  # beside the card; hidden, so never pushed or loaded


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def _token_total(records: list[dict], name: str) -> int | None:
    counts = [r["source"][name] for r in records if r["source"][name] is not None]
    return sum(counts) if counts else None


def _record_counts(records: list[dict]) -> dict[str, Any]:
    """Which models and prompt versions wrote the records, their tokens, and the distortions they name."""
    return {
        "models": Counter(r["source"]["model"] or "unknown" for r in records).most_common(),
        "prompt_versions": Counter(r["source"]["prompt_version"] or "unknown" for r in records).most_common(),
        "prompt_tokens": _token_total(records, "prompt_tokens"),
        "completion_tokens": _token_total(records, "completion_tokens"),
        "distortions": [(" / ".join(COGNITIVE_DISTORTIONS.get(label, (label,))), n)
                        for label, n in Counter(d for r in records for d in r["distortions"]).most_common()],
    }


def dialogue_card_inputs(dialogue_set: RecordSet) -> dict[str, Any]:
    """What the card says of the ``dialogue`` config: where the dialogues come from, and the dialogue checks
    (``generation.dialogue_checks``) run again over every kept one, public corpora included."""
    from cbt_llm.generation.dialogue_checks import check_dialogue

    records = dialogue_set.records
    checks = [check_dialogue(r["messages"], r.get("language", "zh")) for r in records]
    reasons = Counter(re.sub(r"\d+", "N", why) for check in checks for why in check.reasons)
    return {
        "num": len(records), "num_dropped": sum(dialogue_set.dropped.values()),
        "dropped": dialogue_set.dropped.most_common(),
        "sources": [(table_cell(name), n) for name, n in Counter(r["source"] or "unknown" for r in records).most_common()],
        "rounds": round(statistics.mean(c.rounds for c in checks), 1),
        "question_share": f"{statistics.mean(c.question_share for c in checks):.0%}",
        "passed": sum(c.ok for c in checks), "all_steps": sum(len(c.steps) == 5 for c in checks),
        "crisis": sum(c.crisis_turn is not None for c in checks),
        "check_reasons": [(table_cell(why), n) for why, n in reasons.most_common(8)],
    }


def dataset_card_inputs(record_set: RecordSet, splits: dict[str, dict[str, tuple[int, int]]],
                        config: BuildConfig, dialogue_set: RecordSet | None = None) -> dict[str, Any]:
    """Everything the dataset card says, as plain JSON data: ``build_dataset`` keeps it beside the card so
    that ``cbt-llm push`` renders the same card again for its repo id instead of editing the text.

    ``splits`` maps config -> split -> (rows, parquet bytes). The license defaults to the project's
    Apache-2.0 for the bundled sample and to ``other`` for generated data, whose questions have their
    own terms. ``dialogue_set``, when the build has a ``dialogue`` config, adds its section.
    """
    from_sample = not config.input
    return {
        "repo_id": config.repo_id or "cbt_qa", "pretty_name": config.pretty_name,
        "license": config.license or ("apache-2.0" if from_sample else "other"),
        "from_sample": from_sample, "questions_source": config.questions_source or ("sample" if from_sample else "psyqa"),
        "splits": {name: {split: list(sizes) for split, sizes in parts.items()} for name, parts in splits.items()},
        "split_ratios": [f"{r:g}" for r in config.split_ratios], "system_prompt": config.system_prompt,
        "num_records": len(record_set.records), "num_dropped": sum(record_set.dropped.values()),
        "dropped": record_set.dropped.most_common(),
        **_record_counts(record_set.records),
        "dialogue": dialogue_card_inputs(dialogue_set) if dialogue_set is not None else None,
    }


def _card_data(inputs: dict[str, Any]) -> Any:
    """The card's YAML: license, language, tags, and ``configs`` / ``dataset_info`` for each config and split."""
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

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
    return card_data


def render_dataset_card(inputs: dict[str, Any], repo_id: str | None = None) -> str:
    """The README.md of a dataset folder or repo from ``dataset_card_inputs``: YAML (license, configs,
    features, splits) and body; ``repo_id`` names the repo in the usage snippet (default: the build's)."""
    from huggingface_hub import DatasetCard

    variables = {k: v for k, v in inputs.items() if k not in ("splits", "license")}
    for table in ("models", "prompt_versions", "distortions"):  # names that go into table cells
        variables[table] = [(table_cell(name), n) for name, n in inputs[table]]
    card = DatasetCard.from_template(
        _card_data(inputs),
        template_path=str(template_path("dataset_cards", "cbt_qa.md")),
        **{**variables, "repo_id": repo_id or inputs["repo_id"]},
        cbt_llm_version=__version__,
        prompts=[p for p in map(builtin_prompt_by_version, dict(inputs["prompt_versions"])) if p is not None],
        steps=CBT_STEPS,
        split_sizes=[(split, n) for split, (n, _) in inputs["splits"]["default"].items()],
        crisis_resources=[str(r) for r in crisis_resources()],
    )
    return str(card)
