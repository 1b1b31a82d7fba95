"""The framework-neutral engine: schedules, smoothing, stopping, restore, result round trip and plot."""

import glob
import math
import os
import random
import tempfile

import numpy as np
import pytest
import torch

from hf_lrfind import LRFinderConfig, LRFinderResult, StepOutput, range_test
from hf_lrfind.core.recorder import debiased_ema, diverged
from hf_lrfind.core.schedule import param_group_names
from hf_lrfind.core.state import StateSnapshot
from hf_lrfind.core.suggest import centered_mean


def tiny_model(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def make_step(model, optimizer, seed=0, fail_at=None, losses=None):
    """A real training step on a fixed regression problem; `losses` replaces the reported loss by given values."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 8, generator=g)
    y = x.sum(1, keepdim=True)
    calls = []

    def step():
        calls.append([group["lr"] for group in optimizer.param_groups])
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError("boom")
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        reported = torch.tensor(losses[len(calls) - 1]) if losses is not None else loss.detach()
        return StepOutput(reported)

    return step, calls


def state_of(model, optimizer):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in _flat(optimizer.state_dict())},
    )


def _flat(d, prefix=""):
    for k, v in d.items() if isinstance(d, dict) else enumerate(d):
        if isinstance(v, (dict, list)):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def assert_same_state(a, b):
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), k
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        if isinstance(a[1][k], torch.Tensor):
            assert torch.equal(a[1][k], b[1][k]), k
        else:
            assert a[1][k] == b[1][k], k


def two_group_optimizer(model, lr0=1e-3, ratio=0.1, names=None):
    groups = [
        {"params": list(model[0].parameters()) + list(model[1].parameters()), "lr": lr0},
        {"params": list(model[3].parameters()), "lr": lr0 * ratio},
    ]
    if names:
        for g, n in zip(groups, names):
            g["name"] = n
    return torch.optim.AdamW(groups, weight_decay=0.01)


def test_exp_schedule_is_fastai_and_keeps_group_ratios():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=0.1)
    step, calls = make_step(model, opt, losses=[1.0] * 20)
    result = range_test(
        step,
        model,
        opt,
        LRFinderConfig(num_sweeps=1, start_lr=1e-4, end_lr=1.0, num_steps=20, skip_end=0),
        progress=False,
    )
    expected = [1e-4 * (1.0 / 1e-4) ** (i / 20) for i in range(20)]
    assert result.lrs["group_0"] == pytest.approx(expected, rel=1e-12)
    assert result.lrs["group_1"] == pytest.approx([0.1 * lr for lr in expected], rel=1e-12)
    assert [c[0] for c in calls] == result.lrs["group_0"]  # what the step saw is what was recorded
    assert result.stop_reason == {"group_0": "num_steps", "group_1": "num_steps"}
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4]  # restored


def test_linear_schedule_and_explicit_group_bounds():
    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "head"])
    step, _ = make_step(model, opt, losses=[1.0] * 10)
    config = LRFinderConfig(
        num_sweeps=1, start_lr=[0.1, 1.0], end_lr=[1.1, 3.0], num_steps=10, mode="linear", skip_end=0
    )
    result = range_test(step, model, opt, config, progress=False)
    assert result.lrs["body"] == pytest.approx([0.1 + i / 10 for i in range(10)])
    assert result.lrs["head"] == pytest.approx([1.0 + 2 * i / 10 for i in range(10)])
    assert result.metadata["start_lr"] == {"body": 0.1, "head": 1.0}


def test_smoothing_is_the_debiased_ema():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    raw = [3.0, 2.0, 2.5, 1.0, 1.5, 0.5, 0.7, 0.2]
    step, _ = make_step(model, opt, losses=raw)
    result = range_test(
        step,
        model,
        opt,
        LRFinderConfig(num_sweeps=1, num_steps=8, beta=0.9, check_every=3, diverge_threshold=None),
        progress=False,
    )
    avg, expected = 0.0, []
    for t, loss in enumerate(raw, start=1):
        avg = 0.9 * avg + 0.1 * loss
        expected.append(avg / (1 - 0.9**t))
    assert result.losses["all"] == pytest.approx(raw)
    assert result.smoothed_losses["all"] == pytest.approx(expected, rel=1e-6)


def test_divergence_stops_and_cuts_points_past_it():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    raw = [1.0] * 10 + [1000.0] * 30
    step, calls = make_step(model, opt, losses=raw)
    result = range_test(
        step, model, opt, LRFinderConfig(num_sweeps=1, num_steps=40, beta=0.5, check_every=8), progress=False
    )
    # smoothed: 1.0 for 10 steps, then the debiased EMA of 1000 crosses 4x the best (1.0) at step 11 (index 10)
    assert result.stop_reason["all"] == "diverged"
    assert len(result.losses["all"]) == 11 and len(result.lrs["all"]) == 11
    assert len(calls) == 16  # ran to the end of the chunk that held the stop (2 x check_every), no further
    assert result.metadata["steps_run"] == 11


def test_divergence_with_a_real_model_and_huge_end_lr():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = state_of(model, opt)
    step, _ = make_step(model, opt)
    result = range_test(
        step,
        model,
        opt,
        LRFinderConfig(num_sweeps=1, start_lr=1e-4, end_lr=1e6, num_steps=100, check_every=1),
        progress=False,
    )
    assert result.stop_reason["all"] in ("diverged", "non_finite_loss")
    assert len(result.losses["all"]) < 100
    assert_same_state(before, state_of(model, opt))


def test_divergence_rule_works_for_negative_losses():
    assert diverged(4.1, 1.0, 4.0) and not diverged(3.9, 1.0, 4.0)  # fastai's 4x for positive losses
    assert not diverged(-1.5, -2.0, 4.0)  # a rise of 0.5 from -2 is no divergence (4 * -2 = -8 would say it is)
    assert diverged(4.5, -2.0, 4.0)  # a rise of 6.5 > 3 * |-2| is
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    raw = [-1.0 - 0.01 * i for i in range(30)] + [50.0] * 20
    step, _ = make_step(model, opt, losses=raw)
    result = range_test(
        step, model, opt, LRFinderConfig(num_sweeps=1, num_steps=50, beta=0.5, check_every=1), progress=False
    )
    assert result.stop_reason["all"] == "diverged"
    assert 30 < len(result.losses["all"]) < 35


def test_non_finite_loss_stops_and_is_cut_by_preparation():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    raw = [2.0 - 0.05 * i for i in range(25)] + [math.nan] * 5
    step, _ = make_step(model, opt, losses=raw)
    result = range_test(step, model, opt, LRFinderConfig(num_sweeps=1, num_steps=30, check_every=4), progress=False)
    assert result.stop_reason["all"] == "non_finite_loss"
    assert len(result.losses["all"]) == 26 and math.isnan(result.losses["all"][-1])
    assert result.suggestions["all"]["valley"] is not None


@pytest.mark.parametrize("where", ["cpu", "disk"])
@pytest.mark.parametrize("how", ["completed", "diverged", "exception", "interrupt"])
def test_restore_is_bit_identical(tmp_path, where, how):
    model = tiny_model()
    opt = two_group_optimizer(model)
    # give the optimizer real state first, so restore has something to get right
    warm, _ = make_step(model, opt, seed=1)
    for _ in range(3):
        warm()
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    before = state_of(model, opt)
    rngs = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    losses = [1.0] * 5 + [1e9] * 20 if how == "diverged" else None
    fail_at = 7 if how == "exception" else None
    step, _ = make_step(model, opt, fail_at=fail_at, losses=losses)

    noise_calls = []

    def step_with_noise():
        torch.rand(3), random.random(), np.random.rand()  # the sweep consumes every RNG
        noise_calls.append(1)
        if how == "interrupt" and len(noise_calls) == 5:
            raise KeyboardInterrupt
        return step()

    config = LRFinderConfig(num_sweeps=1, num_steps=20, snapshot=where, snapshot_dir=str(tmp_path), check_every=1)
    if how in ("exception", "interrupt"):
        with pytest.raises(RuntimeError if how == "exception" else KeyboardInterrupt):
            range_test(step_with_noise, model, opt, config, progress=False)
    else:
        range_test(step_with_noise, model, opt, config, progress=False)
    assert_same_state(before, state_of(model, opt))
    assert torch.equal(rngs[0], torch.get_rng_state())
    assert rngs[1] == random.getstate()
    assert np.array_equal(rngs[2], np.random.get_state()[1])
    assert all(p.grad is None for p in model.parameters())
    assert os.listdir(tmp_path) == []  # no snapshot folder left behind


def test_snapshot_keeps_tied_weights_once_and_restores_twice():
    emb = torch.nn.Embedding(4, 8)
    head = torch.nn.Linear(8, 4, bias=False)
    head.weight = emb.weight
    tied = torch.nn.ModuleDict({"emb": emb, "head": head})
    snap = StateSnapshot(tied)
    assert len(snap._tensors) == 1
    original = emb.weight.detach().clone()
    for _ in range(2):
        with torch.no_grad():
            emb.weight.add_(1.0)
        snap.restore()
        assert torch.equal(head.weight, original)
    snap.close()
    with pytest.raises(RuntimeError, match="closed"):
        snap.restore()


def test_result_json_round_trip(tmp_path):
    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "head"])
    raw = [2.0 - 0.02 * i for i in range(30)] + [math.nan] * 10
    step, _ = make_step(model, opt, losses=raw)
    result = range_test(step, model, opt, LRFinderConfig(num_sweeps=1, num_steps=40, check_every=5), progress=False)
    result.save(tmp_path / "sub" / "lr_find.json")
    loaded = LRFinderResult.load(tmp_path / "sub" / "lr_find.json")
    assert loaded.lrs == result.lrs and loaded.suggestions == result.suggestions
    assert loaded.stop_reason == result.stop_reason and loaded.metadata == result.metadata
    np.testing.assert_array_equal(loaded.losses["head"], result.losses["head"])  # NaN compares equal here
    np.testing.assert_array_equal(loaded.smoothed_losses["body"], result.smoothed_losses["body"])
    assert result.suggestion("valley", "head") == result.suggestions["head"]["valley"]


def test_suggestion_errors_say_what_to_do():
    result = LRFinderResult(
        lrs={"body": [1e-3], "head": [1e-2]},
        losses={"body": [1.0], "head": [1.0]},
        smoothed_losses={"body": [1.0], "head": [1.0]},
        suggestions={"body": {"valley": None}, "head": {"valley": 1e-2}},
        stop_reason={"body": "num_steps", "head": "num_steps"},
    )
    with pytest.raises(ValueError, match="pass group="):
        result.suggestion()
    with pytest.raises(ValueError, match="too few points"):
        result.suggestion("valley", "body")
    with pytest.raises(ValueError, match="did not run"):
        result.suggestion("steep", "head")
    with pytest.raises(ValueError, match="Unknown group"):
        result.suggestion("valley", "neck")


def test_plot_lines_hold_the_recorded_data(tmp_path):
    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "head"])
    raw = [2.0 - 0.02 * i + 0.01 * (i % 3) for i in range(60)]
    step, _ = make_step(model, opt, losses=raw)
    result = range_test(
        step, model, opt, LRFinderConfig(num_sweeps=1, num_steps=60, diverge_threshold=None), progress=False
    )
    fig = result.plot(tmp_path / "lr_find.png")
    assert (tmp_path / "lr_find.png").stat().st_size > 0
    (ax,) = fig.axes  # one joint sweep: body and head share one curve on scaled lr axes, so one panel
    assert ax.get_title() == "body (the same curve for head, at their fixed ratios)"
    raw_line, smooth_line = ax.lines[0], ax.lines[1]
    np.testing.assert_allclose(raw_line.get_xdata(), result.lrs["body"])
    np.testing.assert_allclose(raw_line.get_ydata(), result.losses["body"])
    np.testing.assert_allclose(smooth_line.get_ydata(), result.smoothed_losses["body"])
    markers = {line.get_label().split(":")[0]: line.get_xdata()[0] for line in ax.lines[2:]}
    labels = [line.get_label() for line in ax.lines]
    for method in ("trough", "valley", "minimum"):  # each drawn at the rate it suggests, as its label says
        assert markers[method] == pytest.approx(result.suggestions["body"][method])
        default = " (default)" if method == "trough" else ""
        assert f"{method}: {result.suggestions['body'][method]:.2e}{default}" in labels
    assert ax.get_xscale() == "log"
    (centred,) = [line for line in ax.lines if line.get_label() == "centred mean (trough reads)"]
    # the curve trough reads: the prepared points (the first num_steps // 10 and the last 5 skipped), centred
    np.testing.assert_allclose(centred.get_xdata(), result.lrs["body"][6:55])
    np.testing.assert_allclose(centred.get_ydata(), centered_mean(result.losses["body"][6:55], 2))


def test_plot_marks_the_default_where_it_read_and_keeps_the_raw_bottom_in_view(tmp_path):
    lrs = [1e-6 * 10 ** (i / 10) for i in range(60)]
    raw = [1.0 - 0.01 * i for i in range(55)] + [0.05] * 5  # the lowest points lie in the skipped tail
    raw[20] = 0.01  # one raw point far below the smoothed curve
    result = LRFinderResult(
        lrs={"all": lrs},
        losses={"all": raw},
        smoothed_losses={"all": list(debiased_ema(raw, 0.98))},
        suggestions={"all": {"trough": None, "valley": lrs[30]}},
        stop_reason={"all": "num_steps"},
        metadata={"num_steps": 60, "skip_start": 6, "skip_end": 5},
    )
    from hf_lrfind.core.suggest import trough

    result.suggestions["all"]["trough"] = trough(lrs[6:55], raw[6:55])
    (ax,) = result.plot(tmp_path / "p.png").axes
    (bottom,) = [line for line in ax.lines if line.get_marker() == "|"]
    assert bottom.get_xdata()[0] == lrs[54] and bottom.get_xdata()[0] / 3 == result.suggestions["all"]["trough"]
    (default,) = [line for line in ax.lines if line.get_label().endswith("(default)")]
    (other,) = [line for line in ax.lines if line.get_label().startswith("valley")]
    assert default.get_label().startswith("trough") and default.get_markersize() > other.get_markersize()
    (vertical,) = [line for line in ax.lines if list(line.get_xdata()) == [default.get_xdata()[0]] * 2]
    assert ax.get_ylim()[0] < 0.01  # the raw curve's bottom is in view
    assert ax.get_title() == "LR range test: ran to the end"


def test_the_progress_bar_counts_the_steps_recorded_and_names_its_loss(capsys, monkeypatch):
    import tqdm.auto

    postfixes = []

    class Bar(tqdm.auto.tqdm):
        def set_postfix_str(self, s="", refresh=True):
            postfixes.append(s)
            super().set_postfix_str(s, refresh)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = [1.0] * 13 + [100.0] * 20  # diverges at step 14, found at the check after step 20
    step, calls = make_step(model, opt, losses=losses)
    result = range_test(step, model, opt, LRFinderConfig(num_steps=30, num_sweeps=1, check_every=10), progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert len(calls) == 20 and len(result.losses["all"]) == 14 and result.metadata["cost_steps"] == 20
    assert "14/30" in bar[-1] and "stopped when the loss diverged at step 14" in bar[-1]
    assert postfixes[0].startswith("lr=") and ", smoothed loss=" in postfixes[0]  # what its loss is, named
    glossary = result.metadata["glossary"]
    assert {"steps_run", "cost_steps"} <= set(glossary) and "past a stop" in glossary["cost_steps"]


def test_plot_limits_show_the_drop_and_every_marker(tmp_path):
    lrs = [1e-7 * 10 ** (i / 10) for i in range(80)]
    # the case seen in a newcomer's run: a curve that barely drops, then rises far above its start
    smoothed = [0.6886 - 0.0012 * min(i, 40) / 40 + (0.25 * ((i - 40) / 40) ** 2 if i > 40 else 0) for i in range(80)]
    suggestions = {"trough": lrs[70], "valley": lrs[60], "steep": lrs[75], "minimum": lrs[40] / 10}
    result = LRFinderResult(
        lrs={"head": lrs, "body": lrs},
        losses={"head": smoothed, "body": [v + 1 for v in smoothed]},
        smoothed_losses={"head": smoothed, "body": [v + 1 for v in smoothed]},
        suggestions={"head": suggestions, "body": suggestions},
        stop_reason={"head": "num_steps", "body": "num_steps"},
    )
    fig = result.plot(tmp_path / "p.png")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        low, high = ax.get_ylim()
        for line in [line for line in ax.lines[2:] if line.get_linestyle() == "None"]:  # the markers
            assert low < line.get_ydata()[0] < high, line.get_label()
        curve = ax.lines[1].get_ydata()
        assert low < min(curve) and curve[0] < high and high - low < 2  # the drop is visible, the tail is cut


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"start_lr": 10.0, "end_lr": 1.0}, ValueError, "swap them"),
        ({"start_lr": -1.0}, ValueError, "positive"),
        ({"end_lr": float("inf")}, ValueError, "finite"),
        ({"start_lr": [1e-7, 1e-6], "end_lr": 1.0}, ValueError, "both"),
        ({"num_steps": 1}, ValueError, "at least 2"),
        ({"num_steps": 10.5}, TypeError, "int"),
        ({"beta": 1.0}, ValueError, r"\[0, 1\)"),
        ({"mode": "cosine"}, ValueError, "mode"),
        ({"suggest": "valey"}, ValueError, "Unknown suggestion method"),
        ({"suggest": [3]}, TypeError, "neither"),
        ({"diverge_threshold": 0.5}, ValueError, "above 1"),
        ({"snapshot": "gpu"}, ValueError, "snapshot"),
        ({"skip_end": -1}, ValueError, "negative"),
        ({"start_lr": "1e-5"}, TypeError, "float"),
    ],
)
def test_bad_config_is_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        LRFinderConfig(**kwargs)


def test_refused_call_changes_nothing():
    model = tiny_model()
    opt = two_group_optimizer(model)
    before = state_of(model, opt)
    step, calls = make_step(model, opt)
    with pytest.raises(ValueError, match="one value per group"):
        range_test(step, model, opt, LRFinderConfig(start_lr=[1e-7] * 3, end_lr=[1.0] * 3), progress=False)
    assert calls == []
    assert_same_state(before, state_of(model, opt))


def test_custom_suggester_and_group_names():
    assert param_group_names([{"lr": 1.0}, {"lr": 1.0}]) == ["all", "all"]
    assert param_group_names([{"lr": 1.0}, {"lr": 0.1}, {"lr": 1.0}]) == ["group_0", "group_1", "group_0"]
    assert param_group_names([{"lr": 1.0, "name": "head"}, {"lr": 1.0}]) == ["head", "all"]
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step, _ = make_step(model, opt, losses=[1.0 - 0.01 * i for i in range(20)])

    def last_lr(lrs, losses):
        return float(lrs[-1])

    result = range_test(
        step,
        model,
        opt,
        LRFinderConfig(num_sweeps=1, num_steps=20, suggest=["valley", last_lr], skip_end=0),
        progress=False,
    )
    assert result.suggestions["all"]["last_lr"] == result.lrs["all"][-1]


def test_no_temp_files_left_in_default_tempdir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step, _ = make_step(model, opt)
    range_test(step, model, opt, LRFinderConfig(num_sweeps=1, num_steps=5, snapshot="disk"), progress=False)
    assert glob.glob(str(tmp_path / "hf_lrfind-*")) == []


def test_several_sweeps_start_from_the_same_state_and_are_averaged():
    model = tiny_model()
    opt = two_group_optimizer(model)
    before = state_of(model, opt)
    batches = iter(torch.randn(3 * 12, 32, 8, generator=torch.Generator().manual_seed(4)))  # new batches per step
    starts = []

    def step():
        x = next(batches)
        if len(starts) < 3 and opt.param_groups[0]["lr"] == 1e-7:  # first step of a sweep
            starts.append({k: v.clone() for k, v in model.state_dict().items()})
        loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        loss.backward()
        opt.step()
        opt.zero_grad()
        return StepOutput(loss.detach())

    config = LRFinderConfig(num_steps=12, diverge_threshold=None, skip_end=0)
    result = range_test(step, model, opt, config, progress=False)
    assert config.num_sweeps == 3 and result.metadata["num_sweeps"] == 3
    assert result.metadata["steps_run"] == result.metadata["cost_steps"] == 36
    for start in starts[1:]:  # restored in between: every sweep starts where the first did
        assert all(torch.equal(start[k], starts[0][k]) for k in start)
    sweeps = result.metadata["sweep_losses"]["group_0"]
    assert len(sweeps) == 3 and sweeps[0] != sweeps[1]  # other batches, other losses
    assert result.losses["group_0"] == [math.fsum(s[i] for s in sweeps) / 3 for i in range(12)]
    assert result.smoothed_losses["group_0"] == pytest.approx(debiased_ema(result.losses["group_0"], 0.98), rel=1e-12)
    assert_same_state(before, state_of(model, opt))


def test_a_sweep_that_stops_early_does_not_cut_the_average():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # sweep 1 runs 10 steps, sweep 2 diverges at its step 4 (6 more steps run before the check), sweep 3 runs 10
    reported = [1.0] * 10 + [1.0, 1.0, 1.0, 100.0] + [100.0] * 6 + [0.5] * 10
    step, calls = make_step(model, opt, losses=reported)
    result = range_test(step, model, opt, LRFinderConfig(num_steps=10, check_every=10), progress=False)
    assert len(calls) == 30
    # as long as the median sweep; each step averaged over the sweeps that recorded it
    assert result.losses["all"] == [(1.0 + 1.0 + 0.5) / 3] * 3 + [(1.0 + 100.0 + 0.5) / 3] + [(1.0 + 0.5) / 2] * 6
    assert result.stop_reason["all"] == "num_steps" and result.metadata["steps_run"] == 10 + 4 + 10
    assert len(result.metadata["sweep_losses"]["all"][1]) == 4
    assert result.metadata["cost_steps"] == 30  # what ran: the sweep is read back every 10 steps


def test_a_curve_that_never_drops_is_reported_in_the_result_and_the_log(caplog):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)  # a measured optimizer: no evidence note
    flat = [0.69 + 0.01 * ((7 * i) % 5 - 2) for i in range(3 * 40)]  # scatter around a level, no drop
    step, _ = make_step(model, opt, losses=flat)
    with caplog.at_level("WARNING", logger="hf_lrfind.core.engine"):
        result = range_test(step, model, opt, LRFinderConfig(num_steps=40, diverge_threshold=None), progress=False)
    (message,) = result.metadata["warnings"]
    assert "never clearly dropped" in message and message in caplog.text
    assert result.suggestions["all"]["trough"] is not None  # still computed, but flagged


def test_a_curve_that_drops_and_rises_carries_no_warning():
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)  # a measured optimizer: no evidence note
    bowl = [1.0 + 0.05 * abs(i - 25) for i in range(40)] * 3
    step, _ = make_step(model, opt, losses=bowl)
    result = range_test(step, model, opt, LRFinderConfig(num_steps=40, diverge_threshold=None), progress=False)
    assert result.metadata["warnings"] == []
    assert result.suggestions["all"]["trough"] == pytest.approx(result.lrs["all"][25] / 3)


def test_a_swept_group_that_no_step_gave_a_gradient_is_named_once_in_a_warning(caplog):
    model, unused, frozen = tiny_model(), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)  # in the optimizer, not the loss
    opt = torch.optim.AdamW(
        [
            {"params": model.parameters(), "name": "body"},
            {"params": [frozen.weight], "name": "body"},  # a half of 'body' without a gradient: 'body' still learns
            {"params": [unused.weight], "name": "unused"},  # decay and no-decay halves, neither fed: one message
            {"params": [unused.bias], "name": "unused", "weight_decay": 0.0},
            {"params": [torch.nn.Parameter(torch.empty(0))], "name": "empty"},  # sharded away here: not reported
        ]
    )
    step, _ = make_step(model, opt)
    with caplog.at_level("WARNING", logger="hf_lrfind.core.engine"):
        result = range_test(step, model, opt, LRFinderConfig(num_steps=20), progress=False)
    (message,) = [w for w in result.metadata["warnings"] if w.startswith("No gradient")]
    assert "'unused'" in message and "'body'" not in message and "'empty'" not in message and message in caplog.text
    assert result.metadata["num_sweeps"] == 3 and not opt._optimizer_step_pre_hooks  # the watch is gone


def test_a_held_group_is_not_reported_and_the_watch_goes_on_an_error():
    from hf_lrfind.core.sweep import sweep

    model, unused = tiny_model(), torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW([{"params": model.parameters()}, {"params": unused.parameters()}])
    step, _ = make_step(model, opt)
    curve = sweep(step, opt, LRFinderConfig(num_steps=10), progress=False, bounds=[(1e-5, 1e-1), (0.0, 0.0)])
    assert curve.no_gradient == []  # held at 0: its rate is not what the curve measures
    failing, _ = make_step(model, opt, fail_at=3)
    with pytest.raises(RuntimeError, match="boom"):
        sweep(failing, opt, LRFinderConfig(num_steps=10), progress=False)
    assert not opt._optimizer_step_pre_hooks


def test_averaged_sweeps_report_a_group_only_if_no_sweep_gave_it_a_gradient():
    from hf_lrfind.core.engine import average_sweeps
    from hf_lrfind.core.sweep import Curve

    def curve(no_gradient):
        return Curve(
            lrs={"a": [1.0], "b": [1.0]}, losses=[1.0], smoothed=[1.0], stop_reason="num_steps", no_gradient=no_gradient
        )

    assert average_sweeps([curve(["a", "b"]), curve(["b"]), curve(["a", "b"])], beta=0.98).no_gradient == ["b"]


def test_the_gradient_watch_leaves_alone_an_optimizer_without_torch_step_hooks():
    from hf_lrfind.core.sweep import GradientWatch

    class Wrapper(torch.optim.Optimizer):  # as accelerate's wrapper around a DeepSpeed optimizer: no Optimizer.__init__
        def __init__(self, inner):
            self.optimizer = inner

        @property
        def param_groups(self):
            return self.optimizer.param_groups

    class Engine:  # not a torch optimizer
        param_groups = [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": 0.1}]

    watch = GradientWatch(Wrapper(Engine()))  # registering a hook on the wrapper would raise AttributeError
    assert watch.handle is None and watch.groups == []
    watch.remove()


def test_skipped_steps_are_retried_at_the_same_lr_and_too_many_stop_the_sweep(caplog):
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tried = []

    def step(skip_at):
        def run():
            tried.append(opt.param_groups[0]["lr"])
            return StepOutput(torch.tensor(1.0), skipped=len(tried) in skip_at)

        return run

    config = LRFinderConfig(num_sweeps=1, num_steps=6, diverge_threshold=None, skip_end=0, max_skipped_steps=2)
    result = range_test(step({2, 3}), model, opt, config, progress=False)
    assert tried[1] == tried[2] == tried[3] and len(tried) == 8  # the skipped step's lr is tried again
    assert result.lrs["all"] == [tried[0], *tried[3:]] and result.metadata["skipped_steps"] == 2
    assert result.stop_reason["all"] == "num_steps"
    tried.clear()
    with caplog.at_level("WARNING", logger="hf_lrfind.core.engine"):
        result = range_test(step({2, 3, 4}), model, opt, config, progress=False)
    assert result.stop_reason["all"] == "too_many_skipped_steps" and len(result.losses["all"]) == 1
    assert "skipped 3 steps" in caplog.text and "Use bf16, or a lower end_lr" in caplog.text


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def test_the_default_snapshot_is_a_cpu_copy_that_shares_no_memory_with_the_model():
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    warm, _ = make_step(model, opt)
    warm()  # optimizer state to copy too
    snapshot = StateSnapshot(model, opt)
    saved = list(_tensors(snapshot._state))
    live = {t.data_ptr() for t in model.state_dict().values()} | {t.data_ptr() for t in _tensors(opt.state_dict())}
    assert saved and all(t.device.type == "cpu" for t in saved)
    assert not live & {t.data_ptr() for t in saved}  # copies, not views of the live tensors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned snapshots of CUDA tensors need a GPU")
def test_a_snapshot_of_a_cuda_model_is_pinned_cpu_memory():
    model = tiny_model().cuda()
    opt = torch.optim.AdamW(model.parameters())
    before = torch.cuda.memory_allocated()
    snapshot = StateSnapshot(model, opt)
    assert torch.cuda.memory_allocated() == before  # no second copy on the device
    assert all(t.device.type == "cpu" and t.is_pinned() for t in _tensors(snapshot._state["tensors"]))


def test_sweeps_draw_new_random_numbers_but_the_rng_is_restored_at_the_end():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))  # the same batch every step

    def step():
        dropped = torch.nn.functional.dropout(model(x), p=0.5)  # draws from the global RNG
        loss = torch.nn.functional.mse_loss(dropped, x.sum(1, keepdim=True))
        loss.backward()
        opt.step()
        opt.zero_grad()
        return StepOutput(loss.detach())

    rng = torch.get_rng_state()
    result = range_test(step, model, opt, LRFinderConfig(num_steps=10, diverge_threshold=None), progress=False)
    first, second, third = result.metadata["sweep_losses"]["all"]
    assert first != second != third  # the same batches, but not the same dropout: three sweeps, not one three times
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_result_whose_sweeps_met_a_nan_saves_and_loads(tmp_path):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step, _ = make_step(model, opt)

    def nan_above_1():
        lr = opt.param_groups[0]["lr"]
        out = step()
        return StepOutput(torch.tensor(math.nan)) if lr > 1.0 else out

    result = range_test(nan_above_1, model, opt, LRFinderConfig(num_steps=40, num_sweeps=3), progress=False)
    assert math.isnan(result.metadata["sweep_losses"]["all"][0][-1])  # each sweep's raw losses keep the NaN
    result.save(tmp_path / "r.json")
    loaded = LRFinderResult.load(tmp_path / "r.json")
    assert loaded.metadata["sweep_losses"]["all"][0][-1] is None
    assert loaded.suggestion() == result.suggestion()
    np.testing.assert_array_equal(loaded.losses["all"], result.losses["all"])  # NaN where it was NaN
