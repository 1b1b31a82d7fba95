"""hf_lrfind's default rule `trough`, its centred mean, and the warnings that say when a curve cannot be trusted."""

import logging
import math

import numpy as np
import pytest

from hf_lrfind.core.recorder import debiased_ema
from hf_lrfind.core.suggest import (
    SUGGESTERS,
    centered_mean,
    curve_warnings,
    minimum,
    prepare_curve,
    suggest_all,
    trough,
)


def lrs_of(n: int) -> np.ndarray:
    return 1e-7 * (1e8) ** (np.arange(n) / n)  # fastai's exponential schedule, 1e-7 to 10


def bowl(n: int = 100, bottom: int = 60) -> np.ndarray:
    """A loss curve falling to its bottom at index `bottom`, then rising as fast (a centred mean keeps the bottom)."""
    i = np.arange(n, dtype=float)
    return 1.0 + 0.05 * np.abs(i - bottom)


def test_centered_mean_known_answers():
    assert centered_mean([1.0, 2.0, 3.0, 4.0, 5.0], 1).tolist() == [1.5, 2.0, 3.0, 4.0, 4.5]
    assert centered_mean([1.0, 2.0, 3.0, 4.0, 5.0], 0).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert centered_mean([2.0, 4.0], 5).tolist() == [3.0, 3.0]


def test_centered_mean_equals_the_windowed_mean_on_a_long_curve():
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    got = centered_mean(x, 2)
    naive = [x[max(i - 2, 0) : i + 3].mean() for i in range(len(x))]
    assert got == pytest.approx(naive, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_centered_mean_rejects_bad_widths(bad):
    with pytest.raises(ValueError, match="half_width"):
        centered_mean([1.0, 2.0], bad)


def test_trough_is_a_third_of_the_rate_at_the_bottom():
    lrs = lrs_of(100)
    assert trough(lrs, bowl(bottom=60)) == pytest.approx(lrs[60] / 3, rel=1e-15)
    assert trough(lrs, bowl(bottom=60), factor=10.0) == pytest.approx(lrs[60] / 10, rel=1e-15)


def test_trough_reads_the_bottom_where_the_ema_lags_behind_it():
    lrs, raw = lrs_of(100), bowl(bottom=60)
    ema = np.asarray(debiased_ema(raw.tolist(), 0.98))
    assert int(np.argmin(ema)) > 60  # fastai's smoothing puts the bottom later...
    assert minimum(lrs, ema) > lrs[60] / 10
    assert trough(lrs, raw) == pytest.approx(lrs[60] / 3)  # ...the centred mean does not


def test_a_single_low_point_does_not_move_the_bottom():
    raw = bowl(bottom=60)
    raw[30] -= 2.0  # one lucky batch, deeper than the bottom: minimum() would take it, trough() averages it out
    lrs = lrs_of(100)
    assert minimum(lrs, raw) == pytest.approx(lrs[30] / 10)
    assert trough(lrs, raw) == pytest.approx(lrs[60] / 3)


def test_trough_cuts_at_the_first_non_finite_loss_and_handles_short_curves(caplog):
    lrs, raw = lrs_of(100), bowl(bottom=60)
    raw[40] = math.nan  # the bottom after it is never reached
    assert trough(lrs, raw) == pytest.approx(lrs[39] / 3)
    assert trough([1e-3], [2.0]) == pytest.approx(1e-3 / 3)
    with caplog.at_level(logging.WARNING, logger="hf_lrfind.core.suggest"):
        assert trough([1e-3, 1e-2], [math.inf, 1.0]) is None
        assert trough([], []) is None
    assert "no finite loss" in caplog.text and "empty" in caplog.text


@pytest.mark.parametrize("factor", [0, -3.0, math.nan, "3"])
def test_trough_rejects_bad_factors(factor):
    with pytest.raises(ValueError, match="factor"):
        trough(lrs_of(10), bowl(10, 5), factor=factor)


def test_suggest_all_gives_trough_the_raw_losses_and_fastais_rules_the_smoothed_ones():
    lrs, raw = lrs_of(100), bowl(bottom=60)
    ema = np.asarray(debiased_ema(raw.tolist(), 0.98))
    got = suggest_all(lrs, ema, ["trough", "minimum"], raw=(lrs, raw))
    assert got == {"trough": trough(lrs, raw), "minimum": minimum(lrs, ema)}
    assert SUGGESTERS["trough"].uses_raw_losses and not getattr(SUGGESTERS["minimum"], "uses_raw_losses", False)


def test_trough_on_a_long_curve_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    lrs, raw = lrs_of(5000), bowl(5000, 3000) + rng.normal(scale=0.05, size=5000)
    naive = np.array([raw[max(i - 2, 0) : i + 3].mean() for i in range(5000)])
    assert trough(lrs, raw) == lrs[int(np.argmin(naive))] / 3


def test_no_warning_on_a_curve_that_drops_and_rises():
    rng = np.random.default_rng(1)
    lrs, raw = prepare_curve(lrs_of(100), bowl() + rng.normal(scale=0.02, size=100))
    assert curve_warnings(lrs, raw, stop_reason="diverged") == []


def test_warning_when_the_loss_never_drops():
    rng = np.random.default_rng(2)
    lrs, raw = prepare_curve(lrs_of(100), 0.69 + rng.normal(scale=0.01, size=100))
    (message,) = curve_warnings(lrs, raw, group="head")
    assert "group 'head' never clearly dropped" in message and "Raise end_lr or num_steps" in message
    (message,) = curve_warnings(lrs, raw, stop_reason="diverged")
    assert (
        "never clearly dropped" in message
        and "The sweep stopped when the loss diverged first" in message
        and "lower start_lr" in message
    )


def test_warning_when_the_loss_is_still_falling_at_the_end():
    lrs, raw = prepare_curve(lrs_of(100), np.linspace(3.0, 1.0, 100))
    (message,) = curve_warnings(lrs, raw, stop_reason="num_steps")
    assert "still falling" in message and "Raise end_lr or num_steps, or lower skip_end" in message


def test_warning_when_too_few_points_remain():
    (message,) = curve_warnings(lrs_of(6), bowl(6, 3), stop_reason="diverged")
    assert "6 points" in message and "too few" in message


def test_a_partial_of_trough_still_reads_the_raw_losses():
    import functools

    lrs, raw = lrs_of(100), bowl(bottom=60)
    ema = np.asarray(debiased_ema(raw.tolist(), 0.98))
    wider = functools.partial(trough, factor=10.0)
    got = suggest_all(lrs, ema, [wider], raw=(lrs, raw))
    assert got == {"trough": pytest.approx(lrs[60] / 10)}


def test_the_default_suggestion_is_the_first_rule_the_sweep_ran():
    from hf_lrfind import LRFinderResult

    older = LRFinderResult(  # a result saved before trough existed: valley first
        lrs={"all": [1e-3, 1e-2]},
        losses={"all": [1.0, 0.5]},
        smoothed_losses={"all": [1.0, 0.7]},
        suggestions={"all": {"valley": 1e-3, "minimum": 1e-4}},
        stop_reason={"all": "num_steps"},
    )
    assert older.suggestion() == 1e-3 and older.suggestion("minimum") == 1e-4


def test_a_diverging_tail_is_not_taken_for_noise():
    rng = np.random.default_rng(4)
    raw = 6.25 - 0.9 * np.clip((np.arange(100) - 40) / 30, 0, 1) + rng.normal(scale=0.02, size=100)
    raw[85:] = np.geomspace(6, 500, 15)  # the loss explodes at the end of the sweep
    lrs, prepared = prepare_curve(lrs_of(100), raw, skip_end=0)
    assert curve_warnings(lrs, prepared, stop_reason="diverged") == []


def test_a_few_wild_points_before_the_bottom_are_not_taken_for_noise():
    # a body sweep after a head warm-up: it starts high and wild, then falls a long way
    rng = np.random.default_rng(5)
    raw = 17.0 - 15.0 * np.clip(np.arange(100) / 60, 0, 1) + rng.normal(scale=0.3, size=100)
    raw[[12, 20, 31]] += 40.0
    lrs, prepared = prepare_curve(lrs_of(100), raw)
    assert curve_warnings(lrs, prepared, stop_reason="diverged") == []
