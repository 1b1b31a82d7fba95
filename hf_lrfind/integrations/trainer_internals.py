"""Everything that reaches into the Trainer's private loop, in one place, each with why a public path does not do it.

- [`calling_trainer`] walks the call stack to `Trainer._inner_training_loop`: callbacks are given the model, the
  optimizer and the dataloader but never the trainer, whose `training_step`, `get_batch_samples` and accelerator the
  sweep runs through, nor the wrapped model (DDP, FSDP) the loop trains, which the callback reads from the loop's
  locals. `find_lr` runs through the same callback, so there is one path to keep working.
- [`stop_before_a_batch`] hands the loop an empty list from `trainer.get_batch_samples` once, after a stop-mode
  sweep: the loop reads `should_training_stop` only after a micro-batch, and no callback event comes before the first
  one. transformers then warns that the epoch had no sample; that one warning is dropped (a one-shot logging filter).
- [`clip_grad_norm`] calls `Trainer._clip_grad_norm` (5.3 on), or clips as the older loop did inline.
- [`Accounting`] and [`AsBefore`] put back what a sweep, or `train()` itself, leaves on the trainer: its plain-data
  counters and `state`, and (for `find_lr`) the trainer's and the accelerator's attributes as a whole.
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import TYPE_CHECKING, Any

import torch

from ..core.state import rng_state, set_rng_state
from .accelerate_state import MODEL_ATTRS, restore_attrs

if TYPE_CHECKING:
    from transformers import Trainer


def calling_trainer() -> tuple[Trainer, dict[str, Any]]:
    """The Trainer whose training loop called the current callback, with the locals of that loop's frame."""
    from transformers import Trainer

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer) and frame.f_code.co_name == "_inner_training_loop":
            return candidate, frame.f_locals
        frame = frame.f_back
    raise RuntimeError(
        "LRFinderCallback runs inside Trainer.train(); add it with Trainer(callbacks=[LRFinderCallback()]) or use hf_lrfind.find_lr(trainer)."
    )


def _is_plain(value: Any) -> bool:
    """Numbers, strings and containers of them: what a Trainer keeps count in (never a module, tensor or optimizer)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple, set)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return False


class Accounting:
    """
    What the Trainer, or a subclass, accumulates as its steps run, taken before the sweep and put back after it: the
    plain-data attributes of the trainer (TRL's `_metrics` and `_total_train_tokens`, the Trainer's `current_flos` and
    `_total_loss_scalar`, ...) and `trainer.state` (`num_input_tokens_seen`, `total_flos`, ...). Without it, a subclass
    whose `compute_loss` counts tokens or metrics reports the sweep's steps as its own.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.attrs = {k: copy.deepcopy(v) for k, v in trainer.__dict__.items() if _is_plain(v)}
        self.state = copy.deepcopy(vars(trainer.state))

    def restore(self) -> None:
        attrs = self.trainer.__dict__
        for name in [k for k, v in attrs.items() if k not in self.attrs and _is_plain(v)]:
            del attrs[name]  # started during the sweep
        for name, saved in self.attrs.items():
            live = attrs.get(name)
            if type(live) is type(saved) and isinstance(live, list):
                live[:] = saved  # in place: whoever holds the object (find_lr's own snapshot) sees it restored
            elif type(live) is type(saved) and isinstance(live, (dict, set)):
                live.clear()
                live.update(saved)
            else:
                attrs[name] = saved
        vars(self.trainer.state).update(self.state)


def clip_grad_norm(trainer: Trainer, model: torch.nn.Module) -> None:
    """
    The Trainer's gradient clipping: its `_clip_grad_norm` (transformers 5.3 on); before 5.3 the loop clipped inline
    with `accelerator.clip_grad_norm_`, done here the same way (its SageMaker, apex and tensor-parallel branches are
    not reproduced).
    """
    clip = getattr(trainer, "_clip_grad_norm", None)
    if clip is not None:
        clip(model)
    else:
        trainer.accelerator.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)


# transformers' warning when an epoch gave the loop no batch: after a stop-mode sweep that empty epoch is ours.
_EMPTY_EPOCH = "There seems not to be a single sample in your epoch_iterator"


class _QuietEmptyEpoch(logging.Filter):
    """Drops that warning once, then removes itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(_EMPTY_EPOCH):
            return True
        _trainer_log().removeFilter(self)
        return False


def _trainer_log() -> logging.Logger:
    return logging.getLogger("transformers.trainer")


_QUIET_EMPTY_EPOCH = _QuietEmptyEpoch()
_MISSING = object()


class _NoBatches:
    """Stands in for `trainer.get_batch_samples` once: no batch for the loop; then puts back what was there."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.before = trainer.__dict__.get("get_batch_samples", _MISSING)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[list[Any], None]:
        self.remove()
        return [], None

    def remove(self) -> None:
        if self.trainer.__dict__.get("get_batch_samples") is self:
            if self.before is _MISSING:
                del self.trainer.__dict__["get_batch_samples"]
            else:
                self.trainer.__dict__["get_batch_samples"] = self.before


def stop_before_a_batch(trainer: Trainer) -> None:
    """
    Make the coming epoch of `trainer.train()` run no batch: its first `get_batch_samples` call returns none (the loop
    looks at `should_training_stop` only after a micro-batch), and transformers' warning about that empty epoch is
    dropped (once). Undone by the call and the warning themselves, and by [`let_batches_run`].
    """
    trainer.get_batch_samples = _NoBatches(trainer)
    _trainer_log().addFilter(_QUIET_EMPTY_EPOCH)


def let_batches_run(trainer: Trainer) -> None:
    """Undo [`stop_before_a_batch`] (safe to call when it was not done, or already undone)."""
    stand_in = trainer.__dict__.get("get_batch_samples")
    if isinstance(stand_in, _NoBatches):
        stand_in.remove()
    _trainer_log().removeFilter(_QUIET_EMPTY_EPOCH)


# What `trainer.train()` changes on the accelerator: free_memory() and prepare().
_ACCELERATOR_ATTRS = ("_models", "_optimizers", "_schedulers", "_dataloaders", "_custom_objects", "step")


class AsBefore:
    """What `trainer.train()` changes on the trainer and around it, taken on creation and put back by `restore()`."""

    def __init__(self, trainer: Trainer) -> None:
        acc = trainer.accelerator
        self.trainer = trainer
        self.attrs = dict(trainer.__dict__)
        self.control = dict(vars(trainer.control))
        self.handler = dict(vars(trainer.callback_handler))
        self.args = {name: getattr(trainer.args, name) for name in ("eval_on_start", "max_steps")}
        # The lists as they are (transformers < 5 appends to them in place), and the objects themselves.
        self.accelerator = {name: getattr(acc, name) for name in _ACCELERATOR_ATTRS if hasattr(acc, name)}
        self.lists = {name: list(v) for name, v in self.accelerator.items() if isinstance(v, list)}
        self.sync_gradients = acc.gradient_state.sync_gradients
        self.references = list(acc.gradient_state.dataloader_references)
        self.model_attrs = dict(trainer.model.__dict__)
        self.training = {module: module.training for module in trainer.model.modules()}
        optimizer = trainer.optimizer
        self.groups = None
        if optimizer is not None:
            self.groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        self.rng = rng_state()

    def restore(self) -> None:
        trainer, acc = self.trainer, self.trainer.accelerator
        trainer.__dict__.clear()
        trainer.__dict__.update(self.attrs)
        vars(trainer.control).update(self.control)
        vars(trainer.callback_handler).update(self.handler)
        for name, value in self.args.items():
            setattr(trainer.args, name, value)
        for name, value in self.accelerator.items():
            if name in self.lists:
                value[:] = self.lists[name]
            setattr(acc, name, value)
        acc.gradient_state._set_sync_gradients(self.sync_gradients)
        acc.gradient_state.dataloader_references[:] = self.references  # a loop stopped mid-epoch leaves its loader
        # accelerate's prepare() marks the model and, under mixed precision, wraps its forward in autocast.
        restore_attrs(trainer.model, self.model_attrs, MODEL_ATTRS)
        for module, training in self.training.items():
            module.training = training
        if self.groups is not None:  # the scheduler adds initial_lr; the sweep's restore put back its own lrs
            for group, saved in zip(trainer.optimizer.param_groups, self.groups):
                for key in [k for k in group if k != "params" and k not in saved]:
                    del group[key]
                group.update(saved)
        set_rng_state(self.rng)
