"""result.apply(optimizer, scheduler=...) for accelerate and plain PyTorch loops: the schedule peaks at the suggestion."""

import pytest
import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from hf_lrfind import LRFinderResult

SCHEDULES = {
    "sequential": lambda opt: torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, 0.1, total_iters=3),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, 7),
        ],
        milestones=[3],
    ),
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "linear": lambda opt: get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=10),
    "cosine": lambda opt: get_cosine_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=10),
    "lambda": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step),
}


def result_for(suggestions):
    groups = {g: {"trough": lr, "valley": lr / 10} for g, lr in suggestions.items()}
    curve = {g: [1e-5, 1e-4] for g in suggestions}
    return LRFinderResult(
        lrs=curve,
        losses=curve,
        smoothed_losses=curve,
        suggestions=groups,
        stop_reason=dict.fromkeys(suggestions, "num_steps"),
    )


def lrs_over(optimizer, scheduler, steps=10):
    seen = []
    for _ in range(steps):
        seen.extend(g["lr"] for g in optimizer.param_groups)
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("prepared", [False, True])
def test_the_schedule_peaks_at_the_suggestion(schedule, prepared):
    model = torch.nn.Linear(2, 2)
    expected_opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    expected = lrs_over(expected_opt, SCHEDULES[schedule](expected_opt))  # the same schedule built at 3e-4

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)  # the user's rate before the sweep
    scheduler = SCHEDULES[schedule](optimizer)
    if prepared:
        accelerator = Accelerator(cpu=True)
        _, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    result_for({"all": 3e-4}).apply(optimizer, scheduler=scheduler)
    assert lrs_over(optimizer, scheduler) == pytest.approx(expected, rel=1e-12)
    assert max(expected) == pytest.approx(3e-4)  # the peak: after the warm-up, or at the first step


def test_mid_schedule_and_per_group_rates_and_no_scheduler():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    groups = [
        {"params": model[0].parameters(), "lr": 1e-5, "name": "body"},
        {"params": model[1].parameters(), "lr": 1e-3, "name": "head"},
    ]
    optimizer = torch.optim.AdamW(groups)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=4, num_training_steps=10)
    lrs_over(optimizer, scheduler, steps=2)  # two steps into the warm-up
    result_for({"body": 2e-5, "head": 4e-3}).apply(optimizer, scheduler=scheduler)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([2e-5 * 2 / 4, 4e-3 * 2 / 4])
    assert scheduler.base_lrs == [2e-5, 4e-3] and scheduler.get_last_lr() == [g["lr"] for g in optimizer.param_groups]
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    result_for({"all": 0.02}).apply(plain, "valley")
    assert plain.param_groups[0]["lr"] == pytest.approx(0.002)


def test_bad_targets_say_what_to_do_and_change_nothing():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW([{"params": model.weight, "name": "a"}, {"params": model.bias, "name": "b"}])
    with pytest.raises(ValueError, match="result.param_groups"):
        result_for({"body": 1e-5, "head": 1e-3}).apply(optimizer)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="another optimizer"):
        result_for({"all": 1e-4}).apply(optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(other, lambda s: 1.0))
    with pytest.raises(TypeError, match="scheduler= goes with an optimizer"):
        result_for({"all": 1e-4}).apply(object(), scheduler=object())
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]


def test_a_scheduler_that_peaks_at_its_own_max_lr_is_refused_and_nothing_changes(caplog):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    before = [dict(g, params=None) for g in optimizer.param_groups], list(one_cycle.base_lrs)
    with pytest.raises(
        TypeError, match="OneCycleLR peaks at its own max_lr, not at the optimizer.s rates: build it with max_lr="
    ):
        result_for({"all": 1e-3}).apply(optimizer, scheduler=one_cycle)
    assert ([dict(g, params=None) for g in optimizer.param_groups], list(one_cycle.base_lrs)) == before
    with caplog.at_level("WARNING", logger="hf_lrfind.core.peak"):
        result_for({"all": 1e-3}).apply(optimizer)  # its scheduler left out: said, since it would undo the rate
    assert "pass it too, result.apply(optimizer, scheduler=lr_scheduler)" in caplog.text
