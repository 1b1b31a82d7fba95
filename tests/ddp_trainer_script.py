"""Launched by tests/test_trainer_ddp.py under torchrun with 2 processes: find_lr through a DDP Trainer on CPU."""

import json
import os
import sys

import torch
from transformers import TrainingArguments

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hf_lrfind import find_lr  # noqa: E402
from tests.test_trainer import InOrder, Tokens, bert, weights  # noqa: E402


class Recording(InOrder):
    """Keeps each process's own micro-batch losses, before the cross-process reduction."""

    local = []

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        Recording.local.append(float(loss))
        return loss


out = sys.argv[1]
args = TrainingArguments(
    output_dir=out,
    use_cpu=True,
    ddp_backend="gloo",
    report_to="none",
    per_device_train_batch_size=4,
    max_steps=5,
    seed=0,
    disable_tqdm=True,
    save_strategy="no",
)
trainer = Recording(model=bert(), args=args, train_dataset=Tokens())
before = weights(trainer.model)
result = find_lr(trainer, num_steps=15, num_sweeps=1, end_lr=1.0)
after = weights(trainer.model)
rank = int(os.environ["RANK"])
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump(
        {
            "result": result.to_dict(),
            "world": trainer.args.world_size,
            "first_local_loss": Recording.local[0],
            "restored": all(torch.equal(before[k], after[k]) for k in before),
            "files": sorted(os.listdir(out)),
        },
        f,
    )
# Leave the process group cleanly: a gloo group torn down at interpreter exit can abort a rank.
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
