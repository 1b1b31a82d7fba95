"""
The confirmation phase: a few short trainings at rates around the sweep's suggestion, each from the state before the
sweep and on the same batches, under a warm-up and decay; the rate whose training ends lowest is kept.

A range test reads a rate off a few steps at each rate. Which rate trains best over a run also depends on how the
optimizer behaves once the rate holds and the gradients are noisy, which the sweep does not see (for Lion the sweep
bottoms out where AdamW's does while its best rate is 2-3x lower: docs/suggestions.md). Short trainings see it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)

WARMUP_RATIO = 0.1  # the benchmark's trainings: linear warm-up over the first tenth, then linear decay to 0


class Replay:
    """
    An iterator over `batches` that can hand out the same batches again: after [`record`] it keeps what it hands
    out, [`replay`] starts handing that out again (then goes on with new batches, kept too), [`forget`] drops it.
    The kept batches stay where the iterator made them (host or device) until `forget`.
    """

    def __init__(self, batches: Iterator[Any]) -> None:
        self._source = batches
        self._kept: list[Any] | None = None
        self._queue: deque[Any] = deque()

    def __iter__(self) -> Replay:
        return self

    def __next__(self) -> Any:
        if self._queue:
            return self._queue.popleft()
        batch = next(self._source)
        if self._kept is not None:
            self._kept.append(batch)
        return batch

    def record(self) -> None:
        self._kept, self._queue = [], deque()

    def replay(self) -> None:
        self._queue = deque(self._kept or [])

    def forget(self) -> None:
        self._kept, self._queue = None, deque()

    def close(self) -> None:
        self.forget()
        close = getattr(self._source, "close", None)
        if callable(close):
            close()


def trial_factor(step: int, steps: int, warmup_ratio: float = WARMUP_RATIO) -> float:
    """The peak rate's factor at `step` of a `steps`-step trial: linear warm-up over `int(warmup_ratio * steps)`
    steps, then linear decay to 0 (transformers' `get_linear_schedule_with_warmup`)."""
    warmup = int(warmup_ratio * steps)
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (steps - step) / max(1, steps - warmup))


def end_loss(losses: Sequence[float]) -> float:
    """A trial's score: the mean training loss of its last tenth of steps (at least one); `inf` if any loss of the
    trial was not finite or it stopped early."""
    if not losses or not all(math.isfinite(x) for x in losses):
        return math.inf
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)


def run_trial(
    step_fn: Callable[[], Any],
    optimizer: torch.optim.Optimizer,
    peaks: Sequence[float],
    steps: int,
    *,
    check_every: int = 10,
    max_skipped_steps: int = 50,
) -> tuple[list[float], int]:
    """
    Train `steps` optimizer steps, param group `i` at `peaks[i]` times [`trial_factor`]. Losses are read back every
    `check_every` steps; a non-finite one ends the trial. Returns the losses and the optimizer steps that ran.
    """
    groups = optimizer.param_groups
    pending: list[torch.Tensor] = []
    losses: list[float] = []
    ran, skipped, step = 0, 0, 0
    while step < steps:
        factor = trial_factor(step, steps)
        for group, peak in zip(groups, peaks):
            group["lr"] = peak * factor
        out = step_fn()
        ran += 1
        if out.skipped:  # fp16: the scaler skipped it, the same rate is tried again
            skipped += 1
            if skipped > max_skipped_steps:
                losses.append(math.inf)
                break
            continue
        pending.append(out.loss)
        step += 1
        if step % check_every == 0 or step == steps:
            read = [float(x) for x in torch.stack([p.detach().double() for p in pending]).cpu()]
            losses.extend(read)
            pending = []
            if not all(math.isfinite(x) for x in read):
                break
    return losses, ran


def confirm_suggestion(
    step_fn: Callable[[], Any],
    optimizer: torch.optim.Optimizer,
    suggestions: dict[str, dict[str, float | None]],
    rule: str,
    names: Sequence[str],
    steps: int,
    factors: Sequence[float],
    *,
    restart: Callable[[], None],
    replay: Replay | None = None,
    check_every: int = 10,
    max_skipped_steps: int = 50,
) -> dict[str, Any]:
    """
    One trial per factor `f`: param group `i` trained at `f` times the `rule` suggestion of its group `names[i]`,
    each from the state before the sweep (`restart`) and, given `replay`, on the same batches. The factor whose trial
    ends lowest ([`end_loss`]; a tie goes to the lower rate) wins.

    Returns:
        `dict`: `rule`, `steps`, `factors`, `candidates` (the rate of the first group at each factor), `end_losses`,
        `losses` (each trial's raw losses), `factor` (the winner), `cost_steps` (optimizer steps that ran),
        `wall_time_s`.
    """
    base = [suggestions[name][rule] for name in names]
    if any(b is None for b in base):
        raise ValueError(f"{rule!r} gave no suggestion to confirm; run more steps, or confirm another rule.")
    trials, cost, start = [], 0, time.perf_counter()
    for i, factor in enumerate(factors):
        restart()
        if replay is not None:
            replay.record() if i == 0 else replay.replay()
        losses, ran = run_trial(
            step_fn,
            optimizer,
            [factor * b for b in base],
            steps,
            check_every=check_every,
            max_skipped_steps=max_skipped_steps,
        )
        trials.append(losses)
        cost += ran
        logger.info(
            f"Confirmation {i + 1}/{len(factors)}: {factor:g} x {rule} = {factor * base[0]:.2e}, end loss {end_loss(losses):.4g}."
        )
    if replay is not None:
        replay.forget()
    scores = [end_loss(t) for t in trials]
    best = min(range(len(factors)), key=lambda i: (scores[i], factors[i]))
    return {
        "rule": rule,
        "steps": steps,
        "factors": list(factors),
        "candidates": [f * base[0] for f in factors],
        "end_losses": [s if math.isfinite(s) else None for s in scores],
        "losses": trials,
        "factor": factors[best],
        "cost_steps": cost,
        "wall_time_s": time.perf_counter() - start,
    }


def record_confirmation(result: Any, confirmation: dict[str, Any], *, log_warnings: bool = True) -> None:
    """
    Put a confirmation into `result`: each group's `"confirmed"` suggestion (the winning factor times its `rule`
    suggestion), made the default rule; `metadata["confirmation"]`, its steps added to `metadata["cost_steps"]`; and
    a warning when every trial diverged or the winner is an end of the factors (the best rate may lie beyond).
    """
    factor, factors, rule = confirmation["factor"], confirmation["factors"], confirmation["rule"]
    meta = result.metadata
    meta["confirmation"] = confirmation
    meta["cost_steps"] += confirmation["cost_steps"]
    meta["wall_time_s"] += confirmation["wall_time_s"]
    message = None
    if all(s is None for s in confirmation["end_losses"]):
        message = f"Every confirmation trial diverged (at {', '.join(f'{f:g}x' for f in factors)} the {rule} suggestion): no rate is confirmed; try lower confirm_factors, and check the curve."
    else:
        for group in result.groups:
            value = result.suggestions[group].get(rule)
            result.suggestions[group]["confirmed"] = None if value is None else factor * value
        meta["default_rules"] = {**meta.get("default_rules", {}), **{g: "confirmed" for g in result.groups}}
        if len(factors) > 1 and factor in (min(factors), max(factors)):
            side = "lower" if factor == min(factors) else "higher"
            message = f"The confirmation trial at {factor:g}x the {rule} suggestion, the {'lowest' if side == 'lower' else 'highest'} factor tried, ended lowest: the best rate may be {side} still; add a factor beyond it to confirm_factors to see."
    if message is not None:
        if log_warnings:
            logger.warning(message)
        meta["warnings"].append(message)
