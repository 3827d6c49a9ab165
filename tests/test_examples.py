"""The example scripts and the end-to-end demo run on the bundled data with the tiny model, as users run them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here starts a server or a process, or trains

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BENCH_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench"  # the demo's bench slice reads it


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
                                                               "bench", "dialogue", "upload"]
    if BENCH_DATA.is_dir():  # a slice of CPsyExam and CBT-Bench on the adapter, said plainly to be at chance
        scores = json.loads((tmp_path / "out" / "bench" / "bench.json").read_text())
        assert set(scores["tasks"]) == {"cpsyexam", "cbt_bench"} and "scores at chance at best" in stdout
    # It says at once how long it takes, and training (most of that time) shows its progress: a line per epoch.
    assert re.match(r"The demo takes about \d+ minutes on 2 CPU cores", stdout)
    training = stdout.split("[build")[1].split("[train")[0]
    epochs = re.findall(r"^  epoch (\d+) of 15: training loss (\d+\.\d+), validation loss \d+\.\d+ \(\d+ s\)$", training,
                        re.MULTILINE)
    assert [int(epoch) for epoch, _ in epochs] == list(range(1, 16)) and float(epochs[-1][1]) < float(epochs[0][1])
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
    card = (out / "adapter" / "README.md").read_text()
    assert "model-index" in card and "random model memorising a format" in card and "huggingface.co/cbt-llm/" not in card
    results = card.split("## Training results")[1].split("\n## ")[0].splitlines()
    evaluated = [line for line in results if line.startswith("| ") and line.split("|")[4].strip()[:1].isdigit()]
    assert len(evaluated) == 15  # the validation loss of every epoch (tiny-demo: 15), not only the last
    uploaded = (out / "upload" / "adapter" / "README.md").read_text()
    assert "random model memorising a format" in uploaded and "cbt-llm/small-random-llama)" not in uploaded
    # The dialogue slice: the built folder's dialogue config, a dialogue adapter whose turns are read back as
    # dialogues, and a scripted chat in which the guard, not the model, answers the suicidal turn.
    assert "and a dialogue config of 12 CBT dialogues" in stdout
    dialogue = json.loads((out / "dialogue_report" / "report.json").read_text())
    assert dialogue["unit"] == "counsellor turns" and dialogue["systems"][0]["dialogue"]["dialogues"] == 4
    assert "## Dialogues" in (out / "dialogue_report" / "report.md").read_text(encoding="utf-8")
    assert "3 scripted client turns through the guarded chat: 2 answered by the adapter" in stdout
    chat = (out / "dialogue_chat.txt").read_text(encoding="utf-8")
    assert "12356" in chat and "不能替代" in chat  # the crisis reply's hotline, the not-a-substitute notice
    assert "## Dialogues (`dialogue` config)" in (out / "upload" / "dataset" / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_stage_examples_run_in_order(tmp_path):
    assert "rejected" in run("01_generate.py", tmp_path)
    assert "built examples_output/cbt_qa" in run("02_build_dataset.py", tmp_path)
    assert "adapter, model card and loss curve" in run("03_train.py", tmp_path, "--max_steps", "4",
                                                       "--eval_strategy", "no", "--save_strategy", "no")
    evaluated = run("04_evaluate.py", tmp_path)
    assert "| adapter | 6 |" in evaluated and "the adapter can score below its base here" in evaluated
    assert "the adapter can score below its base here" in (tmp_path / "examples_output/report/report.md").read_text()
    pushed = run("05_push_to_hub.py", tmp_path)
    assert "dataset your-name/cbt_qa: 7 files" in pushed and (tmp_path / "examples_output/upload/adapter").is_dir()
    chat = run("06_chat.py", tmp_path)
    assert "[risk: none, model called: True]" in chat and "[risk: crisis, model called: False]" in chat
    assert "12356" in chat
