"""What the CLI reads and builds: a dataset (file or Hub name), the model's config and tokenizer, the class labels, the
model (pretrained, from a config, or the embedded default) and its batches. Errors are [`BadInput`]: one line, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

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


def load_dataset(spec: str) -> Any:
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
            if _rows(spec, ext) == 0:
                raise _no_examples(spec)
            try:
                dataset = datasets.load_dataset(FILE_BUILDERS[ext], data_files=spec, split="train")
            except Exception as e:
                raise BadInput(f"--dataset {spec}: could not read it as {FILE_BUILDERS[ext]} ({e}).") from e
            if len(dataset) == 0:
                raise _no_examples(spec)
            return dataset
    try:
        return datasets.load_dataset(spec, split="train")
    except Exception as e:
        offline = " (HF_HUB_OFFLINE is set: only local files can be read)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise BadInput(f"--dataset {spec}: could not load it{offline}: {e}") from e


def _rows(path: str, ext: str) -> int | None:
    """Data rows of a text file (lines that are not blank, less a csv's header); None for binary formats."""
    if FILE_BUILDERS[ext] not in ("csv", "json", "text"):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = sum(1 for line in f if line.strip())
    return max(lines - 1, 0) if FILE_BUILDERS[ext] == "csv" else lines


def _no_examples(spec: str) -> BadInput:
    header = " (a csv header line alone is none)" if spec.lower().endswith(".csv") else ""
    return BadInput(f"--dataset {spec}: it holds no examples{header}; give it at least one row.")


def check_column(dataset: Any, column: str, option: str) -> None:
    if column not in dataset.column_names:
        raise BadInput(
            f"Column {column!r} is not in the dataset (columns: {dataset.column_names}); pass {option} with one of them."
        )


def _looks_like_a_path(spec: str) -> bool:
    """A local path rather than a hub id: starts with '.', '/' or '~', or exists."""
    return spec.startswith((".", "/", "~")) or os.path.exists(spec)


def load_config(args: argparse.Namespace) -> Any:
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


def load_tokenizer(args: argparse.Namespace, texts: list[str]) -> Any:
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


def resolve_task(task: str, config: Any, columns: list[str], label_column: str) -> str:
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


def max_positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def read_labels(dataset: Any, column: str) -> tuple[list[int], int]:
    values = dataset[column]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if min(values) < 0:
            raise BadInput(f"Column {column!r} holds negative class ids; labels must be 0, 1, 2, ...")
        return list(values), max(values) + 1
    classes = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(classes)}
    return [index[str(v)] for v in values], len(classes)


def build_model(task: str, args: argparse.Namespace, config: Any, tokenizer: Any, num_labels: int | None) -> Any:
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


def make_batches(
    task: str, args: argparse.Namespace, texts: list[str], tokenizer: Any, labels: list[int] | None
) -> Any:
    from .data import causal_lm_batches, masked_lm_batches, seq_cls_batches

    common = {"batch_size": args.batch_size, "text_column": args.text_column, "seed": args.seed}
    if task == "causal-lm":
        return causal_lm_batches(texts, tokenizer, block_size=args.block_size, **common)
    if task == "masked-lm":
        return masked_lm_batches(texts, tokenizer, block_size=args.block_size, **common)
    return seq_cls_batches(texts, labels, tokenizer, max_length=args.max_length, **common)
