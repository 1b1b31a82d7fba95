"""`hf-lrfind` (and `python -m hf_lrfind`): a learning-rate range test from the command line.

With no `--model`, `--config` or `--dataset` it runs the embedded default: a tiny GPT-2-style causal LM (random init)
with a byte-level BPE tokenizer trained in memory on the English text sample that ships with the package. It runs
the same under `python`, `torchrun` and `accelerate launch`; only the main process prints and writes files.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .core.suggest import STOP_REASONS
from .data import quiet_datasets

logger = logging.getLogger(__name__)

TASKS = ("causal-lm", "masked-lm", "seq-cls")
AUTO_CLASSES = {
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq-cls": "AutoModelForSequenceClassification",
}
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text", ".parquet": "parquet"}
EMBEDDED_MODEL = {"n_layer": 2, "n_embd": 64, "n_head": 4}


class BadInput(ValueError):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


class _DefaultsInHelp(argparse.HelpFormatter):
    """Shows an option's default after its help, where there is one worth showing (not None, not a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or action.option_strings == []:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `hf-lrfind`."""
    p = _Parser(
        prog="hf-lrfind",
        formatter_class=_DefaultsInHelp,
        description="Learning-rate range test for a Hugging Face model. With no --model, --config or --dataset, runs a tiny model on a text sample that ships with the package.",
    )
    source = p.add_argument_group("model and data")
    which = source.add_mutually_exclusive_group()
    which.add_argument("--model", help="hub id or local folder of a pretrained model")
    which.add_argument("--config", help="config.json (or a folder holding one): random init, for smoke runs")
    source.add_argument("--tokenizer", help="hub id or local folder of the tokenizer (default: --model or --config)")
    source.add_argument("--task", choices=("auto", *TASKS), default="auto", help="auto: from the model's architecture")
    source.add_argument("--dataset", help="local csv/json/jsonl/txt/parquet file, or a datasets name (online)")
    source.add_argument("--text-column", default="text", help="the dataset's text column")
    source.add_argument("--label-column", default="label", help="the dataset's class-id column (seq-cls)")
    source.add_argument("--block-size", type=_positive_int, default=128, help="tokens per example (LM tasks)")
    source.add_argument("--max-length", type=_positive_int, default=128, help="longest text in tokens (seq-cls)")

    train = p.add_argument_group("training step")
    train.add_argument("--batch-size", type=_positive_int, default=8, help="examples per micro-batch")
    train.add_argument("--grad-accum", type=_positive_int, default=1, help="micro-batches per optimizer step")
    train.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), help="default: as accelerate is configured")
    train.add_argument("--cpu", action="store_true", help="run on CPU even where a GPU is available")
    train.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    train.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping; 0 turns it off")
    train.add_argument("--seed", type=int, default=0, help="initialisation, data order and dropout")

    sweep = p.add_argument_group("sweep")
    sweep.add_argument("--start-lr", type=float, default=1e-7, help="learning rate of the first step")
    sweep.add_argument("--end-lr", type=float, default=10.0, help="learning rate the sweep heads for")
    sweep.add_argument("--num-steps", type=int, default=100, help="optimizer steps of each sweep")
    sweep.add_argument(
        "--num-sweeps", type=int, default=3, help="sweeps averaged (each from the same start, on the next batches)"
    )
    sweep.add_argument("--mode", choices=("exp", "linear"), default="exp", help="spacing of the learning rates")
    sweep.add_argument(
        "--suggest",
        default="trough,valley,slide,steep,minimum",
        help="comma-separated suggestion rules; the first is the suggestion",
    )
    _add_group_options(p)

    out = p.add_argument_group("output")
    out.add_argument("--output-dir", default="lr_find_output", help="where lr_find.json and lr_find.png go")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _add_group_options(parser: argparse.ArgumentParser) -> None:
    """The discriminative-rates options: one curve and suggestion per parameter group."""
    groups = parser.add_argument_group("parameter groups")
    groups.add_argument(
        "--groups",
        choices=("none", "auto"),
        default="none",
        help="auto: head (new), body (pretrained), adapter (LoRA), each with its own curve",
    )
    groups.add_argument(
        "--strategy",
        choices=("joint", "sequential"),
        help="default: sequential for --groups auto, joint with --layer-decay",
    )
    groups.add_argument(
        "--layer-decay", type=float, help="per-layer groups, each layer's lr this fraction of the one above (joint)"
    )


def _param_groups(model: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The optimizer's param groups: all trainable parameters in one group (the group options plug in here)."""
    return [{"params": [p for p in model.parameters() if p.requires_grad]}]


def _load_dataset(spec: str) -> Any:
    with quiet_datasets():
        return _read_dataset(spec)


def _read_dataset(spec: str) -> Any:
    import datasets

    ext = os.path.splitext(spec)[1].lower()
    if ext in FILE_BUILDERS or os.path.exists(spec):
        if not os.path.exists(spec):
            raise BadInput(f"--dataset {spec}: no such file; pass an existing csv/json/jsonl/txt/parquet file.")
        if os.path.isfile(spec):
            if ext not in FILE_BUILDERS:
                raise BadInput(f"--dataset {spec}: unknown file type {ext!r}; use one of {sorted(FILE_BUILDERS)}.")
            try:
                return datasets.load_dataset(FILE_BUILDERS[ext], data_files=spec, split="train")
            except Exception as e:
                raise BadInput(f"--dataset {spec}: could not read it as {FILE_BUILDERS[ext]} ({e}).") from e
    try:
        return datasets.load_dataset(spec, split="train")
    except Exception as e:
        offline = " (HF_HUB_OFFLINE is set: only local files can be read)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise BadInput(f"--dataset {spec}: could not load it{offline}: {e}") from e


def _check_column(dataset: Any, column: str, option: str) -> None:
    if column not in dataset.column_names:
        raise BadInput(
            f"Column {column!r} is not in the dataset (columns: {dataset.column_names}); pass {option} with one of them."
        )


def _looks_like_a_path(spec: str) -> bool:
    """A local path rather than a hub id: starts with '.', '/' or '~', or exists."""
    return spec.startswith((".", "/", "~")) or os.path.exists(spec)


def _load_config(args: argparse.Namespace) -> Any:
    from transformers import AutoConfig

    spec = args.model or args.config
    if spec is None:
        return None
    if args.config and not os.path.exists(spec):
        raise BadInput(f"--config {spec}: no such file or folder; pass a config.json or a folder holding one.")
    if args.model and _looks_like_a_path(spec) and not os.path.isdir(spec):
        what = "is a file, not a folder" if os.path.isfile(spec) else "the folder does not exist"
        raise BadInput(f"--model {spec}: {what}; pass a folder holding config.json, or a hub id.")
    try:
        if args.config and os.path.isfile(spec):
            import json

            with open(spec, encoding="utf-8") as f:
                data = json.load(f)
            if "model_type" not in data:
                raise BadInput(f"--config {spec}: it has no 'model_type' entry, which says which model to build.")
            return AutoConfig.for_model(**data)
        return AutoConfig.from_pretrained(spec)
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, BadInput):
            raise
        raise BadInput(f"{'--model' if args.model else '--config'} {spec}: could not load its config: {e}") from e


def _load_tokenizer(args: argparse.Namespace, texts: list[str]) -> Any:
    from transformers import AutoTokenizer

    from .data import train_tokenizer

    spec = args.tokenizer or args.model
    if spec is None and args.config:  # the tokenizer saved beside the config, if there is one
        folder = args.config if os.path.isdir(args.config) else os.path.dirname(os.path.abspath(args.config))
        names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
        if any(os.path.exists(os.path.join(folder, n)) for n in names):
            spec = folder
    if spec is None:
        return train_tokenizer(texts)
    try:
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise BadInput(f"Could not load the tokenizer of {spec}: {e}") from e


def _resolve_task(task: str, config: Any, columns: list[str], label_column: str) -> str:
    if task != "auto":
        return task
    if config is None:
        return "causal-lm"
    for arch in getattr(config, "architectures", None) or []:
        if arch.endswith("ForSequenceClassification"):
            return "seq-cls"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
        if arch.endswith("ForMaskedLM"):
            return "masked-lm"
    if label_column in columns:
        return "seq-cls"
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return "masked-lm"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal-lm"
    raise BadInput(f"Cannot tell the task of a {config.model_type} model; pass --task with one of {TASKS}.")


def _max_positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _labels(dataset: Any, column: str) -> tuple[list[int], int]:
    values = dataset[column]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if min(values) < 0:
            raise BadInput(f"Column {column!r} holds negative class ids; labels must be 0, 1, 2, ...")
        return list(values), max(values) + 1
    classes = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(classes)}
    return [index[str(v)] for v in values], len(classes)


def _build_model(task: str, args: argparse.Namespace, config: Any, tokenizer: Any, num_labels: int | None) -> Any:
    import transformers

    auto = getattr(transformers, AUTO_CLASSES[task])
    kwargs: dict[str, Any] = {}
    if config is None:  # the embedded default
        config = transformers.GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=args.block_size,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **EMBEDDED_MODEL,
        )
    if task == "seq-cls":
        config.num_labels = num_labels
        kwargs["num_labels"] = num_labels
        if getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            config.pad_token_id = tokenizer.pad_token_id
    if args.config and len(tokenizer) > getattr(config, "vocab_size", len(tokenizer)):
        logger.warning(
            f"The tokenizer has {len(tokenizer)} tokens, more than the config's vocab_size; using {len(tokenizer)}."
        )
        config.vocab_size = len(tokenizer)
    try:
        if args.model:
            return auto.from_pretrained(args.model, **kwargs)
        model = auto.from_config(config)
        if args.config is None:
            model.loss_type = "ForCausalLM"  # GPT2LMHeadModel's name does not tell transformers its loss
        return model
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise BadInput(
                f"{config.model_type} models have no {task} head with a loss in transformers ({AUTO_CLASSES[task]} does not support them); pick another --task."
            ) from e
        raise
    except OSError as e:
        raise BadInput(f"--model {args.model}: could not load it: {e}") from e


def _batches(task: str, args: argparse.Namespace, texts: list[str], tokenizer: Any, labels: list[int] | None) -> Any:
    from .data import causal_lm_batches, masked_lm_batches, seq_cls_batches

    common = {"batch_size": args.batch_size, "text_column": args.text_column, "seed": args.seed}
    if task == "causal-lm":
        return causal_lm_batches(texts, tokenizer, block_size=args.block_size, **common)
    if task == "masked-lm":
        return masked_lm_batches(texts, tokenizer, block_size=args.block_size, **common)
    return seq_cls_batches(texts, labels, tokenizer, max_length=args.max_length, **common)


def _summary(result: Any, output_dir: str) -> str:
    meta = result.metadata
    stops = sorted(set(result.stop_reason.values()))
    tokens = f", {meta['tokens_seen']:,} tokens" if meta.get("tokens_seen") else ""
    where = (
        f"{meta['cost_steps']} optimizer steps in all{tokens}, {meta['wall_time_s']:.1f} s on {meta.get('device', '?')}"
    )
    if meta.get("strategy") == "sequential":
        head = next(iter(meta.get("head_lr", {})), result.groups[0])
        body = next(g for g in result.groups if g not in meta.get("head_lr", {head: None}))
        lines = [
            f"LR range test, head first then body: {where}",
            f"  head sweep: {len(result.losses[head])} of {meta['num_steps']} steps, {STOP_REASONS[result.stop_reason[head]]}",
            f"  head warm-up: {meta['warmup_steps']} steps at its suggestion, the body held still",
            f"  body sweep: {len(result.losses[body])} of {meta['num_steps']} steps, {STOP_REASONS[result.stop_reason[body]]}",
        ]
    else:
        sweeps = f"{meta['num_sweeps']} sweeps" if meta.get("num_sweeps", 1) > 1 else "1 sweep"
        lines = [
            f"LR range test: {sweeps} of {meta['num_steps']} steps, {', '.join(STOP_REASONS[s] for s in stops)}; {where}"
        ]
    methods = list(dict.fromkeys(m for g in result.groups for m in result.suggestions[g]))
    width = max(len("group"), *(len(g) for g in result.groups))
    lines.append("  ".join([f"{'group':<{width}}", *(f"{m:>9}" for m in methods)]))
    for group in result.groups:
        cells = []
        for m in methods:
            value = result.suggestions[group].get(m)
            cells.append(f"{value:>9.2e}" if value is not None else f"{'-':>9}")
        lines.append("  ".join([f"{group:<{width}}", *cells]))
    lines += [f"Warning: {message}" for message in meta.get("warnings", [])]
    json_path, png_path = os.path.join(output_dir, "lr_find.json"), os.path.join(output_dir, "lr_find.png")
    lines.append(f"Wrote {json_path} and {png_path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the range test the parsed arguments describe; print the summary on the main process."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .core.config import LRFinderConfig
    from .data import load_sample_text
    from .integrations.accelerate_state import has_accelerator
    from .integrations.runner import LRFinder

    suggest = tuple(s.strip() for s in args.suggest.split(",") if s.strip())
    config = LRFinderConfig(
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_steps=args.num_steps,
        num_sweeps=args.num_sweeps,
        mode=args.mode,
        suggest=suggest,
    )
    if args.max_grad_norm < 0:
        raise BadInput(f"--max-grad-norm ({args.max_grad_norm}) must not be negative; 0 turns clipping off.")

    model_config = _load_config(args)
    if args.dataset is None:
        from datasets import Dataset

        dataset = Dataset.from_dict({args.text_column: load_sample_text()})
    else:
        dataset = _load_dataset(args.dataset)
    _check_column(dataset, args.text_column, "--text-column")
    task = _resolve_task(args.task, model_config, dataset.column_names, args.label_column)
    labels, num_labels = None, None
    if task == "seq-cls":
        _check_column(dataset, args.label_column, "--label-column")
        labels, num_labels = _labels(dataset, args.label_column)
    texts = dataset[args.text_column]
    if task == "seq-cls" and not all(isinstance(t, str) for t in texts):
        row = next(i for i, t in enumerate(texts) if not isinstance(t, str))
        raise BadInput(
            f"Column {args.text_column!r} has no text at row {row} ({texts[row]!r}); give every example a text."
        )
    texts = [t for t in texts if isinstance(t, str)]
    if not texts:
        raise BadInput(f"Column {args.text_column!r} holds no text; pass --text-column with the column of texts.")
    tokenizer = _load_tokenizer(args, texts)
    if model_config is not None and (limit := _max_positions(model_config)) is not None:
        size, option = (args.max_length, "--max-length") if task == "seq-cls" else (args.block_size, "--block-size")
        if size > limit:
            raise BadInput(
                f"{option} ({size}) is longer than the model's {limit} positions; pass {option} {limit} or less."
            )

    # cpu=True where there is no accelerator: without it accelerate runs each torchrun process on its own.
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu or not has_accelerator())
    if not accelerator.is_main_process:  # one copy of each warning, from the main process
        logging.getLogger("hf_lrfind").setLevel(logging.ERROR)
    set_seed(args.seed)
    model = _build_model(task, args, model_config, tokenizer, num_labels)
    loader = _batches(task, args, texts, tokenizer, labels)

    optimizer = torch.optim.AdamW(_param_groups(model, args), lr=args.start_lr, weight_decay=args.weight_decay)
    finder = LRFinder(
        model,
        optimizer,
        accelerator=accelerator,
        max_grad_norm=args.max_grad_norm or None,
        progress=not args.no_progress,
    )
    grouping = {}
    if args.groups == "auto" or args.layer_decay is not None:
        grouping = {"groups": "auto", "strategy": args.strategy, "layer_decay": args.layer_decay}
    result = finder.range_test(
        loader, config=config, grad_accum_steps=args.grad_accum, output_dir=args.output_dir, **grouping
    )
    if accelerator.is_main_process:
        print(_summary(result, args.output_dir))
    return 0


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main(argv: Sequence[str] | None = None) -> int:
    """
    Entry point of `hf-lrfind`. Returns the exit status: 0, or 2 for bad input (one line on stderr, no traceback).

    Args:
        argv (`Sequence[str]`, *optional*): the arguments; `sys.argv[1:]` when left out.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
    except BadInput as e:
        if _is_main_process():
            print(f"hf-lrfind: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:  # BadInput, and the library's errors on bad values
        if _is_main_process():
            print(f"hf-lrfind: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
