"""Install built distributions into a fresh venv, away from the source tree, and check each works on its own.

``make dist`` runs ``python scripts/smoke_install.py dist/cbt_llm-*.whl dist/cbt_llm-*.tar.gz``: one new venv
(torch first, the CPU build by default), the wheel installed and checked, then the sdist installed over it
(``--force-reinstall --no-deps``: the same dependencies) and checked again. The checks run with ``python -I``
from an empty folder, so nothing of the checkout is importable. The wheel's file list is checked as well.

``make floors`` adds ``--floors --pytest ARGS``: every ``>=`` floor of setup.cfg's install_requires is pinned
(torch excepted: the one CPU build at hand), the wheel is installed with its test extra, checked, and pytest
runs with ARGS against that installation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# Files every installation must carry: card templates, training recipes, crisis data, the sample.
REQUIRED_FILES = (
    "dataset_cards/cbt_qa.md",
    "model_cards/cbt_adapter.md",
    "model_cards/cbt_merged.md",
    "recipes/tiny-cpu.yaml",
    "recipes/qwen2.5-7b-instruct-lora.yaml",
    "recipes/tiny-dialogue.yaml",
    "recipes/qwen2.5-7b-instruct-dialogue-lora.yaml",
    "recipes/accelerate/ddp.yaml",
    "recipes/accelerate/fsdp.yaml",
    "recipes/accelerate/zero3.yaml",
    "recipes/accelerate/zero3-offload.yaml",
    "data/safety_lexicon.yaml",
    "data/crisis_resources.json",
    "data/sample/cbt_qa_sample.jsonl",
    "data/sample/cbt_dialogue_sample.jsonl",
    "data/sample/questions.jsonl",
    "safety/classifier.json",
)
NOT_A_SUBSTITUTE = "Not a substitute for professional help"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
ROOT = Path(__file__).resolve().parents[1]


def floor_constraints(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """``name==floor`` for each install requirement with a ``>=`` floor, torch left out."""
    import configparser

    from packaging.requirements import Requirement

    config = configparser.ConfigParser()
    config.read(setup_cfg, encoding="utf-8")
    pins = []
    for line in filter(None, (entry.strip() for entry in config["options"]["install_requires"].splitlines())):
        requirement = Requirement(line)
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if floors and requirement.name != "torch":
            pins.append(f"{requirement.name}=={floors[0]}")
    return pins


def check_wheel_files(wheel: Path) -> str:
    """Fail unless the wheel holds every required file and the console script, and nothing from tests/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in REQUIRED_FILES if f"cbt_llm/{name}" not in names]
    stray = sorted(name for name in names if name.startswith(("tests/", "scripts/", "dataset_cards/", "model_cards/")))
    entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
    if missing or stray or entry_points is None:
        raise SystemExit(f"{wheel.name}: missing {missing}, stray {stray}, entry_points.txt {entry_points}")
    if "cbt-llm = cbt_llm.cli:main" not in zipfile.ZipFile(wheel).read(entry_points).decode():
        raise SystemExit(f"{wheel.name}: no cbt-llm console script in {entry_points}")
    return f"{len(names)} files, all {len(REQUIRED_FILES)} required data files, the cbt-llm entry point"


def _run(command: list[str], cwd: Path | None = None) -> str:
    """Run a command; on failure show its output and stop."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def _check(name: str, detail: str) -> None:
    print(f"  ok  {name}: {detail}", flush=True)


def run_checks() -> None:
    """Inside the fresh venv: the installed package alone does the first pipeline steps offline."""
    import importlib.metadata
    from importlib import resources

    bin_dir = Path(sys.executable).parent
    light = _run([sys.executable, "-I", "-c", "import sys, cbt_llm; print(sorted({'torch', 'transformers'} & set(sys.modules)))"])
    if light.strip() != "[]":
        raise SystemExit(f"`import cbt_llm` imported {light.strip()}")
    import cbt_llm

    where = Path(cbt_llm.__file__).resolve()
    if not where.is_relative_to(Path(sys.prefix).resolve()):
        raise SystemExit(f"cbt_llm was imported from {where}, not from the venv {sys.prefix}")
    if importlib.metadata.version("cbt-llm") != cbt_llm.__version__:
        raise SystemExit(f"metadata version {importlib.metadata.version('cbt-llm')} != {cbt_llm.__version__}")
    _check("import cbt_llm", f"{cbt_llm.__version__} from {where.parent}, torch not imported")

    root = resources.files("cbt_llm")
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise SystemExit(f"installed package lacks {missing}")
    _check("package data", f"all {len(REQUIRED_FILES)} required files installed")

    from datasets import load_dataset

    dataset = load_dataset("cbt_qa")
    _check('load_dataset("cbt_qa")', ", ".join(f"{split} {len(rows)}" for split, rows in dataset.items()))

    questions = root / "data" / "sample" / "questions.jsonl"
    _check("cbt-llm validate", _run([str(bin_dir / "cbt-llm"), "validate", str(questions)]).strip())

    _run([str(bin_dir / "cbt-llm"), "build", "--output_dir", "built"])
    card = Path("built/README.md").read_text(encoding="utf-8")
    if not card.startswith("---\n") or NOT_A_SUBSTITUTE not in card or "{{" in card:
        raise SystemExit(f"the dataset card did not render:\n{card[:800]}")
    parquet = sorted(str(p) for p in Path("built").rglob("*.parquet"))
    _check("cbt-llm build", f"{len(parquet)} parquet files, card with front matter and the help statement")

    from cbt_llm.cards import render_model_card

    model_card = render_model_card("cbt-llm/tiny-random-llama", "cbt_qa", "apache-2.0", {}, [], "system")
    if NOT_A_SUBSTITUTE not in model_card or "{{" in model_card:
        raise SystemExit(f"the model card did not render:\n{model_card[:800]}")
    _check("model card", f"{len(model_card)} characters with the help statement")

    from cbt_llm.safety import assess_lexicon

    if not assess_lexicon("我不想活了").is_crisis or assess_lexicon("今天天气很好").is_crisis:
        raise SystemExit("the bundled safety lexicon does not tell a crisis message from an ordinary one")
    _check("safety lexicon", "a crisis message flagged, an ordinary one not")

    from cbt_llm.training.train import parse_args

    script_args, training_args, model_args = parse_args(["--config", "tiny-cpu", "--output_dir", "tiny-out"])
    if model_args.model_name_or_path != "cbt-llm/tiny-random-llama" or not model_args.use_peft:
        raise SystemExit(f"tiny-cpu resolved to {model_args}")
    _check("tiny-cpu recipe", f"{model_args.model_name_or_path}, LoRA r={model_args.lora_r}, "
           f"{training_args.num_train_epochs:g} epochs on {script_args.dataset_name}/{script_args.dataset_config}")


def make_venv(folder: Path, torch: str, torch_index: str) -> Path:
    """A new venv with torch from ``torch_index`` (a wheel pip finds through --find-links is taken too)."""
    _run([sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--retries", "2",
          "--index-url", torch_index, torch])
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dists", nargs="*", type=Path, help="wheel and/or sdist files, installed in this order")
    parser.add_argument("--torch", default=os.environ.get("TORCH", "torch==2.13.0"), help="torch requirement")
    parser.add_argument("--torch-index", default=os.environ.get("TORCH_INDEX", CPU_TORCH_INDEX),
                        help=f"index to take torch from (default: {CPU_TORCH_INDEX})")
    parser.add_argument("--floors", action="store_true", help="pin the install requirements to their floors and "
                        "install the test extra (one wheel only)")
    parser.add_argument("--pytest", nargs=argparse.REMAINDER, default=[], metavar="ARG", help="then run pytest with "
                        "the arguments after this flag, from the checkout, against the installation (put it last)")
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)  # inside the venv
    args = parser.parse_args()
    if args.check:
        run_checks()
        return
    if not args.dists:
        parser.error("give at least one wheel or sdist")
    if args.floors and (len(args.dists) != 1 or args.dists[0].suffix != ".whl"):
        parser.error("--floors takes one wheel")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cbt-llm-smoke-") as tmp:
        python = make_venv(Path(tmp) / "venv", args.torch, args.torch_index)
        print(f"fresh venv with {args.torch} in {time.monotonic() - start:.0f} s", flush=True)
        for index, dist in enumerate(args.dists):
            print(f"{dist.name}", flush=True)
            if dist.suffix == ".whl":
                _check("wheel contents", check_wheel_files(dist))
            again = ["--force-reinstall", "--no-deps"] if index else []
            target = str(dist.resolve())
            if args.floors:
                constraints = Path(tmp) / "floors.txt"
                constraints.write_text("\n".join(floor_constraints()) + "\n", encoding="utf-8")
                print(f"  floors: {' '.join(floor_constraints())}", flush=True)
                again, target = ["--constraint", str(constraints)], f"{target}[test]"
            began = time.monotonic()
            _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *again, target])
            print(f"  installed in {time.monotonic() - began:.0f} s", flush=True)
            work = Path(tmp) / f"work{index}"
            work.mkdir()
            offline = {"HF_HOME": str(Path(tmp) / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
            done = subprocess.run([str(python), "-I", str(Path(__file__).resolve()), "--check"], cwd=work,
                                  env={**os.environ, **offline})
            if done.returncode != 0:
                raise SystemExit(f"{dist.name}: the installed package failed its checks")
        if args.pytest:  # from the checkout's root, but -I keeps the checkout's cbt_llm off sys.path
            print(f"pytest {' '.join(args.pytest)}", flush=True)
            if subprocess.run([str(python), "-I", "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest],
                              cwd=ROOT).returncode != 0:
                raise SystemExit("tests failed against the installation")
        versions = json.loads(_run([str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"]))
        pins = {p["name"].lower(): p["version"] for p in versions}
        print(f"smoke: {len(args.dists)} distribution(s) passed in a fresh venv in {time.monotonic() - start:.0f} s "
              f"(python {sys.version.split()[0]}, torch {pins.get('torch')}, transformers {pins.get('transformers')}, "
              f"datasets {pins.get('datasets')})")


if __name__ == "__main__":
    main()
