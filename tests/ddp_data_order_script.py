"""Launched by tests/test_data_order_ddp.py as `torchrun --standalone --nproc_per_node 2 ddp_data_order_script.py OUT`.

Two CPU processes (gloo). For each way accelerate can shard a shuffled DataLoader (its default, the seedable
sampler, dispatch_batches, split_batches) the batches each rank draws after a range test are compared with those
it draws without one: through the accelerate runner on a prepared loop, and through the Trainer (`find_lr` then
`train()`, and `LRFinderCallback(then="train")`). Each rank writes OUT/rank{N}.json.
"""

import json
import os
import sys

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_lrfind import LRFinder, LRFinderCallback, find_lr

VARIANTS = {
    "default": {},
    "seedable": {"use_seedable_sampler": True},
    "dispatch_batches": {"dispatch_batches": True},
    "split_batches": {"split_batches": True},
}
N, DIM = 24, 4


class Indexed(torch.utils.data.Dataset):
    """Examples that carry their index, so that the order drawn can be read back."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(N, DIM, generator=g), torch.randn(N, generator=g)

    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i], "index": torch.tensor(i)}


class Recorder(torch.nn.Module):
    """A regression whose forward keeps the indices of the examples it was given."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(DIM, 1)
        self.seen = []

    def forward(self, x, labels, index):
        self.seen.extend(index.tolist())
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}


def model():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return Recorder()


def runner_draws(config, sweep):
    """The indices a prepared training loop draws over 3 epochs, after a range test or not."""
    AcceleratorState._reset_state(reset_partial_state=False)
    set_seed(0)
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(**config))
    net = model()
    loader = torch.utils.data.DataLoader(Indexed(), batch_size=4, shuffle=True)
    net, optimizer, loader = accelerator.prepare(net, torch.optim.SGD(net.parameters(), lr=0.1), loader)
    if sweep:  # 7 steps: past the end of an epoch (3 batches per rank), into the next
        LRFinder(net, optimizer, accelerator=accelerator, progress=False).range_test(
            loader, num_steps=7, num_sweeps=1, end_lr=1.0, diverge_threshold=None, skip_end=0
        )
    seen = []
    for _ in range(3):
        for batch in loader:
            seen.append(batch["index"].tolist())
    return seen


def trainer_draws(config, how, out):
    """The indices the Trainer's training (4 epochs) is given: alone, after find_lr, or after the callback's sweep."""
    net = model()
    args = TrainingArguments(
        output_dir=out,
        use_cpu=True,
        ddp_backend="gloo",
        report_to="none",
        per_device_train_batch_size=4,
        num_train_epochs=4,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
        remove_unused_columns=False,
        accelerator_config=config,
    )
    sweep = {"num_steps": 7, "num_sweeps": 1, "end_lr": 1.0, "diverge_threshold": None, "skip_end": 0}
    swept = []

    class FirstStep(TrainerCallback):  # training's first step begins after the callback's sweep
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                swept.extend(net.seen)
                net.seen.clear()

    callbacks = [LRFinderCallback(then="train", save_to=None, **sweep)] if how == "callback" else []
    trainer = Trainer(model=net, args=args, train_dataset=Indexed(), callbacks=[*callbacks, FirstStep()])
    if how == "find_lr":
        find_lr(trainer, save_to=None, **sweep)
        net.seen.clear()
    trainer.train()
    return net.seen, swept


def main():
    out = sys.argv[1]
    report = {}
    for name, config in VARIANTS.items():
        plain, swept = runner_draws(config, False), runner_draws(config, True)
        report[f"runner/{name}"] = {"plain": plain, "after_sweep": swept}
    for name, config in VARIANTS.items():
        plain, _ = trainer_draws(config, "plain", out)
        after_find, _ = trainer_draws(config, "find_lr", out)
        after_callback, swept = trainer_draws(config, "callback", out)
        report[f"trainer/{name}"] = {
            "plain": plain,
            "after_find_lr": after_find,
            "after_callback": after_callback,
            "sweep_drew": len(swept),
        }
    rank = int(os.environ["RANK"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
