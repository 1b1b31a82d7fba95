"""Learning-rate schedules of the range test: pure functions of the step."""

from __future__ import annotations

import math
from collections.abc import Sequence


def exp_lr(start: float, end: float, pos: float) -> float:
    """Geometric interpolation, fastai's `sched_exp`: `start * (end / start) ** pos`."""
    return start * (end / start) ** pos


def linear_lr(start: float, end: float, pos: float) -> float:
    """Linear interpolation, fastai's `sched_lin`: `start + pos * (end - start)`."""
    return start + pos * (end - start)


SCHEDULES = {"exp": exp_lr, "linear": linear_lr}


def group_bounds(
    base_lrs: Sequence[float], start_lr: float | Sequence[float], end_lr: float | Sequence[float]
) -> list[tuple[float, float]]:
    """
    Start and end learning rate of every optimizer param group.

    A float `start_lr`/`end_lr` applies to group 0 and every other group keeps its ratio to group 0 taken from
    `base_lrs` (the lrs the optimizer holds before the sweep). Sequences give each group its own bounds.

    Raises:
        ValueError: when the number of values does not match the number of groups, or group 0 has no usable lr to
            take ratios from.
    """
    n = len(base_lrs)
    if isinstance(start_lr, (int, float)) and isinstance(end_lr, (int, float)):
        if n > 1:
            ref = float(base_lrs[0])
            if not math.isfinite(ref) or ref <= 0:
                raise ValueError(
                    f"Optimizer param group 0 has lr {ref}, so the ratios of the other groups to it are undefined; give it a positive lr, or pass one start_lr and end_lr per group."
                )
            ratios = [float(lr) / ref for lr in base_lrs]
        else:
            ratios = [1.0] * n
        return [(start_lr * r, end_lr * r) for r in ratios]
    starts, ends = list(start_lr), list(end_lr)  # type: ignore[arg-type]
    if len(starts) != n or len(ends) != n:
        raise ValueError(
            f"start_lr and end_lr have {len(starts)} and {len(ends)} values but the optimizer has {n} param groups; give one value per group."
        )
    return [(float(s), float(e)) for s, e in zip(starts, ends)]


def lr_at(step: int, num_steps: int, start: float, end: float, mode: str = "exp") -> float:
    """
    Learning rate of step `step` (0-based) of a `num_steps`-step sweep: position `step / num_steps`, as fastai.
    `start == end` holds the rate constant (0 included).
    """
    if start == end:
        return start
    return SCHEDULES[mode](start, end, step / num_steps)
