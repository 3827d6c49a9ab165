"""cbt-llm bench end to end with real parts: loopback OpenAI-compatible servers, the tiny local model, the loopback Hub."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from bench_helpers import VERDICT, bench_data, gold_replies
from hub_server import HubServer, hub_env
from judge_server import JudgeServer

from cbt_llm.bench import BenchConfig, bench
from cbt_llm.bench.tasks import TASKS
from cbt_llm.errors import CbtLlmError

pytestmark = pytest.mark.slow
CLI = Path(sys.executable).parent / "cbt-llm"
LIMIT = 250  # items per task: a slice spread over every part, sub-task and topic


def served(data: Path, verdict: dict | str = VERDICT):
    """One loopback server for the model (gold replies) and the judge (``verdict``), told apart by model name."""
    replies = gold_replies(data)

    def answer(body: dict) -> str:
        if body["model"] == "judge":
            return verdict if isinstance(verdict, str) else json.dumps(verdict)
        return replies.get(body["messages"][-1]["content"], "我在听，你愿意多说一些吗？")

    return JudgeServer(answer)


def config(out: Path, server: JudgeServer, **kwargs) -> BenchConfig:
    return BenchConfig(output_dir=out, data_dir=str(bench_data()), base_url=server.base_url, model="m",
                       judge_base_url=server.base_url, judge_model="judge", progress=False, **kwargs)


def test_gold_replies_score_one_and_fixed_verdicts_give_their_means_and_a_rerun_resumes(tmp_path):
    data = bench_data()
    with served(data) as server:
        summary = bench(config(tmp_path, server, limit=LIMIT))
        first = len(server.requests)
        records = tmp_path / "records" / "cpsyexam.jsonl"
        lines = records.read_text(encoding="utf-8").splitlines()
        records.write_text("\n".join(lines[:100]) + "\n" + lines[100][:30], encoding="utf-8")  # a kill mid-line
        again = bench(config(tmp_path, server, limit=LIMIT))
        assert len(server.requests) - first == LIMIT - 100  # only the lost replies are asked again
    result = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    exam, cbt, coun = (result["tasks"][t] for t in ("cpsyexam", "cbt_bench", "cpsycoune"))
    assert exam["accuracy"] == 1.0 and exam["n"] == LIMIT and exam["by_part"]["case"]["accuracy"] == 1.0
    assert set(exam["by_type"]) == {"single", "multi"} and len(exam["by_subject"]) > 10
    assert cbt["weighted_f1"] == 1.0 and {k: v["weighted_f1"] for k, v in cbt["by_subtask"].items()} == \
        {"distortions": 1.0, "core_major": 1.0, "core_fine": 1.0}
    assert coun["n"] == LIMIT and coun["mean_total"] == sum(VERDICT.values())
    assert {d: coun[d] for d in VERDICT} == VERDICT and coun["judge_model"] == "judge"
    assert all(v["mean_total"] == sum(VERDICT.values()) for v in coun["by_topic"].values()) and len(coun["by_topic"]) == 9
    assert exam["source"]["files"] and result["settings"]["judge"]["model"] == "judge"
    assert again.results["cpsyexam"]["accuracy"] == summary.results["cpsyexam"]["accuracy"] == 1.0
    assert len(records.read_text(encoding="utf-8").splitlines()) == LIMIT  # no line lost, none twice
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "judge judge" in md and f"| CPsyExam (dev) | {LIMIT} | accuracy | 1.0000 |" in md
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_always_a_scores_exactly_the_share_of_gold_a(tmp_path):
    with JudgeServer(lambda body: "答案：A") as server:
        summary = bench(config(tmp_path, server, tasks="cpsyexam", limit=300, seed=3))
    items = [i for i in TASKS["cpsyexam"].load(bench_data(), 0)[0]]
    scored = {json.loads(line)["id"] for line in (tmp_path / "records" / "cpsyexam.jsonl").read_text().splitlines()}
    gold_a = sum(1 for i in items if i.id in scored and i.gold == "A")
    assert len(scored) == 300 and summary.results["cpsyexam"]["accuracy"] == gold_a / 300


def test_a_nonsense_judge_is_one_line_and_the_replies_are_kept(tmp_path):
    data = bench_data()
    out = tmp_path / "out"
    args = ["bench", "--tasks", "cpsycoune", "--data_dir", data, "--output_dir", out, "--limit", "4",
            "--model", "m", "--judge_model", "judge", "--no_progress"]
    bad = {**VERDICT, "professionalism": 7}
    with served(data, bad) as server:
        result = subprocess.run([CLI, *map(str, args), "--base_url", server.base_url, "--judge_base_url",
                                 server.base_url], capture_output=True, text=True, timeout=120)
        asked = sum(r["body"]["model"] == "judge" for r in server.requests)
    assert result.returncode == 1 and asked == 4 * 3  # each verdict asked three times
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "cpsycoune: no item could be scored" in error[0]
    assert "'professionalism' is 7, not an integer 0-3" in error[0] and "item " in error[0]
    replies = (out / "records" / "cpsycoune.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(replies) == 4 and all(json.loads(r)["status"] == "ok" for r in replies)
    with served(data) as server:  # a working judge of the same name: only the verdicts are asked again
        summary = bench(config(out, server, tasks="cpsycoune", limit=4))
        assert {r["body"]["model"] for r in server.requests} == {"judge"} and len(server.requests) == 4
        assert summary.results["cpsycoune"]["mean_total"] == sum(VERDICT.values())
        with pytest.raises(CbtLlmError, match="verdicts of judge judge .* not comparable"):
            bench(replace(config(out, server, tasks="cpsycoune", limit=4), judge_model="other"))


def test_the_tiny_local_model_runs_every_task(tmp_path, tiny_model):
    replies = []

    def judge(body):
        replies.append(body["messages"][-1]["content"])
        return json.dumps(VERDICT)

    train = tmp_path / "train.jsonl"
    item = TASKS["cpsyexam"].load(bench_data(), 0)[0][0]
    train.write_text(json.dumps({"question": item.text}, ensure_ascii=False) + "\n", encoding="utf-8")
    with JudgeServer(judge) as server:
        summary = bench(BenchConfig(output_dir=tmp_path / "out", data_dir=str(bench_data()),
                                    model_name_or_path=str(tiny_model), limit=3, shots=1, max_new_tokens=8,
                                    judge_base_url=server.base_url, judge_model="judge", train_dataset=str(train),
                                    progress=False))
    result = json.loads((tmp_path / "out" / "bench.json").read_text(encoding="utf-8"))
    assert {t: r["n"] for t, r in result["tasks"].items()} == {"cpsyexam": 3, "cpsycoune": 3, "cbt_bench": 3}
    assert result["settings"]["mode"] == "transformers" and len(replies) == 3
    assert 0 <= result["tasks"]["cpsyexam"]["accuracy"] <= 1 and result["tasks"]["cpsycoune"]["mean_total"] == 7
    assert result["contamination"]["tasks"]["cpsyexam"]["checked"] == 3
    assert summary.failure() is None and "cpsyexam: accuracy" in summary.format()


UPLOAD = """
    import sys
    from huggingface_hub import HfApi
    api = HfApi()
    data = sys.argv[1]
    api.create_repo("CAS-SIAT-XinHai/CPsyExam", repo_type="dataset")
    api.upload_file(path_or_fileobj=f"{data}/cpsyexam/cpsyexam.zip", path_in_repo="cpsyexam.zip",
                    repo_id="CAS-SIAT-XinHai/CPsyExam", repo_type="dataset")
    api.create_repo("CBT-LLM/CBT-Bench", repo_type="dataset")
    api.upload_folder(folder_path=f"{data}/cbt_bench", repo_id="CBT-LLM/CBT-Bench", repo_type="dataset")
"""


def test_without_data_dir_the_tasks_load_from_their_hub_datasets(tmp_path):
    import hashlib

    data = bench_data()
    with HubServer(tmp_path / "hub") as hub, served(data) as server:
        env = hub_env(hub.endpoint, "hf_benchtest", tmp_path / "hf_home")
        script = tmp_path / "upload.py"
        script.write_text(textwrap.dedent(UPLOAD), encoding="utf-8")
        subprocess.run([sys.executable, script, data], env=env, check=True, capture_output=True, timeout=120)
        result = subprocess.run([CLI, "bench", "--tasks", "cpsyexam,cbt_bench", "--output_dir", tmp_path / "out",
                                 "--limit", "20", "--base_url", server.base_url, "--model", "m", "--no_progress"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert not hub.unimplemented
    assert result.returncode == 0, result.stderr
    bench_json = json.loads((tmp_path / "out" / "bench.json").read_text(encoding="utf-8"))
    exam, cbt = bench_json["tasks"]["cpsyexam"], bench_json["tasks"]["cbt_bench"]
    assert exam["accuracy"] == 1.0 and cbt["weighted_f1"] == 1.0 and exam["n"] == cbt["n"] == 20
    assert exam["source"]["kind"] == "hub" and exam["source"]["location"] == "CAS-SIAT-XinHai/CPsyExam"
    archive = hashlib.sha256((data / "cpsyexam" / "cpsyexam.zip").read_bytes()).hexdigest()
    assert exam["source"]["files"]["cpsyexam.zip"] == archive
    assert cbt["source"]["files"]["core_fine_test.json"] == hashlib.sha256(
        (data / "cbt_bench" / "core_fine_test.json").read_bytes()).hexdigest()
