"""cbt-llm predict: batched local generation (with an adapter) and endpoint mode, resumable output."""

import json

import pytest
from chat_server import ChatServer

from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
from cbt_llm.errors import CbtLlmError
from cbt_llm.evaluation.predict import (
    PredictConfig,
    load_split,
    predict,
    read_predictions,
    resolve_settings,
    run_settings,
)


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_settings_come_from_flags_then_recipe_then_defaults():
    recipe = {"system_prompt": "配方的系统提示", "max_new_tokens": 99, "generation": {"temperature": 0.7}}
    settings = resolve_settings(recipe)
    assert settings["system_prompt"] == "配方的系统提示" and settings["max_new_tokens"] == 99
    assert settings["temperature"] == 0.7 and settings["do_sample"] is True
    flagged = resolve_settings(recipe, "旗标", max_new_tokens=5, do_sample=False)
    assert flagged["system_prompt"] == "旗标" and flagged["max_new_tokens"] == 5
    assert flagged["do_sample"] is False and flagged["temperature"] is None  # greedy ignores temperature
    default = resolve_settings({})
    assert default["system_prompt"] == SYSTEM_PROMPT_ZH and default["max_new_tokens"] == 512
    assert default["do_sample"] is False
    with pytest.raises(CbtLlmError, match="max_new_tokens"):
        resolve_settings({}, max_new_tokens=0)


def test_predict_with_the_tiny_adapter_writes_resumable_lines(tiny_adapter, tmp_path):
    out = tmp_path / "preds.jsonl"
    summary = predict(PredictConfig(output_file=out, adapter=str(tiny_adapter), max_new_tokens=16, batch_size=4,
                                    progress=False))
    assert "predicted 6 of 6" in summary.format()
    records = lines(out)
    test_ids = [row["id"] for row in load_split(split="test")]
    assert sorted(r["id"] for r in records) == sorted(test_ids)
    for record in records:
        assert isinstance(record["prediction"], str) and record["status"] == "ok"
        assert "response" not in record and "reference" not in record
        assert record["new_tokens"] <= 16 and record["finish_reason"] in ("stop", "length")
        settings = record["settings"]
        assert settings["adapter"] == str(tiny_adapter) and settings["mode"] == "transformers"
        assert settings["system_prompt"] == SYSTEM_PROMPT_ZH  # from the adapter's training_recipe.yaml
        assert settings["max_new_tokens"] == 16 and settings["do_sample"] is False
    # a rerun skips what is done; a torn last line is repaired and that answer made again
    again = predict(PredictConfig(output_file=out, adapter=str(tiny_adapter), max_new_tokens=16, progress=False))
    assert again.skipped == 6 and not again.counts
    data = out.read_bytes()
    out.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1] + b'{"id": "torn", "predic')
    repaired = predict(PredictConfig(output_file=out, adapter=str(tiny_adapter), max_new_tokens=16, progress=False))
    assert repaired.counts == {"ok": 1} and repaired.skipped == 5 and len(lines(out)) == 6
    # other settings are not mixed into the same file, unless asked to start again
    with pytest.raises(CbtLlmError, match="other settings"):
        predict(PredictConfig(output_file=out, adapter=str(tiny_adapter), max_new_tokens=8, progress=False))
    fresh = predict(PredictConfig(output_file=out, adapter=str(tiny_adapter), max_new_tokens=8, overwrite=True,
                                  progress=False))
    assert fresh.counts == {"ok": 6} and all(r["settings"]["max_new_tokens"] == 8 for r in lines(out))


def test_batched_generation_matches_one_at_a_time(tiny_model, tmp_path):
    def run(name, batch_size):
        return predict(PredictConfig(output_file=tmp_path / name, model_name_or_path=str(tiny_model), max_new_tokens=12,
                                     batch_size=batch_size, progress=False))

    one, many = run("one.jsonl", 1), run("many.jsonl", 6)
    assert one.counts["ok"] == many.counts["ok"] == 6
    single = {i: r["prediction"] for i, r in read_predictions(tmp_path / "one.jsonl").items()}
    batched = {i: r["prediction"] for i, r in read_predictions(tmp_path / "many.jsonl").items()}
    assert single == batched  # left padding does not change greedy answers
    assert len(set(single.values())) > 1


@pytest.mark.slow
def test_endpoint_mode_uses_the_engine_and_retries_failures_on_rerun(tmp_path):
    seen = []

    def answer(prompt, body):
        seen.append(body)
        return f"回答：{prompt[:10]}"

    out = tmp_path / "served.jsonl"
    with ChatServer(answer=answer) as server:
        server.script.extend(["500", "429"])  # retried inside the engine
        summary = predict(PredictConfig(output_file=out, model="cbt-lora", base_url=server.base_url, max_new_tokens=64,
                                        concurrency=4, max_attempts=3, progress=False))
        assert summary.counts["ok"] == 6 and server.stats.injected_500 == 1 and server.stats.injected_429 == 1
        body = seen[0]
        assert body["model"] == "cbt-lora" and body["max_tokens"] == 64 and body["temperature"] == 0.0
        assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT_ZH}
        records = {r["id"]: r for r in lines(out)}
        assert all(r["prediction"].startswith("回答：") and r["settings"]["mode"] == "endpoint"
                   for r in records.values())

        # one request fails for good: its line is 'failed', and the next run retries only that one
        failing = tmp_path / "failing.jsonl"
        server.script.append("500")
        first = predict(PredictConfig(output_file=failing, model="cbt-lora", base_url=server.base_url,
                                      max_new_tokens=64, concurrency=2, max_attempts=1, progress=False))
        assert first.counts == {"ok": 5, "failed": 1}
        assert len(read_predictions(failing)) == 5
        second = predict(PredictConfig(output_file=failing, model="cbt-lora", base_url=server.base_url,
                                       max_new_tokens=64, progress=False))
        assert second.counts == {"ok": 1} and second.skipped == 5 and len(read_predictions(failing)) == 6


def test_predict_argument_errors(tmp_path, cli):
    done = cli("predict", "--base-url", "http://127.0.0.1:9/v1", "--adapter", "x", "--model", "m",
               "--output", tmp_path / "p.jsonl")
    assert done.returncode == 1 and "--adapter is for local generation" in done.stderr
    with pytest.raises(CbtLlmError, match="not a PEFT adapter"):
        predict(PredictConfig(output_file=tmp_path / "p.jsonl", adapter=str(tmp_path)))
    with pytest.raises(CbtLlmError, match="no split 'nope'"):
        predict(PredictConfig(output_file=tmp_path / "p.jsonl", model_name_or_path="cbt-llm/tiny-random-llama",
                              split="nope"))


@pytest.mark.parametrize("fields, error", [
    ({"model_name_or_path": "m", "batch_size": 0}, "--batch_size must be at least 1"),
    ({"model": "m"}, "a model to load is --model_name_or_path"),
    ({"model_name_or_path": "m", "base_url": "http://h/v1"}, "a model to load is --model_name_or_path"),
    ({"adapter": "a", "base_url": "http://h/v1", "model": "m"}, "--adapter is for local generation"),
    ({"base_url": "http://h/v1"}, "--base_url needs --model"),
    ({}, "name a model"),
])
def test_the_config_refuses_contradictory_models(fields, error):
    with pytest.raises(CbtLlmError, match=error):
        PredictConfig(output_file="p.jsonl", **fields)


def test_the_run_settings_of_a_served_model_keep_their_shape():
    config = PredictConfig(output_file="p.jsonl", base_url="http://h/v1", model="cbt-lora", max_new_tokens=64,
                           temperature=0.5)
    assert list(run_settings(config)) == ["mode", "model", "adapter", "dataset", "dataset_config", "split",
                                          "max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty",
                                          "system_prompt", "seed", "base_url"]
    assert run_settings(config) | {"system_prompt": None} == {
        "mode": "endpoint", "model": "cbt-lora", "adapter": None, "dataset": "cbt_qa", "dataset_config": "default",
        "split": "test", "max_new_tokens": 64, "do_sample": True, "temperature": 0.5, "top_p": None, "repetition_penalty": None,
        "system_prompt": None, "seed": 0, "base_url": "http://h/v1"}
