"""The range-test engine: set each step's learning rates, run one training step, record, stop, restore.

Framework-neutral: it knows an optimizer and a callable that runs one optimizer step. The Trainer adapter and the
accelerate runner provide that callable; nothing here imports transformers or accelerate.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .config import LRFinderConfig
from .evidence import check_sweepable, evidence_for, warning_for
from .recorder import LossRecorder, debiased_ema
from .result import LRFinderResult
from .schedule import base_lr, group_bounds, lr_at, param_group_names
from .state import StateSnapshot, rng_state, set_rng_state
from .suggest import STOP_REASONS, curve_warnings, prepare_curve, suggest_all

if TYPE_CHECKING:
    from .confirm import Replay

logger = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """
    What one optimizer step of a sweep returns to the engine.

    Args:
        loss (`torch.Tensor`): 0-d mean loss of the step, detached, already reduced across processes. It may stay on
            the accelerator: the engine reads losses back only every `check_every` steps.
        skipped (`bool`, *optional*, defaults to `False`): the gradient scaler skipped the optimizer step (fp16
            inf/NaN gradients); the step does not count and the same learning rate is tried again.
        num_tokens (`int` or `torch.Tensor`, *optional*): tokens the step consumed, if known.
    """

    loss: torch.Tensor
    skipped: bool = False
    num_tokens: int | torch.Tensor | None = None


StepFn = Callable[[], StepOutput]


@dataclass
class Curve:
    """The raw record of one sweep: applied lrs per named group, the losses, and why it stopped."""

    lrs: dict[str, list[float]]
    losses: list[float]
    smoothed: list[float]
    stop_reason: str
    skipped_steps: int = 0
    num_tokens: int | None = None
    wall_time: float = 0.0
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    sweeps: list[list[float]] = field(default_factory=list)  # each sweep's raw losses, when several were averaged
    sweep_stops: list[str] = field(default_factory=list)  # and why each stopped
    executed: int = 0  # training steps run (skipped ones and those past the stopping point included), all sweeps

    @property
    def steps_run(self) -> int:
        """Points recorded (all sweeps)."""
        return sum(len(s) for s in self.sweeps) if self.sweeps else len(self.losses)


# What the counts in `result.metadata` count (also written to lr_find.json).
GLOSSARY = {
    "num_steps": "steps each sweep was asked to run",
    "steps_run": "points recorded, over all sweeps: a sweep that stops runs on to its next loss check, and those steps are not recorded",
    "cost_steps": "optimizer steps that ran, over all sweeps and phases: the recorded ones, those run past a stop, fp16 steps the scaler skipped, the head warm-up of the sequential strategy, and the confirmation trials",
    "skipped_steps": "fp16 steps the gradient scaler skipped (tried again at the same rate)",
    "tokens_seen": "input tokens of every step that ran, over all processes",
}


def mean_of_sweeps(sweeps: Sequence[Sequence[float]]) -> list[float]:
    """
    The step-by-step mean of several sweeps' raw losses, as long as the median sweep (for 3 sweeps: the middle one):
    each step is averaged over the sweeps that recorded it, so one sweep that stopped early does not cut the others.
    A non-finite loss makes its step's mean non-finite, and the prepared curve is cut there, as for one sweep.
    """
    n = sorted(len(s) for s in sweeps)[(len(sweeps) - 1) // 2]
    means = []
    for i in range(n):
        values = [s[i] for s in sweeps if i < len(s)]
        means.append(sum(values) / len(values))
    return means


def average_sweeps(curves: Sequence[Curve], beta: float) -> Curve:
    """
    One curve from several sweeps of the same schedule: the raw losses averaged step by step (see
    [`mean_of_sweeps`]), smoothed again with the debiased EMA. Its stop reason is the median sweep's; skipped steps,
    tokens and time add up.
    """
    if len(curves) == 1:
        return curves[0]
    losses = mean_of_sweeps([c.losses for c in curves])
    n = len(losses)
    by_length = sorted(curves, key=lambda c: len(c.losses))
    tokens = [c.num_tokens for c in curves if c.num_tokens is not None]
    return Curve(
        lrs={g: v[:n] for g, v in by_length[-1].lrs.items()},
        losses=losses,
        smoothed=debiased_ema(losses, beta),
        stop_reason=by_length[(len(curves) - 1) // 2].stop_reason,
        skipped_steps=sum(c.skipped_steps for c in curves),
        num_tokens=sum(tokens) if tokens else None,
        wall_time=sum(c.wall_time for c in curves),
        bounds=curves[0].bounds,
        sweeps=[list(c.losses) for c in curves],
        sweep_stops=[c.stop_reason for c in curves],
        executed=sum(c.executed for c in curves),
    )


def sweep(
    step_fn: StepFn,
    optimizer: torch.optim.Optimizer,
    config: LRFinderConfig,
    *,
    progress: bool = True,
    description: str = "LR range test",
    bounds: list[tuple[float, float]] | None = None,
    rates: Callable[[int], list[float]] | None = None,
) -> Curve:
    """
    Run the sweep: for each step set every param group's lr from the schedule, call `step_fn`, record the loss, and
    stop at `config.num_steps`, on divergence, on a non-finite loss or after too many skipped steps. Does not restore
    anything: see [`range_test`].

    Group ratios present in the optimizer are kept unless `config` gives per-group bounds. `bounds`, one
    `(start, end)` per param group, overrides both (a group with `start == end` is held at that rate; strategies use
    this to hold a group still at 0). `rates(step)`, one lr per param group, replaces the schedule (the
    confirmation's trials use it).
    """
    groups = optimizer.param_groups
    names = param_group_names(groups)
    if bounds is None:
        bounds = group_bounds([base_lr(g) for g in groups], config.start_lr, config.end_lr)
    shown = next((i for i, (s, e) in enumerate(bounds) if s != e), 0)  # the progress bar shows a swept group's lr
    recorder = LossRecorder(config.beta, config.diverge_threshold, config.check_every)
    applied: list[list[float]] = []
    skipped, tokens = 0, None
    stop_reason = "num_steps"
    from tqdm.auto import tqdm

    bar = tqdm(total=config.num_steps, desc=description, disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        step = 0
        while step < config.num_steps:
            lrs = rates(step) if rates else [lr_at(step, config.num_steps, s, e, config.mode) for s, e in bounds]
            for group, lr in zip(groups, lrs):
                group["lr"] = lr
            out = step_fn()
            if out.num_tokens is not None:
                tokens = out.num_tokens if tokens is None else tokens + out.num_tokens
            if out.skipped:
                skipped += 1
                if skipped > config.max_skipped_steps:
                    stop_reason = "too_many_skipped_steps"
                    logger.warning(
                        f"The gradient scaler skipped {skipped} steps (inf/NaN gradients in fp16); stopping the sweep at step {step}. Use bf16, or a lower end_lr."
                    )
                    break
                continue
            applied.append(lrs)
            step += 1
            bar.update(1)
            if recorder.append(out.loss):
                break
            if step % config.check_every == 0:  # the recorder has just read the losses back
                bar.set_postfix_str(f"lr={lrs[shown]:.2e}, smoothed loss={recorder.smoothed[-1]:.4g}", refresh=False)
        recorder.check()
        if recorder.stop_reason is not None:  # the bar counts the steps recorded, not those run past the stop
            stop_reason = recorder.stop_reason
            bar.n = len(recorder.losses)
            bar.set_postfix_str(f"{STOP_REASONS[stop_reason]} at step {bar.n}", refresh=False)
        elif stop_reason != "num_steps":
            bar.set_postfix_str(STOP_REASONS[stop_reason], refresh=False)
    finally:
        bar.close()
    n = len(recorder.losses)
    by_name: dict[str, list[float]] = {}
    for i, name in enumerate(names):
        by_name.setdefault(name, [row[i] for row in applied[:n]])
    if isinstance(tokens, torch.Tensor):
        tokens = int(tokens.item())
    skips = f"; the gradient scaler skipped {skipped}" if skipped else ""
    logger.info(f"{description}: {n} of {config.num_steps} steps recorded, {STOP_REASONS[stop_reason]}{skips}.")
    return Curve(
        lrs=by_name,
        losses=recorder.losses,
        smoothed=recorder.smoothed,
        stop_reason=stop_reason,
        skipped_steps=skipped,
        num_tokens=tokens,
        wall_time=time.perf_counter() - start,
        bounds={name: bounds[names.index(name)] for name in by_name},
        executed=len(applied) + skipped,
    )


def _versions() -> dict[str, str]:
    from .._version import __version__

    versions = {"hf_lrfind": __version__, "torch": torch.__version__, "python": sys.version.split()[0]}
    for module in ("transformers", "accelerate"):  # only report what the caller already imported
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "unknown")
    return versions


def build_result(
    curves: Mapping[str, Curve],
    config: LRFinderConfig,
    metadata: Mapping[str, Any] | None = None,
    *,
    log_warnings: bool = True,
    optimizer: Any = None,
) -> LRFinderResult:
    """
    Turn sweeps into a result. `curves` maps each group name to the curve that group is read from (a single sweep
    gives the same curve for every group; a sequential strategy gives each group its own). What makes a curve
    untrustworthy goes to `metadata["warnings"]`, and to the log unless `log_warnings` is off (off the main process);
    so does the benchmark's evidence for `optimizer`'s family where it was not measured or the default rule missed
    there (see [`~hf_lrfind.core.evidence.optimizer_warning`]).
    """
    lrs, losses, smoothed, suggestions, stop = {}, {}, {}, {}, {}
    warnings: list[str] = []
    checked: set[int] = set()
    unique = list({id(c): c for c in curves.values()}.values())
    skips = {"num_steps": config.num_steps, "skip_start": config.skip_start, "skip_end": config.skip_end}
    for group, curve in curves.items():
        lrs[group] = list(curve.lrs[group])
        losses[group], smoothed[group] = list(curve.losses), list(curve.smoothed)
        stop[group] = curve.stop_reason
        prepared = prepare_curve(lrs[group], smoothed[group], **skips)
        raw = prepare_curve(lrs[group], losses[group], **skips)
        suggestions[group] = suggest_all(*prepared, config.suggest, raw=raw)
        if id(curve) not in checked:  # a joint sweep's groups share one curve: judge it once
            checked.add(id(curve))
            named = group if len(unique) > 1 else None
            for message in curve_warnings(*raw, stop_reason=curve.stop_reason, group=named):
                if log_warnings:
                    logger.warning(message)
                warnings.append(message)
    optimizer_name, optimizer_note = None, None
    if optimizer is not None:
        optimizer_name, family = evidence_for(optimizer)
        optimizer_note = warning_for(optimizer_name, family)
        if optimizer_note is not None:
            if log_warnings:
                logger.warning(optimizer_note)
            warnings.append(optimizer_note)
    tokens = [c.num_tokens for c in unique if c.num_tokens is not None]
    meta = {
        "num_steps": config.num_steps,
        "num_sweeps": max(len(c.sweeps) or 1 for c in unique),
        "steps_run": sum(c.steps_run for c in unique),
        "skipped_steps": sum(c.skipped_steps for c in unique),
        "tokens_seen": sum(tokens) if tokens else None,
        "wall_time_s": sum(c.wall_time for c in unique),
        "mode": config.mode,
        "start_lr": {g: c.bounds[g][0] for g, c in curves.items()},
        "end_lr": {g: c.bounds[g][1] for g, c in curves.items()},
        "beta": config.beta,
        "skip_start": config.num_steps // 10 if config.skip_start is None else config.skip_start,
        "skip_end": config.skip_end,
        "versions": _versions(),
        "warnings": warnings,
    }
    if optimizer is not None:
        meta["optimizer"] = optimizer_name
        meta["optimizer_warning"] = optimizer_note
    meta.update(metadata or {})
    meta["cost_steps"] = sum(c.executed for c in unique) + meta.get("warmup_steps", 0)
    meta["glossary"] = GLOSSARY
    if any(c.sweeps for c in unique):  # once per curve: the first group that reads it
        first = {id(c): g for g, c in reversed(curves.items())}
        meta["sweep_losses"] = {g: c.sweeps for g, c in curves.items() if c.sweeps and first[id(c)] == g}
        meta["sweep_stop_reasons"] = {g: c.sweep_stops for g, c in curves.items() if c.sweeps and first[id(c)] == g}
    return LRFinderResult(
        lrs=lrs, losses=losses, smoothed_losses=smoothed, suggestions=suggestions, stop_reason=stop, metadata=meta
    )


def make_snapshot(
    model: torch.nn.Module, optimizer: Any, config: LRFinderConfig, *, scheduler: Any = None, scaler: Any = None
) -> StateSnapshot:
    """The default snapshot of a sweep, where `config.snapshot` and `config.snapshot_dir` say."""
    return StateSnapshot(
        model, optimizer, scheduler=scheduler, scaler=scaler, location=config.snapshot, directory=config.snapshot_dir
    )


def restart(snapshot: Any) -> None:
    """Back to the state before the sweep for the next one: the same start, the next batches, and random draws
    (dropout, shuffling) that go on rather than repeat."""
    drawn = rng_state()
    snapshot.restore()
    set_rng_state(drawn)


def range_test(
    step_fn: StepFn,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: LRFinderConfig,
    *,
    scheduler: Any = None,
    scaler: Any = None,
    snapshot: Any = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
    log_warnings: bool = True,
    replay: Replay | None = None,
) -> LRFinderResult:
    """
    Snapshot the state, sweep, and restore it (always: also on exceptions and KeyboardInterrupt), then suggest; with
    `config.confirm_steps`, confirm the suggestion with short trainings (see [`~core.confirm.confirm_suggestion`]).

    Args:
        step_fn (`Callable[[], StepOutput]`): runs one optimizer step (forward, backward, step, zero_grad).
        model (`torch.nn.Module`): the model the step trains; restored afterwards.
        optimizer (`torch.optim.Optimizer`): its optimizer; its param groups get the sweep's lrs.
        config ([`LRFinderConfig`]): the sweep's settings.
        scheduler, scaler (*optional*): an LR scheduler and a gradient scaler to restore as well.
        snapshot (*optional*): an object with `restore()` and `close()` replacing the default [`StateSnapshot`]
            (the accelerate runner passes one that saves sharded FSDP/DeepSpeed state through accelerate).
        progress (`bool`, *optional*, defaults to `True`): show a progress bar (pass `False` off the main process).
        metadata (`Mapping`, *optional*): extra entries for `result.metadata`.
        log_warnings (`bool`, *optional*, defaults to `True`): log what makes the curve untrustworthy (pass `False`
            off the main process); it is in `result.metadata["warnings"]` either way.
        replay ([`~core.confirm.Replay`], *optional*): the iterator `step_fn` draws its batches from, so that every
            confirmation trial trains on the same batches (without it each trial takes the next ones).

    Returns:
        [`LRFinderResult`]
    """
    check_sweepable(optimizer)
    if snapshot is None:
        snapshot = make_snapshot(model, optimizer, config, scheduler=scheduler, scaler=scaler)
    names = param_group_names(optimizer.param_groups)  # before a sweep moves the rates they are named by
    runs: list[Curve] = []
    confirmation = None
    try:
        for i in range(config.num_sweeps):
            if i:
                restart(snapshot)
            description = "LR range test" + (f" ({i + 1}/{config.num_sweeps})" if config.num_sweeps > 1 else "")
            runs.append(sweep(step_fn, optimizer, config, progress=progress, description=description))
        curve = average_sweeps(runs, config.beta)
        result = build_result(
            {g: curve for g in curve.lrs}, config, metadata, log_warnings=log_warnings, optimizer=optimizer
        )
        if config.confirm_steps:
            from .confirm import confirm_suggestion

            rule = result.default_rule(names[0])
            base = [result.suggestions[name].get(rule) for name in names]
            if all(b is not None for b in base):
                confirmation = confirm_suggestion(
                    step_fn,
                    optimizer,
                    config,
                    base,
                    rule,
                    restore=snapshot.restore,
                    replay=replay,
                    progress=progress,
                    log=log_warnings,
                )
            else:
                message = f"{rule} gave no suggestion (the curve has {len(curve.losses)} points), so there is nothing to confirm; run more steps."
                if log_warnings:
                    logger.warning(message)
                result.metadata["warnings"].append(message)
    finally:
        snapshot.restore()
        snapshot.close()
    if confirmation is not None:
        from .confirm import record_confirmation

        record_confirmation(result, confirmation, log_warnings=log_warnings)
    return result
