"""The round trip against the real Hugging Face Hub: opt-in, skipped without HF_TOKEN and network.

Run it with ``HF_TOKEN=hf_... pytest tests/test_hub_real.py`` (a token that may create repos in its
user namespace). It creates private temporary repos named ``cbt-llm-test-<random>`` and deletes
them afterwards. ``HF_ENDPOINT`` selects another Hub.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest
import test_hub
from hub_server import hub_env

from cbt_llm.data.build import BuildConfig, build_dataset

ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
TOKEN = os.environ.get("HF_TOKEN")


def _reachable() -> bool:
    url = urlsplit(ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
        return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TOKEN, reason="set HF_TOKEN to run the round trip against the real Hub"),
    pytest.mark.skipif(bool(TOKEN) and not _reachable(), reason=f"{ENDPOINT} is not reachable"),
]


class RealHub:
    """Stands in for the loopback server in test_hub's helpers."""

    endpoint = ENDPOINT


@pytest.fixture
def real(tmp_path, monkeypatch):
    # test_hub.run builds the environment with hub_env; on the real Hub, Xet is used unless the caller disables it
    keep_xet_off = bool(os.environ.get("HF_HUB_DISABLE_XET"))
    monkeypatch.setattr(test_hub, "hub_env", lambda endpoint, token, home: {
        key: value for key, value in hub_env(endpoint, token, home).items()
        if key != "HF_HUB_DISABLE_XET" or keep_xet_off})
    hub, work = RealHub(), tmp_path
    user = test_hub.stock(hub, work, "from huggingface_hub import whoami; print(whoami()['name'])",
                          token=TOKEN).stdout.strip().splitlines()[-1]
    suffix = uuid.uuid4().hex[:8]
    repos = {"dataset": f"{user}/cbt-llm-test-data-{suffix}", "base": f"{user}/cbt-llm-test-base-{suffix}",
             "adapter": f"{user}/cbt-llm-test-lora-{suffix}"}
    try:
        yield hub, work, repos
    finally:
        test_hub.stock(hub, work, """
            import sys
            from huggingface_hub import HfApi
            api = HfApi()
            api.delete_repo(sys.argv[1], repo_type="dataset", missing_ok=True)
            api.delete_repo(sys.argv[2], missing_ok=True)
            api.delete_repo(sys.argv[3], missing_ok=True)
        """, repos["dataset"], repos["base"], repos["adapter"], token=TOKEN)


def test_round_trip_on_the_real_hub(real, tiny_model):
    import torch

    hub, work, repos = real
    dataset_dir = build_dataset(BuildConfig(output_dir=work / "cbt_qa")).output_dir
    test_hub.cli(hub, work, "push", "dataset", dataset_dir, "--repo_id", repos["dataset"], token=TOKEN)
    out = work / "loaded.json"
    test_hub.stock(hub, work, """
        import json, sys
        import datasets
        rows = {c: {s: d.to_list() for s, d in datasets.load_dataset(sys.argv[1], c).items()}
                for c in ("default", "sft")}
        json.dump(rows, open(sys.argv[2], "w"), ensure_ascii=False)
    """, repos["dataset"], out, token=TOKEN)
    rows = json.loads(out.read_text(encoding="utf-8"))
    for config in ("default", "sft"):
        assert rows[config] == test_hub.local_rows(dataset_dir, config)

    adapter = test_hub.make_adapter(tiny_model, work / "adapter", seed=7)
    test_hub.stock(hub, work, """
        import sys
        from huggingface_hub import HfApi
        HfApi().create_repo(sys.argv[1], private=True, exist_ok=True)
        HfApi().upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])
    """, repos["base"], tiny_model, token=TOKEN)
    test_hub.cli(hub, work, "push", "adapter", adapter.folder, "--repo_id", repos["adapter"], "--private",
                 "--dataset_repo_id", repos["dataset"], "--base_model", repos["base"], token=TOKEN)
    ids = work / "ids.json"
    ids.write_text(json.dumps(adapter.ids))
    test_hub.stock(hub, work, test_hub.LOGITS_SCRIPT, repos["adapter"], ids, work / "remote.pt", token=TOKEN)
    remote = torch.load(work / "remote.pt")
    assert torch.allclose(remote["logits"], adapter.logits, atol=1e-5)
    assert remote["card"]["datasets"] == [repos["dataset"]] and remote["card"]["base_model"] == repos["base"]
