"""The metric registry: every metric ``cbt-llm evaluate`` computes and reports, registered by name.

A metric is a ``TextMetric`` (``cbt_llm.evaluation.metrics.base``) whose ``COLUMNS`` say how the report
shows each figure it returns (label, model-index type, scale, number format, plot panel). Registering
it is one line, as PEFT registers a tuner with ``register_peft_method``::

    register_metric("chrf", ChrF)

and then ``compute_metrics`` computes it, report.json and report.md carry its columns, metrics.png
plots them on their panel and a model card lists them. The built-in metrics are registered in
``cbt_llm.evaluation.metrics``; this module imports nothing heavy, so the report can name its columns
before any metric is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from cbt_llm.errors import CbtLlmError

if TYPE_CHECKING:
    from cbt_llm.evaluation.metrics.base import TextMetric

HUNDRED, UNIT = "0-100", "0-1"  # the two panels of metrics.png


class Column(NamedTuple):
    """One figure as the report shows it: ``(label, metric_type, scale)`` first, as a model card reads them."""

    label: str                # the column header and the model card's metric name
    metric_type: str          # the model-index metric type (bleu, rouge, ...)
    scale: str                # how to read the figure: range and tokenisation
    spec: str = ".3f"         # its format spec in report.md and the card (".2f", ".0%" for a share)
    panel: str | None = None  # HUNDRED or UNIT: the panel of metrics.png it is plotted on; None: not plotted
    short: str | None = None  # its name under the bars (default: the label)


METRICS: dict[str, type[TextMetric]] = {}


def register_metric(name: str, metric: type[TextMetric]) -> type[TextMetric]:
    """Add ``metric`` under ``name``: computed after those registered before it, its columns after theirs."""
    if name in METRICS:
        raise CbtLlmError(f"a metric named {name!r} is already registered")
    taken = {key: other for other, cls in METRICS.items() for key in cls.COLUMNS}
    clash = sorted(key for key in metric.COLUMNS if key in taken)
    if not metric.COLUMNS or clash:
        raise CbtLlmError(f"metric {name!r} needs columns of its own (" + (
            ", ".join(f"{key} is {taken[key]}'s" for key in clash) if clash else "it declares none") + ")")
    METRICS[name] = metric
    return metric


def registered_metrics() -> dict[str, type[TextMetric]]:
    """Every registered metric by name, in registration order (the built-in ones first)."""
    import cbt_llm.evaluation.metrics  # noqa: F401 - registers the built-in metrics

    return dict(METRICS)


def metric_columns() -> dict[str, Column]:
    """Every registered metric's columns by key, in the report's order."""
    return {key: column for metric in registered_metrics().values() for key, column in metric.COLUMNS.items()}


def headline(metric: type[TextMetric]) -> str:
    """The column a metric's skip reason and settings are filed under: its last (BLEU-4 of BLEU-1..4)."""
    return list(metric.COLUMNS)[-1]
