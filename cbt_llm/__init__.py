"""cbt-llm: CBT-structured mental-health QA data, LoRA fine-tuning, evaluation and Hub publishing.

Importing the package registers the ``cbt_qa`` dataset builder, so ``load_dataset("cbt_qa")``
works. Heavy libraries (torch, transformers, trl) are imported only by the stages that need them.
"""

import warnings

__version__ = "0.1.0"

from .errors import CbtLlmError  # noqa: E402

try:
    from .dataset import register as _register

    _register()
except CbtLlmError as _err:  # a datasets release with other internals: the rest of the library still works
    warnings.warn(str(_err), stacklevel=2)

__all__ = ["CbtLlmError", "__version__"]
