"""Learning-rate schedules of the range test (pure functions of the step), and the rates and names of param groups."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


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


def base_lr(group: dict[str, Any]) -> float:
    """A param group's own rate: its scheduler's `initial_lr` when it has one (the current lr may be 0 at the start of a
    warm-up), else its `lr`. Group ratios are taken from these."""
    return group.get("initial_lr", group["lr"])


def param_group_names(param_groups: list[dict[str, Any]]) -> list[str]:
    """
    A name for each optimizer param group: its `"name"` entry when it has one; otherwise groups with equal lr share a
    name, `"all"` when there is one distinct lr, else `"group_0"`, `"group_1"`, ... in order of first appearance.
    """
    unnamed = [base_lr(g) for g in param_groups if "name" not in g]
    distinct = list(dict.fromkeys(unnamed))
    names = []
    for g in param_groups:
        if "name" in g:
            names.append(str(g["name"]))
        else:
            names.append("all" if len(distinct) == 1 else f"group_{distinct.index(base_lr(g))}")
    return names
