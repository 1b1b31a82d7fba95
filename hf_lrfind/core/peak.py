"""Suggested rates as the peak of a schedule: set on an optimizer's param groups and its LR scheduler's base rates."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from .schedule import base_lr, param_group_names
from .state import torch_optimizer

if TYPE_CHECKING:
    from .result import LRFinderResult

logger = logging.getLogger(__name__)


def _schedulers(scheduler: Any) -> list[Any]:
    """The scheduler and those it runs (SequentialLR, ChainedScheduler), depth first."""
    if scheduler is None:
        return []
    return [scheduler, *(s for child in getattr(scheduler, "_schedulers", []) for s in _schedulers(child))]


def check_scheduler(scheduler: Any) -> None:
    """Refuse, before anything changes, a scheduler whose peak is not its base rates (OneCycleLR, CyclicLR)."""
    from torch.optim.lr_scheduler import CyclicLR, OneCycleLR

    for s in _schedulers(scheduler):
        if isinstance(s, (OneCycleLR, CyclicLR)):
            raise TypeError(
                f"{type(s).__name__} peaks at its own max_lr, not at the optimizer's rates: build it with max_lr=result.suggestion() (a list, one per group, for several groups) instead of calling apply."
            )


def set_peak_lrs(optimizer: Any, scheduler: Any, names: list[str], lrs: Mapping[str, float]) -> None:
    """
    Make `lrs` (by group name) the peak of the schedule: each group's `initial_lr` and the base rates of the
    scheduler and of those it runs (SequentialLR, ChainedScheduler), and its current `lr` at the schedule's current
    point: `base * lambda(step)` for a `LambdaLR` (the kind transformers' schedules are), the current factor kept
    for other schedulers, `lr` itself without a scheduler. See [`check_scheduler`] for those it refuses.
    """
    from torch.optim.lr_scheduler import LambdaLR

    check_scheduler(scheduler)
    groups = optimizer.param_groups
    bases = [s.base_lrs for s in _schedulers(scheduler) if len(getattr(s, "base_lrs", [])) == len(groups)]
    for i, (group, name) in enumerate(zip(groups, names)):
        new, old = lrs[name], float(base_lr(group))
        if "initial_lr" in group:
            group["initial_lr"] = new
        for base_lrs in bases:
            base_lrs[i] = new
        if isinstance(scheduler, LambdaLR):
            group["lr"] = new * scheduler.lr_lambdas[i](scheduler.last_epoch)
        elif scheduler is not None and old > 0:  # keep the schedule's current factor
            group["lr"] = group["lr"] * (new / old)
        else:  # no scheduler yet: the one made next starts from lr
            group["lr"] = new
    if hasattr(scheduler, "_last_lr"):  # what get_last_lr() (and the Trainer's logs) read
        scheduler._last_lr = [group["lr"] for group in groups]


def peak_lrs_for(result: LRFinderResult, names: list[str], method: str | None = None) -> dict[str, float]:
    """
    The suggestion for each optimizer group name: its own group's when the result has one per name, the single
    suggestion for every group when the result has one. A ValueError says what to do otherwise.
    """
    if set(names) <= set(result.groups):
        return {name: result.suggestion(method, name) for name in set(names)}
    if len(result.groups) == 1:
        return dict.fromkeys(names, result.suggestion(method))
    raise ValueError(
        f"The optimizer's param groups are named {sorted(set(names))}, the result's groups {result.groups}: they do not match. For a groups= sweep build the optimizer from the result: torch.optim.AdamW(result.param_groups(model)), and pass that to apply."
    )


def apply_to_optimizer(
    result: LRFinderResult, optimizer: Any, scheduler: Any = None, method: str | None = None
) -> dict[str, float]:
    """
    Make the suggestions the peak learning rates of a training loop's schedule: each param group's `lr` (and
    `initial_lr`), and the scheduler's base rates, so that the schedule (warm-up, decay) peaks at the suggestion.
    Takes what `accelerator.prepare` returned (`AcceleratedOptimizer`, `AcceleratedScheduler`) or plain torch objects,
    before training or during it. Exact at any point for a `LambdaLR` (transformers' schedules); for other
    schedulers (`StepLR`, `CosineAnnealingLR`, `SequentialLR` and `ChainedScheduler` of them) exact before training,
    while mid-schedule the current factor is kept. `OneCycleLR` and `CyclicLR`, which peak at their own `max_lr`, are
    refused (build them with `max_lr=` the suggestion). Returns the rate set per group name (also logged).
    """
    optimizer = torch_optimizer(optimizer)
    held = getattr(scheduler, "scheduler", None)  # accelerate's AcceleratedScheduler holds the torch one
    scheduler = held if isinstance(held, torch.optim.lr_scheduler.LRScheduler) else scheduler
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"apply takes a transformers Trainer, or a torch optimizer (prepared by accelerate or not) and its scheduler; got {type(optimizer).__name__}."
        )
    if scheduler is not None and torch_optimizer(getattr(scheduler, "optimizer", optimizer)) is not optimizer:
        raise ValueError("The scheduler drives another optimizer; pass the optimizer it was built with.")
    names = param_group_names(optimizer.param_groups)
    lrs = peak_lrs_for(result, names, method)
    if scheduler is None and any("initial_lr" in g for g in optimizer.param_groups):
        logger.warning(
            "The optimizer already has an LR scheduler (its param groups carry initial_lr), which will put its own peak back at its next step: pass it too, result.apply(optimizer, scheduler=lr_scheduler)."
        )
    set_peak_lrs(optimizer, scheduler, names, lrs)
    logger.info(f"Peak learning rate{'s' if len(lrs) > 1 else ''} set from the suggestions: {_rates(lrs)}")
    return lrs


def _rates(lrs: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {lr:.2e}" for name, lr in lrs.items())
