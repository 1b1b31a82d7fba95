"""A sweep through the Trainer's own pieces, one optimizer step at a time, as the Trainer's loop does:
`get_batch_samples` (gradient accumulation), `training_step` (its `compute_loss`, mixed precision, backward through
the accelerator), `no_sync` on all micro-batches but the last, gradient clipping and the optimizer step.

The recorded loss: a model whose `forward` takes `**kwargs` (`BertForSequenceClassification`, ...) makes the Trainer
treat its loss as already normalised over the accumulated batch, so the Trainer sums micro-batch losses and, under
DDP, multiplies by the world size. During the sweep `trainer.model_accepts_loss_kwargs` is off (unless a
`compute_loss_func` or `loss_is_scaled_for_ga` says how the loss is scaled): each micro-batch gives its mean divided
by the accumulation steps, a step's loss is the mean of its micro-batch means, averaged over the processes. For packed
causal-LM batches that is the token mean; with padding it averages micro-batch means. The Trainer's
`logging_nan_inf_filter` is not on this path: a NaN loss stops the sweep.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ..core.confirm import Replay
from ..core.strategies import default_strategy, run_strategy
from ..core.sweep import StepOutput
from .accelerate_step import input_tokens
from .trainer_internals import clip_grad_norm

if TYPE_CHECKING:
    from transformers import Trainer

    from ..core.result import LRFinderResult
    from .trainer import LRFinderCallback

logger = logging.getLogger(__name__)


class _Batches:
    """
    The Trainer's train dataloader as one endless iterator, epoch after epoch (`set_epoch` before each, as
    the Trainer's loop does). [`close`] ends an unfinished pass, so that accelerate's dataloader does not stay
    registered as running in the accelerator's gradient state.
    """

    def __init__(self, dataloader: Any) -> None:
        self.dataloader, self.epoch = dataloader, 0
        self._iterator: Any = None
        self._peeked: list[Any] = []

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> Any:
        if self._peeked:
            return self._peeked.pop()
        if self._iterator is not None:
            try:
                return next(self._iterator)
            except StopIteration:
                self._iterator = None
                self.epoch += 1
        if hasattr(self.dataloader, "set_epoch"):
            self.dataloader.set_epoch(self.epoch)
        self._iterator = iter(self.dataloader)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = None
            raise ValueError(
                "The Trainer's train dataloader yielded no batches; give the train_dataset at least one batch of examples (check dataloader_drop_last)."
            ) from None

    def peek(self) -> Any:
        """The next batch, left in place."""
        if not self._peeked:
            self._peeked.append(next(self))
        return self._peeked[0]

    def close(self) -> None:
        if self._iterator is None:
            return
        close = getattr(self._iterator, "close", None)
        if callable(close):
            close()
        self._iterator = None
        end = getattr(self.dataloader, "end", None)
        if callable(end) and hasattr(self.dataloader, "gradient_state"):
            end()


def _check_loss_inputs(trainer: Trainer, batch: Any) -> None:
    """Refuse, before the sweep, batches that give the Trainer's default loss nothing to work with (no labels)."""
    from transformers import Trainer

    if trainer.compute_loss_func is not None or type(trainer).compute_loss is not Trainer.compute_loss:
        return  # a custom loss knows its inputs
    names = list(getattr(trainer, "label_names", None) or [])
    if not isinstance(batch, Mapping) or not names or any(name in batch for name in names):
        return
    if getattr(trainer, "can_return_loss", False) and batch.get("return_loss"):
        return
    model = type(trainer.accelerator.unwrap_model(trainer.model)).__name__
    raise ValueError(
        f"The training batches have no {' or '.join(repr(n) for n in names)} entry (their keys: {sorted(batch)}), so {model} computes no loss and there is nothing to sweep; give the train_dataset a labels column (the default collators rename 'label' to 'labels'), or set label_names in TrainingArguments."
    )


def _step_fn(trainer: Trainer, model: torch.nn.Module, batches: Replay, optimizer: Any):
    """One optimizer step of the Trainer's loop: micro-batches, training_step, clipping, optimizer step."""
    from accelerate.utils import DistributedType

    args, accelerator = trainer.args, trainer.accelerator
    # The Trainer syncs gradients on every micro-batch under DeepSpeed or with sync_each_batch.
    sync_each_batch = (
        accelerator.gradient_state.plugin_kwargs.get("sync_each_batch", False)
        or accelerator.distributed_type == DistributedType.DEEPSPEED
    )

    def step() -> StepOutput:
        micro, num_items = trainer.get_batch_samples(batches, args.gradient_accumulation_steps, args.device)
        trainer.current_gradient_accumulation_steps = len(micro)
        total = None
        for i, inputs in enumerate(micro):
            last = i == len(micro) - 1
            accelerator.gradient_state._set_sync_gradients(last)
            sync = contextlib.nullcontext() if last or sync_each_batch else accelerator.no_sync(model)
            with sync:
                loss = trainer.training_step(model, inputs, num_items)
            total = loss if total is None else total + loss
        if args.max_grad_norm is not None and args.max_grad_norm > 0:
            clip_grad_norm(trainer, model)
        optimizer.step()
        skipped = accelerator.scaler is not None and optimizer.step_was_skipped
        model.zero_grad()
        counts = [input_tokens(inputs) for inputs in micro]
        tokens = torch.stack(counts).sum() if all(c is not None for c in counts) else None
        if accelerator.num_processes > 1:
            total = accelerator.reduce(total, "mean")
            tokens = accelerator.reduce(tokens, "sum") if tokens is not None else None
        return StepOutput(total, skipped=bool(skipped), num_tokens=tokens)

    return step


def run_trainer_sweep(
    callback: LRFinderCallback, trainer: Trainer, model: torch.nn.Module, dataloader: Any, snapshot: Any
) -> LRFinderResult:
    """Run the configured strategy through the trainer; the caller owns `snapshot`."""
    args, accelerator = trainer.args, trainer.accelerator
    if args.fp16 and args.device.type == "cpu":
        logger.warning(
            "fp16 was asked for on a CPU, where accelerate runs fp32 without a gradient scaler; use bf16=True, or a GPU, to sweep in mixed precision."
        )
    optimizer, groups = trainer.optimizer, None
    if callback.groups is not None:
        from ..groups.build import no_decay_names, regroup_optimizer

        unwrapped = accelerator.unwrap_model(model)
        optimizer, groups = regroup_optimizer(
            unwrapped,
            trainer.optimizer,
            callback.groups,
            ratios=callback.ratios,
            layer_decay=callback.layer_decay,
            loading_info=callback.loading_info,
            weight_decay=args.weight_decay,
            no_decay=no_decay_names(unwrapped, trainer),
        )
        optimizer = accelerator.prepare_optimizer(optimizer)
    strategy = callback.strategy or default_strategy(callback.groups, callback.layer_decay, groups)
    # Models that take **kwargs make the Trainer treat their loss as normalised over the accumulated batch and the
    # processes (the logged loss is then summed over micro-batches and multiplied by the world size). Per-micro-batch
    # means divided by the accumulation steps sum to the step's mean loss instead.
    # A Trainer that says how its own loss is scaled (`loss_is_scaled_for_ga`) keeps its setting.
    accepts = trainer.model_accepts_loss_kwargs
    progress = trainer.is_world_process_zero() and not args.disable_tqdm
    source = _Batches(dataloader)
    batches = Replay(source)  # confirmation trials replay the same batches
    try:
        _check_loss_inputs(trainer, source.peek())
        if trainer.compute_loss_func is None and getattr(trainer, "loss_is_scaled_for_ga", None) is None:
            trainer.model_accepts_loss_kwargs = False
        kwargs = {"snapshot": snapshot, "progress": progress, "metadata": {"entry_point": "trainer"}, "replay": batches}
        kwargs["log_warnings"] = trainer.is_world_process_zero()
        if strategy == "sequential":
            kwargs.update(method=callback.method, keep_head=False)
        return run_strategy(
            strategy,
            _step_fn(trainer, model, batches, optimizer),
            model,
            optimizer,
            callback.config,
            groups=groups,
            **kwargs,
        )
    finally:
        batches.close()
        trainer.model_accepts_loss_kwargs = accepts
        if optimizer is not trainer.optimizer and optimizer in accelerator._optimizers:
            accelerator._optimizers.remove(optimizer)
