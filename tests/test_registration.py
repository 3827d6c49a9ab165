"""``load_dataset("cbt_qa")`` after ``import cbt_llm``, without ``import cbt_llm`` paying for ``datasets``."""

import inspect
import json
import subprocess
import sys

import pytest

from cbt_llm.errors import CbtLlmError


def test_the_datasets_internals_the_registration_patches_are_still_there():
    # If this fails, a datasets release moved what cbt_llm.data.registration reaches into: fix the
    # registration (and its pin in setup.cfg) before anything else; load_dataset("cbt_qa") is broken.
    from datasets import load as hf_load

    assert isinstance(hf_load._PACKAGED_DATASETS_MODULES, dict)
    factory = hf_load.PackagedDatasetModuleFactory
    assert callable(factory.get_module)
    parameters = inspect.signature(factory.__init__).parameters
    assert {"name", "data_dir", "data_files", "download_config"} <= set(parameters)


def test_registration_fails_clearly_when_datasets_internals_change(monkeypatch):
    import datasets.load

    from cbt_llm.data.registration import register

    monkeypatch.delattr(datasets.load, "PackagedDatasetModuleFactory")
    with pytest.raises(CbtLlmError, match=r"datasets \S+ no longer has the loader internals"):
        register()


def _child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_import_cbt_llm_defers_datasets_until_it_is_imported():
    report = _child(
        "import importlib.util, json, sys\n"
        "import cbt_llm\n"
        "deferred = 'datasets' not in sys.modules\n"
        "importlib.util.find_spec('datasets')  # a look-up (as transformers does) must not use up the hook\n"
        "from datasets import load_dataset\n"
        "ds = load_dataset('cbt_qa', 'sft')\n"
        "print(json.dumps({'deferred': deferred, 'rows': sum(len(ds[s]) for s in ds),"
        " 'columns': ds['train'].column_names}))"
    )
    assert report["deferred"] is True
    assert report["rows"] >= 60 and report["columns"] == ["id", "prompt", "completion"]


@pytest.mark.slow
def test_datasets_imported_first_then_cbt_llm_registers_at_once():
    report = _child(
        "import json\nfrom datasets import load_dataset\nimport cbt_llm\n"
        "ds = load_dataset('cbt_qa')\nprint(json.dumps({'splits': sorted(ds)}))"
    )
    assert report["splits"] == ["test", "train", "validation"]
