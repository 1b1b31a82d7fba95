"""Sweep strategies for discriminative learning rates: `joint`, `split` (everything at one rate, then the head alone)
and `sequential` (head first, then body).

Framework-neutral like the engine: they take the same `step_fn` as [`~hf_lrfind.core.engine.range_test`] and read the
groups from the `"name"` entries of the optimizer's param groups.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .config import LRFinderConfig
from .engine import average_sweeps, build_result, make_snapshot, range_test, restart
from .evidence import check_sweepable
from .schedule import base_lr, param_group_names
from .suggest import SUGGESTERS, resolve_suggesters
from .sweep import StepFn, sweep

logger = logging.getLogger(__name__)

STRATEGIES = ("joint", "split", "sequential")
HEAD_PHASES = ("alone", "beside")
BODY_PHASES = ("together", "held")
# groups of new weights besides the head (LoRA adapters): the split strategy reads them with the first rule of `suggest`
NEW_GROUPS = ("adapter",)


def joint_range_test(
    step_fn: StepFn, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: LRFinderConfig, **kwargs: Any
):
    """
    All groups swept at once, each at its fixed ratio to group 0 (the ratios the optimizer's lrs have, e.g. from layer
    decay). Each group's suggestion is read off its own lr axis, so it is its ratio times the swept suggestion.
    """
    return range_test(step_fn, model, optimizer, config, **kwargs)


def _first_suggestion(suggestions: Mapping[str, float | None], method: str, group: str) -> float:
    if suggestions.get(method) is not None:
        return suggestions[method]  # type: ignore[return-value]
    for name, value in suggestions.items():
        if value is not None:
            logger.warning(
                f"{method!r} gave no suggestion for the {group}; holding it at the {name!r} suggestion instead."
            )
            return value
    raise RuntimeError(
        f"The {group}'s sweep gave no suggestion at all (too few points before it stopped); run more steps or lower end_lr."
    )


def _held_rates(curve: Any, methods: Mapping[str, str], config: LRFinderConfig) -> dict[str, float]:
    """Each group's suggestion on `curve` by its rule in `methods` (group -> rule), the rate a later phase holds it at
    (the curve's warnings are left to the final result)."""
    result = build_result({n: curve for n in methods}, config, log_warnings=False)
    return {n: _first_suggestion(result.suggestions[n], method, n) for n, method in methods.items()}


def _hold(bounds: Sequence[tuple[float, float]], names: Sequence[str], rates: Mapping[str, float]):
    """`bounds` with each group named in `rates` held at its rate."""
    return [(rates[n], rates[n]) if n in rates else b for b, n in zip(bounds, names)]


def _head_and_rest(
    optimizer: torch.optim.Optimizer, config: LRFinderConfig, first: Sequence[str], strategy: str
) -> tuple[list[str], list[bool]]:
    """The checks the head-aware strategies share: a sweepable optimizer, a head and something else, float bounds.
    Returns the group names and which of them are the head."""
    check_sweepable(optimizer)
    names = param_group_names(optimizer.param_groups)
    is_first = [name in first for name in names]
    if not any(is_first) or all(is_first):
        raise ValueError(
            f"The {strategy} strategy needs param groups named {list(first)} and at least one other group; the optimizer has {sorted(set(names))}. Build it with hf_lrfind.build_param_groups (groups='auto'), or use strategy='joint'."
        )
    if not isinstance(config.start_lr, (int, float)) or not isinstance(config.end_lr, (int, float)):
        raise ValueError(
            f"The {strategy} strategy takes one start_lr and one end_lr (floats); the group ratios come from the optimizer."
        )
    return names, is_first


def _ratio_bounds(config: LRFinderConfig, base: Sequence[float], mask: Sequence[bool]) -> list[tuple[float, float]]:
    """Sweep bounds for the groups in `mask`, each at its ratio to the first of them; the others held at lr 0."""
    ref = next(lr for lr, m in zip(base, mask) if m)
    if ref <= 0:
        raise ValueError("Every swept param group needs a positive lr to take the group ratios from.")
    return [(config.start_lr * lr / ref, config.end_lr * lr / ref) if m else (0.0, 0.0) for lr, m in zip(base, mask)]


def split_range_test(
    step_fn: StepFn,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: LRFinderConfig,
    *,
    first: Sequence[str] = ("head",),
    head_method: str = "probe",
    body_method: str = "pretrained",
    head_phase: str = "alone",
    body_phase: str = "together",
    scheduler: Any = None,
    scaler: Any = None,
    snapshot: Any = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
    log_warnings: bool = True,
):
    """
    Per-group rates from two measurements, each of what its suggestion is used for:

    1. the whole model swept at one rate, `max(1, num_sweeps - 1)` times from the same start and averaged: the curve
       of every group but the head. It bottoms out where the pretrained weights stop tolerating the rate while the
       head learns beside them: the one-group range test, whose `trough` the suggestion benchmark measured;
    2. the head (the `first` groups) swept alone from the same start, every other group held still (lr 0): the
       head's curve, a linear probe on the features as they are.

    Everything is restored between sweeps and at the end. The cost is `max(1, num_sweeps - 1) + 1` sweeps: 300
    optimizer steps with the defaults, as a one-group range test.

    The head's curve is read with `head_method` by default (`result.default_rule("head")`, also what `apply`,
    `param_groups` and the callback use when no rule is named), the pretrained groups (every other group but LoRA
    adapters) with `body_method`; each is run on its groups' curves even when `suggest` leaves it out. Adapters, new
    weights, are read with the first rule of `suggest` (`trough`). `probe` (a seventh of fastai's `minimum`) puts the
    head inside its window at every seed of the benchmark's six fine-tunes (`minimum` was above it at two seeds of the
    first three), and trained beside the body's default rate, every seed of the six inside its tie band
    (docs/suggestions.md, "The head's factor"). `pretrained` (a sixth of the body curve's fitted bottom) puts more of
    the benchmark's full fine-tunes inside the tie band of their best (body, head) pair than `trough`, with body rates
    that move less between data orders (docs/suggestions.md, "The body's rule"). `body_phase="held"` and
    `head_phase="beside"` were measured with the body read with `trough` (`body_method="trough"`).

    Args:
        first (`Sequence[str]`, *optional*, defaults to `("head",)`): names of the groups swept in phase 2.
        head_method (`str`, *optional*, defaults to `"probe"`): the head's default rule: one the sweep runs, or a name
            from `SUGGESTERS`, which is then run on the head's curve only.
        body_method (`str`, *optional*, defaults to `"pretrained"`): the default rule of the pretrained groups (all
            but `first` and `adapter`), the same way; `"trough"` reads them as the one-group range test does.
        head_phase (`str`, *optional*, defaults to `"alone"`): `"alone"` holds every other group still during the
            head's sweep; `"beside"` trains them at their default rule's suggestion meanwhile. Measured on the
            classifier fine-tune, the `"beside"` curve reads the body's progress, not the head's rate
            (docs/suggestions.md).
        body_phase (`str`, *optional*, defaults to `"together"`): `"together"` sweeps the whole model at one rate for
            the other groups' curve (phase 1); `"held"` sweeps the head first, then the other groups with the head
            held at its `head_method` suggestion (same cost). Measured on the three fine-tunes, the head's progress
            drowns the body's in the `"held"` curve (adapter rates spread 19x with LoRA; docs/suggestions.md). Not
            with `head_phase="beside"`.

    Returns:
        [`LRFinderResult`] with one curve per group, `metadata["strategy"] == "split"`, `metadata["default_rules"]`
        (each group's rule) and `metadata["head_groups"]` (the `first` groups the optimizer has).

    Raises:
        ValueError: when the optimizer has no group named in `first`, or nothing else to sweep; an unknown
            `head_method`, `body_method`, `head_phase` or `body_phase`, or both phases other than their defaults.
    """
    names, is_first = _head_and_rest(optimizer, config, first, "split")
    if head_phase not in HEAD_PHASES:
        raise ValueError(f"head_phase ({head_phase!r}) must be one of {HEAD_PHASES}.")
    if body_phase not in BODY_PHASES:
        raise ValueError(f"body_phase ({body_phase!r}) must be one of {BODY_PHASES}.")
    if head_phase == "beside" and body_phase == "held":
        raise ValueError(
            "head_phase='beside' sweeps the head after the body and body_phase='held' before it: choose one."
        )
    rules = resolve_suggesters(config.suggest)
    for option, method in (("head_method", head_method), ("body_method", body_method)):
        if method not in rules and method not in SUGGESTERS:
            raise ValueError(
                f"{option} ({method!r}) must be one of the rules the sweep runs ({list(rules)}) or of {sorted(SUGGESTERS)}."
            )
    first_rule = next(iter(rules))
    chosen = {n: head_method if n in first else first_rule if n in NEW_GROUPS else body_method for n in names}
    added = [m for m in dict.fromkeys(chosen.values()) if m not in rules]  # run, and shown for their groups only
    if added:
        config = dataclasses.replace(config, suggest=(*rules.values(), *(SUGGESTERS[m] for m in added)))
    together = [(config.start_lr, config.end_lr)] * len(names)
    alone = _ratio_bounds(config, [base_lr(g) for g in optimizer.param_groups], is_first)
    if snapshot is None:
        snapshot = make_snapshot(model, optimizer, config, scheduler=scheduler, scaler=scaler)
    joint_sweeps = max(1, config.num_sweeps - 1)
    runs, held = [], {}
    try:
        if body_phase == "held":  # the head first, then the rest with the head at its suggestion
            head_curve = sweep(
                step_fn, optimizer, config, progress=progress, description="LR range test (head)", bounds=alone
            )
            held = _held_rates(head_curve, {n: m for n, m in chosen.items() if n in first}, config)
            together = _hold(together, names, held)
            restart(snapshot)
        for i in range(joint_sweeps):
            if i:
                restart(snapshot)
            description = f"LR range test ({'body' if body_phase == 'held' else 'all groups'}, {i + 1}/{joint_sweeps})"
            runs.append(sweep(step_fn, optimizer, config, progress=progress, description=description, bounds=together))
        body_curve = average_sweeps(runs, config.beta)
        if head_phase == "beside":  # the rest trains at its own suggestion while the head is swept
            held = _held_rates(body_curve, {n: m for n, m in chosen.items() if n not in first}, config)
            alone = _hold(alone, names, held)
        if body_phase == "together":
            restart(snapshot)
            head_curve = sweep(
                step_fn, optimizer, config, progress=progress, description="LR range test (head)", bounds=alone
            )
    finally:
        snapshot.restore()
        snapshot.close()
    curves = {n: (head_curve if n in first else body_curve) for n in chosen}
    meta = {
        "strategy": "split",
        "default_rules": chosen,
        "head_groups": [n for n in chosen if n in first],
        "head_phase": head_phase,
        "body_phase": body_phase,
        **(metadata or {}),
    }
    if held:
        meta["held_lrs"] = held
    result = build_result(curves, config, meta, log_warnings=log_warnings, optimizer=optimizer)
    for n in curves:
        for method in added:
            if chosen[n] != method:
                del result.suggestions[n][method]
    return result


def sequential_range_test(
    step_fn: StepFn,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: LRFinderConfig,
    *,
    first: Sequence[str] = ("head",),
    method: str | None = None,
    warmup_steps: int | None = None,
    keep_head: bool = False,
    scheduler: Any = None,
    scaler: Any = None,
    snapshot: Any = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
    log_warnings: bool = True,
):
    """
    The "train the head first, then unfreeze" recipe as a range test, in three phases:

    1. sweep the `first` groups (the new head) with every other group held still (lr 0);
    2. restore, then train the head for `warmup_steps` steps at its `method` suggestion, the rest still held at 0;
    3. sweep the other groups (the pretrained body, with their ratios) with the head at its suggested rate; the body's
       optimizer state is reset first, as if it had been frozen during phase 2.

    Each group's curve and suggestions come from the sweep that moved it. Everything is restored at the end; with
    `keep_head=True` the head keeps its warmed-up weights (the optimizer and the body are still restored).

    Args:
        first (`Sequence[str]`, *optional*, defaults to `("head",)`): names of the groups swept first.
        method (`str`, *optional*): the rule whose head suggestion is used in phases 2 and 3; defaults to the first
            of `config.suggest` (`"trough"`).
        warmup_steps (`int`, *optional*): head training steps of phase 2; defaults to `config.num_steps // 2`.
        keep_head (`bool`, *optional*, defaults to `False`): keep the warmed-up head weights.

    Returns:
        [`LRFinderResult`] with one curve per group and `metadata["strategy"] == "sequential"`.

    Raises:
        ValueError: when the optimizer has no group named in `first`, or nothing else to sweep.
    """
    names, is_first = _head_and_rest(optimizer, config, first, "sequential")
    groups = optimizer.param_groups
    warmup_steps = config.num_steps // 2 if warmup_steps is None else warmup_steps
    method = method if method is not None else next(iter(resolve_suggesters(config.suggest)))
    if config.num_sweeps > 1:
        logger.info(
            f"The sequential strategy sweeps each phase once; num_sweeps={config.num_sweeps} applies to joint sweeps."
        )
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps ({warmup_steps}) must not be negative.")
    base = [base_lr(g) for g in groups]

    if snapshot is None:
        snapshot = make_snapshot(model, optimizer, config, scheduler=scheduler, scaler=scaler)
    original_state = {p: copy.deepcopy(optimizer.state[p]) for g in groups for p in g["params"] if p in optimizer.state}
    try:
        head_curve = sweep(
            step_fn,
            optimizer,
            config,
            progress=progress,
            description="LR range test (head)",
            bounds=_ratio_bounds(config, base, is_first),
        )
        snapshot.restore()
        head_lr = _held_rates(head_curve, {n: method for n in head_curve.lrs if n in first}, config)
        held = [(head_lr[n], head_lr[n]) if f else (0.0, 0.0) for n, f in zip(names, is_first)]
        groups = optimizer.param_groups  # `restore` loads the optimizer state dict, which replaces the group dicts
        for group, (lr, _) in zip(groups, held):
            group["lr"] = lr
        for _ in range(warmup_steps):
            step_fn()
        head_weights = [p.detach().clone() for g, f in zip(groups, is_first) if f for p in g["params"]]
        for group, f in zip(groups, is_first):
            if not f:
                for p in group["params"]:
                    optimizer.state.pop(p, None)
                    if p in original_state:
                        optimizer.state[p] = copy.deepcopy(original_state[p])
        rest = [not f for f in is_first]
        bounds = [h if f else b for h, f, b in zip(held, is_first, _ratio_bounds(config, base, rest))]
        body_curve = sweep(
            step_fn, optimizer, config, progress=progress, description="LR range test (body)", bounds=bounds
        )
    finally:
        snapshot.restore()
        snapshot.close()
    if keep_head:
        with torch.no_grad():
            for p, w in zip((p for g, f in zip(groups, is_first) if f for p in g["params"]), head_weights):
                p.copy_(w)
    curves = {n: (head_curve if n in first else body_curve) for n in dict.fromkeys(names)}
    meta = {"strategy": "sequential", "warmup_steps": warmup_steps, "head_lr": head_lr, **(metadata or {})}
    return build_result(curves, config, meta, log_warnings=log_warnings, optimizer=optimizer)


def default_strategy(groups: Any, layer_decay: float | None, mapping: Mapping[str, Any] | None) -> str:
    """`"split"` for `groups="auto"` when there is a head and something else to sweep, `"joint"` otherwise."""
    if groups == "auto" and layer_decay is None and mapping and "head" in mapping and len(mapping) > 1:
        return "split"
    return "joint"


def check_confirmable(config: LRFinderConfig, strategy: str | None) -> None:
    """Refuse `confirm_steps` with a strategy that gives each group its own rate (`None`: not chosen yet)."""
    if config.confirm_steps and strategy not in (None, "joint"):
        raise ValueError(
            f"confirm_steps confirms one suggestion, and the {strategy!r} strategy gives each group its own: use strategy='joint' or no groups to confirm (a joint sweep keeps the groups at fixed ratios), or set confirm_steps=0."
        )


def run_strategy(
    strategy: str,
    step_fn: StepFn,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: LRFinderConfig,
    *,
    groups: Mapping[str, list[str]] | None = None,
    **kwargs: Any,
):
    """
    Dispatch to [`joint_range_test`] or [`sequential_range_test`], and store the group -> parameter-names mapping in
    `result.metadata["groups"]` (so that `result.param_groups(model)` can rebuild the groups later).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy ({strategy!r}) must be one of {STRATEGIES}.")
    replay = kwargs.pop("replay", None)
    check_confirmable(config, strategy)
    metadata = {**(kwargs.pop("metadata", None) or {}), "strategy": strategy}
    if groups is not None:
        metadata["groups"] = {g: list(names) for g, names in groups.items()}
    if strategy == "joint":
        return joint_range_test(step_fn, model, optimizer, config, metadata=metadata, replay=replay, **kwargs)
    if strategy == "split":
        return split_range_test(step_fn, model, optimizer, config, metadata=metadata, **kwargs)
    return sequential_range_test(step_fn, model, optimizer, config, metadata=metadata, **kwargs)
