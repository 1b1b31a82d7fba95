"""Token batches for a sweep, built with `datasets` and the model's tokenizer: causal LM, masked LM, classification.

Each helper returns a `torch.utils.data.DataLoader` of dict batches (`input_ids`, `attention_mask`, `labels`) ready for
`model(**batch)`, all of `batch_size` examples (a last, smaller batch is dropped unless it is the only one). The tokenizer's own pad, mask and eos tokens are used; a tokenizer without the token a task needs
gets a `ValueError` that says how to set it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

# What transformers' losses ignore in `labels`.
IGNORE_INDEX = -100

SAMPLE_EOS = "<|endoftext|>"
SAMPLE_MASK = "<mask>"


def load_sample_text() -> list[str]:
    """The lines of the English text sample that ships with the package (`hf_lrfind/data/sample.txt`), blank lines
    and `#` comment lines left out."""
    text = resources.files("hf_lrfind").joinpath("data").joinpath("sample.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def train_tokenizer(texts: Sequence[str], *, vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """
    A byte-level BPE tokenizer (GPT-2 style) trained on `texts` in memory with the `tokenizers` library: nothing is
    downloaded or cached. `<|endoftext|>` is its eos, bos and pad token, `<mask>` its mask token.

    Args:
        texts (`Sequence[str]`): the training text.
        vocab_size (`int`, *optional*, defaults to 512): the vocabulary size (at least 258: 256 bytes and 2 specials).

    Returns:
        `transformers.PreTrainedTokenizerFast`
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 258:
        raise ValueError(f"vocab_size ({vocab_size}) must be at least 258 (256 byte tokens and 2 special tokens).")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SAMPLE_EOS, SAMPLE_MASK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=SAMPLE_EOS,
        bos_token=SAMPLE_EOS,
        pad_token=SAMPLE_EOS,
        mask_token=SAMPLE_MASK,
    )


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No `datasets` progress bars for the few quick maps here (the previous setting is put back)."""
    from datasets.utils import disable_progress_bars, enable_progress_bars, is_progress_bar_enabled

    enabled = is_progress_bar_enabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            enable_progress_bars()


_NO_EXAMPLES = "The texts hold no examples; give at least one (for a file: at least one data row)."


def _as_dataset(texts: Any, column: str) -> Dataset:
    from datasets import Dataset

    if isinstance(texts, Dataset):
        if column not in texts.column_names:
            raise ValueError(
                f"Column {column!r} is not in the dataset (columns: {texts.column_names}); pass the name of its text column."
            )
        if len(texts) == 0:
            raise ValueError(_NO_EXAMPLES)
        return texts.select_columns([column])
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings (or a datasets.Dataset), not one string; wrap it: [text].")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must hold strings only.")
    if not texts:
        raise ValueError(_NO_EXAMPLES)
    return Dataset.from_dict({column: texts})


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size ({block_size!r}) must be an int of at least 2.")


def _loader(dataset: Any, batch_size: int, shuffle: bool, seed: int, collate_fn: Any) -> DataLoader:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size ({batch_size!r}) must be a positive int.")
    if len(dataset) == 0:
        raise ValueError(_NO_EXAMPLES)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    # Equal batches make the sweep's losses comparable: drop a last, smaller batch unless it is the only one.
    drop_last = len(dataset) >= batch_size
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate_fn, drop_last=drop_last
    )


def _packed(
    dataset: Dataset, tokenizer: Any, column: str, block_size: int, *, add_eos: bool, special_tokens: bool
) -> Dataset:
    """Tokenize, concatenate (with eos between texts when asked) and cut into blocks of `block_size` tokens."""
    eos = tokenizer.eos_token_id if add_eos else None

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = tokenizer(
            batch[column],
            add_special_tokens=special_tokens,
            return_attention_mask=False,
            return_special_tokens_mask=special_tokens,
        )
        if eos is not None:
            out["input_ids"] = [ids + [eos] for ids in out["input_ids"]]
        return dict(out)

    def group(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        flat = {k: [x for row in v for x in row] for k, v in batch.items()}
        n = len(flat["input_ids"]) // block_size * block_size
        return {k: [v[i : i + block_size] for i in range(0, n, block_size)] for k, v in flat.items()}

    with quiet_datasets():
        tokenized = dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)
        blocks = tokenized.map(group, batched=True, batch_size=max(1000, block_size))
    if len(blocks) == 0:
        total = sum(len(ids) for ids in tokenized["input_ids"])
        raise ValueError(
            f"The text has {total} tokens, fewer than one block of block_size={block_size}; give more text or a smaller block size."
        )
    return blocks


def causal_lm_batches(
    texts: Sequence[str] | Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    block_size: int = 128,
    batch_size: int = 8,
    text_column: str = "text",
    shuffle: bool = True,
    seed: int = 0,
) -> DataLoader:
    """
    Causal-LM batches: the texts tokenized, joined (with the tokenizer's eos token after each text, if it has one),
    and cut into blocks of `block_size` tokens (the tail shorter than a block is dropped); `labels` are the
    `input_ids` (the model shifts them). No padding, so no pad token needed.

    Args:
        texts (`Sequence[str]` or `datasets.Dataset`): the text, or a dataset with a `text_column`.
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer.
        block_size (`int`, *optional*, defaults to 128): tokens per example.
        batch_size (`int`, *optional*, defaults to 8): examples per batch.
        text_column (`str`, *optional*, defaults to `"text"`): the text column of a dataset.
        shuffle (`bool`, *optional*, defaults to `True`): shuffle the blocks, with a `torch.Generator` seeded by `seed`.
        seed (`int`, *optional*, defaults to 0): the shuffling seed.

    Returns:
        `torch.utils.data.DataLoader` of `{"input_ids", "attention_mask", "labels"}` batches of shape
        `(batch_size, block_size)`.

    Raises:
        ValueError: a missing text column, or less text than one block.
    """
    _check_block_size(block_size)
    dataset = _as_dataset(texts, text_column)
    blocks = _packed(dataset, tokenizer, text_column, block_size, add_eos=True, special_tokens=False)

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    return _loader(blocks, batch_size, shuffle, seed, collate)


def masked_lm_batches(
    texts: Sequence[str] | Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    block_size: int = 128,
    batch_size: int = 8,
    mlm_probability: float = 0.15,
    text_column: str = "text",
    shuffle: bool = True,
    seed: int = 0,
) -> DataLoader:
    """
    Masked-LM batches: the texts tokenized with their special tokens, joined, cut into blocks of `block_size` tokens,
    and masked as transformers' `DataCollatorForLanguageModeling` masks them (`mlm_probability` of the tokens other
    than special tokens; of those 80% become the mask token, 10% a random token, 10% stay). `labels` are -100 except
    at the masked positions. The masking draws from its own generator seeded with `seed` (the collator's seed handling
    differs across transformers versions; before 5.19 it ignored `seed=0`), so the batches are the same from run to
    run and, at a given seed, the same as the collator's from transformers 5.19 on (in DataLoader worker processes,
    as there, worker `i` draws from `seed + i`).

    Args:
        texts (`Sequence[str]` or `datasets.Dataset`): the text, or a dataset with a `text_column`.
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer; needs a mask token.
        block_size (`int`, *optional*, defaults to 128): tokens per example.
        batch_size (`int`, *optional*, defaults to 8): examples per batch.
        mlm_probability (`float`, *optional*, defaults to 0.15): share of the tokens that are masked.
        text_column (`str`, *optional*, defaults to `"text"`): the text column of a dataset.
        shuffle (`bool`, *optional*, defaults to `True`): shuffle the blocks.
        seed (`int`, *optional*, defaults to 0): the seed of the shuffling and of the masking.

    Returns:
        `torch.utils.data.DataLoader` of `{"input_ids", "attention_mask", "labels"}` batches (and `token_type_ids`
        where the tokenizer makes them).

    Raises:
        ValueError: a tokenizer without a mask token, a missing text column, or less text than one block.
    """
    if tokenizer.mask_token is None:
        raise ValueError(
            "The tokenizer has no mask token, which masked-LM batches need; use the tokenizer of a masked LM (BERT-style), or a causal-LM task for this model."
        )
    if not 0 < mlm_probability < 1:
        raise ValueError(f"mlm_probability ({mlm_probability}) must be between 0 and 1; 0.15 is usual.")
    _check_block_size(block_size)
    dataset = _as_dataset(texts, text_column)
    blocks = _packed(dataset, tokenizer, text_column, block_size, add_eos=False, special_tokens=True)
    return _loader(blocks, batch_size, shuffle, seed, _MaskTokens(tokenizer, mlm_probability, seed))


class _MaskTokens:
    """
    Collate equal-length blocks into a masked-LM batch with the draws, in their order, of
    `DataCollatorForLanguageModeling.torch_mask_tokens` (80% mask token, 10% random token, 10% kept), from a generator
    seeded with `seed` (`seed + i` in DataLoader worker `i`). `attention_mask` (all ones) is always there, as every
    masked LM of transformers takes it; `token_type_ids` where the tokenizer made them.
    """

    def __init__(self, tokenizer: Any, mlm_probability: float, seed: int) -> None:
        self.mask_token_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.mlm_probability, self.seed = mlm_probability, seed
        self.generator, self._pid = torch.Generator().manual_seed(seed), os.getpid()

    def _draws(self) -> torch.Generator:
        if os.getpid() != self._pid:  # a DataLoader worker: its own stream, as the collator does
            info = torch.utils.data.get_worker_info()
            self.generator = torch.Generator().manual_seed(self.seed + (info.id if info is not None else 0))
            self._pid = os.getpid()
        return self.generator

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        inputs = torch.tensor([e["input_ids"] for e in examples])
        special = torch.tensor([e["special_tokens_mask"] for e in examples], dtype=torch.bool)
        labels, shape, g = inputs.clone(), inputs.shape, self._draws()
        masked = torch.bernoulli(torch.full(shape, self.mlm_probability).masked_fill_(special, 0.0), generator=g).bool()
        labels[~masked] = IGNORE_INDEX
        replaced = torch.bernoulli(torch.full(shape, 0.8), generator=g).bool() & masked
        inputs[replaced] = self.mask_token_id
        randomized = torch.bernoulli(torch.full(shape, 0.5), generator=g).bool() & masked & ~replaced
        words = torch.randint(self.vocab_size, shape, dtype=torch.long, generator=g)
        inputs[randomized] = words[randomized]
        batch = {"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = torch.tensor([e["token_type_ids"] for e in examples])
        batch["labels"] = labels
        return batch


def _check_pad_token(tokenizer: Any, task: str) -> None:
    if tokenizer.pad_token is None:
        fix = (
            "tokenizer.pad_token = tokenizer.eos_token"
            if tokenizer.eos_token is not None
            else "tokenizer.add_special_tokens({'pad_token': '[PAD]'}) and model.resize_token_embeddings(len(tokenizer))"
        )
        raise ValueError(
            f"The tokenizer has no pad token, which {task} batches need for padding; set one first: {fix}."
        )


def seq_cls_batches(
    texts: Sequence[str] | Dataset,
    labels: Sequence[int] | None,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int = 128,
    batch_size: int = 8,
    text_column: str = "text",
    label_column: str = "label",
    shuffle: bool = True,
    seed: int = 0,
) -> DataLoader:
    """
    Sequence-classification batches: each text tokenized (with special tokens, truncated to `max_length`) and padded
    to the longest text of its batch by transformers' `DataCollatorWithPadding`; `labels` hold the class ids.

    Args:
        texts (`Sequence[str]` or `datasets.Dataset`): the texts, or a dataset with `text_column` and `label_column`.
        labels (`Sequence[int]`, *optional*): one class id per text; `None` takes them from the dataset's `label_column`.
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer; needs a pad token.
        max_length (`int`, *optional*, defaults to 128): longest tokenized text kept.
        batch_size (`int`, *optional*, defaults to 8): examples per batch.
        text_column, label_column (`str`, *optional*): the columns of a dataset.
        shuffle (`bool`, *optional*, defaults to `True`): shuffle the examples.
        seed (`int`, *optional*, defaults to 0): the shuffling seed.

    Returns:
        `torch.utils.data.DataLoader` of `{"input_ids", "attention_mask", "labels"}` batches.

    Raises:
        ValueError: a tokenizer without a pad token, missing columns, or as many labels as texts not given.
    """
    from datasets import Dataset
    from transformers import DataCollatorWithPadding

    _check_pad_token(tokenizer, "sequence-classification")
    if isinstance(texts, Dataset) and labels is None:
        if label_column not in texts.column_names:
            raise ValueError(
                f"Column {label_column!r} is not in the dataset (columns: {texts.column_names}); pass the name of its label column."
            )
        labels = texts[label_column]
    if labels is None:
        raise ValueError("labels are needed: one class id per text.")
    dataset = _as_dataset(texts, text_column)
    labels = list(labels)
    if len(labels) != len(dataset):
        raise ValueError(f"There are {len(dataset)} texts but {len(labels)} labels; give one label per text.")
    dataset = dataset.add_column("labels", labels)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return dict(tokenizer(batch[text_column], truncation=True, max_length=max_length))

    with quiet_datasets():
        tokenized = dataset.map(tokenize, batched=True, remove_columns=[text_column])
    return _loader(tokenized, batch_size, shuffle, seed, DataCollatorWithPadding(tokenizer))
