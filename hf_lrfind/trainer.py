"""The `transformers.Trainer` adapter: `find_lr(trainer)`, `LRFinderCallback` and `apply_result`.

The sweep runs through the Trainer's own pieces, one optimizer step at a time, as `Trainer._run_epoch` does:
`get_batch_samples` (gradient accumulation), `training_step` (its `compute_loss`, mixed precision, backward through
the accelerator), `no_sync` on all micro-batches but the last, `_clip_grad_norm` and the optimizer step. The Trainer's
logging, evaluation, saving, progress bar and `state` are not touched while it runs.

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
import copy
import gc
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from .config import LRFinderConfig
from .engine import StepOutput, base_lr, make_snapshot, param_group_names
from .result import LRFinderResult
from .runner import _MODEL_ATTRS, _restore_attrs
from .state import StateSnapshot, rng_state, set_rng_state
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


def _is_plain(value: Any) -> bool:
    """Numbers, strings and containers of them: what a Trainer keeps count in (never a module, tensor or optimizer)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple, set)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return False


class _Accounting:
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


class _Keep:
    """Hands a snapshot to the engine without letting it close it: the callback restores it again later."""

    def __init__(self, snapshot: StateSnapshot) -> None:
        self.snapshot = snapshot

    def restore(self) -> None:
        self.snapshot.restore()

    def close(self) -> None:
        pass


class _Batches:
    """
    The Trainer's train dataloader as one endless iterator, epoch after epoch (`set_epoch` before each, as
    `Trainer._run_epoch` does). [`close`] ends an unfinished pass, so that accelerate's dataloader does not stay
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


def _clip_grad_norm(trainer: Trainer, model: torch.nn.Module) -> None:
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


def _step_fn(trainer: Trainer, model: torch.nn.Module, batches: _Batches, optimizer: Any):
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
            _clip_grad_norm(trainer, model)
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
    # A Trainer that says how its own loss is scaled (`loss_is_scaled_for_ga`) keeps its setting.
    accepts = trainer.model_accepts_loss_kwargs
    progress = trainer.is_world_process_zero() and not args.disable_tqdm
    batches = _Batches(dataloader)
    try:
        _check_loss_inputs(trainer, batches.peek())
        if trainer.compute_loss_func is None and getattr(trainer, "loss_is_scaled_for_ga", None) is None:
            trainer.model_accepts_loss_kwargs = False
        kwargs = {"snapshot": snapshot, "progress": progress, "metadata": {"entry_point": "trainer"}}
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

    - `then="stop"` (default): `train()` ends without training. The Trainer's loop looks at `should_training_stop`
      only after a micro-batch, so for that `train()` call an instance attribute shadows `trainer._run_epoch` with a
      no-op (removed at the first epoch or at `on_train_end`) and `eval_on_start` is off: no batch runs, nothing is
      logged, evaluated or saved but the Trainer's end-of-training metrics (`train_loss` 0.0 over 0 steps). Should a
      Trainer subclass run batches by another path, their logging, saving and evaluation are switched off and the
      snapshot, `state.global_step` included, is restored again in `on_train_end`.
    - `then="train"`: training runs the full configured schedule from the original weights and optimizer state, with
      the suggestion (`method`) as the peak learning rate of the schedule (per group with `groups`).

    The sweep runs once per callback; the result is on `callback.result`, written by the main process to
    `lr_find.json` and `lr_find.png` under `args.output_dir` (or `save_to`; `None` writes nothing), and its
    suggestions are logged through `trainer.log` (so `report_to` trackers get them as `lr_find/<group>/<method>`).

    Args:
        then (`str`, *optional*, defaults to `"stop"`): `"stop"` or `"train"`.
        method (`str`, *optional*): the suggestion used by `then="train"` and by the sequential strategy for the
            head; defaults to the first rule of `suggest` (`"trough"`).
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
        method: str | None = None,
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

        rules = resolve_suggesters(self.config.suggest)
        if method is None:
            method = next(iter(rules))
        elif method not in rules:
            raise ValueError(
                f"method ({method!r}) must be one of the suggestion rules the sweep runs ({self.config.suggest})."
            )
        self.then, self.method, self.groups, self.strategy = then, method, groups, strategy
        self.layer_decay, self.ratios, self.loading_info, self.save_to = layer_decay, ratios, loading_info, save_to
        self.result: LRFinderResult | None = None
        self._pending: dict[str, Any] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        trainer, frame = _calling_trainer()
        if self.result is not None:  # swept already: this train() trains
            _unshadow_epochs(trainer)
            return
        model, dataloader = frame["model"], kwargs.get("train_dataloader") or frame["train_dataloader"]
        scaler = trainer.accelerator.scaler
        snapshot = make_snapshot(model, trainer.optimizer, self.config, scheduler=trainer.lr_scheduler, scaler=scaler)
        accounting = _Accounting(trainer)
        try:
            self.result = _sweep(self, trainer, model, dataloader, _Keep(snapshot))
        except BaseException:
            snapshot.restore()  # also what a refusal before the sweep (no labels) drew from the RNGs and data
            snapshot.close()
            raise
        finally:
            accounting.restore()
        self._report(trainer)
        if self.then == "train":
            snapshot.close()
            apply_result(self.result, trainer, self.method)
            return
        self._pending = {
            "trainer": trainer,
            "snapshot": snapshot,
            "eval_on_start": args.eval_on_start,
            "stepped": False,
            "accounting": _Accounting(trainer),
        }
        args.eval_on_start = False
        control.should_training_stop = True
        # The loop runs one micro-batch of its first epoch before it looks at should_training_stop: skip the epoch.
        if callable(getattr(trainer, "_run_epoch", None)):
            trainer._run_epoch = _SkipEpoch(trainer)

    def _silence(self, control, stepped: bool = True):
        if self._pending is not None:
            self._pending["stepped"] |= stepped
            control.should_training_stop = True
            control.should_log = control.should_save = control.should_evaluate = False

    def on_step_begin(self, args, state, control, **kwargs):
        self._silence(control)

    def on_substep_end(self, args, state, control, **kwargs):
        self._silence(control)

    def on_step_end(self, args, state, control, **kwargs):
        self._silence(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._silence(control, stepped=False)

    def on_train_end(self, args, state, control, **kwargs):
        self._end_stop()

    def _end_stop(self) -> None:
        """Undo what stop mode set up; restore the snapshot again if a batch ran after all. Safe to call twice."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        trainer, snapshot = pending["trainer"], pending["snapshot"]
        try:
            _unshadow_epochs(trainer)
            trainer.args.eval_on_start = pending["eval_on_start"]
            if pending["stepped"]:  # a loop without _run_epoch (transformers < 5.3) ran a batch: undo it
                snapshot.restore()
                pending["accounting"].restore()
            else:
                set_rng_state(snapshot.rng)
        finally:
            snapshot.close()

    def _report(self, trainer: Trainer) -> None:
        result = self.result
        trainer.log(
            {f"lr_find/{g}/{m}": v for g, s in result.suggestions.items() for m, v in s.items() if v is not None}
        )
        if not trainer.is_world_process_zero():
            return
        if not trainer.args.disable_tqdm:  # where the Trainer shows its own metrics: a line under the progress bar
            from tqdm.auto import tqdm

            tqdm.write(_console_summary(result, self.method))
        if self.save_to is None:
            return
        folder = trainer.args.output_dir if self.save_to == "output_dir" else os.fspath(self.save_to)
        result.save(os.path.join(folder, "lr_find.json"))
        result.plot(os.path.join(folder, "lr_find.png"))
        logger.info(f"LR range test: suggestions {result.suggestions}; wrote {folder}/lr_find.json and lr_find.png")


def _console_summary(result: LRFinderResult, method: str) -> str:
    """One line per group: the suggestion used, the other rules, the cost, and any warning."""
    lines = []
    for group in result.groups:
        values = result.suggestions[group]
        others = ", ".join(f"{m} {v:.2e}" for m, v in values.items() if m != method and v is not None)
        chosen = "-" if values.get(method) is None else f"{values[method]:.2e}"
        lines.append(f"lr_find {group}: {method} {chosen} ({others})")
    lines.append(f"lr_find: {result.metadata['cost_steps']} optimizer steps; model, optimizer and RNG restored")
    lines += [f"lr_find warning: {message}" for message in result.metadata.get("warnings", [])]
    return "\n".join(lines)


class _SkipEpoch:
    """Stands in for `Trainer._run_epoch` after a stop-mode sweep, so that no batch runs; removes itself."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        _unshadow_epochs(self.trainer)


def _unshadow_epochs(trainer: Trainer) -> None:
    if isinstance(trainer.__dict__.get("_run_epoch"), _SkipEpoch):
        del trainer.__dict__["_run_epoch"]


# What `trainer.train()` changes on the accelerator: free_memory() and prepare().
_ACCELERATOR_ATTRS = ("_models", "_optimizers", "_schedulers", "_dataloaders", "_custom_objects", "step")


class _AsBefore:
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
        _restore_attrs(trainer.model, self.model_attrs, _MODEL_ATTRS)
        for module, training in self.training.items():
            module.training = training
        if self.groups is not None:  # the scheduler adds initial_lr; the sweep's restore put back its own lrs
            for group, saved in zip(trainer.optimizer.param_groups, self.groups):
                for key in [k for k in group if k != "params" and k not in saved]:
                    del group[key]
                group.update(saved)
        set_rng_state(self.rng)


def find_lr(trainer: Trainer, *, config: LRFinderConfig | None = None, **kwargs: Any) -> LRFinderResult:
    """
    Run a learning-rate range test through `trainer` and return its result; the trainer can then be trained as usual.

    It runs `trainer.train()` with a stop-mode [`LRFinderCallback`] as its only callback: trackers (`report_to`),
    the progress bar and your callbacks see no training start or end, and `eval_on_start` is off. Afterwards the
    model's parameters, buffers, train/eval modes and `forward` (accelerate's mixed-precision wrapper is removed), the
    optimizer (a Trainer-made one is dropped: the next `train()` makes a fresh one), scheduler, gradient scaler, RNG
    states, `trainer.state`, `trainer.control`, the trainer's other attributes and the accelerator's lists of
    prepared objects are what they were: `find_lr(trainer)` then `trainer.train()` trains exactly as
    `trainer.train()` alone. The suggestions are then sent to the callbacks' `on_log` (so trackers get them as
    `lr_find/<group>/<method>`; `state.log_history` is left as it was). Under DDP, wrapping the model broadcasts the
    main process's weights, as `train()` does.

    Takes the options of [`LRFinderCallback`] (but `then`) and of [`LRFinderConfig`].

    Raises:
        ValueError: bad options, or batches from which the model computes no loss (no labels); nothing is changed.

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
    if trainer.is_in_train:
        raise RuntimeError(
            "find_lr cannot run while the trainer is training; add LRFinderCallback(then='train') to its callbacks instead."
        )
    callback = LRFinderCallback(then="stop", config=config, **kwargs)
    before = _AsBefore(trainer)
    trainer.callback_handler.callbacks = [callback]
    trainer.args.eval_on_start = False
    try:
        trainer.train()
    finally:
        callback._end_stop()  # if train() failed before on_train_end
        wrapped = trainer.model_wrapped is not trainer.model
        before.restore()
        if wrapped:  # free the DDP wrapper made for the sweep now, with its gradient hooks
            gc.collect()
    result = callback.result
    if result is None:
        raise RuntimeError("trainer.train() never called its callbacks' on_train_begin, so no sweep ran.")
    logs = {f"lr_find/{g}/{m}": v for g, s in result.suggestions.items() for m, v in s.items() if v is not None}
    trainer.control = trainer.callback_handler.on_log(trainer.args, trainer.state, trainer.control, logs)
    return result


def _set_peak_lrs(optimizer: Any, scheduler: Any, names: list[str], lrs: Mapping[str, float]) -> None:
    """
    Make `lrs` (by group name) the peak of the schedule: each group's `initial_lr` and the scheduler's `base_lrs`, and
    its current `lr` at the schedule's current point (`base * lambda(step)` for a LambdaLR, the Trainer's kind).
    """
    from torch.optim.lr_scheduler import LambdaLR

    groups = optimizer.param_groups
    base_lrs = getattr(scheduler, "base_lrs", None)
    for i, (group, name) in enumerate(zip(groups, names)):
        new, old = lrs[name], float(base_lr(group))
        if "initial_lr" in group:
            group["initial_lr"] = new
        if base_lrs is not None and len(base_lrs) == len(groups):
            base_lrs[i] = new
        if isinstance(scheduler, LambdaLR):
            group["lr"] = new * scheduler.lr_lambdas[i](scheduler.last_epoch)
        elif scheduler is not None and old > 0:  # keep the schedule's current factor
            group["lr"] = group["lr"] * (new / old)
        else:  # no scheduler yet: the one train() makes starts from lr
            group["lr"] = new
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in groups]


def apply_result(result: LRFinderResult, trainer: Trainer, method: str | None = None) -> None:
    """
    Make the trainer's next (or current) training use the suggestions as the peak learning rates of its schedule.

    One group: `args.learning_rate` (and, when the trainer already has an optimizer, its param groups and its
    scheduler's base rates). Several groups that are the trainer's optimizer's own groups (by `"name"`, or by their
    lrs, as the sweep named them): each gets its suggestion as its peak lr (`initial_lr`, the scheduler's base lr), in
    place. Other groups (`groups=` sweeps): a new optimizer of the Trainer's optimizer class over
    `result.param_groups(model)` (the Trainer's weight-decay split kept), whose scheduler the Trainer builds. With
    several groups `args.learning_rate` reads the first group's peak (the head's, for `groups="auto"`), the rate the
    Trainer logs as `learning_rate`; each group's own peak is in `trainer.optimizer.param_groups`.
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
        if hasattr(scheduler, "_last_lr"):  # what the Trainer logs as learning_rate
            scheduler._last_lr = [group["lr"] for group in trainer.optimizer.param_groups]
        return
    optimizer = trainer.optimizer
    names = param_group_names(optimizer.param_groups) if optimizer is not None else []
    if set(names) == set(result.groups):  # a sweep of this optimizer's own groups: set them where they are
        lrs = {group: result.suggestion(method, group) for group in result.groups}
        _set_peak_lrs(optimizer, trainer.lr_scheduler, names, lrs)
        trainer.args.learning_rate = lrs[names[0]]
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
    # What a user (and the Trainer's own logs of `learning_rate`) reads back: the first group's peak, as above.
    trainer.args.learning_rate = param_groups[0]["lr"]
    if trainer.is_in_train:  # called from the callback, after the Trainer prepared its own optimizer and scheduler
        optimizer = trainer.accelerator.prepare_optimizer(optimizer)
        trainer.optimizer, trainer.lr_scheduler = optimizer, None
        trainer.create_scheduler(num_training_steps=trainer.state.max_steps, optimizer=optimizer)
        trainer.callback_handler.optimizer, trainer.callback_handler.lr_scheduler = optimizer, trainer.lr_scheduler
    else:
        trainer.optimizer, trainer.lr_scheduler = optimizer, None
