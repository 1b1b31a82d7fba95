"""Sweep strategies on named param groups: joint (fixed ratios) and sequential (head, warm-up, body)."""

import pytest
import torch

from hf_lrfind import LRFinderConfig
from hf_lrfind.strategies import joint_range_test, sequential_range_test
from tests.test_engine import assert_same_state, make_step, state_of, tiny_model, two_group_optimizer


def test_joint_suggestions_scale_with_group_ratio():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=0.1, names=["body", "head"])
    opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = 1e-4, 1e-3  # body at 0.1x the head
    step, _ = make_step(model, opt)
    result = joint_range_test(step, model, opt, LRFinderConfig(num_steps=50, end_lr=1.0), progress=False)
    for method, head in result.suggestions["head"].items():
        assert result.suggestions["body"][method] == pytest.approx(head * 0.1)


def test_sequential_phases_apply_the_right_rates_and_restore():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["body", "head"])
    warm, _ = make_step(model, opt, seed=3)
    warm()
    before = state_of(model, opt)
    step, calls = make_step(model, opt)
    config = LRFinderConfig(num_steps=30, end_lr=1.0, diverge_threshold=None)
    result = sequential_range_test(step, model, opt, config, warmup_steps=5, progress=False)
    head_lr = result.metadata["head_lr"]["head"]
    sweep = [1e-7 * (1.0 / 1e-7) ** (i / 30) for i in range(30)]
    assert [c[1] for c in calls[:30]] == pytest.approx(sweep)  # phase 1: head swept ...
    assert [c[0] for c in calls[:30]] == [0.0] * 30  # ... body held still
    assert calls[30:35] == [[0.0, head_lr]] * 5  # phase 2: head trained at its suggestion
    assert [c[0] for c in calls[35:]] == pytest.approx(sweep)  # phase 3: body swept ...
    assert [c[1] for c in calls[35:]] == [head_lr] * 30  # ... head at its suggestion
    assert result.lrs["head"] == pytest.approx(sweep) and result.lrs["body"] == pytest.approx(sweep)
    assert result.losses["head"] != result.losses["body"]
    assert head_lr == result.suggestions["head"]["valley"]
    assert result.metadata["strategy"] == "sequential"
    assert_same_state(before, state_of(model, opt))


def test_sequential_keep_head_keeps_only_the_warmed_head():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["body", "head"])
    before = state_of(model, opt)
    step, _ = make_step(model, opt)
    sequential_range_test(
        step, model, opt, LRFinderConfig(num_steps=20, end_lr=1.0), warmup_steps=5, keep_head=True, progress=False
    )
    after = state_of(model, opt)
    assert not torch.equal(after[0]["3.weight"], before[0]["3.weight"])  # head moved
    for k in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[0][k], before[0][k])  # body restored
    assert after[1] == before[1]  # optimizer restored (empty state)


def test_sequential_needs_a_head_and_a_body():
    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "neck"])
    step, calls = make_step(model, opt)
    with pytest.raises(ValueError, match="groups='auto'"):
        sequential_range_test(step, model, opt, LRFinderConfig(num_steps=10), progress=False)
    assert calls == []
