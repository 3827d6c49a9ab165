"""The ``cbt-llm`` command: parses arguments and calls the same functions as the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import CbtLlmError


def _validate(args: argparse.Namespace) -> str:
    from .records import looks_like_records, read_records
    from .sources import read_questions

    if looks_like_records(args.file):
        result = read_records([args.file])
        dropped = sum(result.dropped.values())
        reasons = "".join(f", {n} {why}" for why, n in result.dropped.items())
        return f"{args.file}: {len(result.records) + dropped} records ({len(result.records)} usable{reasons})"
    return f"{args.file}: {len(read_questions(args.file))} questions"


def _build(args: argparse.Namespace) -> str:
    from .dataset import build_dataset

    card = {"pretty_name": args.pretty_name, "license": args.license, "questions_source": args.questions_source}
    if args.repo_id:
        card["repo_id"] = args.repo_id
    result = build_dataset(args.input, args.output, tuple(args.split_ratios), args.system_prompt, card)
    sizes = "; ".join(
        f"{config}: " + ", ".join(f"{split} {n}" for split, n in splits.items())
        for config, splits in result.num_rows.items()
    )
    dropped = ", ".join(f"{n} {why}" for why, n in result.dropped.items()) or "none"
    return f"built {result.output_dir} ({sizes}); dropped: {dropped}; card: {result.output_dir / 'README.md'}"


def _push(args: argparse.Namespace) -> str:
    from .hub import push_adapter, push_dataset

    common = {"revision": args.revision, "commit_message": args.commit_message, "dry_run": args.dry_run}
    if args.kind == "dataset":
        result = push_dataset(args.folder, args.repo_id, private=args.private is not False, **common)
    else:
        result = push_adapter(args.folder, args.repo_id, private=bool(args.private), **common,
                              dataset_repo_id=args.dataset_repo_id, base_model=args.base_model)
    files = "".join(f"\n  {name}" for name in result.files)
    if result.dry_run_dir is not None:
        return f"dry run: would push {len(result.files)} files to {args.kind} repo {result.repo_id} " \
               f"(branch {result.revision}); wrote them to {result.dry_run_dir}:{files}"
    deleted = "".join(f"\n  deleted {name}" for name in result.deleted)
    visibility = "private" if result.private else "public"
    return f"pushed {len(result.files)} files to {args.kind} repo {result.repo_id} ({visibility}), " \
           f"branch {result.revision}, commit {result.commit}: {result.url}{files}{deleted}"


def _pull(args: argparse.Namespace) -> str:
    from .hub import pull

    result = pull(args.kind, args.repo_id, args.output, revision=args.revision)
    return f"pulled {args.kind} repo {result.repo_id} at commit {result.commit} into {result.output_dir} " \
           f"({len(result.files)} files)"


def _add_hub_commands(commands) -> None:
    push = commands.add_parser(
        "push", help="upload a dataset folder or a LoRA adapter folder to the Hugging Face Hub",
        description="Upload in one commit. Datasets are private unless --public (PsyQA-derived data has usage "
                    "terms); adapters are public unless --private. The adapter's model card is regenerated for "
                    "the Hub. Uses HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub.")
    push.add_argument("kind", choices=("dataset", "adapter"))
    push.add_argument("folder", help="a folder from `cbt-llm build` (dataset) or an adapter folder")
    push.add_argument("--repo-id", required=True, metavar="NS/NAME", help="the Hub repository")
    visibility = push.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=None,
                            help="create the repo private (the default for datasets)")
    visibility.add_argument("--public", dest="private", action="store_false", help="create the repo public")
    push.add_argument("--revision", "--branch", dest="revision", metavar="BRANCH",
                      help="branch to commit to (made from main when missing; default: main)")
    push.add_argument("--commit-message", help="the commit's summary line")
    push.add_argument("--dry-run", metavar="DIR", help="write exactly the files that would be uploaded to DIR "
                      "(must be empty or new), list them, and upload nothing")
    push.add_argument("--dataset-repo-id", metavar="NS/NAME", help="adapter: the dataset repo it was trained on "
                      "(linked from the card and listed in its `datasets`)")
    push.add_argument("--base-model", metavar="HUB_ID", help="adapter: the base model's Hub id, replacing a local "
                      "path in the uploaded adapter_config.json and card")
    push.set_defaults(run=_push)

    pull = commands.add_parser(
        "pull", help="download one commit of a dataset or adapter repo from the Hub",
        description="Download exactly the files of one commit (the head of main, or --revision) into an "
                    "empty folder.")
    pull.add_argument("kind", choices=("dataset", "adapter"))
    pull.add_argument("repo_id", metavar="NS/NAME")
    pull.add_argument("--revision", help="branch or commit id (default: main)")
    pull.add_argument("--output", required=True, metavar="DIR", help="folder to write (must be empty or new)")
    pull.set_defaults(run=_pull)


def _generate_options(args: argparse.Namespace) -> dict:
    names = ("base_url", "api_key_env", "concurrency", "prompt", "language", "limit", "temperature", "top_p",
             "max_tokens", "seed", "rpm", "tpm", "timeout", "max_attempts", "max_asks", "price_input",
             "price_output")
    options = {name: getattr(args, name) for name in names}
    options["progress"] = not args.no_progress
    return options


def _generate(args: argparse.Namespace) -> str:
    if args.dry_run:
        from .generate import estimate

        return estimate(args.input, args.output, prompt=args.prompt, language=args.language, limit=args.limit,
                        max_tokens=args.max_tokens, price_input=args.price_input,
                        price_output=args.price_output).format()
    if args.batch:
        from .batch import run_batch

        return run_batch(args.input, args.output, args.model, poll_interval=args.poll_interval,
                         **_generate_options(args)).format()
    from .generate import generate

    return generate(args.input, args.output, args.model, **_generate_options(args)).format()


def _batch(args: argparse.Namespace) -> str:
    from . import batch

    if args.action == "submit":
        return batch.submit(args.input, args.output, args.model, **_generate_options(args)).format()
    if args.action == "poll":
        return batch.poll(args.output, wait=args.wait, interval=args.poll_interval,
                          api_key_env=args.api_key_env).format()
    return batch.ingest(args.output, progress=not args.no_progress).format()


def _annotate(args: argparse.Namespace) -> str:
    from .annotate import annotate

    return annotate(args.input, args.output, args.model, base_url=args.base_url, api_key_env=args.api_key_env,
                    concurrency=args.concurrency, language=args.language, temperature=args.temperature,
                    max_tokens=args.max_tokens, rpm=args.rpm, timeout=args.timeout,
                    max_attempts=args.max_attempts, progress=not args.no_progress).format()


def _add_api_arguments(parser: argparse.ArgumentParser) -> None:
    api = parser.add_argument_group("API")
    api.add_argument("--model", required=True, help="model name on the server (e.g. gpt-4o-mini)")
    api.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                     "(default: OpenAI, or $OPENAI_BASE_URL)")
    api.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                     help="environment variable holding the API key (default: OPENAI_API_KEY); the key itself "
                          "is never taken from a flag")
    api.add_argument("--concurrency", type=int, default=16, metavar="N", help="requests in flight (default: 16)")
    api.add_argument("--rpm", type=float, metavar="N", help="requests-per-minute cap (default: none; the client "
                     "still slows down by itself when the server answers 429)")
    api.add_argument("--tpm", type=float, metavar="N", help="tokens-per-minute cap (default: none)")
    api.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per request (default: 120)")
    api.add_argument("--max-attempts", type=int, default=6, metavar="N",
                     help="attempts per request for 5xx, timeouts and dropped connections (default: 6)")
    api.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="QUESTIONS", help="questions: PsyQA .json, .jsonl or .csv")
    parser.add_argument("--output", required=True, metavar="OUT.jsonl", help="records file (resumable)")
    _add_api_arguments(parser)
    gen = parser.add_argument_group("generation")
    gen.add_argument("--prompt", default="paper", help="paper (fluent answer, default), structured (JSON per step) "
                     "or a Jinja template FILE")
    gen.add_argument("--language", choices=("zh", "en"), default="zh", help="prompt and answer language (default: zh)")
    gen.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    gen.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default: 0.7)")
    gen.add_argument("--top-p", type=float, help="nucleus sampling")
    gen.add_argument("--max-tokens", type=int, metavar="N", help="answer length cap in tokens")
    gen.add_argument("--seed", type=int, help="sampling seed, where the server supports it")
    gen.add_argument("--max-asks", type=int, default=3, metavar="N", help="answers asked per question before "
                     "one failing the quality check is kept as rejected (default: 3)")
    cost = parser.add_argument_group("cost")
    cost.add_argument("--price-input", type=float, metavar="USD", help="price per million prompt tokens")
    cost.add_argument("--price-output", type=float, metavar="USD", help="price per million completion tokens")


def _add_generate_commands(commands) -> None:
    """The generate, batch and annotate subcommands (issue 3)."""
    generate = commands.add_parser(
        "generate", help="answer questions with a teacher model over an OpenAI-compatible API",
        description="Ask the teacher for a CBT answer to every question, concurrently, checking each answer's "
                    "five CBT steps, language and length (re-asking up to --max-asks). Writes one JSON line per "
                    "question id with status ok, rejected or failed. Safe to kill: run the same command again "
                    "to skip what is done and retry what failed. The API key comes from $OPENAI_API_KEY or "
                    "the variable named by --api-key-env.")
    _add_generation_arguments(generate)
    generate.add_argument("--dry-run", action="store_true", help="validate the input and estimate tokens and cost; "
                          "send nothing")
    generate.add_argument("--batch", action="store_true", help="use OpenAI's Batch API (half price): write the "
                          "request file, submit, poll until done, ingest (see also 'cbt-llm batch')")
    generate.add_argument("--poll-interval", type=float, default=30.0, metavar="S", help="seconds between batch polls")
    generate.set_defaults(run=_generate)

    batch = commands.add_parser(
        "batch", help="OpenAI Batch API in separate steps: submit, poll, ingest",
        description="submit writes OUT.jsonl.batch-requests.jsonl and submits it (state in OUT.jsonl.batch.json); "
                    "poll checks the batch (--wait until it ends) and downloads the results; ingest checks the "
                    "answers and writes them into OUT.jsonl like generate does.")
    actions = batch.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser("submit", help="write the request file and submit the batch")
    _add_generation_arguments(submit)
    poll = actions.add_parser("poll", help="check the batch and download its results when done")
    poll.add_argument("--output", required=True, metavar="OUT.jsonl", help="the output file given to submit")
    poll.add_argument("--wait", action="store_true", help="keep polling until the batch ends")
    poll.add_argument("--poll-interval", type=float, default=30.0, metavar="S", help="seconds between polls")
    poll.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME", help="API key variable")
    ingest = actions.add_parser("ingest", help="check the downloaded answers and write the records")
    ingest.add_argument("--output", required=True, metavar="OUT.jsonl", help="the output file given to submit")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.set_defaults(run=_batch)

    annotate = commands.add_parser(
        "annotate", help="label each question's cognitive distortions (fixed taxonomy) with a teacher model",
        description="Copy a records file, asking the teacher to label the ok records' questions with cognitive "
                    "distortions from the taxonomy in cbt_llm.prompts.COGNITIVE_DISTORTIONS (stored in "
                    "'distortions'). Resumable like generate.")
    annotate.add_argument("--input", required=True, metavar="RECORDS.jsonl", help="generate's output")
    annotate.add_argument("--output", required=True, metavar="OUT.jsonl", help="labelled records")
    _add_api_arguments(annotate)
    annotate.add_argument("--language", choices=("zh", "en"), default="zh", help="prompt language (default: zh)")
    annotate.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default: 0)")
    annotate.add_argument("--max-tokens", type=int, default=200, metavar="N", help="label answer cap (default: 200)")
    annotate.set_defaults(run=_annotate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per pipeline stage."""
    from .dataset import DEFAULT_SPLIT_RATIOS
    from .prompts import SYSTEM_PROMPT_ZH

    parser = argparse.ArgumentParser(prog="cbt-llm", description="CBT-structured mental-health QA: data, "
                                     "fine-tuning, evaluation and Hub publishing.")
    parser.add_argument("--version", action="version", version=f"cbt-llm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check a questions file (PsyQA .json, .jsonl, .csv) or a records .jsonl",
        description="Read a questions or records file, print how many it holds, or the first error "
                    "with its file, line and field. Files whose first record has a 'response' are records.")
    validate.add_argument("file", help="path to the file")
    validate.set_defaults(run=_validate)

    build = commands.add_parser(
        "build", help="build the cbt_qa dataset folder (parquet per config and split + card)",
        description="Write a dataset folder that plain load_dataset(DIR) and load_dataset(DIR, 'sft') read. "
                    "Without --input, builds from the bundled sample. Records whose status is not 'ok' "
                    "or whose response is empty are dropped and counted.")
    build.add_argument("--input", nargs="+", metavar="FILE", help="records .jsonl file(s), e.g. generate's output")
    build.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    build.add_argument("--split-ratios", nargs=3, type=float, default=list(DEFAULT_SPLIT_RATIOS),
                       metavar=("TRAIN", "VALIDATION", "TEST"), help="shares of the id-hash split (default: 0.8 0.1 0.1)")
    build.add_argument("--system-prompt", default=SYSTEM_PROMPT_ZH, help="system line of the sft config "
                       "(default: the CBT-LLM paper's)")
    build.add_argument("--pretty-name", default="CBT QA", help="dataset name shown on the card")
    build.add_argument("--license", help="card license (default: apache-2.0 for the sample, other for generated data)")
    build.add_argument("--questions-source", choices=("psyqa", "other"), help="where the questions came from; "
                       "psyqa (the default for --input) adds PsyQA's terms to the card")
    build.add_argument("--repo-id", help="Hub repo id to show in the card's usage snippet")
    build.set_defaults(run=_build)
    # `train` hands its arguments to TrlParser (main() dispatches it before argparse): listed here for --help.
    commands.add_parser("train", add_help=False, help="LoRA fine-tuning from a YAML recipe: --config RECIPE "
                        "[--field value ...] (see `cbt-llm train --help`)")
    _add_hub_commands(commands)
    _add_generate_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line to stderr and exit 1, without a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from .train import cli_main

        return cli_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        print(args.run(args))
    except CbtLlmError as err:
        print(f"cbt-llm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
