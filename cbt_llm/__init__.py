"""cbt-llm: CBT-structured mental-health QA data, LoRA fine-tuning, evaluation and Hub publishing.

Importing the package makes ``load_dataset("cbt_qa")`` work (the builder is registered once
``datasets`` is imported). Heavy libraries (torch, transformers, datasets, trl) are imported only
by the stages that need them.
"""

__version__ = "0.1.0"

from cbt_llm.data.registration import install as _install_cbt_qa  # noqa: E402
from cbt_llm.errors import CbtLlmError  # noqa: E402

_install_cbt_qa()

__all__ = ["CbtLlmError", "__version__"]
