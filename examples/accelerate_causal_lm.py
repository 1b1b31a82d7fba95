"""Train a causal LM with your own accelerate loop, at the peak learning rate hf_lrfind suggests.

    python examples/accelerate_causal_lm.py --find-lr                                 # one process
    torchrun --nproc_per_node 2 examples/accelerate_causal_lm.py --find-lr            # two (CPU: gloo)
    accelerate launch examples/accelerate_causal_lm.py --find-lr                      # as configured

The loop is the one of transformers' `run_clm_no_trainer.py` example, written small: tokenize, pack into blocks,
`accelerator.prepare` the model, optimizer, dataloader and scheduler, then train with `accelerator.accumulate`. With
`--find-lr` three lines come between preparing and training:

    result = LRFinder(model, optimizer, accelerator=accelerator).range_test(train_dataloader)
    result.apply(optimizer, scheduler=lr_scheduler)   # the schedule's peak is the suggestion
    (then train as always)

The sweep leaves the model, optimizer, RNG and the dataloader's order as they were on every process, so the training
that follows is the one `--learning-rate <the suggestion>` gives without a sweep: `tests/test_example_accelerate.py`
runs both under one and two processes and compares every rank's losses and final weights bit for bit.

Offline: the text ships with hf_lrfind, the tokenizer is trained on it in memory and the GPT-2 is random-init from a
small config. On CPU, `Accelerator(cpu=True)` is what makes torchrun's processes train together (over gloo).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from datasets import Dataset, disable_progress_bars  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, default_data_collator, get_scheduler  # noqa: E402

from hf_lrfind import LRFinder, load_sample_text, train_tokenizer  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--find-lr", action="store_true", help="sweep first and train at the suggested peak rate")
    parser.add_argument("--find-lr-steps", type=int, default=60, help="optimizer steps of each sweep")
    parser.add_argument("--learning-rate", type=float, default=5e-4, help="peak rate (replaced by --find-lr)")
    parser.add_argument("--lr-scheduler-type", default="linear", help="transformers' get_scheduler name")
    parser.add_argument("--num-warmup-steps", type=int, default=2)
    parser.add_argument("--num-train-epochs", type=int, default=2)
    parser.add_argument("--max-train-steps", type=int, default=None, help="overrides --num-train-epochs")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--per-device-train-batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", default=None, help="where to write lr_find.json/png and train_rank<N>.json")
    return parser.parse_args(argv)


def lm_dataset(tokenizer, block_size: int) -> Dataset:
    """The sample text tokenized, joined and cut into blocks; labels are the inputs (the model shifts them)."""
    disable_progress_bars()
    raw = Dataset.from_dict({"text": load_sample_text()})
    tokenized = raw.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])

    def group_texts(batch):
        joined = {k: sum(batch[k], []) for k in batch}
        total = len(joined["input_ids"]) // block_size * block_size
        blocks = {k: [v[i : i + block_size] for i in range(0, total, block_size)] for k, v in joined.items()}
        blocks["labels"] = [ids.copy() for ids in blocks["input_ids"]]
        return blocks

    return tokenized.map(group_texts, batched=True)


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, cpu=not torch.cuda.is_available()
    )
    set_seed(args.seed)

    tokenizer = train_tokenizer(load_sample_text())
    with accelerator.main_process_first():
        train_dataset = lm_dataset(tokenizer, args.block_size)
    train_dataloader = DataLoader(
        train_dataset, shuffle=True, collate_fn=default_data_collator, batch_size=args.per_device_train_batch_size
    )
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=args.block_size, n_embd=64, n_layer=2, n_head=2, **ids)
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"

    no_decay = ("bias", "ln_1.weight", "ln_2.weight", "ln_f.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)

    steps_per_epoch = math.ceil(len(train_dataloader) / accelerator.num_processes / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    epochs = math.ceil(max_train_steps / steps_per_epoch)
    # accelerate steps a prepared scheduler once per process at each optimizer step: count the steps that many times.
    lr_scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.num_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler
    )

    peak = args.learning_rate
    if args.find_lr:
        finder = LRFinder(model, optimizer, accelerator=accelerator)
        result = finder.range_test(train_dataloader, num_steps=args.find_lr_steps, output_dir=args.output_dir)
        result.apply(optimizer, scheduler=lr_scheduler)
        peak = result.suggestion()
    accelerator.print(f"Training {max_train_steps} steps on {accelerator.num_processes} process(es), peak lr {peak!r}")

    losses, completed = [], 0
    for _ in range(epochs):
        model.train()
        for batch in train_dataloader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                losses.append(accelerator.reduce(loss.detach(), "mean").item())
                completed += 1
            if completed >= max_train_steps:
                break
        if completed >= max_train_steps:
            break
    accelerator.print(f"First and last training loss: {losses[0]:.4f}, {losses[-1]:.4f}")

    if args.output_dir is not None:
        os.makedirs(args.output_dir, exist_ok=True)
        report = {"peak_lr": peak, "losses": losses, "weights": weights_digest(accelerator.unwrap_model(model))}
        with open(os.path.join(args.output_dir, f"train_rank{accelerator.process_index}.json"), "w") as f:
            json.dump(report, f)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
