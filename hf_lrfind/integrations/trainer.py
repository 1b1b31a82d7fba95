"""The `transformers.Trainer` adapter: `find_lr(trainer)`, `LRFinderCallback` and `apply_result`.

The sweep runs through the Trainer's own pieces ([`trainer_sweep`]); the Trainer's logging, evaluation, saving,
progress bar and `state` are not touched while it runs. What reaches into the Trainer's private loop is in
[`trainer_internals`].
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..core.config import LRFinderConfig
from ..core.engine import make_snapshot
from ..core.peak import peak_lrs_for, set_peak_lrs
from ..core.result import LRFinderResult, provide
from ..core.schedule import base_lr, param_group_names
from ..core.state import StateSnapshot, set_rng_state
from ..core.strategies import STRATEGIES, check_confirmable
from .accelerate_state import DataOrder
from .trainer_internals import Accounting, AsBefore, calling_trainer, let_batches_run, stop_before_a_batch
from .trainer_sweep import run_trainer_sweep

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger(__name__)

THEN = ("stop", "train")


class _Keep:
    """Hands a snapshot to the engine without letting it close it: the callback restores it again later."""

    def __init__(self, snapshot: StateSnapshot) -> None:
        self.snapshot = snapshot

    def restore(self) -> None:
        self.snapshot.restore()

    def close(self) -> None:
        pass


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

    - `then="train"` (default): training runs the full configured schedule from the original weights and optimizer
      state, with the suggestion (`method`) as the peak learning rate of the schedule (per group with `groups`). The
      Trainer's `train_runtime` and rates per second cover the training alone; the sweep's own time, optimizer steps
      and tokens are logged as `lr_find/runtime`, `lr_find/optimizer_steps` and `lr_find/tokens`.
    - `then="stop"`: `train()` ends without training (it returns `training_loss` nan, its metrics hold no
      `train_loss` or speed entry, and a warning says so). The Trainer's loop looks at `should_training_stop`
      only after a micro-batch, so for that `train()` call an instance attribute stands in for
      `trainer.get_batch_samples` and gives the loop no batch (it removes itself; transformers' warning about that
      empty epoch is dropped, once), and `eval_on_start` is off: no batch runs, nothing is
      logged, evaluated or saved. Should a Trainer subclass fetch batches by another path, their logging, saving and
      evaluation are switched off, and the snapshot and the trainer's counters and `state` are restored again in
      `on_train_end`. `find_lr(trainer)` is this mode with the trainer left exactly as it was.

    The sweep runs once per callback; the result is on `callback.result`, written by the main process to
    `lr_find.json` and `lr_find.png` under `args.output_dir` (or `save_to`; `None` writes nothing), and its
    suggestions are logged through `trainer.log` (so `report_to` trackers get them as `lr_find/<group>/<method>`).

    Args:
        then (`str`, *optional*, defaults to `"train"`): `"train"` or `"stop"`.
        method (`str`, *optional*): the suggestion used by `then="train"` and by the sequential strategy for the
            head; defaults to each group's default rule (`"trough"`; `"probe"` for the head and `"pretrained"` for
            the body under the split strategy, the default of `groups="auto"`).
        groups (`str` or `Mapping`, *optional*): `"auto"` or explicit groups (see [`hf_lrfind.detect_groups`]) for
            one curve and suggestion per group; by default the optimizer's param groups are swept together.
        strategy (`str`, *optional*): `"split"` (the default for `groups="auto"`), `"sequential"` or `"joint"`.
        layer_decay (`float`, *optional*): per-layer groups at this ratio (joint strategy).
        ratios (`Mapping[str, float]`, *optional*): each group's lr ratio to the head in a joint sweep.
        loading_info (`dict`, *optional*): from `from_pretrained(..., output_loading_info=True)`: its missing keys
            are the head.
        save_to (`str`, *optional*, defaults to `"output_dir"`): folder of `lr_find.json`/`lr_find.png`.
        config ([`LRFinderConfig`], *optional*): the sweep settings; or pass them as keywords (`start_lr`, ...).

    Example:

    ```python
    >>> finder = LRFinderCallback(groups="auto")  # sweep, then train at the suggestions
    >>> Trainer(model=model, args=args, train_dataset=ds, callbacks=[finder]).train()
    >>> finder.result.suggestions
    ```
    """

    def __init__(
        self,
        *,
        then: Literal["train", "stop"] = "train",
        method: str | None = None,
        groups: str | Mapping[str, str | Sequence[str]] | None = None,
        strategy: Literal["joint", "split", "sequential"] | None = None,
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
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"strategy ({strategy!r}) must be one of {STRATEGIES}.")
        if config is not None and config_kwargs:
            raise TypeError(f"Pass either config= or the options {sorted(config_kwargs)}, not both.")
        self.config = config if config is not None else LRFinderConfig(**config_kwargs)
        from ..core.suggest import resolve_suggesters

        rules = resolve_suggesters(self.config.suggest)
        if self.config.confirm_steps and method not in (None, "confirmed"):
            raise ValueError(
                f"confirm_steps confirms the default rule's suggestion, and method={method!r} would train at its own unconfirmed one: leave method unset (or 'confirmed'), or put {method!r} first in suggest to confirm it."
            )
        check_confirmable(self.config, strategy)
        if method is not None and method not in rules and not (method == "confirmed" and self.config.confirm_steps):
            raise ValueError(
                f"method ({method!r}) must be one of the suggestion rules the sweep runs ({self.config.suggest})."
            )
        self.then, self.method, self.groups, self.strategy = then, method, groups, strategy
        self.layer_decay, self.ratios, self.loading_info, self.save_to = layer_decay, ratios, loading_info, save_to
        self.result: LRFinderResult | None = None
        self._pending: dict[str, Any] | None = None
        self._sweep_seconds: float | None = None  # how long on_train_begin took (sweep, restore, apply)
        self._order: tuple[Any, list[Any]] | None = None
        self._explain_stop = True  # find_lr's own stop needs no word

    def on_train_begin(self, args, state, control, **kwargs):
        started = time.perf_counter()
        trainer, frame = calling_trainer()
        self._end_stop()  # what a stop-mode train() of this callback that failed before on_train_end left
        let_batches_run(trainer)  # ... or of another callback
        self._put_back_order()  # ... or a train() that failed after the sweep
        self._sweep_seconds = None
        if self.result is not None:  # swept already: this train() trains
            return
        model, dataloader = frame["model"], kwargs.get("train_dataloader") or frame["train_dataloader"]
        scaler = trainer.accelerator.scaler
        snapshot = make_snapshot(model, trainer.optimizer, self.config, scheduler=trainer.lr_scheduler, scaler=scaler)
        accounting, order = Accounting(trainer), DataOrder(dataloader)
        try:
            self.result = run_trainer_sweep(self, trainer, model, dataloader, _Keep(snapshot))
        except BaseException:
            snapshot.restore()  # also what a refusal before the sweep (no labels) drew from the RNGs and data
            snapshot.close()
            raise
        finally:
            accounting.restore()
            order.restore()  # the batches training draws next are those it would have drawn without the sweep
        if self.then == "train":
            snapshot.close()
            apply_result(self.result, trainer, self.method)
            # Listen first to what the Trainer logs, so that trackers get its speed metrics over training alone (in
            # stop mode the order stays: the Trainer's flow callback must not undo what _silence switches off).
            handler = trainer.callback_handler
            self._order = (handler, list(handler.callbacks))
            handler.callbacks = [self, *(c for c in handler.callbacks if c is not self)]
            self._sweep_seconds = time.perf_counter() - started
            self._report(trainer)
            self._sweep_seconds = time.perf_counter() - started  # writing the plot included
            return
        self._sweep_seconds = time.perf_counter() - started
        self._report(trainer)
        if self._explain_stop:
            logger.warning(
                "LRFinderCallback(then='stop'): the range test ran and this train() call ends without training; the model, optimizer and RNG are as they were. Use then='train' (the default) to train at the suggestion."
            )
        trainer._total_loss_scalar = float("nan")  # train() returns training_loss nan, not 0.0: nothing was trained
        self._pending = {
            "trainer": trainer,
            "snapshot": snapshot,
            "eval_on_start": args.eval_on_start,
            "stepped": False,
            "accounting": Accounting(trainer),
        }
        args.eval_on_start = False
        control.should_training_stop = True
        stop_before_a_batch(trainer)

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

    def on_log(self, args, state, control, logs=None, **kwargs):
        """The Trainer's speed metrics over training alone (the sweep's time taken out); after a stop-mode sweep, no
        `train_loss` or speed metrics (in `train()`'s metrics and `log_history`; trackers listed before this callback
        see `train_loss` nan)."""
        if not logs or "train_runtime" not in logs or self._sweep_seconds is None:
            return
        last = state.log_history[-1] if state.log_history else {}
        entry = last if last.get("train_runtime") == logs["train_runtime"] else {}
        for record in (logs, entry):
            if self._pending is not None:
                for key in [k for k in record if k in TRAINING_METRICS]:
                    del record[key]
            else:
                training_only(record, self._sweep_seconds)

    def on_train_end(self, args, state, control, **kwargs):
        self._end_stop()
        self._sweep_seconds = None
        self._put_back_order()

    def _put_back_order(self) -> None:
        """The user's order of callbacks, as it was before the sweep (any added since go last)."""
        if self._order is not None:
            (handler, order), self._order = self._order, None
            now = list(handler.callbacks)
            handler.callbacks = [c for c in order if c in now] + [c for c in now if c not in order]

    def _end_stop(self) -> None:
        """Undo what stop mode set up; restore the snapshot again if a batch ran after all. Safe to call twice."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        trainer, snapshot = pending["trainer"], pending["snapshot"]
        try:
            let_batches_run(trainer)
            trainer.args.eval_on_start = pending["eval_on_start"]
            if pending["stepped"]:  # a loop that does not fetch through get_batch_samples ran a batch: undo it
                snapshot.restore()
                pending["accounting"].restore()
            else:
                set_rng_state(snapshot.rng)
        finally:
            snapshot.close()

    def _report(self, trainer: Trainer) -> None:
        result = self.result
        trainer.log(_tracker_logs(result, self._sweep_seconds))
        if not trainer.is_world_process_zero():
            return
        if not trainer.args.disable_tqdm:  # where the Trainer shows its own metrics: a line under the progress bar
            from tqdm.auto import tqdm

            tqdm.write(_console_summary(result, self.method, trainer if self.then == "train" else None))
        if self.save_to is None:
            return
        folder = trainer.args.output_dir if self.save_to == "output_dir" else os.fspath(self.save_to)
        result.save(os.path.join(folder, "lr_find.json"))
        result.plot(os.path.join(folder, "lr_find.png"), method=self.method)
        logger.info(f"LR range test: wrote {folder}/lr_find.json and lr_find.png")


# What the Trainer logs about a training run (`speed_metrics("train", ...)` and `_finalize_training`).
SPEED_RATES = ("train_samples_per_second", "train_steps_per_second", "train_tokens_per_second")
TRAINING_METRICS = ("train_runtime", *SPEED_RATES, "train_loss", "total_flos")


def training_only(logs: dict[str, Any], sweep_seconds: float) -> None:
    """
    Take a sweep's seconds out of the Trainer's speed metrics, in place: `train_runtime` and the rates per second
    (rescaled to the shorter runtime, rounded as `transformers.trainer_utils.speed_metrics` rounds them).
    """
    runtime = logs.get("train_runtime")
    if runtime is None or sweep_seconds <= 0:
        return
    trained = max(runtime - sweep_seconds, 1e-4)
    for key in SPEED_RATES:
        if key in logs:
            logs[key] = round(logs[key] * runtime / trained, 3)
    logs["train_runtime"] = round(trained, 4)


def _tracker_logs(result: LRFinderResult, seconds: float | None = None) -> dict[str, float]:
    """The suggestions as tracker metrics, `lr_find/<group>/<method>`, and what the sweep cost: `lr_find/runtime`
    (seconds, snapshot and restore included), `lr_find/optimizer_steps`, `lr_find/tokens` (when counted)."""
    logs = {f"lr_find/{g}/{m}": v for g, s in result.suggestions.items() for m, v in s.items() if v is not None}
    if seconds is not None:
        logs["lr_find/runtime"] = round(seconds, 4)
    logs["lr_find/optimizer_steps"] = result.metadata["cost_steps"]
    if result.metadata.get("tokens_seen") is not None:
        logs["lr_find/tokens"] = result.metadata["tokens_seen"]
    return logs


def _console_summary(result: LRFinderResult, method: str | None, training: Trainer | None = None) -> str:
    """The result's summary (the warnings are logged above it); with the `training` trainer, the peak rates its
    training now uses."""
    lines = [result.summary(method)]
    if training is not None:
        groups = training.optimizer.param_groups
        peaks = dict(zip(param_group_names(groups), (base_lr(g) for g in groups)))
        if len(peaks) > 1:
            rates = "s " + ", ".join(f"{name} {lr:.2e}" for name, lr in peaks.items())
        else:
            rates = f" {next(iter(peaks.values())):.2e}"
        rules = method or ", ".join(dict.fromkeys(result.default_rule(g) for g in result.groups))
        lines.append(f"lr_find: training now, at peak learning rate{rates} ({rules})")
    return "\n".join(lines)


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
    dataset = trainer.train_dataset
    if dataset is None or (hasattr(dataset, "__len__") and len(dataset) == 0):
        which = "no train_dataset" if dataset is None else "an empty train_dataset"
        raise ValueError(f"The trainer has {which}: give Trainer(train_dataset=...) at least one example to sweep on.")
    callback = LRFinderCallback(then="stop", config=config, **kwargs)
    callback._explain_stop = False
    before = AsBefore(trainer)
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
    logs = _tracker_logs(result)
    trainer.control = trainer.callback_handler.on_log(trainer.args, trainer.state, trainer.control, logs)
    return result


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
    optimizer = trainer.optimizer
    names = param_group_names(optimizer.param_groups) if optimizer is not None else []
    if len(result.groups) == 1 or (names and set(names) == set(result.groups)):
        # One rate, or a sweep of this optimizer's own groups: set them where they are.
        lrs = peak_lrs_for(result, names, method) if names else {}
        if optimizer is not None:
            set_peak_lrs(optimizer, trainer.lr_scheduler, names, lrs)
        trainer.args.learning_rate = lrs[names[0]] if names else result.suggestion(method)
        return
    from transformers import Trainer

    from ..groups.build import no_decay_names

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


provide("apply", apply_result)
