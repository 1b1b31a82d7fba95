"""The `transformers.Trainer` adapter: `find_lr(trainer)`, `LRFinderCallback` and `apply_result`.

The sweep runs through the Trainer's own pieces, one optimizer step at a time, as `Trainer._run_epoch` does:
`get_batch_samples` (gradient accumulation), `training_step` (its `compute_loss`, mixed precision, backward through
the accelerator), `_clip_grad_norm` and the optimizer step. The Trainer's logging, evaluation, saving, progress bar and
`state` are not touched while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from .config import LRFinderConfig
from .engine import StepOutput, make_snapshot
from .result import LRFinderResult
from .state import StateSnapshot
from .strategies import default_strategy, run_strategy

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger(__name__)

THEN = ("stop", "train")


def _calling_trainer() -> tuple[Trainer, dict[str, Any]]:
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


class _Keep:
    """Hands a snapshot to the engine without letting it close it: the callback restores it again later."""

    def __init__(self, snapshot: StateSnapshot) -> None:
        self.snapshot = snapshot

    def restore(self) -> None:
        self.snapshot.restore()

    def close(self) -> None:
        pass


def _step_fn(trainer: Trainer, model: torch.nn.Module, dataloader: Any, optimizer: Any):
    """One optimizer step of the Trainer's loop: micro-batches, training_step, clipping, optimizer step."""
    args, accelerator = trainer.args, trainer.accelerator
    state = {"iterator": iter(dataloader), "epoch": 0}

    def next_batch() -> Any:
        try:
            return next(state["iterator"])
        except StopIteration:  # cycle, as the Trainer moves on to the next epoch
            state["epoch"] += 1
            if hasattr(dataloader, "set_epoch"):
                dataloader.set_epoch(state["epoch"])
            state["iterator"] = iter(dataloader)
            return next(state["iterator"])

    def step() -> StepOutput:
        batches = [next_batch() for _ in range(args.gradient_accumulation_steps)]
        num_items = trainer._get_num_items_in_batch(batches, args.device)
        trainer.current_gradient_accumulation_steps = len(batches)
        total = None
        for i, inputs in enumerate(batches):
            last = i == len(batches) - 1
            accelerator.gradient_state._set_sync_gradients(last)
            sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
            with sync:
                loss = trainer.training_step(model, inputs, num_items)
            total = loss if total is None else total + loss
        if args.max_grad_norm is not None and args.max_grad_norm > 0:
            trainer._clip_grad_norm(model)
        optimizer.step()
        skipped = accelerator.scaler is not None and optimizer.step_was_skipped
        model.zero_grad()
        if accelerator.num_processes > 1:
            total = accelerator.reduce(total, "mean")
        return StepOutput(total, skipped=bool(skipped))

    return step


def _sweep(callback: LRFinderCallback, trainer: Trainer, model: torch.nn.Module, dataloader: Any, snapshot: Any):
    """Run the configured strategy through the trainer; the caller owns `snapshot`."""
    args, accelerator = trainer.args, trainer.accelerator
    if args.fp16 and args.device.type == "cpu":
        logger.warning(
            "fp16 was asked for on a CPU, where accelerate runs fp32 without a gradient scaler; use bf16=True, or a GPU, to sweep in mixed precision."
        )
    optimizer, groups = trainer.optimizer, None
    if callback.groups is not None:
        from .groups import no_decay_names, regroup_optimizer

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
    accepts = trainer.model_accepts_loss_kwargs
    if trainer.compute_loss_func is None:
        trainer.model_accepts_loss_kwargs = False
    progress = trainer.is_world_process_zero() and not args.disable_tqdm
    try:
        kwargs = {"snapshot": snapshot, "progress": progress, "metadata": {"entry_point": "trainer"}}
        if strategy == "sequential":
            kwargs.update(method=callback.method, keep_head=False)
        return run_strategy(
            strategy,
            _step_fn(trainer, model, dataloader, optimizer),
            model,
            optimizer,
            callback.config,
            groups=groups,
            **kwargs,
        )
    finally:
        trainer.model_accepts_loss_kwargs = accepts
        if optimizer is not trainer.optimizer and optimizer in accelerator._optimizers:
            accelerator._optimizers.remove(optimizer)


class _TrainerEvents:
    """
    Every `TrainerCallback` event as a no-op, without importing transformers at import time (`import hf_lrfind` stays
    light): the Trainer's callback handler only looks the event methods up by name.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class LRFinderCallback(_TrainerEvents):
    """
    Runs a learning-rate range test when `trainer.train()` starts, through the Trainer's own training step.

    The sweep restores the model, optimizer, scheduler, gradient scaler and RNG states bit for bit. Then:

    - `then="stop"` (default): `train()` ends. The Trainer's loop cannot be left before its first micro-batch, so
      that one micro-batch still runs; nothing is logged, evaluated or saved for it, and everything, `state.global_step`
      included, is restored again when `train()` ends.
    - `then="train"`: training runs the full configured schedule from the original weights and optimizer state, with
      the suggestion (`method`) as the peak learning rate of the schedule (per group with `groups`).

    The sweep runs once per callback; the result is on `callback.result`, written by the main process to
    `lr_find.json` and `lr_find.png` under `args.output_dir` (or `save_to`; `None` writes nothing), and its
    suggestions are logged through `trainer.log` (so `report_to` trackers get them as `lr_find/<group>/<method>`).

    Args:
        then (`str`, *optional*, defaults to `"stop"`): `"stop"` or `"train"`.
        method (`str`, *optional*, defaults to `"valley"`): the suggestion used by `then="train"` and by the
            sequential strategy for the head.
        groups (`str` or `Mapping`, *optional*): `"auto"` or explicit groups (see [`hf_lrfind.detect_groups`]) for
            one curve and suggestion per group; by default the optimizer's param groups are swept together.
        strategy (`str`, *optional*): `"sequential"` (the default for `groups="auto"`) or `"joint"`.
        layer_decay (`float`, *optional*): per-layer groups at this ratio (joint strategy).
        ratios (`Mapping[str, float]`, *optional*): each group's lr ratio to the head in a joint sweep.
        loading_info (`dict`, *optional*): from `from_pretrained(..., output_loading_info=True)`: its missing keys
            are the head.
        save_to (`str`, *optional*, defaults to `"output_dir"`): folder of `lr_find.json`/`lr_find.png`.
        config ([`LRFinderConfig`], *optional*): the sweep settings; or pass them as keywords (`start_lr`, ...).

    Example:

    ```python
    >>> finder = LRFinderCallback(then="train", groups="auto")
    >>> Trainer(model=model, args=args, train_dataset=ds, callbacks=[finder]).train()
    >>> finder.result.suggestions
    ```
    """

    def __init__(
        self,
        *,
        then: Literal["stop", "train"] = "stop",
        method: str = "valley",
        groups: str | Mapping[str, str | Sequence[str]] | None = None,
        strategy: Literal["joint", "sequential"] | None = None,
        layer_decay: float | None = None,
        ratios: Mapping[str, float] | None = None,
        loading_info: Mapping[str, Any] | None = None,
        save_to: str | os.PathLike | None = "output_dir",
        config: LRFinderConfig | None = None,
        **config_kwargs: Any,
    ) -> None:
        if then not in THEN:
            raise ValueError(
                f"then ({then!r}) must be 'stop' (sweep and end train()) or 'train' (sweep, then train at the suggestion)."
            )
        if strategy not in (None, "joint", "sequential"):
            raise ValueError(f"strategy ({strategy!r}) must be 'joint' or 'sequential'.")
        if config is not None and config_kwargs:
            raise TypeError(f"Pass either config= or the options {sorted(config_kwargs)}, not both.")
        self.config = config if config is not None else LRFinderConfig(**config_kwargs)
        from .suggest import resolve_suggesters

        if method not in resolve_suggesters(self.config.suggest):
            raise ValueError(
                f"method ({method!r}) must be one of the suggestion rules the sweep runs ({self.config.suggest})."
            )
        self.then, self.method, self.groups, self.strategy = then, method, groups, strategy
        self.layer_decay, self.ratios, self.loading_info, self.save_to = layer_decay, ratios, loading_info, save_to
        self.result: LRFinderResult | None = None
        self._pending: tuple[StateSnapshot, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.result is not None:
            return
        trainer, frame = _calling_trainer()
        model, dataloader = frame["model"], kwargs.get("train_dataloader") or frame["train_dataloader"]
        scaler = trainer.accelerator.scaler
        snapshot = make_snapshot(model, trainer.optimizer, self.config, scheduler=trainer.lr_scheduler, scaler=scaler)
        try:
            self.result = _sweep(self, trainer, model, dataloader, _Keep(snapshot))
        except BaseException:
            snapshot.close()
            raise
        self._report(trainer)
        if self.then == "train":
            snapshot.close()
            apply_result(self.result, trainer, self.method)
        else:
            self._pending = (snapshot, state.global_step)
            control.should_training_stop = True

    def _silence(self, control):
        if self._pending is not None:
            control.should_log = control.should_save = control.should_evaluate = False

    def on_step_end(self, args, state, control, **kwargs):
        self._silence(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._silence(control)

    def on_train_end(self, args, state, control, **kwargs):
        if self._pending is not None:
            snapshot, global_step = self._pending
            self._pending = None
            snapshot.restore()
            snapshot.close()
            state.global_step = global_step

    def _report(self, trainer: Trainer) -> None:
        result = self.result
        trainer.log(
            {f"lr_find/{g}/{m}": v for g, s in result.suggestions.items() for m, v in s.items() if v is not None}
        )
        if not trainer.is_world_process_zero() or self.save_to is None:
            return
        folder = trainer.args.output_dir if self.save_to == "output_dir" else os.fspath(self.save_to)
        result.save(os.path.join(folder, "lr_find.json"))
        result.plot(os.path.join(folder, "lr_find.png"))
        logger.info(f"LR range test: suggestions {result.suggestions}; wrote {folder}/lr_find.json and lr_find.png")


def find_lr(trainer: Trainer, *, config: LRFinderConfig | None = None, **kwargs: Any) -> LRFinderResult:
    """
    Run a learning-rate range test through `trainer` and return its result; the trainer can then be trained as usual.

    Afterwards the model's parameters and buffers, the optimizer, scheduler, gradient scaler, RNG states and the
    trainer's `state` are what they were: `find_lr(trainer)` then `trainer.train()` trains exactly as `trainer.train()`
    alone. Takes the options of [`LRFinderCallback`] (but `then`) and of [`LRFinderConfig`].

    Example:

    ```python
    >>> result = find_lr(trainer, groups="auto")
    >>> result.apply(trainer)
    >>> trainer.train()
    ```
    """
    if "then" in kwargs:
        raise TypeError(
            "find_lr always stops after the sweep; use LRFinderCallback(then='train') to train right after it."
        )
    callback = LRFinderCallback(then="stop", config=config, **kwargs)
    saved = {
        name: getattr(trainer, name) for name in ("optimizer", "lr_scheduler", "model_wrapped", "state", "control")
    }
    eval_on_start = trainer.args.eval_on_start
    trainer.args.eval_on_start = False
    trainer.add_callback(callback)
    try:
        trainer.train()
    finally:
        trainer.remove_callback(callback)
        trainer.args.eval_on_start = eval_on_start
        for name, value in saved.items():
            setattr(trainer, name, value)
        for name in ("optimizer", "lr_scheduler"):
            setattr(trainer.callback_handler, name, saved[name])
    return callback.result


def apply_result(result: LRFinderResult, trainer: Trainer, method: str = "valley") -> None:
    """
    Make the trainer's next (or current) training use the suggestions as the peak learning rates of its schedule.

    One group: `args.learning_rate` (and, when the trainer already has an optimizer, its param groups and its
    scheduler's base rates). Several groups: a new optimizer of the Trainer's optimizer class over
    `result.param_groups(model)` (the Trainer's weight-decay split kept), whose scheduler the Trainer builds.
    """
    if len(result.groups) == 1:
        lr = result.suggestion(method)
        trainer.args.learning_rate = lr
        if trainer.optimizer is not None:
            for group in trainer.optimizer.param_groups:
                group["lr"] = group["initial_lr"] = lr
        scheduler = trainer.lr_scheduler
        if scheduler is not None and hasattr(scheduler, "lr_lambdas"):
            scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
            for group, fn in zip(trainer.optimizer.param_groups, scheduler.lr_lambdas):
                group["lr"] = lr * fn(scheduler.last_epoch)
        return
    from transformers import Trainer

    from .groups import no_decay_names

    model = trainer.accelerator.unwrap_model(trainer.model)
    param_groups = result.param_groups(
        model, method, weight_decay=trainer.args.weight_decay, no_decay=no_decay_names(model, trainer)
    )
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
    kwargs.pop("lr", None)
    optimizer = cls(param_groups, **kwargs)
    if trainer.is_in_train:  # called from the callback, after the Trainer prepared its own optimizer and scheduler
        optimizer = trainer.accelerator.prepare_optimizer(optimizer)
        trainer.optimizer, trainer.lr_scheduler = optimizer, None
        trainer.create_scheduler(num_training_steps=trainer.state.max_steps, optimizer=optimizer)
        trainer.callback_handler.optimizer, trainer.callback_handler.lr_scheduler = optimizer, trainer.lr_scheduler
    else:
        trainer.optimizer, trainer.lr_scheduler = optimizer, None
