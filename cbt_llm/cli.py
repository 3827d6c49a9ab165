"""The ``cbt-llm`` command: parses arguments and calls the same functions as the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cbt_llm import __version__
from cbt_llm.errors import CbtLlmError


def _validate(args: argparse.Namespace) -> str:
    from cbt_llm.data.records import looks_like_records, read_records
    from cbt_llm.data.sources import read_questions

    if looks_like_records(args.file):
        result = read_records([args.file])
        dropped = sum(result.dropped.values())
        reasons = "".join(f", {n} {why}" for why, n in result.dropped.items())
        return f"{args.file}: {len(result.records) + dropped} records ({len(result.records)} usable{reasons})"
    return f"{args.file}: {len(read_questions(args.file))} questions"


def _build(args: argparse.Namespace) -> str:
    from cbt_llm.data.build import build_dataset

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
    from cbt_llm.hub import push_adapter, push_dataset

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
    from cbt_llm.hub import pull

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
        from cbt_llm.generation.generate import estimate

        return estimate(args.input, args.output, prompt=args.prompt, language=args.language, limit=args.limit,
                        max_tokens=args.max_tokens, price_input=args.price_input,
                        price_output=args.price_output).format()
    if args.batch:
        from cbt_llm.generation.batch import run_batch

        return run_batch(args.input, args.output, args.model, poll_interval=args.poll_interval,
                         **_generate_options(args)).format()
    from cbt_llm.generation.generate import generate

    return generate(args.input, args.output, args.model, **_generate_options(args)).format()


def _batch(args: argparse.Namespace) -> str:
    from cbt_llm.generation import batch

    if args.action == "submit":
        return batch.submit(args.input, args.output, args.model, **_generate_options(args)).format()
    if args.action == "poll":
        return batch.poll(args.output, wait=args.wait, interval=args.poll_interval,
                          api_key_env=args.api_key_env).format()
    return batch.ingest(args.output, progress=not args.no_progress).format()


def _annotate(args: argparse.Namespace) -> str:
    from cbt_llm.generation.annotate import annotate

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
                    "distortions from the taxonomy in cbt_llm.data.prompts.COGNITIVE_DISTORTIONS (stored in "
                    "'distortions'). Resumable like generate.")
    annotate.add_argument("--input", required=True, metavar="RECORDS.jsonl", help="generate's output")
    annotate.add_argument("--output", required=True, metavar="OUT.jsonl", help="labelled records")
    _add_api_arguments(annotate)
    annotate.add_argument("--language", choices=("zh", "en"), default="zh", help="prompt language (default: zh)")
    annotate.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default: 0)")
    annotate.add_argument("--max-tokens", type=int, default=200, metavar="N", help="label answer cap (default: 200)")
    annotate.set_defaults(run=_annotate)


def _chat(args: argparse.Namespace) -> str:
    from cbt_llm.chat import GenerationSettings, chat_main

    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed)
    return chat_main(adapter=args.adapter, base=args.base, model=args.model, base_url=args.base_url,
                     api_key_env=args.api_key_env, language=args.language, settings=settings,
                     context_tokens=args.context_tokens, device=args.device, revision=args.revision,
                     system_prompt=args.system_prompt, judge_model=args.judge_model,
                     judge_base_url=args.judge_base_url)


def _merge(args: argparse.Namespace) -> str:
    from cbt_llm.training.merge import merge_adapter

    output = merge_adapter(args.adapter, args.output, revision=args.revision)
    return f"merged adapter {args.adapter} into its base model: {output} (model card: {output / 'README.md'})"


def _add_chat_commands(commands) -> None:
    """The chat and merge subcommands (issue 7)."""
    from cbt_llm.chat import (
        DEFAULT_MAX_NEW_TOKENS,
        DEFAULT_TEMPERATURE,
        DEFAULT_TOP_P,
        ENDPOINT_CONTEXT_TOKENS,
    )

    chat = commands.add_parser(
        "chat", help="talk to a fine-tuned adapter (or a served model) in the terminal, behind the crisis guard",
        description="Streaming multi-turn chat with the counselling system line. Every message is checked for "
                    "risk first: on a crisis the reply is a fixed, caring answer with crisis resources and the "
                    "model is not asked; on a concern the model's answer is followed by the resources. /reset "
                    "clears the conversation, /exit (or Ctrl-D, or Ctrl-C at the prompt) ends it; Ctrl-C while "
                    "an answer streams stops that answer. Not a substitute for professional help.")
    local = chat.add_argument_group("local model")
    local.add_argument("--adapter", metavar="DIR|REPO", help="a LoRA adapter folder or Hub repo id")
    local.add_argument("--base", metavar="MODEL", help="base model (Hub id, folder or cbt-llm/tiny-random-llama): "
                       "with --adapter, instead of the adapter's own base; alone, chat with this model")
    local.add_argument("--revision", help="Hub branch or commit of the adapter")
    local.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    served = chat.add_argument_group("served model (OpenAI-compatible)")
    served.add_argument("--base-url", metavar="URL", help="e.g. http://127.0.0.1:8000/v1 (vLLM, TGI, llama.cpp ...)")
    served.add_argument("--model", metavar="NAME", help="the model's name on the server")
    served.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                        help="environment variable holding the API key (default: OPENAI_API_KEY); the key itself "
                             "is never taken from a flag")
    gen = chat.add_argument_group("generation")
    gen.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                     help=f"answer length cap (default: {DEFAULT_MAX_NEW_TOKENS})")
    gen.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                     help=f"sampling temperature, 0 for greedy (default: {DEFAULT_TEMPERATURE})")
    gen.add_argument("--top-p", type=float, default=DEFAULT_TOP_P, help=f"nucleus sampling (default: {DEFAULT_TOP_P})")
    gen.add_argument("--seed", type=int, help="sampling seed (reproducible answers)")
    gen.add_argument("--context-tokens", type=int, metavar="N",
                     help="context window the history is trimmed to (default: the model's; served models: "
                          f"{ENDPOINT_CONTEXT_TOKENS}, counted with a character-based estimate)")
    chat.add_argument("--language", choices=("zh", "en"), default="zh",
                      help="language of the notice and prompts (replies follow each message's language)")
    chat.add_argument("--system-prompt", metavar="TEXT", help="system line (default: the counselling line of the "
                      "message's language)")
    chat.add_argument("--judge-model", metavar="NAME", help="also ask this model (OpenAI-compatible) to assess risk; "
                      "it can only raise the level")
    chat.add_argument("--judge-base-url", metavar="URL", help="server of --judge-model (key: --api-key-env)")
    chat.set_defaults(run=_chat)

    merge = commands.add_parser(
        "merge", help="merge a LoRA adapter into its base model (one folder for serving)",
        description="Load the adapter on its base, merge the LoRA weights in, and write the merged model, "
                    "tokenizer, chat template and a model card (with the not-a-substitute statement and crisis "
                    "resources) to --output (must be empty or new).")
    merge.add_argument("--adapter", required=True, metavar="DIR|REPO", help="adapter folder or Hub repo id")
    merge.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    merge.add_argument("--revision", help="Hub branch or commit of the adapter")
    merge.set_defaults(run=_merge)


def _predict(args: argparse.Namespace) -> str:
    from cbt_llm.evaluation.predict import predict

    return predict(args.output, model=args.model, adapter=args.adapter, base_url=args.base_url,
                   dataset=args.dataset, split=args.split, data_files=args.data_files, limit=args.limit,
                   batch_size=args.batch_size, system_prompt=args.system_prompt, max_new_tokens=args.max_new_tokens,
                   do_sample=args.do_sample, temperature=args.temperature, top_p=args.top_p,
                   repetition_penalty=args.repetition_penalty, seed=args.seed, device=args.device, dtype=args.dtype,
                   api_key_env=args.api_key_env, concurrency=args.concurrency, timeout=args.timeout,
                   max_attempts=args.max_attempts, overwrite=args.overwrite,
                   progress=not args.no_progress).format()


def _evaluate(args: argparse.Namespace) -> str:
    from cbt_llm.evaluation.evaluate import evaluate_systems

    return evaluate_systems(args.predictions, args.output, references=args.references, names=args.names,
                            dataset=args.dataset, data_files=args.data_files, bertscore_model=args.bertscore_model,
                            bertscore_num_layers=args.bertscore_num_layers, bertscore=not args.no_bertscore,
                            judgements=args.judgements, model_card=args.model_card, card_system=args.card_system,
                            dataset_id=args.dataset_id).format()


def _judge(args: argparse.Namespace) -> str:
    from cbt_llm.evaluation.judge import judge

    return judge(args.predictions, args.output, args.model, base_url=args.base_url, api_key_env=args.api_key_env,
                 dataset=args.dataset, split=args.split, data_files=args.data_files, system=args.system,
                 concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm, timeout=args.timeout,
                 max_attempts=args.max_attempts,
                 max_asks=args.max_asks, temperature=args.temperature, max_tokens=args.max_tokens).format()


def _add_dataset_arguments(parser: argparse.ArgumentParser, split: bool = True) -> None:
    data = parser.add_argument_group("questions")
    data.add_argument("--dataset", default="cbt_qa", help="cbt_qa (the bundled sample, or --data-files), a folder "
                      "from `cbt-llm build`, or a Hub dataset id (default: cbt_qa)")
    data.add_argument("--data-files", nargs="+", metavar="FILE", help="records .jsonl file(s) for cbt_qa")
    if split:
        data.add_argument("--split", default="test", help="split to answer (default: test)")


def _add_evaluation_commands(commands) -> None:
    """The predict, evaluate and judge subcommands (issue 5)."""
    predict = commands.add_parser(
        "predict", help="answer a split's questions with a model (+ LoRA adapter) or an OpenAI-compatible endpoint",
        description="Batched generation with transformers (left padding, longest prompts first), or requests to "
                    "--base-url with the generation engine's concurrency and retries. The system line and "
                    "generation settings come from the flags, else the adapter's training_recipe.yaml, else greedy "
                    "decoding. Writes one JSON line per id (id, prediction, settings); rerun to resume.")
    predict.add_argument("--output", required=True, metavar="PREDS.jsonl", help="predictions file (resumable)")
    predict.add_argument("--model", help="base model (Hub id, folder or cbt-llm/tiny-random-llama; default: the "
                         "adapter's base), or the model name on the server with --base-url")
    predict.add_argument("--adapter", metavar="DIR|REPO", help="LoRA adapter folder or Hub repo id")
    _add_dataset_arguments(predict)
    predict.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    predict.add_argument("--overwrite", action="store_true", help="start the output file again")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    gen = predict.add_argument_group("generation (default: the adapter's recipe, else greedy, 512 new tokens)")
    gen.add_argument("--batch-size", type=int, default=8, metavar="N", help="prompts per generate call (default: 8)")
    gen.add_argument("--system-prompt", metavar="TEXT", help="system line (default: the recipe's, else the paper's)")
    gen.add_argument("--max-new-tokens", type=int, metavar="N", help="answer length cap")
    gen.add_argument("--do-sample", action=argparse.BooleanOptionalAction, default=None, help="sample instead of "
                     "greedy decoding (a --temperature above 0 implies it)")
    gen.add_argument("--temperature", type=float, help="sampling temperature")
    gen.add_argument("--top-p", type=float, help="nucleus sampling")
    gen.add_argument("--repetition-penalty", type=float, metavar="X", help="e.g. 1.1")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    gen.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    gen.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                     help="weights dtype (default: bfloat16 on a GPU that has it, else float32)")
    api = predict.add_argument_group("endpoint")
    api.add_argument("--base-url", metavar="URL", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 "
                     "(vLLM with --lora-modules, transformers serve, a hosted API)")
    api.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME", help="environment variable holding "
                     "the API key (default: OPENAI_API_KEY)")
    api.add_argument("--concurrency", type=int, default=16, metavar="N", help="requests in flight (default: 16)")
    api.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds per request (default: 300)")
    api.add_argument("--max-attempts", type=int, default=6, metavar="N", help="attempts per request (default: 6)")
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser(
        "evaluate", help="score predictions files side by side: metrics, CBT structure, report with plots",
        description="Scores every predictions file on the questions they all share: BLEU and chrF (sacrebleu, "
                    "zh tokenizer), BLEU-1..4, METEOR and distinct-1/2 on jieba words, character ROUGE-L, "
                    "BERTScore, and the CBT-structure score with per-step coverage. Writes report.json, report.md "
                    "(one table) and metrics.png / step_coverage.png to --output.")
    evaluate.add_argument("--predictions", nargs="+", required=True, metavar="PREDS.jsonl",
                          help="predict's output files, one per system")
    evaluate.add_argument("--names", nargs="+", metavar="NAME", help="system names (default: the file names)")
    evaluate.add_argument("--references", default="test", metavar="SPLIT|FILE", help="a split of --dataset, or a "
                          "JSONL file with id and response (default: test)")
    _add_dataset_arguments(evaluate, split=False)
    evaluate.add_argument("--output", required=True, metavar="DIR", help="report folder")
    evaluate.add_argument("--bertscore-model", metavar="NAME|DIR", help="BERTScore model (default: bert-base-chinese)")
    evaluate.add_argument("--bertscore-num-layers", type=int, metavar="N", help="layer to use (default: bert-score's "
                          "choice for known models, else the last)")
    evaluate.add_argument("--no-bertscore", action="store_true", help="leave BERTScore out (no model is loaded)")
    evaluate.add_argument("--judgements", nargs="+", metavar="JUDGE.jsonl", help="`cbt-llm judge` outputs to add "
                          "as columns (matched to systems by name)")
    evaluate.add_argument("--model-card", metavar="README.md", help="also write the results into this adapter card's "
                          "model-index")
    evaluate.add_argument("--card-system", metavar="NAME", help="which system's results go into the card (default: "
                          "the one predicted with the card's adapter folder)")
    evaluate.add_argument("--dataset-id", metavar="NS/NAME", help="dataset id for the card's model-index "
                          "(default: --dataset)")
    evaluate.set_defaults(run=_evaluate)

    judge = commands.add_parser(
        "judge", help="rate answers with an LLM judge: relevance, CBT structure, helpfulness (0-2 each)",
        description="Shows an OpenAI-compatible model each question and answer with a fixed rubric (see "
                    "cbt_llm.evaluation.judge) and stores its JSON scores, one line per id; resumable. Means are printed and "
                    "can be added to the report with `cbt-llm evaluate --judgements`.")
    judge.add_argument("--predictions", required=True, metavar="PREDS.jsonl", help="predict's output")
    judge.add_argument("--output", required=True, metavar="JUDGE.jsonl", help="judgements file (resumable)")
    judge.add_argument("--system", metavar="NAME", help="system name stored with the scores (default: the "
                       "predictions file name)")
    _add_dataset_arguments(judge)
    _add_api_arguments(judge)
    judge.add_argument("--temperature", type=float, default=0.0, help="judge temperature (default: 0)")
    judge.add_argument("--max-tokens", type=int, default=300, metavar="N", help="judge reply cap (default: 300)")
    judge.add_argument("--max-asks", type=int, default=3, metavar="N", help="asks per answer when the reply has no "
                       "valid JSON scores (default: 3)")
    judge.set_defaults(run=_judge)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per pipeline stage."""
    from cbt_llm.data.prompts import SYSTEM_PROMPT_ZH
    from cbt_llm.data.splits import DEFAULT_SPLIT_RATIOS

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
    _add_evaluation_commands(commands)
    _add_chat_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line to stderr and exit 1, without a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from cbt_llm.training.train import cli_main

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
