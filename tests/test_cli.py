import subprocess
import sys

import pytest


def test_help_lists_the_subcommands(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in ("validate", "build"):
        assert command in result.stdout


def test_build_help_describes_the_defaults(cli):
    result = cli("build", "--help")
    assert "bundled sample" in result.stdout and "--split-ratios" in result.stdout


@pytest.mark.slow
def test_import_stays_light():
    code = "import sys, cbt_llm, cbt_llm.cli; print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
