"""``load_dataset("cbt_qa")``: the one place that reaches into ``datasets``' loader internals.

``datasets`` has no public registry for packaged builders, so the name goes into its
packaged-module table and its packaged-module factory is wrapped (for ``cbt_qa`` only) so that
the builder reads the files the caller named, or the bundled sample, and never whatever lies in
the current directory. ``install()`` does this once ``datasets`` is imported, so ``import cbt_llm``
does not pay for ``datasets``; ``tests/test_registration.py`` fails loudly if a release moves these names.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import inspect
import sys
import warnings
from pathlib import Path
from typing import Any

from cbt_llm.errors import CbtLlmError

BUILDER_NAME = "cbt_qa"
BUILDER_MODULE = "cbt_llm.data.builder"


def _module_hash() -> str:
    """Hash of the code that shapes the rows, so the datasets cache is rebuilt when it changes."""
    from cbt_llm.data import builder, dialogue_prompts, dialogues, prompts, records, splits

    source = "".join(inspect.getsource(module) for module in (prompts, records, splits, dialogue_prompts, dialogues,
                                                               builder))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _dataset_module(data_files, data_dir: str | None, download_config) -> Any:
    """What ``load_dataset("cbt_qa", ...)`` builds from: only the files the caller named, else the sample."""
    from datasets.data_files import DataFilesDict, sanitize_patterns
    from datasets.load import DatasetModule

    from cbt_llm.data.splits import sample_path

    if data_files is not None:
        patterns = sanitize_patterns(data_files)
    elif data_dir is not None:
        patterns = {"train": ["**/*.jsonl"]}
    else:
        patterns = {"train": [str(sample_path())]}
    base_path = str(Path(data_dir or ".").expanduser().resolve())
    files = DataFilesDict.from_patterns(patterns, download_config=download_config, base_path=base_path)
    return DatasetModule(BUILDER_MODULE, _module_hash(), {"data_files": files, "dataset_name": BUILDER_NAME})


def register() -> None:
    """Register ``cbt_qa`` with ``load_dataset``; a ``CbtLlmError`` names what a new ``datasets`` moved."""
    import datasets

    try:
        from datasets import load as hf_load

        table = hf_load._PACKAGED_DATASETS_MODULES
        base_factory = hf_load.PackagedDatasetModuleFactory
        base_factory.get_module  # noqa: B018 - the method this registration wraps
    except (ImportError, AttributeError) as err:
        raise CbtLlmError(
            f"datasets {datasets.__version__} no longer has the loader internals that register "
            f"load_dataset('{BUILDER_NAME}') ({err}); load a built folder with load_dataset(DIR) instead, "
            "or install a datasets release this cbt-llm supports"
        ) from None
    table[BUILDER_NAME] = (BUILDER_MODULE, _module_hash())
    if getattr(base_factory, "handles_cbt_qa", False):
        return

    class PackagedFactoryWithCbtQa(base_factory):
        handles_cbt_qa = True

        def get_module(self):
            if self.name != BUILDER_NAME:
                return super().get_module()
            return _dataset_module(self.data_files, self.data_dir, self.download_config)

    hf_load.PackagedDatasetModuleFactory = PackagedFactoryWithCbtQa


def _register_or_warn() -> None:
    try:
        register()
    except CbtLlmError as err:  # the rest of the library still works; built folders still load
        warnings.warn(str(err), stacklevel=3)


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader of ``datasets``, then registers ``cbt_qa``."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__spec__.loader = module.__loader__ = self.loader  # the module looks as if imported plainly
        self.loader.exec_module(module)
        _register_or_warn()


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Hands out the spec the other finders find for ``datasets``, with a loader that registers after it.

    It stays in ``sys.meta_path``: a spec looked up without an import (``importlib.util.find_spec``,
    as transformers does to see what is installed) must not use up the registration.
    """

    _finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "datasets" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    """Register now if ``datasets`` is already imported, else right after it is imported."""
    if "datasets" in sys.modules:
        _register_or_warn()
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
