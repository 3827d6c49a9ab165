import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from cbt_llm.cli import command_groups, main, parse_args
from cbt_llm.cli.common import Group
from cbt_llm.cli.legacy import translate
from cbt_llm.config import on_command_line
from cbt_llm.data.build import BuildConfig

SAMPLE_QUESTIONS = Path(__file__).resolve().parents[1] / "cbt_llm" / "data" / "sample" / "questions.jsonl"


def _commands():
    """``(argv prefix, command)`` for every dataclass command, batch's actions included."""
    for group in command_groups():
        for command in group.COMMANDS:
            if isinstance(command, Group):
                yield from (([command.name, action.name], action) for action in command.commands)
            else:
                yield [command.name], command


COMMANDS = list(_commands())


def test_help_lists_the_subcommands(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in ("validate", "build", "train", "generate", "batch", "predict", "bench", "push", "pull", "chat", "merge"):
        assert command in result.stdout


def test_build_help_describes_the_defaults(cli):
    result = cli("build", "--help")
    assert "bundled sample" in result.stdout and "--split-ratios" in result.stdout and "--split_ratios" in result.stdout


@pytest.mark.parametrize("prefix,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_of_each_command_lists_every_field_with_its_help(prefix, command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*prefix, "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for field in filter(on_command_line, fields(command.arguments)):
        words = " ".join(field.metadata["help"].split()[:4])
        assert words in text, f"{command.name}: help of {field.name}"
        if not field.metadata.get("positional"):
            assert f"--{field.name}" in text and f"--{field.name.replace('_', '-')}" in text


@pytest.mark.parametrize("argv", [
    ["build", "--output_dir", "out", "--split_ratios", "0.5", "0.25", "0.25", "--questions_source", "other"],
    ["build", "--output-dir", "out", "--split-ratios", "0.5", "0.25", "0.25", "--questions-source", "other"],
    ["build", "--output-dir=out", "--split_ratios", "0.5", "0.25", "0.25", "--questions-source=other"],
])
def test_both_spellings_give_the_same_arguments(argv):
    _, args = parse_args(argv)
    assert args == BuildConfig(output_dir="out", split_ratios=[0.5, 0.25, 0.25], questions_source="other")


def test_old_flags_are_translated_with_one_notice_each(capsys):
    assert translate(["build", "--output", "o"]) == ["build", "--output_dir", "o"]
    assert translate(["generate", "--output=o.jsonl", "--dry-run"]) == ["generate", "--output_file=o.jsonl", "--dry-run"]
    assert translate(["pull", "dataset", "me/data", "--output", "d"]) == \
        ["pull", "dataset", "--repo_id", "me/data", "--output_dir", "d"]
    assert translate(["push", "adapter", "a", "--repo-id", "me/a", "--dry-run", "up", "--public", "--branch", "dev"]) \
        == ["push", "adapter", "a", "--repo-id", "me/a", "--dry_run", "--output_dir", "up", "--private", "false",
            "--revision", "dev"]
    assert translate(["chat", "--base", "m", "--base-url", "u"]) == ["chat", "--model_name_or_path", "m", "--base-url", "u"]
    assert translate(["judge", "--no-progress", "--model", "m"]) == ["judge", "--model", "m"]
    err = capsys.readouterr().err.splitlines()
    assert err == ["cbt-llm build: --output is deprecated; use --output_dir",
                   "cbt-llm generate: --output is deprecated; use --output_file",
                   "cbt-llm pull: pull KIND NS/NAME is deprecated; use pull KIND --repo_id NS/NAME",
                   "cbt-llm pull: --output is deprecated; use --output_dir",
                   "cbt-llm push: --dry-run DIR is deprecated; use --dry_run --output_dir DIR",
                   "cbt-llm push: --public is deprecated; use --private false",
                   "cbt-llm push: --branch is deprecated; use --revision",
                   "cbt-llm chat: --base is deprecated; use --model_name_or_path",
                   "cbt-llm judge: --no-progress is deprecated and does nothing here"]
    # the new spellings pass through untouched and silently
    for argv in (["push", "adapter", "a", "--repo_id", "me/a", "--dry-run", "--output-dir", "up"],
                 ["pull", "dataset", "--repo_id", "me/data", "--output_dir", "d"],
                 ["predict", "--base-url", "u", "--model", "served", "--output_file", "p.jsonl"]):
        assert translate(argv) == argv
    assert capsys.readouterr().err == ""


def test_predict_names_a_local_model_like_chat_and_merge(capsys):
    _, local = parse_args(["predict", "--model", "base", "--output", "p.jsonl"])  # the old spelling
    assert (local.model_name_or_path, local.model, local.output_file) == ("base", None, "p.jsonl")
    assert "--model without --base_url is deprecated" in capsys.readouterr().err
    _, served = parse_args(["predict", "--base_url", "http://h/v1", "--model", "cbt", "--output_file", "p.jsonl"])
    assert (served.model_name_or_path, served.model) == (None, "cbt")
    for prefix in (["predict", "--output_file", "p.jsonl"], ["chat"], ["merge", "--adapter", "a", "--output_dir", "o"]):
        assert parse_args([*prefix, "--model_name_or_path", "m"])[1].model_name_or_path == "m"
    assert main(["predict", "--model_name_or_path", "m", "--base_url", "http://h/v1", "--output_file", "p"]) == 1
    err = capsys.readouterr().err
    assert err == "cbt-llm predict: error: a model to load is --model_name_or_path; a served one is --base_url URL " \
                  "--model NAME\n"


def test_dry_run_is_a_switch_everywhere():
    for prefix in (["generate", "--input", "q", "--output_file", "o", "--model", "m"],
                   ["push", "dataset", "d", "--repo_id", "me/d", "--output_dir", "up"]):
        for flag in ("--dry_run", "--dry-run"):
            assert parse_args([*prefix, flag])[1].dry_run is True
    generate = ["generate", "--input", "q", "--output_file", "o", "--model", "m"]
    assert parse_args(generate)[1].dry_run is False and parse_args([*generate, "--dry_run", "false"])[1].dry_run is False


def test_push_and_pull_take_the_repo_id_the_same_way():
    push = parse_args(["push", "dataset", "folder", "--repo_id", "me/data"])[1]
    pull = parse_args(["pull", "dataset", "--repo_id", "me/data", "--output_dir", "d"])[1]
    assert (push.kind, push.folder, push.repo_id, push.private) == ("dataset", "folder", "me/data", None)
    assert (pull.kind, pull.repo_id, pull.output_dir) == ("dataset", "me/data", "d")
    assert parse_args(["push", "adapter", "f", "--repo-id", "me/a", "--private"])[1].private is True


def test_old_flags_still_work_through_the_console_script(tmp_path, cli):
    old = cli("build", "--output", tmp_path / "old")
    assert old.returncode == 0, old.stderr
    assert old.stderr.splitlines() == ["cbt-llm build: --output is deprecated; use --output_dir"]
    new = cli("build", "--output-dir", tmp_path / "new")
    assert new.returncode == 0 and new.stderr == ""
    assert sorted(p.name for p in (tmp_path / "old").rglob("*")) == sorted(p.name for p in (tmp_path / "new").rglob("*"))
    pushed = cli("push", "dataset", tmp_path / "new", "--repo-id", "me/cbt_qa", "--dry-run", tmp_path / "up")
    assert pushed.returncode == 0, pushed.stderr
    assert "deprecated; use --dry_run --output_dir DIR" in pushed.stderr
    assert (tmp_path / "up" / "README.md").is_file() and "dry run: would push" in pushed.stdout


def test_dry_run_switches_through_the_console_script(tmp_path, cli):
    estimate = cli("generate", "--input", SAMPLE_QUESTIONS, "--output_file", tmp_path / "o.jsonl", "--model", "m",
                   "--dry_run", "--base_url", "http://127.0.0.1:9/v1")  # nothing listens there: nothing may be sent
    assert estimate.returncode == 0, estimate.stderr
    assert "nothing was sent" in estimate.stdout and not (tmp_path / "o.jsonl").exists()
    assert cli("build", "--output_dir", tmp_path / "ds").returncode == 0
    pushed = cli("push", "dataset", tmp_path / "ds", "--repo_id", "me/cbt_qa", "--dry_run", "--output_dir", tmp_path / "up")
    assert pushed.returncode == 0 and pushed.stderr == "" and (tmp_path / "up" / "README.md").is_file()
    missing = cli("push", "dataset", tmp_path / "ds", "--repo_id", "me/cbt_qa", "--dry_run")
    assert missing.returncode == 1
    assert missing.stderr == "cbt-llm push: error: --dry_run and --output_dir DIR go together: the files that would " \
                             "be uploaded are written to DIR\n"


@pytest.mark.slow
def test_import_stays_light():
    code = "import sys, cbt_llm, cbt_llm.cli; print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
