"""The confirmation phase: its schedule, its score, batch replay, the winner, restore, and the entry points."""

import copy
import math
import random

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from hf_lrfind import LRFinder, LRFinderCallback, LRFinderConfig, LRFinderResult, StepOutput, range_test
from hf_lrfind.core.confirm import Replay, end_loss, pick, record_confirmation, trial_factor
from tests.test_engine import assert_same_state, make_step, state_of, tiny_model, two_group_optimizer
from tests.test_runner import fresh_accelerate_state  # noqa: F401  (autouse: a blank accelerate state per test)


@pytest.mark.parametrize("steps", [10, 37, 100])
def test_trial_schedule_is_transformers_linear_warmup_and_decay(steps):
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    for step in range(steps):
        assert trial_factor(step, steps) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-15), step
        opt.step()
        sched.step()


def test_end_loss_is_the_last_tenth_and_inf_when_a_loss_was_not_finite():
    assert end_loss([5.0] * 18 + [1.0, 3.0]) == 2.0
    assert end_loss([4.0, 2.0]) == 2.0  # at least one loss
    assert end_loss([1.0, math.nan, 0.5]) == math.inf
    assert end_loss([]) == math.inf


def test_pick_reads_the_bottom_of_the_parabola_in_log_lr_between_the_factors():
    factors = [0.5, 1.0, 2.0]
    bowl = [(math.log(f) - math.log(1.3)) ** 2 for f in factors]  # bottom at 1.3x
    assert pick(factors, bowl) == pytest.approx(1.3, rel=1e-9)
    assert pick([0.25, 0.5, 1.0, 2.0], [(math.log(f) - math.log(0.7)) ** 2 for f in (0.25, 0.5, 1.0, 2.0)]) == (
        pytest.approx(0.7, rel=1e-9)
    )
    assert pick(factors, [3.0, 2.0, 1.0]) == 2.0  # bottom beyond the factors: kept at the end
    assert pick(factors, [1.0, 3.0, 2.0]) == 0.5  # opens downwards: the lowest trial
    assert pick(factors, [2.0, 1.0, math.inf]) == 1.0  # a trial diverged: the lowest of the others
    assert pick(factors, [1.0, 1.0, math.inf]) == 0.5  # a tie to the lower rate
    assert pick(factors, [math.inf] * 3) is None


def test_replay_hands_out_the_recorded_batches_again_then_new_ones():
    replay = Replay(iter(range(100)))
    assert next(replay) == 0  # not recording
    replay.record()
    assert [next(replay) for _ in range(3)] == [1, 2, 3]
    replay.replay()
    assert [next(replay) for _ in range(5)] == [1, 2, 3, 4, 5]  # the same three, then new ones, kept too
    replay.replay()
    assert [next(replay) for _ in range(5)] == [1, 2, 3, 4, 5]
    replay.forget()
    assert next(replay) == 6


def _counting_step(model, opt, batches):
    """A real regression step on the next batch, recording which batch and lrs each step used."""
    seen = []

    def step():
        i, x = next(batches)
        seen.append((i, [g["lr"] for g in opt.param_groups]))
        loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        loss.backward()
        opt.step()
        opt.zero_grad()
        return StepOutput(loss.detach())

    return step, seen


def _numbered_batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((i, torch.randn(32, 8, generator=g)) for i in range(10**6))


def test_every_trial_starts_from_the_snapshot_on_the_same_batches_and_the_lowest_end_wins():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=0.1)
    torch.manual_seed(3)
    before = state_of(model, opt)
    rng = torch.get_rng_state()
    batches = Replay(_numbered_batches())
    step, seen = _counting_step(model, opt, batches)
    config = LRFinderConfig(num_steps=20, num_sweeps=1, confirm_steps=10, confirm_factors=(2.0, 0.5, 1.0))
    result = range_test(step, model, opt, config, progress=False, replay=batches)
    c = result.metadata["confirmation"]
    assert c["factors"] == [0.5, 1.0, 2.0] and c["steps"] == 10 and c["rule"] == "trough"
    trials = [seen[20 + 10 * i : 30 + 10 * i] for i in range(3)]
    assert [i for i, _ in trials[0]] == [i for i, _ in trials[1]] == [i for i, _ in trials[2]] == list(range(20, 30))
    base = result.suggestions["group_0"]["trough"]
    for factor, trial in zip(c["factors"], trials):  # group 1 keeps its ratio; warm-up then linear decay
        for k, (_, lrs) in enumerate(trial):
            assert lrs[0] == pytest.approx(factor * base * trial_factor(k, 10), rel=1e-12)
            assert lrs[1] == pytest.approx(0.1 * lrs[0], rel=1e-12)
    assert c["end_losses"] == [end_loss(t) for t in c["losses"]]
    best = pick(c["factors"], c["end_losses"])
    assert c["factor"] == best and 0.5 <= best <= 2.0
    for group in ("group_0", "group_1"):
        assert result.suggestions[group]["confirmed"] == best * result.suggestions[group]["trough"]
        assert result.default_rule(group) == "confirmed"
    assert result.suggestion(group="group_0") == best * base
    assert result.metadata["cost_steps"] == 20 + 30
    assert "confirmed: 3 trainings of 10 steps" in result.summary()
    assert_same_state(before, state_of(model, opt))
    assert torch.equal(rng, torch.get_rng_state())


def test_each_trial_starts_from_the_state_before_the_sweep_with_the_same_random_draws():
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    warm, _ = make_step(model, opt, seed=1)
    for _ in range(3):  # the optimizer has state to restore
        warm()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = copy.deepcopy(opt.state_dict()["state"])
    batches = Replay(_numbered_batches())
    starts, draws = [], []
    step, seen = _counting_step(model, opt, batches)

    def recording_step():
        if len(seen) in (12, 22, 32):  # the first step of each trial
            starts.append((copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()["state"])))
        draws.append(torch.rand(2))  # as dropout would
        return step()

    config = LRFinderConfig(num_steps=12, num_sweeps=1, confirm_steps=10, diverge_threshold=None)
    range_test(recording_step, model, opt, config, progress=False, replay=batches)
    assert len(starts) == 3
    for w, m in starts:
        assert all(torch.equal(w[k], weights[k]) for k in weights)
        assert all(torch.equal(m[i][key], moments[i][key]) for i in moments for key in moments[i])
    trial_draws = [torch.stack(draws[12 + 10 * i : 22 + 10 * i]) for i in range(3)]
    assert torch.equal(trial_draws[0], trial_draws[1]) and torch.equal(trial_draws[0], trial_draws[2])


def test_a_trial_that_diverges_loses_and_the_result_still_saves(tmp_path):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = Replay(_numbered_batches())
    step, _ = _counting_step(model, opt, batches)

    def nan_above_1():  # a loss that turns NaN once the rate passes 1
        lr = opt.param_groups[0]["lr"]
        out = step()
        return StepOutput(torch.tensor(math.nan)) if lr > 1.0 else out

    config = LRFinderConfig(num_steps=40, num_sweeps=1, confirm_steps=10, confirm_factors=(1.0, 1e4))
    result = range_test(nan_above_1, model, opt, config, progress=False, replay=batches)
    c = result.metadata["confirmation"]
    assert c["end_losses"][0] is not None and c["end_losses"][1] is None and c["factor"] == 1.0
    assert c["losses"][1][-1] is None and len(c["losses"][1]) < 10  # stopped at its non-finite loss
    result.save(tmp_path / "r.json")
    assert LRFinderResult.load(tmp_path / "r.json").suggestion() == result.suggestions["all"]["trough"]


def test_an_exception_in_a_trial_restores_everything_and_drops_the_kept_batches():
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = state_of(model, opt)
    batches = Replay(_numbered_batches())
    step, seen = _counting_step(model, opt, batches)

    def failing_step():
        if len(seen) == 25:  # in the second trial
            raise RuntimeError("boom")
        return step()

    config = LRFinderConfig(num_steps=20, num_sweeps=1, confirm_steps=10)
    with pytest.raises(RuntimeError, match="boom"):
        range_test(failing_step, model, opt, config, progress=False, replay=batches)
    assert_same_state(before, state_of(model, opt))
    assert batches._kept is None and not batches._queue


def test_no_suggestion_to_confirm_is_a_warning_and_no_trial_runs():
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = Replay(_numbered_batches())
    step, seen = _counting_step(model, opt, batches)

    def nan_step():  # the curve is cut at its first point: no rule can read it
        step()
        return StepOutput(torch.tensor(math.nan))

    config = LRFinderConfig(num_steps=20, num_sweeps=1, confirm_steps=10, check_every=5)
    result = range_test(nan_step, model, opt, config, progress=False, replay=batches)
    assert result.suggestions["all"]["trough"] is None and "confirmation" not in result.metadata
    assert "nothing to confirm" in result.metadata["warnings"][-1] and len(seen) == 5


def test_a_winner_at_an_end_of_the_factors_and_all_trials_diverged_are_warned():
    def result():
        return LRFinderResult(
            lrs={"all": [1e-3]},
            losses={"all": [1.0]},
            smoothed_losses={"all": [1.0]},
            suggestions={"all": {"trough": 1e-3, "valley": 1e-4}},
            stop_reason={"all": "num_steps"},
            metadata={"warnings": [], "cost_steps": 300, "wall_time_s": 1.0, "num_steps": 100},
        )

    def confirmation(end_losses, factor):
        return {
            "rule": "trough",
            "steps": 10,
            "factors": [0.5, 1.0, 2.0],
            "candidates": [5e-4, 1e-3, 2e-3],
            "end_losses": end_losses,
            "losses": [],
            "factor": factor,
            "cost_steps": 30,
            "skipped_steps": 0,
            "num_tokens": None,
            "wall_time_s": 0.5,
        }

    low = result()
    record_confirmation(low, confirmation([1.0, 2.0, 3.0], 0.5), log_warnings=False)
    assert low.suggestion() == 5e-4 and "may be lower still" in low.metadata["warnings"][-1]
    inside = result()
    record_confirmation(inside, confirmation([2.0, 1.0, 3.0], 1.0), log_warnings=False)
    assert inside.suggestion() == 1e-3 and inside.metadata["warnings"] == []
    assert inside.metadata["cost_steps"] == 330 and inside.metadata["wall_time_s"] == 1.5
    diverged = result()
    record_confirmation(diverged, confirmation([None, None, None], None), log_warnings=False)
    assert "confirmed" not in diverged.suggestions["all"] and diverged.default_rule("all") == "trough"
    assert "Every confirmation trial diverged" in diverged.metadata["warnings"][-1]
    assert "none kept" in diverged.summary()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"confirm_steps": 5}, "at least 10"),
        ({"confirm_steps": -1}, "at least 10"),
        ({"confirm_steps": 1.5}, "must be an int"),
        ({"confirm_factors": ()}, "distinct positive"),
        ({"confirm_factors": (1.0, 1.0)}, "distinct positive"),
        ({"confirm_factors": (0.5, -1.0)}, "distinct positive"),
        ({"confirm_factors": "0.5"}, "distinct positive"),
        ({"confirm_factors": (0.5, math.inf)}, "distinct positive"),
    ],
)
def test_bad_confirmation_settings_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LRFinderConfig(**kwargs)


def tiny_gpt2(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=16)
    config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0  # the same batch gives the same loss
    return GPT2LMHeadModel(config)


def gpt2_batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, 64, (4, 16), generator=g) for _ in range(n)]
    return [{"input_ids": x, "labels": x} for x in ids]


def test_runner_confirms_on_replayed_batches_and_training_after_is_training_without():
    torch.set_num_threads(1)
    model = tiny_gpt2()
    twin = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=1e-3)
    batches = gpt2_batches(60)
    random.seed(1)
    np.random.seed(1)
    finder = LRFinder(model, opt, accelerator=Accelerator(cpu=True), progress=False)
    result = finder.range_test(batches, num_steps=20, num_sweeps=1, confirm_steps=10, end_lr=1.0)
    c = result.metadata["confirmation"]
    # the same ten batches for each trial: a trial at 0x would see the same losses, so compare the first step,
    # which runs before any update at a rate of 0 (warm-up) on the same batch
    assert len({trial[0] for trial in c["losses"]}) == 1
    assert result.suggestion() == c["factor"] * result.suggestions["all"]["trough"]

    def train(m, o):
        losses = []
        for batch in batches[:5]:
            loss = m(**batch).loss
            loss.backward()
            o.step()
            o.zero_grad()
            losses.append(loss.item())
        return losses

    with torch.random.fork_rng():
        torch.manual_seed(2)
        after = train(model, opt)
    with torch.random.fork_rng():
        torch.manual_seed(2)
        without = train(twin, twin_opt)
    assert after == without


def test_confirmation_with_a_per_group_strategy_is_refused_before_anything_runs():
    model = tiny_gpt2()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finder = LRFinder(model, opt, accelerator=Accelerator(cpu=True), progress=False)
    with pytest.raises(ValueError, match="confirm_steps confirms one suggestion"):
        finder.range_test(gpt2_batches(4), num_steps=10, confirm_steps=10, groups="auto", strategy="split")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_find_lr_confirms_through_the_trainer_and_a_later_train_is_train_alone(tmp_path):
    from hf_lrfind import find_lr
    from tests.test_trainer import assert_same, bert, make_trainer, train_losses, weights

    torch.set_num_threads(1)
    alone = make_trainer(tmp_path / "a", model=bert(dropout=0.0))
    alone_losses = train_losses(alone)
    trainer = make_trainer(tmp_path / "b", model=bert(dropout=0.0))
    result = find_lr(trainer, num_steps=10, num_sweeps=1, confirm_steps=10)
    c = result.metadata["confirmation"]
    assert len(c["losses"]) == 3 and all(len(t) == 10 for t in c["losses"])
    assert len({t[0] for t in c["losses"]}) == 1  # the same first batch from the same start, at rate 0
    assert result.suggestion() == c["factor"] * result.suggestions["all"]["trough"]
    assert result.metadata["cost_steps"] == 10 + 30
    assert train_losses(trainer) == alone_losses
    assert_same(weights(alone.model), weights(trainer.model))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "valley"}, "method='valley' would train at its own unconfirmed one"),
        ({"groups": "auto", "strategy": "split"}, "use strategy='joint' or no groups to confirm"),
    ],
)
def test_the_callback_refuses_what_a_confirmation_cannot_serve(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRFinderCallback(confirm_steps=10, **kwargs)


def test_the_callback_accepts_method_confirmed():
    assert LRFinderCallback(confirm_steps=10, method="confirmed").method == "confirmed"
