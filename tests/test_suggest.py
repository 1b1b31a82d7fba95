"""Tests for `hf_lrfind.core.suggest`: parity with fastai's rules, hand-made curves with known answers, and edge cases.

The `fastai_*` functions below transcribe fastai's rules (`fastai/callback/schedule.py`, the version with valley as the
default) line for line, and run them as fastai does: on float32 tensors.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_lrfind.core.config import LRFinderConfig
from hf_lrfind.core.suggest import (
    DEFAULT_SUGGESTER,
    SUGGESTERS,
    minimum,
    prepare_curve,
    pretrained,
    pretrained_fit,
    probe,
    resolve_suggesters,
    slide,
    steep,
    suggest_all,
    trough,
    valley,
)

LOGGER = "hf_lrfind.core.suggest"


# The rules decide in float32 as fastai does but return the float64 rate that was applied, so they agree with the
# fastai transcriptions (which return float32 values) to float32 precision: rel=1e-7 pins the index, since
# neighbouring rates of a sweep differ by percents.


def t32(values) -> torch.Tensor:
    """A float32 tensor, as fastai's `tensor(recorder.lrs[...])` builds from a list of Python floats."""
    return torch.tensor(np.asarray(values, dtype=np.float64).tolist(), dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------------------
# fastai's rules, transcribed
# ---------------------------------------------------------------------------------------------------------------------


def fastai_valley(lrs: torch.Tensor, losses: torch.Tensor) -> float:
    # The losses are read as Python floats: they hold the float32 values exactly, so every comparison (NaN included)
    # gives what fastai's 0-d tensor comparison gives, about 100 times faster. The rest is fastai's code.
    losses = losses.tolist()
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def fastai_slide(lrs, losses, lr_diff=15, thresh=0.005, adjust_value=1.0) -> float:
    losses = losses.numpy()  # fastai: to_np(losses)
    loss_grad = np.gradient(losses)
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


def fastai_steep(lrs: torch.Tensor, losses: torch.Tensor) -> float:
    grads = (losses[1:] - losses[:-1]) / (lrs[1:].log() - lrs[:-1].log())
    return lrs[grads.argmin()].item()


def fastai_minimum(lrs: torch.Tensor, losses: torch.Tensor) -> float:
    lr_min = lrs[losses.argmin()].item()
    return lr_min / 10


def fastai_prepare(lrs, losses, num_it):
    # fastai's Learner.lr_find, after the sweep.
    lrs, losses = t32(lrs[num_it // 10 : -5]), t32(losses[num_it // 10 : -5])
    nan_idxs = torch.nonzero(torch.isnan(losses.view(-1)))
    if len(nan_idxs) > 0:
        drop_idx = min(nan_idxs)
        lrs = lrs[:drop_idx]
        losses = losses[:drop_idx]
    return lrs, losses


# ---------------------------------------------------------------------------------------------------------------------
# Random curves
# ---------------------------------------------------------------------------------------------------------------------


def fastai_lrs(n: int, start: float = 1e-7, end: float = 10.0) -> np.ndarray:
    """fastai's exponential schedule for a sweep of n steps."""
    return start * (end / start) ** (np.arange(n) / n)


def smoothed(raw: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """fastai's debiased EMA."""
    out, avg = [], 0.0
    for t, loss in enumerate(raw, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**t))
    return np.array(out)


def realistic(rng: np.random.Generator, n: int) -> np.ndarray:
    """An lr-finder-like smoothed loss: a plateau, a drop, then a blow-up, with noise."""
    x = np.linspace(0, 1, n)
    drop = rng.uniform(0.5, 2.0) / (1 + np.exp(-(x - rng.uniform(0.3, 0.7)) * rng.uniform(5, 30)))
    blow_up = np.exp((x - rng.uniform(0.8, 1.0)) * rng.uniform(10, 30))
    return smoothed(2.3 - drop + blow_up + rng.normal(0, 0.05, n))


VALLEY_KINDS = {
    "ties_0_to_2": lambda rng, n: rng.integers(0, 3, n).astype(float),
    "ties_0_to_9": lambda rng, n: rng.integers(0, 10, n).astype(float),
    # distinct in float64, partly tied once cast to float32 (the float32 ulp at 1 is 1.2e-7)
    "float32_ties": lambda rng, n: rng.integers(0, 3, n) + rng.integers(0, 5, n) * 1e-9,
    "random_walk": lambda rng, n: rng.normal(size=n).cumsum(),
    "realistic": realistic,
    "strictly_decreasing": lambda rng, n: -np.arange(n) * rng.uniform(0.1, 10.0),
    "strictly_increasing": lambda rng, n: np.arange(n) * rng.uniform(0.1, 10.0),
    "constant": lambda rng, n: np.full(n, rng.normal()),
    "with_nan": lambda rng, n: np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 6, n).astype(float)),
}


# ---------------------------------------------------------------------------------------------------------------------
# Parity with the transcriptions
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VALLEY_KINDS))
def test_valley_matches_fastai_on_random_curves(kind):
    rng = np.random.default_rng(sorted(VALLEY_KINDS).index(kind))
    for _ in range(100):  # 9 kinds x 100 curves
        n = int(rng.integers(1, 201))
        lrs, losses = fastai_lrs(n), VALLEY_KINDS[kind](rng, n)
        expected = fastai_valley(t32(lrs), t32(losses))
        assert valley(lrs, losses) == pytest.approx(expected, rel=1e-7), f"n={n}, losses={losses.tolist()}"


def test_slide_matches_fastai_on_random_curves():
    rng = np.random.default_rng(1)
    for _ in range(300):
        lr_diff = int(rng.choice([0, 1, 5, 15, 30]))
        thresh, adjust_value = float(rng.choice([0.0, 0.005, 0.05])), float(rng.choice([1.0, 0.5]))
        n = int(rng.integers(max(lr_diff + 1, 2), 201))
        kind = rng.integers(3)
        if kind == 0:
            losses = realistic(rng, n)
        elif kind == 1:  # gradients of the order of thresh, so the slide stops anywhere
            losses = rng.normal(0, 0.01, n).cumsum()
        else:
            losses = rng.integers(0, 3, n) * 0.01
        lrs = fastai_lrs(n)
        expected = fastai_slide(t32(lrs), t32(losses), lr_diff, thresh, adjust_value)
        got = slide(lrs, losses, lr_diff=lr_diff, thresh=thresh, adjust_value=adjust_value)
        assert got == pytest.approx(expected, rel=1e-7), f"lr_diff={lr_diff}, thresh={thresh}, losses={losses.tolist()}"


def test_steep_matches_fastai_on_random_curves():
    rng = np.random.default_rng(2)
    for _ in range(300):
        n = int(rng.integers(2, 201))
        kind = rng.integers(3)
        if kind == 0:
            lrs, losses = fastai_lrs(n), realistic(rng, n)
        elif kind == 1:
            lrs, losses = fastai_lrs(n), rng.normal(size=n).cumsum()
        else:
            # Slopes tied in exact arithmetic: powers of two (constant log spacing) and integer losses. fastai takes
            # the float32 log with torch and steep with numpy; the two differ by an ulp on a few percent of inputs (20
            # of the 254 float32 powers of two here), which can reorder such ties. On the powers of two where they
            # agree, the ties must break exactly as in fastai.
            pow2 = (2.0 ** np.arange(-126, 128)).astype(np.float32)
            pow2 = pow2[np.log(pow2) == torch.log(torch.from_numpy(pow2)).numpy()]
            lrs, losses = pow2[:n].astype(float), rng.integers(0, 4, n).astype(float)
        assert steep(lrs, losses) == pytest.approx(fastai_steep(t32(lrs), t32(losses)), rel=1e-7), (
            f"losses={losses.tolist()}"
        )


def test_minimum_matches_fastai_on_random_curves():
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 201))
        losses = realistic(rng, n) if rng.integers(2) else rng.integers(0, 4, n).astype(float)
        lrs = fastai_lrs(n)
        assert minimum(lrs, losses) == pytest.approx(fastai_minimum(t32(lrs), t32(losses)), rel=1e-7)


def test_prepare_curve_matches_fastai():
    rng = np.random.default_rng(4)
    for _ in range(200):
        num_it = int(rng.integers(10, 300))
        n = int(rng.integers(1, num_it + 1))  # the sweep may stop early
        lrs, losses = fastai_lrs(num_it)[:n], realistic(rng, n)
        if rng.integers(2):
            losses[rng.integers(n)] = np.nan
        expected_lrs, expected_losses = fastai_prepare(lrs, losses, num_it)
        got_lrs, got_losses = prepare_curve(lrs, losses, num_steps=num_it)
        np.testing.assert_array_equal(t32(got_lrs).numpy(), expected_lrs.numpy())
        np.testing.assert_array_equal(t32(got_losses).numpy(), expected_losses.numpy())


@pytest.mark.skipif(
    importlib.util.find_spec("fastai") is None,
    reason="fastai not installed; the reference transcriptions above cover the rules",
)
def test_rules_match_fastai_itself():
    from fastai.callback import schedule

    rng = np.random.default_rng(5)
    for _ in range(100):
        n = int(rng.integers(16, 201))
        lrs, losses = fastai_lrs(n), realistic(rng, n)
        for name, fastai_fn in [("valley", schedule.valley), ("slide", schedule.slide)]:
            assert SUGGESTERS[name](lrs, losses) == pytest.approx(fastai_fn(t32(lrs), t32(losses), n)[0], rel=1e-7)
        assert steep(lrs, losses) == schedule.steep(t32(lrs), t32(losses), n)[0]
        assert minimum(lrs, losses) == schedule.minimum(t32(lrs), t32(losses), n)[0]


# ---------------------------------------------------------------------------------------------------------------------
# Hand-made curves with known answers
# ---------------------------------------------------------------------------------------------------------------------

LRS10 = [10.0**k for k in range(-9, 1)]  # 1e-9 .. 1


@pytest.mark.parametrize(
    "losses, expected_idx",
    [
        # Flat, drops, rises. lds = [1, 1, 1, 2, 3, 4, 5, 4, 3, 2]: max 5 first at i = 6, max_start = 6 - 5 = 1,
        # sections = 5/3 = 1.67, idx = 1 + 1 + int(0.83) = 2.
        ([5, 5, 5, 4, 3, 2, 1, 2, 3, 4], 2),
        # Strictly decreasing: lds = [1..10], max_end = 9, max_start = 9 - 10 = -1, sections = 10/3 = 3.33,
        # idx = -1 + 3 + int(1.67) = 3.
        ([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 3),
        # Two points, decreasing: max_end = 1, max_start = -1, sections = 2/3, idx = -1 + 0 + 0 = -1: the LAST lr.
        ([2, 1], -1),
        # The same quirk when the only valley is at the start: lds = [1, 2, 1, 1, 1], idx = -1 reads lrs[4].
        ([5, 4, 9, 9, 9], -1),
        # Three points, decreasing: max_start = -1, sections = 4/3, idx = -1 + 1 + int(0.67) = 0.
        ([3, 2, 1], 0),
        # Never decreasing: every lds is 1, max_start = max_end = 0, idx = 0.
        ([1, 2, 2, 3], 0),
        # First maximum wins: lds = [1, 2, 3, 1, 2, 3], max_end = 2 (not 5), max_start = -1, sections = 1, idx = 0.
        # (The last maximum would give max_start = 2 and idx = 3.)
        ([5, 4, 3, 9, 8, 7], 0),
        # Equal losses do not extend a strictly decreasing run: lds = [1, 1, 2, 2], max_end = 2, max_start = 0,
        # sections = 2/3, idx = 0.
        ([2, 2, 1, 1], 0),
        # One point.
        ([7], 0),
    ],
)
def test_valley_hand_made(losses, expected_idx):
    lrs = LRS10[: len(losses)]
    assert valley(lrs, losses) == lrs[expected_idx]


def test_slide_hand_made():
    lrs30 = [1e-7 * 1.5**k for k in range(30)]
    # Linear losses: all gradients equal, the slide never moves and returns lrs[-16] = lrs[25 - 16] = lrs[9].
    assert slide(lrs30[:25], [-k for k in range(25)]) == lrs30[9]
    # Slope -1 up to i = 19, then flat (n = 30). np.gradient: -1 for i <= 18, -0.5 at i = 19, 0 for i >= 20.
    # Windows (r, l = r - 15): r = 29..20 compare 0 with -1 (slide on, cand = lrs[l] down to lrs[5]);
    # r = 19 compares -0.5 with -1 (cand = lrs[4]); r = 18 compares -1 with -1 and stops: lrs[4].
    down_then_flat = [-min(k, 19) for k in range(30)]
    assert slide(lrs30, down_then_flat) == lrs30[4]
    # With thresh = 0.5 the r = 19 window (difference exactly 0.5) already stops: cand stays lrs[5].
    assert slide(lrs30, down_then_flat, thresh=0.5) == lrs30[5]
    # With thresh = 1 the first window (difference 1) stops: lrs[-16] = lrs[14].
    assert slide(lrs30, down_then_flat, thresh=1.0) == lrs30[14]
    # adjust_value scales the result.
    assert slide(lrs30, down_then_flat, adjust_value=0.5) == lrs30[4] * 0.5
    # Quadratic losses k**2 (n = 20): gradients 1, 2, 4, .., 36, 37 never agree 15 points apart, so the slide runs
    # off the left end; the last candidate is lrs[0].
    assert slide(lrs30[:20], [k**2 for k in range(20)]) == lrs30[0]
    # lr_diff = 2 on [0, 0, 0, 1, 2]: gradients [0, 0, 0.5, 1, 1]; r = 4 vs l = 2: 0.5 apart (cand = lrs[2]);
    # r = 3 vs l = 1: 1 apart (cand = lrs[1]); r = 2 vs l = 0: 0.5 apart (cand = lrs[0]); l = -6 ends it: lrs[0].
    assert slide(lrs30[:5], [0, 0, 0, 1, 2], lr_diff=2) == lrs30[0]


def test_steep_hand_made():
    # Even log spacing: loss differences 0, -0.5, -1.5, -0.1, 1.1; the steepest segment is 2 -> 3 and steep returns
    # its LEFT end, lrs[2].
    assert steep(LRS10[:6], [3, 3, 2.5, 1, 0.9, 2]) == LRS10[2]
    # Uneven spacing: both segments drop by 1, the second over half a decade, so it is twice as steep: lrs[1].
    assert steep([1e-3, 1e-2, 10**-1.5], [3, 2, 1]) == 1e-2
    # Exactly tied slopes (log 1 = 0, log 4 = 2 log 2 in float32): the first minimum, lrs[0].
    assert steep([1.0, 2.0, 4.0], [2, 1, 0]) == 1.0


def test_minimum_hand_made():
    # argmin of [3, 2, 1, 1, 4] is 2 (the first of the tied minima); the suggestion is lrs[2] / 10.
    assert minimum(LRS10[:5], [3, 2, 1, 1, 4]) == LRS10[2] / 10


def test_probe_hand_made():
    # The same first minimum as fastai's minimum, read at a seventieth of its rate.
    assert probe(LRS10[:5], [3, 2, 1, 1, 4]) == LRS10[2] / 70


def test_pretrained_reads_the_vertex_of_a_parabola_at_a_sixth():
    # A parabola in log10(lr) with its vertex between sweep points: the fit finds it where the centred mean's lowest
    # point cannot (it is a point of the sweep), and the rule reads a sixth of it.
    lrs = fastai_lrs(100)
    x = np.log10(lrs)
    vertex = -3.37
    losses = 2.0 + 0.5 * (x - vertex) ** 2
    assert pretrained(lrs, losses) == pytest.approx(10**vertex / 6, rel=1e-9)
    assert trough(lrs, losses) != pytest.approx(10**vertex / 3, rel=1e-3)  # trough reads a sweep point
    assert pretrained.uses_raw_losses


def test_pretrained_fits_only_the_span_around_the_bottom_and_the_finite_part():
    # Outside 0.75 decade of the bottom the curve may do anything: only the span is fitted. A non-finite loss cuts the
    # curve as for trough.
    lrs = fastai_lrs(100)
    x = np.log10(lrs)
    losses = 2.0 + 0.5 * (x + 4.0) ** 2
    far = np.abs(x + 4.0) > 0.85  # the span is centred on the sweep point nearest the bottom (-4 +- 0.04)
    wild = np.where(far, losses + np.random.default_rng(0).uniform(0, 5, 100), losses)
    assert pretrained(lrs, wild) == pytest.approx(1e-4 / 6, rel=1e-9)
    cut = wild.copy()
    cut[np.argmax(x > -3.0) :] = np.inf  # diverged 1 decade above the bottom: the span is whole
    assert pretrained(lrs, cut) == pytest.approx(1e-4 / 6, rel=1e-9)


def test_pretrained_falls_back_to_the_bottom_point_where_no_parabola_fits():
    # Decade-spaced rates leave one point within 0.75 decade; a curve falling to the end of the sweep fits a parabola
    # that opens downward: both read the centred mean's lowest point, as trough, at a sixth.
    losses = [6, 5, 4, 2, 1, 1, 1, 5, 6]
    assert pretrained(LRS10[:9], losses) == LRS10[4] / 6 == trough(LRS10[:9], losses) * 3 / 6
    lrs = fastai_lrs(100)
    falling = 3.0 - 0.1 * (np.log10(lrs) + 7.0) ** 2  # concave, lowest at the last rate
    assert pretrained(lrs, falling) == lrs[-1] / 6


def test_pretrained_reads_the_lowest_point_of_a_flat_or_unfittable_curve_without_warnings():
    # A flat curve fits a curvature of rounding size: no vertex is read from it, and nothing is drawn.
    lrs = fastai_lrs(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pretrained(lrs, np.full(100, 3.3)) == pytest.approx(trough(lrs, np.full(100, 3.3)) / 2, rel=1e-15)
        assert pretrained_fit(lrs, np.full(100, 3.3)) is None
        # a group held at lr 0 (a ratio of 0): every rate 0, read as trough reads it
        assert pretrained(np.zeros(20), np.linspace(2, 1, 20)) == 0.0 == trough(np.zeros(20), np.linspace(2, 1, 20))
        # a linear sweep from 0: the rate 0 is left out of the fit (no log of 0), the rest fitted
        linear = np.linspace(0, 1e-3, 101)
        bowl = 1.0 + (np.log10(np.maximum(linear, 1e-12)) + 3.3) ** 2
        assert pretrained(linear, bowl) == pytest.approx(10**-3.3 / 6, rel=1e-9)
    assert pretrained_fit(LRS10[:9], [6, 5, 4, 2, 1, 1, 1, 5, 6]) is None  # one point in the span: no fit


def test_pretrained_fits_a_span_cut_short_by_a_divergence_right_after_the_bottom():
    lrs = fastai_lrs(100)
    x = np.log10(lrs)
    losses = 2.0 + 0.5 * (x + 4.0) ** 2
    losses[np.argmax(x > -3.9) :] = np.nan  # the span holds the bottom and 0.75 decade left of it only
    assert pretrained(lrs, losses) == pytest.approx(1e-4 / 6, rel=1e-9)
    span, fitted = pretrained_fit(lrs, losses)
    assert span.max() < 10**-3.9 and fitted == pytest.approx(2.0 + 0.5 * (np.log10(span) + 4.0) ** 2)


def test_pretrained_keeps_the_vertex_inside_the_span():
    # A bottom at the start of the sweep whose fitted parabola has its vertex below the first rate: kept at the span's
    # lowest rate, never extrapolated past the points that were fitted.
    lrs = fastai_lrs(100)
    losses = 1.0 + (np.log10(lrs) + 8.0) ** 2  # vertex a decade below the sweep's start
    assert pretrained(lrs, losses) == lrs[0] / 6


def test_pretrained_moves_less_than_trough_with_the_noise_of_a_broad_bottom():
    # The reason for the fit: on a broad, shallow bottom (a fine-tuned body's curve) the lowest point of the centred
    # mean wanders with the batches' noise; the vertex of the fit, read from about 18 points, wanders less.
    lrs = fastai_lrs(100)
    x = np.log10(lrs)
    shape = 5.0 - 1.0 / (1 + np.exp(-(x + 5.0) * 3)) + 0.1 * np.maximum(x + 3.5, 0) ** 3  # falls, flat, rises
    rng = np.random.default_rng(11)
    draws = [shape + rng.normal(0, 0.03, 100) for _ in range(40)]
    spread = {}
    for name, fn in (("trough", trough), ("pretrained", pretrained)):
        values = np.log10([fn(lrs, d) for d in draws])
        spread[name] = float(np.std(values))
    assert spread["pretrained"] < 0.6 * spread["trough"], spread


def test_suggestions_are_plain_floats():
    for fn in SUGGESTERS.values():
        assert type(fn(fastai_lrs(40), realistic(np.random.default_rng(6), 40))) is float


# ---------------------------------------------------------------------------------------------------------------------
# Short curves, bad input, input types
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, n_short, n_needed, kwargs",
    [
        ("valley", 0, 1, {}),
        ("slide", 15, 16, {}),  # fastai reads lrs[-16] first
        ("slide", 3, 4, {"lr_diff": 3}),
        ("slide", 1, 2, {"lr_diff": 0}),  # np.gradient needs 2 points
        ("steep", 1, 2, {}),
        ("steep", 0, 2, {}),
        ("minimum", 0, 1, {}),
        ("probe", 0, 1, {}),
        ("pretrained", 0, 1, {}),
    ],
)
def test_too_short_curve_returns_none_and_warns(caplog, name, n_short, n_needed, kwargs):
    lrs, losses = fastai_lrs(n_needed), np.linspace(2, 1, n_needed)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert SUGGESTERS[name](lrs[:n_short], losses[:n_short], **kwargs) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert caplog.records[0].getMessage().startswith(f"{name}: ")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert isinstance(SUGGESTERS[name](lrs, losses, **kwargs), float)
    assert not caplog.records


@pytest.mark.parametrize("name", sorted(SUGGESTERS))
def test_mismatched_lengths_raise(name):
    with pytest.raises(ValueError, match="same length; got 20 and 19"):
        SUGGESTERS[name](fastai_lrs(20), np.ones(19))


@pytest.mark.parametrize("name", sorted(SUGGESTERS))
@pytest.mark.parametrize("bad", ["lrs", "losses"])
def test_non_1d_input_raises(name, bad):
    curve = {"lrs": fastai_lrs(20), "losses": np.linspace(2, 1, 20)}
    curve[bad] = curve[bad].reshape(4, 5)
    with pytest.raises(ValueError, match=rf"{bad} must be 1-D; got shape \(4, 5\)"):
        SUGGESTERS[name](curve["lrs"], curve["losses"])


def test_scalar_input_raises():
    with pytest.raises(ValueError, match="must be 1-D"):
        valley(1e-3, 1.0)


def test_negative_lr_diff_raises():
    with pytest.raises(ValueError, match=r"lr_diff \(-1\) must be non-negative"):
        slide(fastai_lrs(20), np.ones(20), lr_diff=-1)


@pytest.mark.parametrize("name", sorted(SUGGESTERS))
def test_lists_arrays_and_tensors_give_the_same_answer(name):
    rng = np.random.default_rng(7)
    lrs, losses = fastai_lrs(60), realistic(rng, 60)
    fn = SUGGESTERS[name]
    expected = fn(lrs, losses)
    assert fn(lrs.tolist(), losses.tolist()) == pytest.approx(expected, rel=1e-7)
    rel = 1e-6 if name == "pretrained" else 1e-7  # a fitted vertex moves with the float32 rounding of its points
    assert fn(t32(lrs), t32(losses)) == pytest.approx(expected, rel=rel)
    assert fn(torch.tensor(lrs), torch.tensor(losses)) == pytest.approx(expected, rel=1e-7)  # float64 tensors
    assert fn(t32(lrs), t32(losses).requires_grad_()) == pytest.approx(expected, rel=rel)
    assert isinstance(fn(t32(lrs).bfloat16(), t32(losses).bfloat16()), float)


def test_valley_on_a_long_curve():
    # 5,000 points: the O(n log n) valley finishes at once (scripts/bench_valley.py times it). Checked here against an
    # independent O(n^2) computation of lds, vectorised with numpy, and fastai's rule for the indices.
    rng = np.random.default_rng(8)
    n = 5000
    lrs, losses = fastai_lrs(n), realistic(rng, n) + rng.normal(0, 0.01, n)
    loss32 = losses.astype(np.float32)
    lds = np.ones(n, dtype=int)
    for i in range(1, n):
        above = loss32[:i] > loss32[i]
        if above.any():
            lds[i] = lds[:i][above].max() + 1
    max_end = int(np.argmax(lds))  # the first maximum
    max_start = max_end - lds[max_end] if lds[max_end] > 1 else 0
    sections = (max_end - max_start) / 3
    assert valley(lrs, losses) == lrs[max_start + int(sections) + int(sections / 2)]


# ---------------------------------------------------------------------------------------------------------------------
# prepare_curve
# ---------------------------------------------------------------------------------------------------------------------


def _recorded(n: int = 100):
    return np.arange(n, dtype=float), np.linspace(3.0, 1.0, n)


def test_prepare_curve_default_skips():
    lrs, losses = _recorded(100)
    got_lrs, got_losses = prepare_curve(lrs, losses)  # skip_start = 100 // 10, skip_end = 5
    np.testing.assert_array_equal(got_lrs, lrs[10:95])
    np.testing.assert_array_equal(got_losses, losses[10:95])
    assert got_lrs.dtype == got_losses.dtype == np.float64


def test_prepare_curve_skip_end_zero_keeps_the_tail():
    lrs, losses = _recorded(100)
    got_lrs, got_losses = prepare_curve(lrs, losses, skip_end=0)
    np.testing.assert_array_equal(got_lrs, lrs[10:])
    np.testing.assert_array_equal(got_losses, losses[10:])
    got_lrs, _ = prepare_curve(lrs, losses, skip_start=0, skip_end=0)
    np.testing.assert_array_equal(got_lrs, lrs)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_prepare_curve_cuts_at_the_first_non_finite_loss(bad_value):
    lrs, losses = _recorded(100)
    losses[[50, 60]] = bad_value
    got_lrs, got_losses = prepare_curve(lrs, losses)
    np.testing.assert_array_equal(got_lrs, lrs[10:50])
    np.testing.assert_array_equal(got_losses, losses[10:50])


def test_prepare_curve_ignores_non_finite_losses_in_the_skipped_points():
    lrs, losses = _recorded(100)
    losses[[3, 97]] = np.nan  # inside the first 10 and the last 5
    got_lrs, _ = prepare_curve(lrs, losses)
    np.testing.assert_array_equal(got_lrs, lrs[10:95])


def test_prepare_curve_skips_a_tenth_of_the_requested_steps_when_the_sweep_stopped_early():
    lrs, losses = _recorded(60)  # 200 steps requested, diverged after 60
    got_lrs, _ = prepare_curve(lrs, losses, num_steps=200)
    np.testing.assert_array_equal(got_lrs, lrs[20:55])


def test_prepare_curve_explicit_skips_and_too_short_curves():
    lrs, losses = _recorded(30)
    np.testing.assert_array_equal(prepare_curve(lrs, losses, skip_start=2, skip_end=3)[0], lrs[2:27])
    got_lrs, got_losses = prepare_curve(lrs[:4], losses[:4])  # fewer points than skip_end: empty, as fastai's [0:-5]
    assert got_lrs.shape == got_losses.shape == (0,)
    assert valley(got_lrs, got_losses) is None


def test_prepare_curve_accepts_tensors_and_returns_copies():
    lrs, losses = _recorded(100)
    got_lrs, got_losses = prepare_curve(torch.tensor(lrs), torch.tensor(losses))
    np.testing.assert_array_equal(got_lrs, lrs[10:95])
    got_lrs[:] = -1.0
    assert lrs[10] == 10.0


@pytest.mark.parametrize("kwargs", [{"skip_start": -1}, {"skip_end": -1}, {"num_steps": -10}])
def test_prepare_curve_rejects_negative_counts(kwargs):
    lrs, losses = _recorded(100)
    with pytest.raises(ValueError, match="must be non-negative"):
        prepare_curve(lrs, losses, **kwargs)


def test_prepare_curve_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        prepare_curve(np.ones(10), np.ones(9))


# ---------------------------------------------------------------------------------------------------------------------
# resolve_suggesters, suggest_all
# ---------------------------------------------------------------------------------------------------------------------


def test_default_suggester_is_trough_and_fastais_four_keep_their_names():
    assert DEFAULT_SUGGESTER == "trough"
    assert SUGGESTERS[DEFAULT_SUGGESTER] is trough
    assert list(SUGGESTERS) == ["trough", "valley", "slide", "steep", "minimum", "probe", "pretrained"]
    # probe and pretrained: the head's and the body's rules of the split strategy, run there
    assert LRFinderConfig().suggest == ("trough", "valley", "slide", "steep", "minimum")


def test_resolve_names_and_callables():
    def my_rule(lrs, losses):
        return 1e-3

    assert resolve_suggesters("steep") == {"steep": steep}
    assert resolve_suggesters(["valley", "minimum"]) == {"valley": valley, "minimum": minimum}
    assert resolve_suggesters(("valley", "valley")) == {"valley": valley}
    assert resolve_suggesters(my_rule) == {"my_rule": my_rule}
    lam = lambda lrs, losses: None  # noqa: E731
    narrow = functools.partial(slide, lr_diff=5)
    anonymous = functools.partial(lam)
    resolved = resolve_suggesters(["valley", lam, "slide", narrow, anonymous, my_rule])
    assert resolved == {
        "valley": valley,
        "custom_1": lam,
        "slide": slide,
        "slide_3": narrow,
        "custom_4": anonymous,
        "my_rule": my_rule,
    }


def test_resolve_unknown_name_raises():
    with pytest.raises(
        ValueError,
        match=r"'vally'.*\['minimum', 'pretrained', 'probe', 'slide', 'steep', 'trough', 'valley'\].*callable \(lrs, losses\)",
    ):
        resolve_suggesters(["vally"])


@pytest.mark.parametrize("methods", [3, None, ["valley", 3.0]])
def test_resolve_non_callable_raises(methods):
    with pytest.raises(TypeError, match="callable"):
        resolve_suggesters(methods)


def test_suggest_all_runs_every_method():
    rng = np.random.default_rng(9)
    lrs, losses = prepare_curve(fastai_lrs(100), realistic(rng, 100))
    got = suggest_all(lrs, losses, list(SUGGESTERS) + [lambda a, b: np.float32(0.5), lambda a, b: None])
    assert got == {name: fn(lrs, losses) for name, fn in SUGGESTERS.items()} | {"custom_7": 0.5, "custom_8": None}
    assert all(type(v) is float for v in list(got.values())[: len(SUGGESTERS)])


def test_suggest_all_returns_none_for_a_rule_the_curve_is_too_short_for(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        got = suggest_all(fastai_lrs(10), np.linspace(2, 1, 10), ["valley", "slide"])
    assert got["slide"] is None and isinstance(got["valley"], float)
    assert "slide" in caplog.text


def test_suggest_all_does_not_swallow_a_failing_custom_suggester():
    def broken(lrs, losses):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        suggest_all(fastai_lrs(20), np.ones(20), ["valley", broken])


def test_module_does_not_import_torch():
    path = Path(__file__).resolve().parents[1] / "hf_lrfind" / "core" / "suggest.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('suggest', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert module.valley([1e-3, 1e-2], [2.0, 1.0]) is not None\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
