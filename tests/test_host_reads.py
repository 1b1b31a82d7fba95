"""Losses stay on the device during a sweep: the engine reads them back once every `check_every` steps, not per step.

The model's loss is a tensor subclass that counts every conversion to a Python value (`item`, `tolist`, `float`,
`bool`, `numpy`): on an accelerator each one is a host synchronisation. Everything derived from the loss (detached,
weighted, stacked, moved) stays a counting tensor, so a read anywhere on the loss's path is seen.
"""

import pytest
import torch
from accelerate import Accelerator
from transformers import Trainer

from hf_lrfind import LRFinder, find_lr
from tests.test_runner import make_batches, tiny_gpt2
from tests.test_trainer import make_trainer

READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__, torch.Tensor.__bool__, torch.Tensor.numpy}


class CountingLoss(torch.Tensor):
    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in READS:
            CountingLoss.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def counting(loss_fn):
    def loss(outputs, batch):
        return loss_fn(outputs, batch).as_subclass(CountingLoss)

    return loss


@pytest.mark.parametrize("grad_accum_steps", [1, 2])
def test_the_runner_reads_the_loss_once_per_check(grad_accum_steps):
    model = tiny_gpt2()
    finder = LRFinder(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        accelerator=Accelerator(cpu=True),
        loss_fn=counting(lambda outputs, batch: outputs.loss),
        progress=False,
    )
    CountingLoss.reads = 0
    result = finder.range_test(
        make_batches(n=4),
        start_lr=1e-4,
        end_lr=1e-2,
        num_steps=20,
        num_sweeps=2,
        check_every=5,
        diverge_threshold=None,
        grad_accum_steps=grad_accum_steps,
    )
    assert result.metadata["cost_steps"] == 40
    # One read per check_every steps, none per step; with accumulation the token count travels in the same tensor
    # as the weighted loss and is read once at the end of each of the 2 sweeps.
    assert CountingLoss.reads == 40 // 5 + (2 if grad_accum_steps > 1 else 0)


class CountingTrainer(Trainer):
    def compute_loss(self, *args, **kwargs):
        out = super().compute_loss(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0].as_subclass(CountingLoss), *out[1:])
        return out.as_subclass(CountingLoss)


@pytest.mark.parametrize("gradient_accumulation_steps", [1, 2])
def test_the_trainer_path_reads_the_loss_once_per_check(tmp_path, gradient_accumulation_steps):
    trainer = make_trainer(
        tmp_path,
        cls=CountingTrainer,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    CountingLoss.reads = 0
    result = find_lr(trainer, num_steps=20, num_sweeps=2, check_every=5, diverge_threshold=None, save_to=None)
    assert result.metadata["cost_steps"] == 40
    assert CountingLoss.reads == 40 // 5
