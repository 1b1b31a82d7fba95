"""result.summary(): which rate to use, by which rule, whether the curve passed the checks, what ran, in plain words."""

import torch

from hf_lrfind import LRFinderConfig, StepOutput, range_test


def scripted(per_sweep):
    """A range test whose sweeps record the given losses (one list per sweep), on a real model and optimizer."""
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    losses = [x for sweep in per_sweep for x in sweep]

    def step():
        return StepOutput(torch.tensor(losses.pop(0)))

    return model, optimizer, step


def run(per_sweep, num_steps, **options):
    model, optimizer, step = scripted(per_sweep)
    config = LRFinderConfig(num_steps=num_steps, num_sweeps=len(per_sweep), check_every=1, **options)
    return range_test(step, model, optimizer, config, progress=False)


DROP = [3.0 - 0.05 * i for i in range(40)] + [1.0 + 0.5 * i for i in range(20)]  # drops, then turns up


def test_one_rate_named_by_its_rule_and_a_curve_that_passed_the_checks():
    result = run([DROP], 60, diverge_threshold=None)
    lines = result.summary().splitlines()
    assert (
        lines[0] == f"lr_find: use lr {result.suggestion():.2e} (trough, the default rule); its curve passed the checks"
    )
    assert lines[1] == "  1 sweep, all 60 steps recorded"
    assert lines[2].startswith("  cost: 60 optimizer steps in all (every step that ran, also those past a stop)")
    assert lines[3].startswith("  other rules: valley ")
    assert result.summary("valley").startswith(f"lr_find: use lr {result.suggestion('valley'):.2e} (valley); ")


def test_a_sweep_that_diverged_at_its_last_step_says_so_without_contradiction():
    up = [3.0 - 0.05 * i for i in range(39)] + [1e4]
    result = run([DROP[:40], up, DROP[:40]], 40)
    assert result.metadata["sweep_stop_reasons"]["all"] == ["num_steps", "diverged", "num_steps"]
    assert "(steps recorded: 40, 40, 40 of 40; sweep 2 stopped when the loss diverged at step 40)" in result.summary()
    single = run([up], 40)
    assert "1 sweep, all 40 steps recorded; it stopped when the loss diverged at the last one" in single.summary()


def test_a_curve_with_a_warning_is_not_presented_as_trustworthy():
    result = run([[1.0] * 30], 30, diverge_threshold=None)  # never drops
    first = result.summary().splitlines()[0]
    assert first.endswith("check its curve first: 1 warning(s) logged") and result.metadata["warnings"]


def test_the_other_rules_are_listed_when_the_default_gave_none():
    result = run([DROP], 60, diverge_threshold=None)
    result.suggestions["all"]["trough"] = None
    lines = result.summary().splitlines()
    assert lines[0].startswith("lr_find: no trough suggestion")
    assert lines[-1].startswith(f"  other rules: valley {result.suggestion('valley'):.2e}, ")
