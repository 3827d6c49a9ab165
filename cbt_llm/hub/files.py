"""What of a local folder may leave this machine: the one file filter and path scrubbing that ``push`` (and its
dry run) and ``cbt-llm app --export_space`` share.

:func:`shareable_files` is the filter: regular files only (a symbolic link is left out, never followed),
nothing hidden (``.env``, ``.git/``), no trainer state (``checkpoint-N/`` folders, optimizer, scheduler and
RNG state, ``training_args.bin``). :func:`adapter_plan` is an adapter folder as it is published: those
files, its card made again by ``card_fn``, ``adapter_config.json`` naming the base model given, and the run
files ``cbt-llm train`` writes (``training_recipe.yaml``, ``trainer_state.json``) without this machine's
absolute paths. :func:`wheel_plan` is the same filter over a package inside a wheel (the project's
own package, when a Space folder carries it).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cbt_llm.errors import CbtLlmError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Trainer leftovers that do not belong in a published folder (pickles, optimizer state), and its checkpoint folders.
TRAINER_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")
CHECKPOINT_FOLDER = re.compile(r"checkpoint-\d+")
# Files `cbt-llm train` writes whose settings can name paths of the training machine (output_dir, data files).
RUN_FILES = ("training_recipe.yaml", "trainer_state.json")
Plan = dict[str, "Path | bytes"]
CardFn = Callable[..., str]


def _private(parts: tuple[str, ...]) -> bool:
    """Whether a path (its parts below the folder) is hidden, trainer state, or inside a checkpoint folder."""
    return (any(part.startswith(".") for part in parts) or parts[-1] in TRAINER_STATE_FILES
            or any(CHECKPOINT_FOLDER.fullmatch(part) for part in parts[:-1]))


def shareable_files(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """The files of ``folder`` (and, ``recursive``, its subfolders) that may be published, sorted.

    Left out: symbolic links (named in a warning: a link's target is never published), hidden files
    and folders, trainer state and ``checkpoint-N`` folders.
    """
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        parts = path.relative_to(folder).parts
        if any(folder.joinpath(*parts[: i + 1]).is_symlink() for i in range(len(parts))):
            if path.is_symlink() and not _private(parts):
                logger.warning("left out %s: a symbolic link (what it points to is not published)", path)
            continue
        if path.is_file() and not _private(parts):
            found.append(path)
    return found


def is_machine_path(value: Any) -> bool:
    """Whether a setting's value is an absolute path of this machine (``/...``, ``~...``, ``C:\\...``)."""
    return (isinstance(value, str) and len(value) > 1
            and (value.startswith("~") or os.path.isabs(value) or re.match(r"[A-Za-z]:[\\/]", value) is not None))


def without_machine_paths(settings: Any, replacements: dict[str, str], replaced: dict[str, str] | None = None,
                          key: str = "") -> Any:
    """Settings (a mapping, lists and mappings in it) with each absolute path replaced: by ``replacements[key]``
    when given, else by its last part (``/home/me/outputs/run`` becomes ``run``); ``replaced`` collects old -> new."""
    replaced = {} if replaced is None else replaced
    if isinstance(settings, dict):
        return {name: without_machine_paths(value, replacements, replaced, name) for name, value in settings.items()}
    if isinstance(settings, list):
        return [without_machine_paths(item, replacements, replaced, key) for item in settings]
    if not is_machine_path(settings):
        return settings
    replaced[settings] = replacements.get(key) or Path(settings.replace("\\", "/").rstrip("/")).name
    return replaced[settings]


def _run_file(path: Path, replacements: dict[str, str], replaced: dict[str, str]) -> Path | bytes:
    """A run file (JSON or YAML) as published: the file itself when it names no absolute path, else its settings
    without them."""
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        settings = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:  # ValueError: json.JSONDecodeError
        raise CbtLlmError(f"{path}: cannot read it to leave this machine's paths out ({err})") from None
    scrubbed = without_machine_paths(settings, replacements, replaced)
    if scrubbed == settings:
        return path
    if path.suffix == ".json":
        return (json.dumps(scrubbed, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return yaml.safe_dump(scrubbed, allow_unicode=True, sort_keys=True).encode("utf-8")


def folder_plan(folder: str | Path, *, recursive: bool = True, run_files: tuple[str, ...] = (),
                replacements: dict[str, str] | None = None, replaced: dict[str, str] | None = None) -> Plan:
    """The :func:`shareable_files` of ``folder`` by relative path; those named in ``run_files`` (JSON or YAML
    settings: a training recipe, a trainer state, ``report.json``) with their absolute paths replaced as
    :func:`without_machine_paths` says."""
    folder = Path(folder)
    plan: Plan = {path.relative_to(folder).as_posix(): path for path in shareable_files(folder, recursive=recursive)}
    for name in set(run_files) & set(plan):
        plan[name] = _run_file(plan[name], replacements or {}, {} if replaced is None else replaced)
    return plan


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """The folder's ``adapter_config.json``, or the one-line error saying why it is not an adapter folder."""
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file() or config_path.is_symlink():
        raise CbtLlmError(f"{folder} is not an adapter folder (no {ADAPTER_CONFIG})")
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CbtLlmError(f"{config_path}: not valid JSON ({err})") from None


def adapter_plan(folder: str | Path, *, base_model: str | None, card_fn: CardFn, card_base_model: str | None,
                 **card_info: Any) -> Plan:
    """An adapter folder's files as published, by name: a local file, or the bytes made for publishing.

    The files are :func:`shareable_files` (top level); ``README.md`` is ``card_fn(card_text,
    base_model=card_base_model, folder=, **card_info)``; with ``base_model``, ``adapter_config.json``
    names it instead of the base it was trained from (the local file is left as it is), and the run
    files name it as their ``model_name_or_path`` when that was a path of this machine. Every other
    absolute path in the run files becomes its last part.
    """
    folder = Path(folder)
    adapter_config = read_adapter_config(folder)
    replacements, in_run_files = {"model_name_or_path": base_model} if base_model else {}, {}
    plan = folder_plan(folder, recursive=False, run_files=RUN_FILES, replacements=replacements, replaced=in_run_files)
    plan.pop("README.md", None)
    if base_model and adapter_config.get("base_model_name_or_path") != base_model:
        rewritten = {**adapter_config, "base_model_name_or_path": base_model}  # else it goes as it is, byte for byte
        plan[ADAPTER_CONFIG] = (json.dumps(rewritten, indent=2, sort_keys=True) + "\n").encode("utf-8")
    published = card_info.get("repo_id") or folder.name
    names = {str(folder.resolve()): published, str(folder.expanduser().absolute()): published}
    configured = adapter_config.get("base_model_name_or_path")
    if is_machine_path(configured):
        names[configured] = base_model or Path(configured).name
    plan["README.md"] = _card(folder, {**in_run_files, **names}, card_fn, card_base_model=card_base_model,
                              **card_info).encode("utf-8")
    return dict(sorted(plan.items()))


def _card(folder: Path, names: dict[str, str], card_fn: CardFn, **card_info: Any) -> str:
    """The adapter's card from ``card_fn`` (made from the local run files), with each local path in ``names``
    (the folder, a local base model, the run files' paths) replaced by its published name."""
    readme = folder / "README.md"
    card_text = readme.read_text(encoding="utf-8") if readme.is_file() and not readme.is_symlink() else None
    card = card_fn(card_text, base_model=card_info.pop("card_base_model"), folder=folder, **card_info)
    for local in sorted(names, key=len, reverse=True):
        card = card.replace(local, names[local])
    return card


def wheel_plan(wheel: str | Path, package: str, *, source: str | Path | None = None) -> Plan:
    """The files of ``package`` in a wheel, by path inside the package, as they may leave this machine.

    Left out, as :func:`shareable_files` leaves them out of a folder: hidden files, trainer state,
    ``checkpoint-N`` folders and, with ``source`` (the source tree the wheel was built from), files that are
    symbolic links there (named in a warning). A file that names this machine's home folder or where the
    wheel came from (``source``, a tree or the folder of an sdist, else the wheel's folder) is refused: a
    package's code cannot be rewritten without it.
    """
    import zipfile

    wheel, prefix = Path(wheel), f"{package}/"
    origin = Path(source if source is not None else wheel)  # a source tree, or the wheel's (or sdist's) file
    tree = origin if origin.is_dir() else None
    where = tree or origin.parent
    local = {path for path in (str(Path.home()), str(where.resolve()), str(where.absolute())) if len(path) > 1}
    with zipfile.ZipFile(wheel) as archive:
        plan: Plan = {name[len(prefix):]: archive.read(name) for name in archive.namelist()
                      if _shareable_member(name, prefix, tree)}
    for name, data in plan.items():
        named = sorted(path for path in local if path.encode() in data)
        if named:
            raise CbtLlmError(f"{wheel.name}: {prefix}{name} names {named[0]}, a path of this machine; rebuild the "
                              "wheel from a tree whose files do not name it")
    if not plan:
        raise CbtLlmError(f"{wheel.name} holds no {prefix} package")
    return plan


def _shareable_member(name: str, prefix: str, tree: Path | None) -> bool:
    """Whether a wheel's entry is a file of the package (``prefix``) that may be published: not hidden or trainer
    state, and no symbolic link in ``tree``."""
    if not name.startswith(prefix) or name.endswith("/"):
        return False
    parts = tuple(name.split("/"))
    if tree is not None and any(tree.joinpath(*parts[: i + 1]).is_symlink() for i in range(len(parts))):
        logger.warning("left out %s: a symbolic link in %s (what it points to is not published)", name, tree)
        return False
    return not _private(parts[1:])


def write_plan(plan: Plan, target: str | Path) -> Path:
    """Write the planned files to ``target`` (empty or new): exactly the bytes that would be published."""
    import shutil

    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise CbtLlmError(f"dry-run folder {target} is not empty")
    target.mkdir(parents=True, exist_ok=True)
    for name, source in plan.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            shutil.copyfile(source, path)
    return target
