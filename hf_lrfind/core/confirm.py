"""
The confirmation phase: a few short trainings at rates around the sweep's suggestion, each from the state before the
sweep, on the same batches and the same random draws, under a warm-up and decay; the rate where their end losses
bottom out is kept.

A range test reads a rate off a few steps at each rate. Which rate trains best over a run also depends on how the
optimizer behaves once the rate holds and the gradients are noisy, which the sweep does not see (for Lion the sweep
bottoms out where AdamW's does while its best rate is 2-3x lower: docs/suggestions.md). Short trainings see it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .config import LRFinderConfig
from .state import rng_state, set_rng_state
from .sweep import StepFn, sweep

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
    trial was not finite."""
    if not losses or not all(math.isfinite(x) for x in losses):
        return math.inf
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)


def _score(curve: Any) -> float:
    """A trial's [`end_loss`]; `inf` when it stopped early (a non-finite loss, too many skipped fp16 steps)."""
    return end_loss(curve.losses) if curve.stop_reason == "num_steps" else math.inf


def pick(factors: Sequence[float], scores: Sequence[float]) -> float | None:
    """
    The factor the trials point to: the bottom of the parabola fitted (least squares) to their scores against
    log(factor) when every trial finished and it opens upwards, kept within the factors tried; otherwise the factor
    whose trial ended lowest (a tie to the lower one). `None` when every trial diverged.
    """
    finite = [i for i, s in enumerate(scores) if math.isfinite(s)]
    if not finite:
        return None
    best = factors[min(finite, key=lambda i: (scores[i], factors[i]))]
    if len(finite) < 3 or len(finite) < len(factors):
        return best
    x = np.log(np.asarray(factors, dtype=float))
    a, b, _ = np.polyfit(x, np.asarray(scores, dtype=float), 2)
    if a <= 0:
        return best
    return float(np.exp(np.clip(-b / (2 * a), x.min(), x.max())))


def confirm_suggestion(
    step_fn: StepFn,
    optimizer: torch.optim.Optimizer,
    config: LRFinderConfig,
    base: Sequence[float],
    rule: str,
    *,
    restore: Callable[[], None],
    replay: Replay | None = None,
    progress: bool = True,
    log: bool = True,
) -> dict[str, Any]:
    """
    One trial of `config.confirm_steps` steps per factor `f` of `config.confirm_factors`: param group `i` trained at
    `f * base[i]` times [`trial_factor`], each after `restore()` (the state before the sweep), with the random draws
    the first trial began with and, given `replay`, on the batches the first trial drew. Each trial is scored by
    [`end_loss`], and [`pick`] reads the factor off the scores. A trial that meets a non-finite loss stops there and
    loses.

    Returns:
        `dict`: `rule`, `steps`, `factors`, `candidates` (the first group's rate at each factor), `end_losses` (`None`
        for a trial that diverged), `losses` (each trial's raw losses, non-finite ones as `None`), `factor` (the
        one picked; `None` when every trial diverged), `cost_steps` (optimizer steps that ran), `skipped_steps`,
        `num_tokens` and `wall_time_s`.
    """
    steps, factors = config.confirm_steps, config.confirm_factors
    trial_config = dataclasses.replace(config, num_steps=steps, num_sweeps=1, diverge_threshold=None)
    drawn = rng_state()
    curves = []
    try:
        for i, factor in enumerate(factors):
            restore()
            set_rng_state(drawn)
            if replay is not None:
                replay.record() if i == 0 else replay.replay()
            peaks = [factor * b for b in base]
            curves.append(
                sweep(
                    step_fn,
                    optimizer,
                    trial_config,
                    progress=progress,
                    description=f"Confirming {factor:g}x {rule} ({i + 1}/{len(factors)})",
                    rates=lambda step, peaks=peaks: [p * trial_factor(step, steps) for p in peaks],
                )
            )
            if log:
                logger.info(
                    f"Confirmation trial at {factor:g}x {rule} ({peaks[0]:.2e}): end loss {_score(curves[-1]):.4g}."
                )
    finally:
        if replay is not None:
            replay.forget()
    scores = [_score(c) for c in curves]
    factor = pick(factors, scores)
    tokens = [c.num_tokens for c in curves if c.num_tokens is not None]
    return {
        "rule": rule,
        "steps": steps,
        "factors": list(factors),
        "candidates": [f * base[0] for f in factors],
        "end_losses": [s if math.isfinite(s) else None for s in scores],
        "losses": [[x if math.isfinite(x) else None for x in c.losses] for c in curves],
        "factor": factor,
        "cost_steps": sum(c.executed for c in curves),
        "skipped_steps": sum(c.skipped_steps for c in curves),
        "num_tokens": sum(tokens) if tokens else None,
        "wall_time_s": sum(c.wall_time for c in curves),
    }


def record_confirmation(result: Any, confirmation: dict[str, Any], *, log_warnings: bool = True) -> None:
    """
    Put a confirmation into `result`: each group's `"confirmed"` suggestion (the winning factor times its `rule`
    suggestion), made the default rule; `metadata["confirmation"]`; its steps, skipped steps, tokens and time added
    to the result's counts; and a warning when every trial diverged or the pick is an end of the factors (the best
    rate may lie beyond).
    """
    factor, factors, rule = confirmation["factor"], confirmation["factors"], confirmation["rule"]
    meta = result.metadata
    meta["confirmation"] = confirmation
    for key in ("cost_steps", "skipped_steps", "wall_time_s"):
        meta[key] = meta.get(key, 0) + confirmation[key]
    if meta.get("tokens_seen") is not None and confirmation["num_tokens"] is not None:
        meta["tokens_seen"] += confirmation["num_tokens"]
    message = None
    if factor is None:
        message = f"Every confirmation trial diverged (at {', '.join(f'{f:g}x' for f in factors)} the {rule} suggestion): no rate is confirmed, and the default stays {rule}; try lower confirm_factors, and check the curve."
    else:
        for group in result.groups:
            value = result.suggestions[group].get(rule)
            result.suggestions[group]["confirmed"] = None if value is None else factor * value
        meta["default_rules"] = {**meta.get("default_rules", {}), **{g: "confirmed" for g in result.groups}}
        if len(factors) > 1 and factor in (min(factors), max(factors)):
            side = "lower" if factor == min(factors) else "higher"
            message = f"The confirmation points at {factor:g}x the {rule} suggestion, the {'lowest' if side == 'lower' else 'highest'} factor tried: the best rate may be {side} still; add a factor beyond it to confirm_factors to see."
    if message is not None:
        if log_warnings:
            logger.warning(message)
        meta["warnings"].append(message)
