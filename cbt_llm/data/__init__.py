"""The data stage: question sources, CBT records, prompts, the id-hash splits and the ``cbt_qa`` dataset.

Light modules (no ``datasets`` import): ``sources``, ``records``, ``prompts``, ``splits``;
``builder`` (the ``datasets`` builder), ``registration`` (``load_dataset("cbt_qa")``) and ``build``
(``build_dataset``, the folder with parquet and card) load ``datasets`` when they run.
"""

from cbt_llm.data.build import BuildResult, build_dataset
from cbt_llm.data.splits import sample_path, sample_questions_path

__all__ = ["BuildResult", "build_dataset", "sample_path", "sample_questions_path"]
