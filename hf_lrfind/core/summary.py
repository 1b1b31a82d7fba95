"""A result in words: which rate to use, by which rule, whether its curve can be trusted, and what the sweep ran."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .suggest import STOP_REASONS

if TYPE_CHECKING:
    from .result import LRFinderResult


def _sweeps(result: LRFinderResult, group: str) -> str:
    """What the sweep(s) behind `group`'s curve ran, in words that cannot be misread."""
    meta, n = result.metadata, len(result.losses[group])
    planned, reason = meta["num_steps"], result.stop_reason[group]
    lengths = [len(s) for s in meta.get("sweep_losses", {}).get(group, [])]
    if len(lengths) > 1:
        reasons = meta.get("sweep_stop_reasons", {}).get(group) or ["num_steps"] * len(lengths)
        recorded = ", ".join(str(length) for length in lengths)
        ended = [
            f"sweep {i + 1} {STOP_REASONS.get(r, r)} at step {length}"
            for i, (r, length) in enumerate(zip(reasons, lengths))
            if r != "num_steps"
        ]
        stops = "; ".join(ended) if ended else "all ran to the end"
        return (
            f"{len(lengths)} sweeps from the same start on the next batches (steps recorded: {recorded} of {planned}; "
            f"{stops}); the curve is their step-by-step mean, {n} points"
        )
    if reason == "num_steps":
        return f"1 sweep, all {planned} steps recorded"
    if n == planned:
        return f"1 sweep, all {planned} steps recorded; it {STOP_REASONS.get(reason, reason)} at the last one"
    return f"1 sweep, {n} of {planned} steps recorded: it {STOP_REASONS.get(reason, reason)}"


def _cost(result: LRFinderResult) -> str:
    meta = result.metadata
    parts = [f"{meta['cost_steps']} optimizer steps in all (every step that ran, also those past a stop)"]
    if meta.get("tokens_seen"):
        parts.append(f"{meta['tokens_seen']:,} tokens")
    if meta.get("wall_time_s") is not None:
        parts.append(f"{meta['wall_time_s']:.1f} s" + (f" on {meta['device']}" if meta.get("device") else ""))
    return ", ".join(parts)


def _confirmed(confirmation: dict) -> str:
    """What the confirmation phase trained, and which rate won."""
    c = confirmation
    trials = ", ".join(
        f"{f:g}x = {lr:.2e}: " + (f"{loss:.4g}" if loss is not None else "diverged")
        for f, lr, loss in zip(c["factors"], c["candidates"], c["end_losses"])
    )
    kept = f"kept {c['factor']:g}x" if c["factor"] is not None else "none kept"
    return (
        f"confirmed: {len(c['factors'])} trainings of {c['steps']} steps from the same start at multiples of "
        f"{c['rule']} (mean loss of the last tenth: {trials}); {kept}"
    )


def _warnings_of(result: LRFinderResult, group: str) -> list[str]:
    """The warnings about `group`'s curve (the optimizer's evidence note is not about a curve)."""
    note = result.metadata.get("optimizer_warning")
    warnings = [w for w in result.metadata.get("warnings", []) if w != note]
    distinct = len({tuple(result.losses[g]) for g in result.groups}) > 1
    return [w for w in warnings if f"group {group!r}" in w] if distinct else list(warnings)


def _table(result: LRFinderResult) -> list[str]:
    """Every rule's suggestion, a row per group."""
    methods = list(dict.fromkeys(m for g in result.groups for m in result.suggestions[g]))
    width = max(len("group"), *(len(g) for g in result.groups))
    widths = [max(9, len(m)) for m in methods]  # 9: a rate as 1.23e-04
    rows = ["  ".join([f"{'group':<{width}}", *(f"{m:>{w}}" for m, w in zip(methods, widths))])]
    for group in result.groups:
        values = [result.suggestions[group].get(m) for m in methods]
        cells = [f"{v:>{w}.2e}" if v is not None else f"{'-':>{w}}" for v, w in zip(values, widths)]
        rows.append("  ".join([f"{group:<{width}}", *cells]))
    return rows


def summarize(result: LRFinderResult, method: str | None = None, *, table: bool = False) -> str:
    """
    The result in a few lines: for each group the rate to use (the `method` rule, by default the group's default rule)
    and whether its curve can be trusted, then what ran and what it cost, and the other rules' suggestions (a table
    of every rule with `table=True`). The CLI prints it; the runner and the Trainer callback write it under their
    progress bars.
    """
    meta = result.metadata
    lines = []
    for group in result.groups:
        values = result.suggestions[group]
        rule = method or result.default_rule(group)
        default = "" if method else ", the default rule"
        value = values.get(rule)
        where = f" for {group}" if len(result.groups) > 1 else ""
        use = f"use lr {value:.2e}{where} ({rule}{default})" if value is not None else f"no {rule} suggestion{where}"
        warned = _warnings_of(result, group)
        trust = f"check its curve first: {len(warned)} warning(s) logged" if warned else "its curve passed the checks"
        lines.append(f"lr_find: {use}; {trust}")
    if meta.get("strategy") == "sequential":
        head = next(iter(meta.get("head_lr", {})), result.groups[0])
        body = [g for g in result.groups if g != head]
        lines.append(f"  head sweep: {_sweeps(result, head)}")
        lines.append(f"  head warm-up: {meta['warmup_steps']} steps at its suggestion, the body held still")
        lines.extend(f"  {g} sweep: {_sweeps(result, g)}" for g in body)
    elif meta.get("strategy") == "split":
        # the groups swept alone (results saved before `head_groups` was recorded: those with a default rule)
        heads = meta.get("head_groups", list(meta.get("default_rules", {})))
        body = [g for g in result.groups if g not in heads]
        held = ", ".join(f"{g} at {lr:.2e}" for g, lr in meta.get("held_lrs", {}).items())
        if meta.get("body_phase") == "held":
            lines.extend(f"  {g} alone, the rest held still: {_sweeps(result, g)}" for g in heads)
            if body:
                lines.append(
                    f"  {', '.join(body)} with the head held at its suggestion ({held}): {_sweeps(result, body[0])}"
                )
        else:
            if body:
                lines.append(f"  every group at one rate, read for {', '.join(body)}: {_sweeps(result, body[0])}")
            how = f"swept beside the rest training at its suggestion ({held})" if held else "alone, the rest held still"
            lines.extend(f"  {g} {how}: {_sweeps(result, g)}" for g in heads)
    else:
        lines.append(f"  {_sweeps(result, result.groups[0])}")
    if meta.get("confirmation"):
        lines.append(f"  {_confirmed(meta['confirmation'])}")
    lines.append(f"  cost: {_cost(result)}; the state before the sweep restored")
    if meta.get("optimizer_warning"):
        lines.append(f"  note: {meta['optimizer_warning']}")
    if table:
        return "\n".join(lines + _table(result))
    others = []
    for group in result.groups:
        rule = method or result.default_rule(group)
        rest = [f"{m} {v:.2e}" for m, v in result.suggestions[group].items() if m != rule and v is not None]
        if rest:
            others.append((f"{group}: " if len(result.groups) > 1 else "") + ", ".join(rest))
    if others:
        lines.append(f"  other rules: {'; '.join(others)}")
    return "\n".join(lines)
