"""The package layout keeps its promises: light imports, stages that talk through public names, no cycles."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cbt_llm"
MODULES = sorted(
    ".".join(("cbt_llm", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
)
HEAVY = ("torch", "transformers", "datasets", "pandas", "trl", "peft", "pyarrow", "evaluate")
# Modules that exist to wrap a heavy library, and what they may load when imported.
ALLOWED = {
    "cbt_llm.data.builder": {"datasets", "pandas", "pyarrow"},  # a datasets builder subclasses datasets' classes
    "cbt_llm.evaluation.metrics": set(HEAVY) - {"trl", "peft"},  # evaluate.Metric subclasses
}


def _allowed(module: str) -> set[str]:
    return next((heavy for prefix, heavy in ALLOWED.items() if module == prefix or module.startswith(prefix + ".")),
                set())


def _source(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    return PACKAGE / relative / "__init__.py" if (PACKAGE / relative).is_dir() else (PACKAGE / relative).with_suffix(".py")


@pytest.mark.slow
def test_importing_any_module_loads_only_the_heavy_libraries_it_wraps():
    code = ("import json, sys, importlib\nloaded = {}\nfor name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            f"    loaded[name] = sorted(h for h in {HEAVY!r} if h in sys.modules)\nprint(json.dumps(loaded))")
    # one fresh interpreter per module: what a module pulls in must not hide behind an earlier import
    offenders = {}
    for module in (m for m in MODULES if _allowed(m) != set(HEAVY) - {"trl", "peft"}):
        out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        extra = set(json.loads(out.stdout)[module]) - _allowed(module)
        if extra:
            offenders[module] = sorted(extra)
    assert offenders == {}


@pytest.mark.slow
def test_the_safety_guard_imports_no_ml_stack():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import cbt_llm.safety"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "datasets", "pandas", "transformers"}


@pytest.mark.parametrize("module", MODULES)
def test_no_module_is_over_400_lines(module):
    assert len(_source(module).read_text(encoding="utf-8").splitlines()) <= 400


def _stage(module: str) -> str:
    """The subpackage a module belongs to (``generation``), or the module itself at the top level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else module


def _imports(module: str, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` for each ``from cbt_llm... import`` / ``import cbt_llm...`` in a module."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cbt_llm"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("cbt_llm")]
    return found


def test_no_stage_imports_another_stages_private_names():
    crossings = [f"{module} imports {name} from {target}" for module in MODULES
                 for target, names in _imports(module, top_level_only=False) for name in names
                 if name.startswith("_") and not name.startswith("__") and _stage(target) != _stage(module)]
    assert crossings == []


def test_module_level_imports_have_no_cycle():
    graph = {}
    for module in MODULES:
        targets = set()
        for target, names in _imports(module, top_level_only=True):
            for candidate in [f"{target}.{name}" for name in names] + [target]:
                if candidate in MODULES and candidate != module:
                    targets.add(candidate)
                    break
        graph[module] = targets

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [cycle for module in MODULES if (cycle := cycle_from(module))]
    assert cycles == []


MAX_COMPLEXITY = 15
COMPLEXITY_EXEMPT = ()


def _blocks(path: Path):
    """Every function and method radon measures in one file (what ``radon cc`` lists)."""
    from radon.complexity import cc_visit

    for block in cc_visit(path.read_text(encoding="utf-8")):
        yield from getattr(block, "methods", None) or [block]


def test_no_function_is_more_tangled_than_the_bound():
    tangled = [f"{path.relative_to(PACKAGE.parent)}:{block.lineno} {block.name} ({block.complexity})"
               for path in sorted(PACKAGE.rglob("*.py")) if not set(COMPLEXITY_EXEMPT) & set(path.parts)
               for block in _blocks(path) if block.complexity > MAX_COMPLEXITY]
    assert tangled == []


def test_evaluation_reads_the_engine_not_the_generation_stage():
    crossings = [f"{module} imports {target}" for module in MODULES if module.startswith("cbt_llm.evaluation")
                 for target, _ in _imports(module, top_level_only=False) if target.startswith("cbt_llm.generation")]
    assert crossings == []


def test_the_default_api_key_variable_is_written_once():
    literal = '"OPENAI_API_KEY"'
    places = [f"{path.relative_to(PACKAGE.parent)}:{n}" for path in sorted(PACKAGE.rglob("*.py"))
              for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if literal in line]
    assert [place.split(":")[0] for place in places] == ["cbt_llm/engine/endpoints.py"]


# The public function of every pipeline stage: it takes its stage's config whole (plus, at most, two inputs).
STAGE_FUNCTIONS = {
    "cbt_llm.generation.generate": ("generate", "estimate"),
    "cbt_llm.generation.batch": ("submit", "poll", "ingest", "run_batch"),
    "cbt_llm.generation.annotate": ("annotate",),
    "cbt_llm.generation.dialogue": ("dialogue",),
    "cbt_llm.data.build": ("build_dataset",),
    "cbt_llm.evaluation.predict": ("predict",),
    "cbt_llm.evaluation.evaluate": ("evaluate_systems",),
    "cbt_llm.evaluation.judge": ("judge",),
    "cbt_llm.bench.run": ("bench",),
    "cbt_llm.hub.push": ("push",),
    "cbt_llm.hub.pull": ("pull",),
    "cbt_llm.training.merge": ("merge_adapter",),
    "cbt_llm.chat.terminal": ("chat_main",),
    "cbt_llm.app": ("app_main", "build_app", "export_space"),
}


@pytest.mark.parametrize("module, name", [(m, n) for m, names in STAGE_FUNCTIONS.items() for n in names])
def test_each_stage_function_takes_its_config_whole(module, name):
    import importlib
    import inspect

    function = getattr(importlib.import_module(module), name)
    parameters = list(inspect.signature(function).parameters.values())
    assert len(parameters) <= 3, f"{module}.{name}{inspect.signature(function)}"
    assert "Config" in str(parameters[0].annotation), f"{module}.{name}: first parameter {parameters[0]}"
