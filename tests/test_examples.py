"""The example scripts and the end-to-end demo run on the bundled data with the tiny model, as users run them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, cwd: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_demo_leaves_the_report_the_cards_and_the_upload_folders(tmp_path):
    stdout = run("demo.py", tmp_path, "--output", "out")
    lines = [line for line in stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0].strip("[") for line in lines] == ["generate", "build", "train", "predict", "evaluate",
                                                               "upload"]
    out = tmp_path / "out"
    assert "Open out/report/report.md" in stdout
    assert stdout.splitlines()[-1].endswith("cbt-llm app --adapter out/adapter --dataset out/cbt_qa "
                                            "--report_dir out/report")
    for path in ("report/report.md", "report/report.json", "cbt_qa/README.md", "adapter/README.md",
                 "upload/dataset/README.md", "upload/adapter/adapter_model.safetensors"):
        assert (out / path).is_file(), path
    for png in ("report/metrics.png", "report/step_coverage.png", "adapter/loss_curve.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    report = json.loads((out / "report" / "report.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["base", "cbt-lora"]
    # Training shows: the adapter beats its random base on chrF and on the CBT-structure score, and half or
    # more of its answers have all five steps in order; the report and the summary say what that means.
    base, tuned = report["systems"]
    assert tuned["metrics"]["chrf"] > base["metrics"]["chrf"]
    assert tuned["structure"]["structure_mean"] > base["structure"]["structure_mean"]
    assert tuned["structure"]["structure_full"] >= 0.5
    assert "A random model memorising a format" in (out / "report" / "report.md").read_text(encoding="utf-8")
    assert f"chrF {tuned['metrics']['chrf']:.1f}" in stdout and "out/report/metrics.png" in stdout
    generated = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(generated) == 4 and all(r["status"] in ("ok", "rejected") for r in generated)
    assert "model-index" in (out / "adapter" / "README.md").read_text()


@pytest.mark.slow
def test_the_stage_examples_run_in_order(tmp_path):
    assert "rejected" in run("01_generate.py", tmp_path)
    assert "built examples_output/cbt_qa" in run("02_build_dataset.py", tmp_path)
    assert "adapter, model card and loss curve" in run("03_train.py", tmp_path, "--max_steps", "4",
                                                       "--eval_strategy", "no", "--save_strategy", "no")
    assert "| adapter | 6 |" in run("04_evaluate.py", tmp_path)
    pushed = run("05_push_to_hub.py", tmp_path)
    assert "dataset your-name/cbt_qa: 7 files" in pushed and (tmp_path / "examples_output/upload/adapter").is_dir()
    chat = run("06_chat.py", tmp_path)
    assert "[risk: none, model called: True]" in chat and "[risk: crisis, model called: False]" in chat
    assert "12356" in chat
