"""The range-test engine: snapshot, sweep (several times, averaged), confirm if asked, restore, suggest.

Framework-neutral: it knows an optimizer and a callable that runs one optimizer step. The Trainer adapter and the
accelerate runner provide that callable; nothing here imports transformers or accelerate.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .config import LRFinderConfig
from .confirm import Replay, confirm_suggestion, record_confirmation
from .evidence import check_sweepable, evidence_for, warning_for
from .recorder import debiased_ema
from .result import LRFinderResult
from .schedule import param_group_names
from .state import StateSnapshot, rng_state, set_rng_state
from .suggest import curve_warnings, prepare_curve, suggest_all
from .sweep import Curve, StepFn, sweep

logger = logging.getLogger(__name__)


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
        no_gradient=[g for g in curves[0].no_gradient if all(g in c.no_gradient for c in curves)],
    )


def _versions() -> dict[str, str]:
    from .._version import __version__

    versions = {"hf_lrfind": __version__, "torch": torch.__version__, "python": sys.version.split()[0]}
    for module in ("transformers", "accelerate"):  # only report what the caller already imported
        if module in sys.modules:
            versions[module] = getattr(sys.modules[module], "__version__", "unknown")
    return versions


def no_gradient_warnings(curve: Curve, curves: Mapping[str, Curve]) -> list[str]:
    """
    A swept group whose parameters never had a gradient: its sweep moved nothing, its curve says nothing. Only the
    groups read from `curve` (a strategy's body curve also sweeps the head, whose own curve reports it).
    """
    return [
        f"No gradient reached param group '{group}' at any step of the sweep, so its weights never moved and the curve says nothing about its rate. Check that its parameters require grad and feed the loss (a 4-bit bitsandbytes layer on a CPU with AVX512-BF16 passes none once an eval-mode forward without grad has repacked it: sweep before evaluating, or reload the model)."
        for group in curve.no_gradient
        if curves.get(group) is curve
    ]


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
            for message in no_gradient_warnings(curve, curves) + curve_warnings(
                *raw, stop_reason=curve.stop_reason, group=named
            ):
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
        record_confirmation(result, confirmation, log_warnings=log_warnings)
    return result
