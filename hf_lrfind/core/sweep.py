"""One sweep: set each step's learning rates, run one training step, record the loss, stop.

Framework-neutral: it knows an optimizer and a callable that runs one optimizer step ([`StepOutput`]). The range test
([`~hf_lrfind.core.engine.range_test`]) runs sweeps and restores; the confirmation runs its trials through it too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .config import LRFinderConfig
from .recorder import LossRecorder
from .schedule import base_lr, group_bounds, lr_at, param_group_names
from .state import local_shard, torch_optimizer
from .suggest import STOP_REASONS

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
    no_gradient: list[str] = field(default_factory=list)  # swept groups that no optimizer step gave a gradient

    @property
    def steps_run(self) -> int:
        """Points recorded (all sweeps)."""
        return sum(len(s) for s in self.sweeps) if self.sweeps else len(self.losses)


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
    anything: see [`~hf_lrfind.core.engine.range_test`].

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
    gradients = GradientWatch(optimizer)
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
        gradients.remove()
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
        no_gradient=gradients.missing(names, bounds),
    )


class GradientWatch:
    """
    Which param groups had a gradient at some optimizer step: a step pre-hook (where the gradients are still there)
    that looks at a group until it has seen one. Watches nothing when the optimizer has no torch step hooks (the
    wrapper accelerate puts around a DeepSpeed optimizer), so it never reports a group it could not see.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        inner = torch_optimizer(optimizer)
        hookable = isinstance(inner, torch.optim.Optimizer) and hasattr(inner, "_optimizer_step_pre_hooks")
        self.groups = inner.param_groups if hookable else []
        self.seen: set[int] = set()
        self.steps = 0
        self.handle = inner.register_step_pre_hook(self._look) if hookable else None

    def _look(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        self.steps += 1
        for i, group in enumerate(self.groups):
            if i not in self.seen and any(p.grad is not None for p in group["params"]):
                self.seen.add(i)

    def missing(self, names: list[str], bounds: list[tuple[float, float]]) -> list[str]:
        """
        The names no step gave a gradient: swept (not held, `start != end`), with elements on this process (not all
        sharded away), and none of the param groups of that name (decay and no-decay halves) ever had a gradient.
        """
        if not self.steps:
            return []
        indices: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            indices.setdefault(name, []).append(i)
        return [
            name
            for name, mine in indices.items()
            if not any(i in self.seen for i in mine)
            and any(bounds[i][0] != bounds[i][1] for i in mine)
            and any(local_shard(p).numel() for i in mine for p in self.groups[i]["params"])
        ]

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
