"""Learning-rate suggestion rules: hf_lrfind's default `trough`, fastai's four (`fastai/callback/schedule.py`),
which give fastai's numbers on the same curve, and the rules of `groups="auto"`: `probe` for the new head and
`pretrained` for the pretrained body.

Each rule takes a curve prepared by [`prepare_curve`] (a list, array or tensor) and raises `ValueError` unless `lrs`
and `losses` are 1-D and of equal length. fastai's rules read the EMA-smoothed losses and compute in float32 as fastai
does; `trough` reads the raw losses (the engine passes each rule the curve it asks for)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Suggester = Callable[[Sequence[float], Sequence[float]], float | None]
CurveLike = Union[Sequence[float], np.ndarray, "torch.Tensor"]
Methods = str | Suggester | Sequence[str | Suggester]
DEFAULT_SUGGESTER = "trough"
TROUGH_HALF_WIDTH = 2
TROUGH_FACTOR = 3.0
PROBE_FACTOR = 70.0
PRETRAINED_FACTOR = 6.0
PRETRAINED_DECADES = 0.75


def _curve(lrs: CurveLike, losses: CurveLike, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """`lrs` as float64 (a suggestion returns the exact rate that was applied) and `losses` as `dtype`."""
    arrays = []
    for name, values, kind in (("lrs", lrs, np.float64), ("losses", losses, dtype)):
        if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, recognised without importing torch
            values = values.detach().cpu().double().numpy()  # exact for float32; also takes bfloat16 and ints
        arrays.append(np.asarray(values, dtype=kind))
        if arrays[-1].ndim != 1:
            raise ValueError(f"{name} must be 1-D; got shape {arrays[-1].shape}. Pass one value per recorded step.")
    if len(arrays[0]) != len(arrays[1]):
        lengths = f"{len(arrays[0])} and {len(arrays[1])}"
        raise ValueError(f"lrs and losses must have the same length; got {lengths}. Pass one loss per learning rate.")
    return arrays[0], arrays[1]


def finite_length(values: np.ndarray) -> int:
    """How many values come before the first non-finite one (NaN or +-inf): where a curve is cut."""
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) if len(bad) else len(values)


def valley(lrs: CurveLike, losses: CurveLike) -> float | None:
    """
    fastai's default rule: the point 1/3 + 1/6 of the way along the longest valley of the curve. `lds[i]` is the
    length of the longest strictly decreasing subsequence of `losses` (not necessarily contiguous) ending at `i`.
    `max_end` is the first index reaching the largest `lds`, and `max_start = max_end - lds[max_end]` (it can be -1);
    both stay 0 when every `lds` is 1. With `sections = (max_end - max_start) / 3`, the result is
    `lrs[max_start + int(sections) + int(sections / 2)]` with Python indexing (index -1 reads the last lr). O(n log n).

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Losses of the prepared curve, one per learning rate.

    Returns:
        `float | None`: The suggestion, or `None` (with a warning) for an empty curve.
    """
    lrs64, losses32 = _curve(lrs, losses)
    if len(losses32) == 0:
        logger.warning("valley: the curve is empty, so there is no learning rate to suggest; returning None.")
        return None
    # Patience sorting on -loss: tails[k] is the least tail of a strictly increasing run of -loss of length k + 1, so
    # lds[i] = (left insertion point of -losses[i]) + 1. NaN compares False in fastai: its lds is 1, not inserted.
    tails = np.empty(len(losses32), dtype=np.float64)
    size, best, max_start, max_end = 0, 1, 0, 0  # best = lds[max_end]; fastai starts at max_end = 0, lds[0] = 1
    for i, loss in enumerate(losses32.tolist()):
        if loss != loss:
            continue
        pos = int(np.searchsorted(tails[:size], -loss, side="left"))
        tails[pos] = -loss
        size = max(size, pos + 1)
        # fastai checks `lds[max_end] < lds[i]` inside its inner j loop. With M = lds[max_end] before i, every lds[j]
        # (j < i) is <= M, so lds[i] only grows and never exceeds M + 1: the check fires at most once, when lds[i]
        # reaches its final value M + 1. Checking once after the loop gives the same max_end and max_start.
        if pos + 1 > best:
            best, max_end, max_start = pos + 1, i, i - (pos + 1)
    sections = (max_end - max_start) / 3
    return float(lrs64[max_start + int(sections) + int(sections / 2)])


def slide(
    lrs: CurveLike, losses: CurveLike, *, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0
) -> float | None:
    """
    fastai's interval slide rule: slide a window of `lr_diff` points leftwards from the end of the curve until the
    loss gradients at its two ends agree within `thresh`. With `g = numpy.gradient(losses)`, start from `r = -1`,
    `l = r - lr_diff` and `cand = lrs[l]`; while `l >= -n` and `|g[r] - g[l]| > thresh`, set `cand = lrs[l]`, then
    `r -= 1` and `l -= 1`. The result is `cand * adjust_value`.

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Losses of the prepared curve, one per learning rate.
        lr_diff (`int`, *optional*, defaults to 15): Window width in points; a negative one raises `ValueError`.
        thresh (`float`, *optional*, defaults to 0.005): Gradient difference at or below which the slide stops.
        adjust_value (`float`, *optional*, defaults to 1.0): Factor applied to the learning rate found.

    Returns:
        `float | None`: The suggestion, or `None` (with a warning) below `max(lr_diff + 1, 2)` points.
    """
    if lr_diff < 0:
        raise ValueError(f"lr_diff ({lr_diff}) must be non-negative; pass the window width in points, e.g. 15.")
    lrs64, losses32 = _curve(lrs, losses)
    n, needed = len(losses32), max(lr_diff + 1, 2)
    if n < needed:
        logger.warning(f"slide: the curve has {n} point(s), fewer than the {needed} it needs; returning None.")
        return None
    grads = np.gradient(losses32)
    right, left = -1, -1 - lr_diff
    cand = lrs64[left]
    while left >= -n and abs(grads[right] - grads[left]) > thresh:
        cand = lrs64[left]
        right, left = right - 1, left - 1
    return float(cand) * adjust_value


def steep(lrs: CurveLike, losses: CurveLike) -> float | None:
    """
    fastai's steepest-slope rule: `lrs[argmin(grads)]` (first minimum), where
    `grads[i] = (losses[i + 1] - losses[i]) / (ln lrs[i + 1] - ln lrs[i])` for `i = 0 .. n - 2`. numpy's float32 log
    can differ from torch's by an ulp, which can only matter between slopes that are equal in exact arithmetic.

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Losses of the prepared curve, one per learning rate.

    Returns:
        `float | None`: The suggestion, or `None` (with a warning) below 2 points.
    """
    lrs64, losses32 = _curve(lrs, losses)
    if len(losses32) < 2:
        logger.warning(f"steep: the curve has {len(losses32)} point(s); a slope needs 2. Returning None.")
        return None
    with np.errstate(divide="ignore", invalid="ignore"):  # equal or non-positive lrs give inf/NaN slopes, as in fastai
        grads = (losses32[1:] - losses32[:-1]) / np.diff(np.log(lrs64.astype(np.float32)))
    return float(lrs64[int(np.argmin(grads))])


def minimum(lrs: CurveLike, losses: CurveLike) -> float | None:
    """
    fastai's minimum rule: a tenth of the learning rate at the lowest loss, `lrs[argmin(losses)] / 10` (first minimum).

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Losses of the prepared curve, one per learning rate.

    Returns:
        `float | None`: The suggestion, or `None` (with a warning) for an empty curve.
    """
    return _below_lowest("minimum", lrs, losses, 10)


def probe(lrs: CurveLike, losses: CurveLike) -> float | None:
    """
    hf_lrfind's rule for a new head read off its linear-probe curve (the head swept alone on a still body, phase 2 of
    the split strategy): a seventieth of the learning rate at the lowest loss, `lrs[argmin(losses)] / 70` (first
    minimum), a seventh of fastai's `minimum`. The head then trains beside a moving body, at a lower rate than the
    probe alone tolerates. The factor was read off the suggestion benchmark's six fine-tunes (docs/suggestions.md,
    "The head's factor"): 70 lies near the middle (68.5 in log scale) of the factors, 63.8 to 73.5, that put every
    seed's suggestion inside the head window (the head rates that train best at the best pair's body rate) and, at
    the three seeds with pair grids, among the head rates that train inside the tie band beside the grid's body rate
    nearest the one the split strategy reads. It was 30 until a held-out fine-tune's seed trained outside its band
    with the head at the top of those rates.

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Losses of the prepared curve, one per learning rate.

    Returns:
        `float | None`: The suggestion, or `None` (with a warning) for an empty curve.
    """
    return _below_lowest("probe", lrs, losses, PROBE_FACTOR)


def _below_lowest(rule: str, lrs: CurveLike, losses: CurveLike, factor: float) -> float | None:
    """`lrs[argmin(losses)] / factor` (first minimum), `None` with a warning for an empty curve."""
    lrs64, losses32 = _curve(lrs, losses)
    if len(losses32) == 0:
        logger.warning(f"{rule}: the curve is empty, so there is no learning rate to suggest; returning None.")
        return None
    return float(lrs64[int(np.argmin(losses32))]) / factor


def centered_mean(values: CurveLike, half_width: int) -> np.ndarray:
    """
    The mean of each point's window `[i - half_width, i + half_width]`, cut at the ends of the curve (where the window
    holds fewer points). Unlike an EMA it has no lag: a feature of the curve stays at the learning rate where it is.
    O(n) with a cumulative sum; float64.

    Args:
        values (`Sequence[float]`): The curve, one value per step (finite).
        half_width (`int`): Points on each side of the window's centre; 0 returns the values.

    Returns:
        `np.ndarray`: The smoothed curve, of the same length.
    """
    if isinstance(half_width, bool) or not isinstance(half_width, int) or half_width < 0:
        raise ValueError(f"half_width ({half_width!r}) must be a non-negative int.")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D; got shape {x.shape}.")
    sums = np.concatenate(([0.0], np.cumsum(x)))
    i = np.arange(len(x))
    lo, hi = np.maximum(i - half_width, 0), np.minimum(i + half_width + 1, len(x))
    return (sums[hi] - sums[lo]) / (hi - lo)


def _cut_and_lowest(
    rule: str, lrs: CurveLike, losses: CurveLike, half_width: int
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The curve (float64) cut at its first non-finite loss, and the index of the first minimum of its
    `centered_mean(losses, half_width)`; `None` with a warning naming `rule` when there is no finite loss."""
    lrs64, losses64 = _curve(lrs, losses, np.float64)
    if len(losses64) == 0:
        logger.warning(f"{rule}: the curve is empty, so there is no learning rate to suggest; returning None.")
        return None
    end = finite_length(losses64)
    if end == 0:
        logger.warning(
            f"{rule}: the curve starts with a non-finite loss, so there is no finite loss to read; returning None."
        )
        return None
    return lrs64[:end], losses64[:end], int(np.argmin(centered_mean(losses64[:end], half_width)))


def _bottom(rule: str, lrs: CurveLike, losses: CurveLike, half_width: int) -> float | None:
    """The rate at the first minimum of `centered_mean(losses, half_width)` on the curve cut at its first non-finite
    loss; `None` with a warning naming `rule` when there is no finite loss."""
    cut = _cut_and_lowest(rule, lrs, losses, half_width)
    return None if cut is None else float(cut[0][cut[2]])


def trough(
    lrs: CurveLike, losses: CurveLike, *, half_width: int = TROUGH_HALF_WIDTH, factor: float = TROUGH_FACTOR
) -> float | None:
    """
    hf_lrfind's default rule: a `factor`-th of the learning rate at the bottom of the loss curve, read on the raw
    losses through a centred mean (see [`centered_mean`]) instead of fastai's EMA, so the bottom is found where it
    is rather than about a decade of learning rate later. With `s = centered_mean(losses, half_width)`, the result is
    `lrs[argmin(s)] / factor` (first minimum). The curve is cut at its first non-finite loss.

    It takes the raw losses (`trough.uses_raw_losses` is `True`): the engine passes them, and the mean of several
    sweeps when `num_sweeps > 1`. The defaults were chosen by the suggestion benchmark (docs/suggestions.md): fine-tuning,
    LoRA and training from scratch all train best near a third of the rate at the bottom of the curve.

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Raw losses of the prepared curve, one per learning rate.
        half_width (`int`, *optional*, defaults to 2): Points on each side of the centred mean.
        factor (`float`, *optional*, defaults to 3.0): The suggestion is the bottom's rate divided by this.

    Returns:
        `float | None`: The suggestion, or `None` (with a warning) when the curve is empty or starts non-finite.
    """
    if isinstance(factor, bool) or not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor ({factor!r}) must be a positive number, such as 3.")
    bottom = _bottom("trough", lrs, losses, half_width)
    return None if bottom is None else bottom / factor


trough.uses_raw_losses = True  # type: ignore[attr-defined]


def _parabola(
    rule: str, lrs: CurveLike, losses: CurveLike, decades: float
) -> tuple[float, tuple[np.ndarray, np.ndarray] | None] | None:
    """
    The least-squares parabola through the raw losses against log10(lr) within `decades` of the centred mean's first
    minimum (as `_bottom` finds it, on the curve cut at its first non-finite loss; rates <= 0 left out): `(that
    minimum's rate, (log10 of the span's rates, coefficients highest first))`, the fit `None` where the span holds
    fewer than 3 distinct rates or the parabola does not open upward by more than rounding. `None` as `_bottom`.
    """
    cut = _cut_and_lowest(rule, lrs, losses, TROUGH_HALF_WIDTH)
    if cut is None:
        return None
    lrs64, losses64, i = cut
    at = float(lrs64[i])
    if not at > 0:
        return at, None
    positive = lrs64 > 0
    x, y = np.log10(lrs64[positive]), losses64[positive]
    near = np.abs(x - math.log10(at)) <= decades
    x, y = x[near], y[near]
    if len(np.unique(x)) < 3:
        return at, None
    coefficients = np.polyfit(x, y, 2)
    # a flat span fits a curvature of rounding size, whose vertex would be anywhere
    curved = coefficients[0] * np.ptp(x) ** 2 > 1e-9 * np.abs(y).max()
    return at, ((x, coefficients) if curved else None)


def _fitted_bottom(rule: str, lrs: CurveLike, losses: CurveLike, decades: float) -> float | None:
    """The bottom of the curve read by a fit: the vertex of `_parabola`, kept inside its span; the centred mean's
    minimum where no parabola opening upward fits. `None` as `_bottom`."""
    found = _parabola(rule, lrs, losses, decades)
    if found is None:
        return None
    at, fit = found
    if fit is None:
        return at
    x, (c2, c1, _) = fit
    return float(10 ** np.clip(-c1 / (2 * c2), x.min(), x.max()))


def pretrained_fit(lrs: CurveLike, losses: CurveLike) -> tuple[np.ndarray, np.ndarray] | None:
    """
    The parabola [`pretrained`] fits, for drawing it ([`~LRFinderResult.plot`] does).

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Raw losses of the prepared curve, one per learning rate.

    Returns:
        `tuple[np.ndarray, np.ndarray] | None`: the learning rates of the fitted span and the parabola's losses there;
        `None` where `pretrained` reads the centred mean's lowest point instead, or the curve has no finite loss.
    """
    found = _parabola("pretrained", lrs, losses, PRETRAINED_DECADES)
    if found is None or found[1] is None:
        return None
    x, coefficients = found[1]
    return 10**x, np.polyval(coefficients, x)


def pretrained(lrs: CurveLike, losses: CurveLike) -> float | None:
    """
    hf_lrfind's rule for pretrained weights fine-tuned beside a new head, read off the whole model swept at one rate
    (phase 1 of the split strategy): a sixth of the curve's fitted bottom. The bottom is the vertex of the
    least-squares parabola through the raw losses against log10(lr), fitted within 0.75 decade of the first minimum
    of `centered_mean(losses, 2)` (the point [`trough`] reads) and kept inside that span; the minimum's rate where the
    span holds under 3 distinct rates or the parabola is flat or opens downward (and where that rate is not
    positive: a group held at lr 0).

    The bottom of that curve is where the new head still learns fastest while the body already strains; the body
    trains best below it. A fine-tuned body's curve has a broad, shallow bottom whose lowest point wanders with the
    batches; the fit reads its middle from 19 points of the default sweep instead of 5, and moves less between
    data orders. The span and the factor were read off the cached curves and (body, head) grids of the suggestion
    benchmark's fine-tunes (docs/suggestions.md, "The body's rule").

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Raw losses of the prepared curve, one per learning rate.

    Returns:
        `float | None`: The suggestion, or `None` (with a warning) when the curve is empty or starts non-finite.
    """
    bottom = _fitted_bottom("pretrained", lrs, losses, PRETRAINED_DECADES)
    return None if bottom is None else bottom / PRETRAINED_FACTOR


pretrained.uses_raw_losses = True  # type: ignore[attr-defined]

SUGGESTERS: dict[str, Suggester] = {
    "trough": trough,
    "valley": valley,
    "slide": slide,
    "steep": steep,
    "minimum": minimum,
    "probe": probe,
    "pretrained": pretrained,
}


def prepare_curve(
    lrs: CurveLike,
    losses: CurveLike,
    *,
    num_steps: int | None = None,
    skip_start: int | None = None,
    skip_end: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Prepare a recorded curve as fastai's `lr_find` does: keep the points `[skip_start : len - skip_end]`, then cut at
    the first non-finite loss (fastai cuts at the first NaN; this also cuts at +-inf).

    Args:
        lrs (`Sequence[float]`): Recorded learning rates, one per step.
        losses (`Sequence[float]`): Recorded (smoothed) losses, one per learning rate.
        num_steps (`int`, *optional*):
            Steps *requested*, defaulting to the number recorded; a sweep that stopped early still skips a tenth.
        skip_start (`int`, *optional*): Points dropped at the start; defaults to `num_steps // 10`.
        skip_end (`int`, *optional*, defaults to 5): Points dropped at the end; 0 keeps them all.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: The prepared learning rates and losses as float64 arrays (possibly empty).

    Raises:
        `ValueError`: If a count is negative, or `lrs` and `losses` are not 1-D or differ in length.
    """
    lrs64, losses64 = _curve(lrs, losses, np.float64)
    num_steps = len(lrs64) if num_steps is None else num_steps
    skip_start = num_steps // 10 if skip_start is None else skip_start
    for name, value in (("num_steps", num_steps), ("skip_start", skip_start), ("skip_end", skip_end)):
        if value < 0:
            raise ValueError(f"{name} ({value}) must be non-negative; pass 0 to skip nothing.")
    stop = max(len(lrs64) - skip_end, 0)  # an explicit stop, so skip_end=0 keeps the tail (no [a:-0] slice)
    lrs64, losses64 = lrs64[skip_start:stop], losses64[skip_start:stop]
    end = finite_length(losses64)
    return lrs64[:end].copy(), losses64[:end].copy()


STOP_REASONS = {
    "num_steps": "ran to the end",
    "diverged": "stopped when the loss diverged",
    "non_finite_loss": "stopped at a non-finite loss",
    "too_many_skipped_steps": "stopped after too many skipped fp16 steps",
}  # why a sweep ended, in words


def curve_warnings(
    lrs: CurveLike, losses: CurveLike, *, stop_reason: str = "num_steps", group: str | None = None
) -> list[str]:
    """
    What makes the suggestions of a prepared curve untrustworthy, in words (empty when nothing does):

    - fewer than 10 points;
    - no clear drop: the centred mean of the raw loss (7 points) never falls below its starting level by more than
      twice the scatter of the raw loss around it (up to its lowest point; median absolute deviation) and 1% of that
      level (too low an `end_lr`, too few steps, or a model that does not learn from these batches);
    - still falling at the end: the lowest point lies in the last 5% of a sweep that ran all its steps (raise `end_lr`
      or `num_steps`).

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Raw losses of the prepared curve.
        stop_reason (`str`, *optional*, defaults to `"num_steps"`): Why the sweep stopped.
        group (`str`, *optional*): The group's name, for the messages.

    Returns:
        `list[str]`: One message per problem.
    """
    lrs64, losses64 = _curve(lrs, losses, np.float64)
    where = f" for group {group!r}" if group is not None else ""
    n = len(losses64)
    if n < 10:
        return [
            f"The curve{where} has {n} points after skipping the first and last ones ({stop_reason}): too few to suggest from. Run more steps, or lower start_lr if the loss diverged early."
        ]
    smooth = centered_mean(losses64, 3)
    low = int(np.argmin(smooth))
    # The scatter of the raw loss around its centred mean, up to the bottom (a diverging tail is not noise), robust to
    # a few spikes: the median absolute deviation, scaled to a standard deviation.
    upto = max(low + 1, 10)
    start, scatter = smooth[0], 1.4826 * float(np.median(np.abs(losses64[:upto] - smooth[:upto])))
    if start - smooth[low] <= max(2 * scatter, 0.01 * abs(start)):
        if stop_reason == "num_steps":
            advice = f"Raise end_lr or num_steps (the curve ends at lr {lrs64[-1]:.3g}: its last skip_end points are left out), or check that the model learns from these batches."
        else:
            why = STOP_REASONS.get(stop_reason, f"stopped ({stop_reason})")
            advice = f"The sweep {why} first: check that the model learns from these batches (labels, trainable parameters), or lower start_lr."
        return [
            f"The loss{where} never clearly dropped (from {start:.4g} to at best {smooth[low]:.4g}, scatter {scatter:.2g}): the suggestions do not point at a rate that trains. {advice}"
        ]
    if stop_reason == "num_steps" and low >= n - max(1, n // 20):
        return [
            f"The loss{where} was still falling at the end of the curve (lowest at lr {lrs64[low]:.3g}; its last skip_end points are left out): the suggestions may be too low. Raise end_lr or num_steps, or lower skip_end."
        ]
    return []


def resolve_suggesters(methods: Methods) -> dict[str, Suggester]:
    """
    Turn suggestion methods into a `{name: function}` dict, in the order given.

    Args:
        methods (`str`, `Callable`, or a sequence of them):
            Names among `"trough"`, `"valley"`, `"slide"`, `"steep"`, `"minimum"`, or callables `(lrs, losses) -> float | None`,
            named by `__name__` (a partial, by its function's), else `custom_<i>` with `i` the position; a name
            already taken by another function gets the suffix `_<i>`.

    Returns:
        `dict[str, Suggester]`: The suggesters by name.

    Raises:
        `ValueError`: If a name is unknown.
        `TypeError`: If a method is neither a name nor a callable.
    """
    accepted = f"known methods are {sorted(SUGGESTERS)}, and a callable (lrs, losses) -> float | None is also accepted"
    try:
        items = [methods] if isinstance(methods, str) or callable(methods) else list(methods)
    except TypeError as e:
        raise TypeError(f"methods ({methods!r}) is not a name, a callable, or a sequence of them: {accepted}.") from e
    resolved: dict[str, Suggester] = {}
    for i, method in enumerate(items):
        if isinstance(method, str):
            if method not in SUGGESTERS:
                raise ValueError(f"Unknown suggestion method {method!r}: {accepted}.")
            name, fn = method, SUGGESTERS[method]
        elif callable(method):
            name = getattr(method, "__name__", None) or getattr(getattr(method, "func", None), "__name__", None)
            name, fn = (f"custom_{i}" if not name or name == "<lambda>" else name), method
        else:
            raise TypeError(f"Suggestion method {method!r} is neither a name nor a callable: {accepted}.")
        resolved[name if resolved.get(name, fn) is fn else f"{name}_{i}"] = fn
    return resolved


def _uses_raw(fn: Suggester) -> bool:
    """Whether a rule reads the raw losses: its `uses_raw_losses`, or that of the function a `functools.partial` wraps."""
    return bool(getattr(fn, "uses_raw_losses", getattr(getattr(fn, "func", None), "uses_raw_losses", False)))


def suggest_all(
    lrs: CurveLike, losses: CurveLike, methods: Methods, *, raw: tuple[CurveLike, CurveLike] | None = None
) -> dict[str, float | None]:
    """
    Run each suggestion method on an already prepared curve (see [`prepare_curve`]). Errors from resolving the methods
    (see [`resolve_suggesters`]) and from a custom suggester propagate unchanged.

    Args:
        lrs (`Sequence[float]`): Learning rates of the prepared curve.
        losses (`Sequence[float]`): Smoothed (EMA) losses of the prepared curve, one per learning rate.
        methods (`str`, `Callable`, or a sequence of them):
            As accepted by [`resolve_suggesters`]. Callables receive float64 numpy arrays.
        raw (`tuple`, *optional*): The prepared `(lrs, raw losses)`, for the rules that smooth the raw losses
            themselves (those with `uses_raw_losses = True`, such as [`trough`]); they get `(lrs, losses)` without it.

    Returns:
        `dict[str, float | None]`: Each method's suggestion; `None` where the curve is too short for it.
    """
    smoothed = _curve(lrs, losses, np.float64)
    raw64 = smoothed if raw is None else _curve(*raw, np.float64)
    results = {name: fn(*(raw64 if _uses_raw(fn) else smoothed)) for name, fn in resolve_suggesters(methods).items()}
    return {name: None if value is None else float(value) for name, value in results.items()}
