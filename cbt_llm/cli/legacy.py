"""The flags ``cbt-llm`` had before its commands became dataclasses: still accepted, each with a one-line notice.

:func:`translate` rewrites a command line written with the old names into the new ones before parsing,
and says so on stderr, so scripts keep working while they are updated.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

MAX_TOKENS = {"--max_tokens": "--max_new_tokens", "--max-tokens": "--max_new_tokens"}  # the answer length cap
GUARD_MODEL = {"--judge_model": "--guard_model", "--judge-model": "--guard_model",  # the guard's model layer
               "--judge_base_url": "--guard_base_url", "--judge-base-url": "--guard_base_url"}
# command -> {old flag: what replaces it, or None for a switch that never did anything there};
# a flag keeps its value (``--output X`` -> ``--output_file X``)
RENAMED: dict[str, dict[str, str | None]] = {
    "build": {"--output": "--output_dir"},
    "generate": {"--output": "--output_file", **MAX_TOKENS},
    "batch": {"--output": "--output_file", **MAX_TOKENS},
    "annotate": {"--output": "--output_file", **MAX_TOKENS},
    "predict": {"--output": "--output_file", "--no-do-sample": "--do_sample false"},
    "evaluate": {"--output": "--output_dir"},
    "judge": {"--output": "--output_file", "--no-progress": None, **MAX_TOKENS},
    "push": {"--branch": "--revision", "--public": "--private false"},
    "pull": {"--output": "--output_dir"},
    "chat": {"--base": "--model_name_or_path", **GUARD_MODEL},
    "app": {},  # only the rewrite below: --model without --base_url was the model to load
    "merge": {"--output": "--output_dir"},
}
BOOLEAN_WORDS = {"yes", "true", "t", "y", "1", "no", "false", "f", "n", "0"}  # what HfArgumentParser reads as a bool


def _push_dry_run_folder(args: list[str]) -> tuple[list[str], str | None]:
    """``push ... --dry-run DIR`` (a folder) is now the switch ``--dry_run`` plus ``--output_dir DIR``."""
    for i, arg in enumerate(args[:-1]):
        value = args[i + 1]
        if arg in ("--dry-run", "--dry_run") and not value.startswith("-") and value.lower() not in BOOLEAN_WORDS:
            return [*args[:i], "--dry_run", "--output_dir", *args[i + 1:]], \
                "--dry-run DIR is deprecated; use --dry_run --output_dir DIR"
    return args, None


def _pull_positional_repo_id(args: list[str]) -> tuple[list[str], str | None]:
    """``pull KIND NS/NAME`` is now ``pull KIND --repo_id NS/NAME``, as for push."""
    if len(args) > 1 and not args[0].startswith("-") and not args[1].startswith("-"):
        return [args[0], "--repo_id", *args[1:]], "pull KIND NS/NAME is deprecated; use pull KIND --repo_id NS/NAME"
    return args, None


def _predict_local_model(args: list[str]) -> tuple[list[str], str | None]:
    """``predict``/``app --model M`` without a server named the model to load: now ``--model_name_or_path M``."""
    flags = {arg.partition("=")[0] for arg in args}
    if "--model" not in flags or flags & {"--base-url", "--base_url"}:
        return args, None
    renamed = [arg.replace("--model", "--model_name_or_path", 1) if arg.partition("=")[0] == "--model" else arg
               for arg in args]
    return renamed, "--model without --base_url is deprecated; use --model_name_or_path (a model to load)"


REWRITTEN: dict[str, Callable[[list[str]], tuple[list[str], str | None]]] = {
    "push": _push_dry_run_folder,
    "pull": _pull_positional_repo_id,
    "predict": _predict_local_model,
    "app": _predict_local_model,
}


def translate(argv: list[str]) -> list[str]:
    """``argv`` with the old flags of its command replaced by the new ones; one notice on stderr per old flag."""
    if not argv or argv[0] not in RENAMED:
        return list(argv)
    command, args = argv[0], list(argv[1:])
    notices = []
    if command in REWRITTEN:
        args, notice = REWRITTEN[command](args)
        notices += [notice] if notice else []
    renamed, table = [], RENAMED[command]
    for arg in args:
        flag, equals, value = arg.partition("=")
        if flag in table and table[flag] is None:
            notices.append(f"{flag} is deprecated and does nothing here")
        elif flag in table:
            new = table[flag].split()
            renamed += new[:-1] + [new[-1] + equals + value]
            notices.append(f"{flag} is deprecated; use {table[flag]}")
        else:
            renamed.append(arg)
    for notice in dict.fromkeys(notices):
        print(f"cbt-llm {command}: {notice}", file=sys.stderr)
    return [command, *renamed]
