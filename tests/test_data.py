"""Token batches: causal-LM packing, masked-LM masking, dynamic padding for classification, the sample tokenizer."""

import copy

import pytest
import torch
import transformers
from accelerate.state import AcceleratorState, GradientState
from datasets import Dataset
from packaging.version import Version
from torch.utils.data import DataLoader
from transformers import GPT2Config, GPT2LMHeadModel

from hf_lrfind.data import (
    causal_lm_batches,
    load_sample_text,
    masked_lm_batches,
    seq_cls_batches,
    train_tokenizer,
)
from hf_lrfind.integrations.runner import LRFinder


@pytest.fixture(scope="module")
def texts():
    return load_sample_text()


@pytest.fixture(scope="module")
def tokenizer(texts):
    return train_tokenizer(texts)


@pytest.fixture
def no_pad_tokenizer(texts):
    tok = train_tokenizer(texts[:50], vocab_size=300)
    tok.pad_token = None
    return tok


def test_sample_text_and_tokenizer(texts, tokenizer):
    assert 200 <= len(texts) <= 1000
    assert not any(t.startswith("#") for t in texts)
    assert len(tokenizer) == 512
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>" and tokenizer.mask_token == "<mask>"
    ids = tokenizer(texts[0])["input_ids"]
    assert tokenizer.decode(ids) == texts[0]
    assert len(ids) < len(texts[0]) / 2  # merges were learnt: fewer tokens than half the characters
    with pytest.raises(ValueError, match="at least 258"):
        train_tokenizer(texts, vocab_size=100)


def test_causal_lm_batches_pack_texts_into_blocks(texts, tokenizer):
    loader = causal_lm_batches(texts[:60], tokenizer, block_size=32, batch_size=4, shuffle=False)
    stream = [i for t in texts[:60] for i in tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]]
    n = len(stream) // 32 // 4 * 4  # whole blocks, in whole batches
    expected = torch.tensor(stream[: n * 32]).reshape(n, 32)
    batches = list(loader)
    assert len(stream) // 32 % 4 != 0  # there was a smaller last batch, and it was dropped
    assert all(b["input_ids"].shape == (4, 32) for b in batches)
    got = torch.cat([b["input_ids"] for b in batches])
    assert torch.equal(got, expected)
    assert all(torch.equal(b["labels"], b["input_ids"]) for b in batches)
    assert all(bool(b["attention_mask"].all()) for b in batches)


def test_causal_lm_batches_from_a_dataset_and_shuffled_with_a_seed(texts, tokenizer):
    dataset = Dataset.from_dict({"body": texts[:60], "other": list(range(60))})
    plain = causal_lm_batches(dataset, tokenizer, block_size=32, batch_size=1, text_column="body", shuffle=False)
    a, b, c = (
        causal_lm_batches(dataset, tokenizer, block_size=32, batch_size=1, text_column="body", seed=s)
        for s in (1, 1, 2)
    )
    rows = lambda loader: torch.cat([x["input_ids"] for x in loader])  # noqa: E731
    assert torch.equal(rows(a), rows(b)) and not torch.equal(rows(a), rows(c))
    assert sorted(map(tuple, rows(a).tolist())) == sorted(map(tuple, rows(plain).tolist()))
    with pytest.raises(ValueError, match=r"Column 'text' is not in the dataset \(columns: \['body', 'other'\]\)"):
        causal_lm_batches(dataset, tokenizer)


def test_causal_lm_batches_refuse_too_little_text(tokenizer):
    with pytest.raises(ValueError, match="fewer than one block of block_size=128"):
        causal_lm_batches(["A short line."], tokenizer, block_size=128)


def test_masked_lm_batches_mask_15_percent_reproducibly(texts, tokenizer):
    make = lambda seed: list(  # noqa: E731
        masked_lm_batches(texts, tokenizer, block_size=64, batch_size=8, shuffle=False, seed=seed)
    )
    first, again, other = make(0), make(0), make(1)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(first, again))
    assert not all(torch.equal(x["labels"], y["labels"]) for x, y in zip(first, other))
    stream = torch.tensor([i for t in texts for i in tokenizer(t)["input_ids"]])
    ids, labels = torch.cat([b["input_ids"] for b in first]), torch.cat([b["labels"] for b in first])
    masked = labels != -100
    original = torch.where(masked, labels, ids)
    assert torch.equal(original.flatten(), stream[: original.numel()])  # labels hold the tokens that were masked
    assert 0.13 < masked.float().mean() < 0.17
    assert 0.75 < (ids[masked] == tokenizer.mask_token_id).float().mean() < 0.85  # 80% become the mask token


@pytest.mark.parametrize("token_types", [False, True])
@pytest.mark.parametrize("seed", [0, 3])
def test_masked_lm_batches_are_the_seeded_collators_batches(texts, tokenizer, seed, token_types):
    from transformers import DataCollatorForLanguageModeling

    if seed == 0 and Version(transformers.__version__) < Version("5.19"):
        pytest.skip("before transformers 5.19 DataCollatorForLanguageModeling ignores seed=0: no seeded reference")
    tokenizer = copy.deepcopy(tokenizer)
    # A BERT-style tokenizer makes token_type_ids too; the batches carry them as the collator's do.
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]
    tokenizer.model_input_names = names
    ours = masked_lm_batches(texts, tokenizer, block_size=32, batch_size=4, seed=seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    reference = DataLoader(
        ours.dataset, batch_size=4, shuffle=True, generator=generator, collate_fn=collator, drop_last=True
    )
    pairs = list(zip(ours, reference, strict=True))
    assert len(pairs) > 10
    for a, b in pairs:
        assert a.keys() == b.keys() == {*names, "labels"}
        assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_masked_lm_batches_draw_one_stream_per_worker(texts, tokenizer):
    loader = masked_lm_batches(texts, tokenizer, block_size=32, batch_size=4, shuffle=False)
    workers = DataLoader(loader.dataset, batch_size=4, collate_fn=loader.collate_fn, num_workers=2)
    first, second = (batch for batch, _ in zip(workers, range(2)))  # one batch from each worker
    # The draws are made at every position (p = 0 at special tokens): compare where neither has a special token.
    special = [torch.tensor(loader.dataset[i * 4 : i * 4 + 4]["special_tokens_mask"], dtype=torch.bool) for i in (0, 1)]
    plain = ~(special[0] | special[1])
    assert not torch.equal((first["labels"] != -100)[plain], (second["labels"] != -100)[plain])


def test_masked_lm_batches_need_a_mask_token_not_a_pad_token(texts, tokenizer):
    tokenizer_without_mask = train_tokenizer(texts[:50], vocab_size=300)
    tokenizer_without_mask.mask_token = None
    with pytest.raises(ValueError, match="no mask token"):
        masked_lm_batches(texts, tokenizer_without_mask)
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None  # equal blocks need no padding
    batch = next(iter(masked_lm_batches(texts, no_pad, block_size=32, batch_size=4)))
    assert batch["input_ids"].shape == (4, 32)


def test_seq_cls_batches_pad_each_batch_to_its_longest_text(texts, tokenizer):
    sample = ["Hi.", "A short line.", "Yes.", "No.", texts[0], texts[1], "Ok.", " ".join(texts[2:8])]
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    loader = seq_cls_batches(sample, labels, tokenizer, max_length=40, batch_size=4, shuffle=False)
    lengths = [min(len(tokenizer(t)["input_ids"]), 40) for t in sample]
    batches = list(loader)
    for i, batch in enumerate(batches):
        own = lengths[4 * i : 4 * i + 4]
        assert batch["input_ids"].shape == (4, max(own))  # padded to the longest text of the batch
        assert batch["attention_mask"].sum(1).tolist() == own
        assert batch["labels"].tolist() == labels[4 * i : 4 * i + 4]
        pad = batch["input_ids"][batch["attention_mask"] == 0]
        assert bool((pad == tokenizer.pad_token_id).all())
    assert batches[0]["input_ids"].shape[1] < 40 and batches[1]["input_ids"].shape[1] == 40  # truncated


def test_seq_cls_batches_from_a_dataset_and_their_errors(texts, tokenizer, no_pad_tokenizer):
    dataset = Dataset.from_dict({"text": texts[:8], "label": [0, 1] * 4})
    batch = next(iter(seq_cls_batches(dataset, None, tokenizer, batch_size=8, shuffle=False)))
    assert batch["labels"].tolist() == [0, 1] * 4
    with pytest.raises(ValueError, match=r"no pad token.*set one first: tokenizer.pad_token = tokenizer.eos_token"):
        seq_cls_batches(texts[:8], [0] * 8, no_pad_tokenizer)
    with pytest.raises(ValueError, match="8 texts but 3 labels"):
        seq_cls_batches(texts[:8], [0, 1, 0], tokenizer)
    with pytest.raises(ValueError, match="Column 'y' is not in the dataset"):
        seq_cls_batches(dataset, None, tokenizer, label_column="y")


def test_tokens_seen_are_recorded_in_the_result(texts, tokenizer):
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer), n_positions=32)
    config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    loader = causal_lm_batches(texts, tokenizer, block_size=32, batch_size=4)
    try:
        result = LRFinder(model, torch.optim.AdamW(model.parameters()), progress=False).range_test(
            loader, start_lr=1e-5, end_lr=1e-2, num_steps=5, num_sweeps=1, diverge_threshold=None, grad_accum_steps=2
        )
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert result.metadata["tokens_seen"] == 5 * 2 * 4 * 32


@pytest.mark.parametrize("make", ["causal", "masked", "seq_cls"])
def test_no_examples_is_a_clear_error(make):
    import hf_lrfind

    tokenizer = hf_lrfind.train_tokenizer(hf_lrfind.load_sample_text()[:50])
    tokenizer.pad_token = tokenizer.eos_token
    calls = {
        "causal": lambda texts: hf_lrfind.causal_lm_batches(texts, tokenizer),
        "masked": lambda texts: hf_lrfind.masked_lm_batches(texts, tokenizer),
        "seq_cls": lambda texts: hf_lrfind.seq_cls_batches(texts, [] if isinstance(texts, list) else None, tokenizer),
    }
    for texts in ([], Dataset.from_dict({"text": [], "label": []})):
        with pytest.raises(ValueError, match="hold no examples; give at least one"):
            calls[make](texts)
