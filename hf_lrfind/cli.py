"""`hf-lrfind` (and `python -m hf_lrfind`): a learning-rate range test from the command line.

With no `--model`, `--config` or `--dataset` it runs the embedded default: a tiny GPT-2-style causal LM (random init)
with a byte-level BPE tokenizer trained in memory on the English text sample that ships with the package. It runs
the same under `python`, `torchrun` and `accelerate launch`; only the main process prints and writes files.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .inputs import (
    TASKS,
    BadInput,
    build_model,
    check_column,
    load_config,
    load_dataset,
    load_tokenizer,
    make_batches,
    max_positions,
    read_labels,
    resolve_task,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadInput(f"{option} ({text!r}) must be comma-separated numbers, such as 0.5,1,2.") from None


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
    sweep.add_argument(
        "--confirm-steps",
        type=int,
        default=0,
        help="after the sweep, train this many steps at each --confirm-factors times the suggestion (each from the "
        "same start, on the same batches) and keep the rate where their end losses bottom out; 0: off",
    )
    sweep.add_argument(
        "--confirm-factors", default="0.5,1,2", help="comma-separated multiples of the suggestion to confirm"
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
        choices=("joint", "split", "sequential"),
        help="default: split for --groups auto, joint with --layer-decay",
    )
    groups.add_argument(
        "--layer-decay", type=float, help="per-layer groups, each layer's lr this fraction of the one above (joint)"
    )


def _param_groups(model: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The optimizer's param groups: all trainable parameters in one group (the group options plug in here)."""
    return [{"params": [p for p in model.parameters() if p.requires_grad]}]


def _summary(result: Any, output_dir: str) -> str:
    json_path, png_path = os.path.join(output_dir, "lr_find.json"), os.path.join(output_dir, "lr_find.png")
    return f"{result.summary(table=True)}\nWrote {json_path} and {png_path}"


def run(args: argparse.Namespace) -> int:
    """Run the range test the parsed arguments describe; print the summary on the main process."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .core.config import LRFinderConfig
    from .data import load_sample_text
    from .integrations.runner import LRFinder, has_accelerator

    suggest = tuple(s.strip() for s in args.suggest.split(",") if s.strip())
    config = LRFinderConfig(
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_steps=args.num_steps,
        num_sweeps=args.num_sweeps,
        mode=args.mode,
        suggest=suggest,
        confirm_steps=args.confirm_steps,
        confirm_factors=_floats(args.confirm_factors, "--confirm-factors"),
    )
    if args.max_grad_norm < 0:
        raise BadInput(f"--max-grad-norm ({args.max_grad_norm}) must not be negative; 0 turns clipping off.")

    model_config = load_config(args)
    if args.dataset is None:
        from datasets import Dataset

        dataset = Dataset.from_dict({args.text_column: load_sample_text()})
    else:
        dataset = load_dataset(args.dataset)
    check_column(dataset, args.text_column, "--text-column")
    task = resolve_task(args.task, model_config, dataset.column_names, args.label_column)
    labels, num_labels = None, None
    if task == "seq-cls":
        if args.dataset is None:
            raise BadInput(
                "--task seq-cls needs labelled examples and the embedded sample text has none; pass --dataset with a text column and a label column."
            )
        check_column(dataset, args.label_column, "--label-column")
        labels, num_labels = read_labels(dataset, args.label_column)
    texts = dataset[args.text_column]
    if task == "seq-cls" and not all(isinstance(t, str) for t in texts):
        row = next(i for i, t in enumerate(texts) if not isinstance(t, str))
        raise BadInput(
            f"Column {args.text_column!r} has no text at row {row} ({texts[row]!r}); give every example a text."
        )
    texts = [t for t in texts if isinstance(t, str)]
    if not texts:
        raise BadInput(f"Column {args.text_column!r} holds no text; pass --text-column with the column of texts.")
    tokenizer = load_tokenizer(args, texts)
    if model_config is not None and (limit := max_positions(model_config)) is not None:
        size, option = (args.max_length, "--max-length") if task == "seq-cls" else (args.block_size, "--block-size")
        if size > limit:
            raise BadInput(
                f"{option} ({size}) is longer than the model's {limit} positions; pass {option} {limit} or less."
            )

    # cpu=True where there is no accelerator: without it accelerate runs each torchrun process on its own.
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu or not has_accelerator())
    set_seed(args.seed)
    model = build_model(task, args, model_config, tokenizer, num_labels)
    loader = make_batches(task, args, texts, tokenizer, labels)

    optimizer = torch.optim.AdamW(_param_groups(model, args), lr=args.start_lr, weight_decay=args.weight_decay)
    finder = LRFinder(
        model,
        optimizer,
        accelerator=accelerator,
        max_grad_norm=args.max_grad_norm or None,
        progress=not args.no_progress,
    )
    finder._write_summary = False  # printed below, with every rule's table
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
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:  # BadInput, and the library's errors on bad values
        if _is_main_process():
            print(f"hf-lrfind: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
