"""Sweep strategies on named param groups: joint (fixed ratios), split (all at one rate, then the head alone) and
sequential (head, warm-up, body)."""

import numpy as np
import pytest
import torch

from hf_lrfind import LRFinderConfig
from hf_lrfind.core.engine import range_test
from hf_lrfind.core.strategies import joint_range_test, sequential_range_test, split_range_test
from hf_lrfind.core.suggest import prepare_curve, pretrained, pretrained_fit
from tests.test_engine import assert_same_state, make_step, state_of, tiny_model, two_group_optimizer


def test_joint_suggestions_scale_with_group_ratio():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=0.1, names=["body", "head"])
    opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = 1e-4, 1e-3  # body at 0.1x the head
    step, _ = make_step(model, opt)
    result = joint_range_test(step, model, opt, LRFinderConfig(num_steps=50, end_lr=1.0), progress=False)
    for method, head in result.suggestions["head"].items():
        assert result.suggestions["body"][method] == pytest.approx(head * 0.1)


def warmed_two_groups(ratio):
    """A (body, head) model after one training step, its state then, and a step that records each call's lrs."""
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=ratio, names=["body", "head"])
    warm, _ = make_step(model, opt, seed=3)
    warm()
    before = state_of(model, opt)
    step, calls = make_step(model, opt)
    return model, opt, before, step, calls


def test_sequential_phases_apply_the_right_rates_and_restore():
    model, opt, before, step, calls = warmed_two_groups(ratio=1.0)
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
    assert head_lr == result.suggestions["head"]["trough"]
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


def never(lrs, losses):
    return None


def test_sequential_holds_the_head_at_the_next_rule_when_its_rule_gives_none_and_names_the_group(caplog):
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["body", "classifier"])
    step, _ = make_step(model, opt)
    config = LRFinderConfig(num_steps=30, end_lr=1.0, diverge_threshold=None, suggest=(never, "minimum"))
    with caplog.at_level("WARNING", logger="hf_lrfind"):
        result = sequential_range_test(
            step, model, opt, config, first=("classifier",), method="never", warmup_steps=2, progress=False
        )
    assert result.suggestions["classifier"]["never"] is None
    assert result.metadata["head_lr"] == {"classifier": result.suggestions["classifier"]["minimum"]}
    assert "'never' gave no suggestion for the classifier; holding it at the 'minimum' suggestion" in caplog.text


def test_sequential_with_no_rule_for_the_head_raises_and_restores():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["body", "head"])
    before = state_of(model, opt)
    step, _ = make_step(model, opt)
    config = LRFinderConfig(num_steps=30, end_lr=1.0, diverge_threshold=None, suggest=(never,))
    with pytest.raises(RuntimeError, match="The head's sweep gave no suggestion at all"):
        sequential_range_test(step, model, opt, config, warmup_steps=2, progress=False)
    assert_same_state(before, state_of(model, opt))


def test_split_sweeps_everything_at_one_rate_then_the_head_alone_and_restores():
    model, opt, before, step, calls = warmed_two_groups(ratio=0.1)  # the ratio is not read by the joint phase
    config = LRFinderConfig(num_steps=30, end_lr=1.0, diverge_threshold=None, num_sweeps=3)
    result = split_range_test(step, model, opt, config, progress=False)
    sweep = [1e-7 * (1.0 / 1e-7) ** (i / 30) for i in range(30)]
    assert len(calls) == 90  # num_sweeps - 1 joint sweeps, then one of the head
    for i in (0, 30):
        assert [c[0] for c in calls[i : i + 30]] == pytest.approx(sweep)  # body and head ...
        assert [c[1] for c in calls[i : i + 30]] == pytest.approx(sweep)  # ... at the same rate
    assert [c[1] for c in calls[60:]] == pytest.approx(sweep)  # the head alone, over the whole range
    assert [c[0] for c in calls[60:]] == [0.0] * 30  # the body held still
    assert result.metadata["strategy"] == "split" and result.metadata["cost_steps"] == 90
    assert result.metadata["num_sweeps"] == 2  # the body's curve: the mean of the two joint sweeps
    assert len(result.metadata["sweep_losses"]["body"]) == 2
    assert result.losses["head"] != result.losses["body"]
    assert result.metadata["default_rules"] == {"body": "pretrained", "head": "probe"}
    assert result.metadata["head_groups"] == ["head"]
    assert result.suggestion(group="head") == result.suggestions["head"]["probe"]  # the head's curve read with probe
    assert result.suggestions["head"]["probe"] == pytest.approx(result.suggestions["head"]["minimum"] / 7)
    body = result.suggestions["body"]
    assert result.suggestion(group="body") == body["pretrained"]  # the body's default: pretrained ...
    assert body["pretrained"] == pretrained(*prepare_curve(result.lrs["body"], result.losses["body"], num_steps=30))
    assert "probe" not in body and "pretrained" not in result.suggestions["head"]  # each rule on its own groups only
    summary = result.summary()
    assert (
        " for head (probe, the default rule); " in summary and " for body (pretrained, the default rule); " in summary
    )
    assert "every group at one rate, read for body: 2 sweeps from the same start" in summary
    assert "head alone, the rest held still: 1 sweep" in summary
    table = result.summary(table=True).splitlines()[-3:]  # every rule's column, "pretrained" as wide as its name
    assert sorted(table[0].split()[-2:]) == ["pretrained", "probe"] and len({len(row) for row in table}) == 1
    # a result saved before `head_groups` was recorded (a default rule for the head only) reads the same
    result.metadata.pop("head_groups")
    result.metadata["default_rules"] = {"head": "probe"}
    assert result.summary().splitlines()[2:4] == summary.splitlines()[2:4]
    assert_same_state(before, state_of(model, opt))


def test_split_body_curve_is_the_one_group_range_test():
    """With equal group rates, the body's curve is bit for bit a one-group range test of num_sweeps - 1 sweeps."""

    def run(fn, **kwargs):
        model = tiny_model()
        opt = two_group_optimizer(model, ratio=1.0, names=["body", "head"])
        step, _ = make_step(model, opt, seed=5)
        torch.manual_seed(7)
        return fn(step, model, opt, LRFinderConfig(num_steps=25, end_lr=1.0, **kwargs), progress=False)

    split = run(split_range_test, num_sweeps=3)
    one_group = run(range_test, num_sweeps=2, suggest=[*LRFinderConfig().suggest, "pretrained"])
    assert split.losses["body"] == one_group.losses["body"]
    assert split.suggestions["body"] == one_group.suggestions["body"]  # every rule, pretrained too, read the same


def test_split_runs_the_heads_rule_when_suggest_leaves_it_out_and_a_chosen_one_when_it_is_run():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["body", "head"])
    step, _ = make_step(model, opt)
    config = LRFinderConfig(num_steps=20, end_lr=1.0, num_sweeps=2, suggest=["valley", "trough"])
    result = split_range_test(step, model, opt, config, progress=False)
    assert list(result.suggestions["head"]) == ["valley", "trough", "probe"] and result.default_rule("head") == "probe"
    body = list(result.suggestions["body"])
    assert body == ["valley", "trough", "pretrained"] and result.default_rule("body") == "pretrained"
    assert result.metadata["cost_steps"] == 40  # num_sweeps=2: one sweep of the whole model, one of the head
    chosen = split_range_test(step, model, opt, config, head_method="trough", body_method="valley", progress=False)
    assert list(chosen.suggestions["head"]) == ["valley", "trough"] and chosen.default_rule("head") == "trough"
    assert list(chosen.suggestions["body"]) == ["valley", "trough"] and chosen.default_rule("body") == "valley"


def test_set_default_rule_reads_one_group_with_another_rule_everywhere_and_refuses_one_not_run(tmp_path):
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["body", "head"])
    step, _ = make_step(model, opt)
    result = split_range_test(step, model, opt, LRFinderConfig(num_steps=20, end_lr=1.0), progress=False)
    result.set_default_rule("body", "trough")  # the body as the one-group range test reads it, the head still probe
    body, head = result.suggestions["body"]["trough"], result.suggestions["head"]["probe"]
    assert result.suggestion(group="body") == body and result.suggestion(group="head") == head
    assert " for body (trough, the default rule); " in result.summary()
    optimizer = torch.optim.SGD([{"params": [p], "name": "body"} for p in model.parameters()][:1], lr=1.0)
    result.apply(optimizer)
    assert optimizer.param_groups[0]["lr"] == body
    result.save(tmp_path / "r.json")
    assert type(result).load(tmp_path / "r.json").default_rule("body") == "trough"  # kept in the saved result
    before = dict(result.metadata["default_rules"])
    with pytest.raises(ValueError, match=r"did not run the rule 'probe' for group 'body'; it ran \['trough'"):
        result.set_default_rule("body", "probe")
    with pytest.raises(ValueError, match=r"Unknown group 'neck'; this result has \['body', 'head'\]"):
        result.set_default_rule("neck", "trough")
    assert result.metadata["default_rules"] == before


def test_split_plot_draws_the_parabola_pretrained_reads_on_the_body_panel_only():
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["body", "head"])
    bowl = [1.0 + 0.05 * (i / 40 * 7 - 4.5) ** 2 for i in range(40)]  # lowest 4.5 decades above start_lr
    step, _ = make_step(model, opt, losses=bowl * 2 + [x + 0.5 for x in bowl])  # two joint sweeps, then the head's
    config = LRFinderConfig(num_steps=40, end_lr=1.0, diverge_threshold=None)
    result = split_range_test(step, model, opt, config, progress=False)
    body_ax, head_ax = result.plot().axes
    (fit,) = [line for line in body_ax.lines if line.get_label() == "parabola fit (pretrained reads)"]
    lrs, losses = prepare_curve(result.lrs["body"], result.losses["body"], num_steps=40)
    expected = pretrained_fit(lrs, losses)
    np.testing.assert_allclose(fit.get_xdata(), expected[0])
    np.testing.assert_allclose(fit.get_ydata(), expected[1])
    # the suggestion is a sixth of the fit's vertex, which lies on the drawn span
    vertex = 6 * result.suggestions["body"]["pretrained"]
    assert fit.get_xdata().min() <= vertex * (1 + 1e-12) and vertex <= fit.get_xdata().max() * (1 + 1e-12)
    assert not [line for line in head_ax.lines if "parabola" in line.get_label()]


def test_split_plot_marks_each_groups_rule_on_the_panel_body_and_adapter_share():
    model = tiny_model()
    groups = [model[0], model[1], model[3]]
    names = ["body", "adapter", "head"]
    opt = torch.optim.AdamW([{"params": list(m.parameters()), "lr": 1e-3, "name": n} for m, n in zip(groups, names)])
    bowl = [1.0 + 0.05 * (i / 40 * 7 - 4.5) ** 2 for i in range(40)]
    step, _ = make_step(model, opt, losses=bowl * 2 + [x + 0.5 for x in bowl])
    result = split_range_test(step, model, opt, LRFinderConfig(num_steps=40, end_lr=1.0), progress=False)
    shared, _ = result.plot().axes  # body and adapter: one curve, one panel; the head its own
    assert shared.get_title().startswith("body (the same curve for adapter")
    labels = [line.get_label() for line in shared.lines]
    body, adapter = result.suggestion(group="body"), result.suggestion(group="adapter")
    assert f"pretrained: {body:.2e} (default for body)" in labels
    assert f"trough: {adapter:.2e} (default for adapter)" in labels
    in_use = result.plot(method="valley").axes[0]  # one rule named: every group's, unnamed
    assert f"valley: {result.suggestions['body']['valley']:.2e} (in use)" in [x.get_label() for x in in_use.lines]


def test_split_reads_lora_adapters_with_the_first_rule_and_a_pretrained_body_with_its_own():
    """Adapters are new weights: the first rule of `suggest` (trough), not the pretrained body's rule."""
    model = tiny_model()
    opt = two_group_optimizer(model, ratio=1.0, names=["adapter", "head"])
    step, _ = make_step(model, opt)
    result = split_range_test(step, model, opt, LRFinderConfig(num_steps=20, end_lr=1.0), progress=False)
    assert result.metadata["default_rules"] == {"adapter": "trough", "head": "probe"}
    assert list(result.suggestions["adapter"]) == ["trough", "valley", "slide", "steep", "minimum"]
    assert result.suggestion(group="adapter") == result.suggestions["adapter"]["trough"]
    assert " for adapter (trough, the default rule); " in result.summary()


@pytest.mark.parametrize(
    "option, message",
    [
        ({"head_method": "lowest"}, r"head_method \('lowest'\) must be one of the rules the sweep runs"),
        ({"body_method": "lowest"}, r"body_method \('lowest'\) must be one of the rules the sweep runs"),
        ({"head_phase": "frozen"}, r"head_phase \('frozen'\) must be one of \('alone', 'beside'\)"),
        ({"body_phase": "first"}, r"body_phase \('first'\) must be one of \('together', 'held'\)"),
        ({"head_phase": "beside", "body_phase": "held"}, r"choose one"),
    ],
)
def test_split_refuses_an_unknown_head_rule_or_phase_and_changes_nothing(option, message):
    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "head"])
    step, calls = make_step(model, opt)
    with pytest.raises(ValueError, match=message):
        split_range_test(step, model, opt, LRFinderConfig(num_steps=10), progress=False, **option)
    assert calls == []


def test_split_needs_a_head_and_a_body_and_changes_nothing():
    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "neck"])
    step, calls = make_step(model, opt)
    with pytest.raises(ValueError, match="split strategy needs param groups named"):
        split_range_test(step, model, opt, LRFinderConfig(num_steps=10), progress=False)
    assert calls == []


def tiny_bert(seed=0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def bert_step(model, optimizer):
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(0, 64, (8, 12), generator=g), "labels": torch.randint(0, 2, (8,), generator=g)}

    def step():
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        from hf_lrfind import StepOutput

        return StepOutput(loss.detach())

    return step


@pytest.mark.parametrize("strategy", ["joint", "split", "sequential"])
def test_regrouped_optimizer_runs_each_strategy_and_the_result_rebuilds_the_groups(strategy):
    from hf_lrfind.core.strategies import run_strategy
    from hf_lrfind.groups.build import regroup_optimizer

    model = tiny_bert()
    user_opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    opt, groups = regroup_optimizer(model, user_opt, "auto")
    assert [g["name"] for g in opt.param_groups] == ["head", "head", "body", "body"]  # decay / no-decay in each
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-3, 2e-3, 2e-4, 2e-4])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0, 0.01, 0.0]
    assert groups["head"] == ["classifier.weight", "classifier.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_strategy(
        strategy,
        bert_step(model, opt),
        model,
        opt,
        LRFinderConfig(num_steps=20, end_lr=1.0),
        groups=groups,
        progress=False,
    )
    assert not any(w.startswith("No gradient") for w in result.metadata["warnings"])  # every swept group learns
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.groups == ["head", "body"] and result.metadata["strategy"] == strategy
    assert result.metadata["groups"] == groups
    rebuilt = result.param_groups(model, "minimum", weight_decay=0.01)
    assert {g["name"]: g["lr"] for g in rebuilt} == {g: result.suggestion("minimum", g) for g in ("head", "body")}
    if strategy == "joint":
        assert result.suggestion("minimum", "body") == pytest.approx(0.1 * result.suggestion("minimum", "head"))


def test_split_names_a_head_without_gradient_once():
    model, unused = tiny_model(), torch.nn.Linear(4, 4)  # the 'head' is never in the loss
    opt = torch.optim.AdamW(
        [{"params": model.parameters(), "name": "body"}, {"params": unused.parameters(), "name": "head"}]
    )
    step, _ = make_step(model, opt)
    config = LRFinderConfig(num_steps=20, end_lr=1.0, diverge_threshold=None)
    result = split_range_test(step, model, opt, config, progress=False)
    (message,) = [w for w in result.metadata["warnings"] if w.startswith("No gradient")]  # not again for the body curve
    assert "'head'" in message


def test_run_strategy_refuses_an_unknown_strategy():
    from hf_lrfind.core.strategies import run_strategy

    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "head"])
    step, calls = make_step(model, opt)
    with pytest.raises(ValueError, match="must be one of"):
        run_strategy("greedy", step, model, opt, LRFinderConfig(num_steps=10), progress=False)
    assert calls == []


def test_the_progress_bar_shows_the_swept_groups_lr(monkeypatch):
    import tqdm.auto

    shown = []

    class Bar(tqdm.auto.tqdm):
        def set_postfix_str(self, s="", refresh=True):
            if s.startswith("lr="):
                shown.append(s.split(",")[0].removeprefix("lr="))

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    model = tiny_model()
    opt = two_group_optimizer(model, names=["body", "head"])
    step, calls = make_step(model, opt)
    config = LRFinderConfig(start_lr=1e-7, end_lr=1.0, num_steps=20, check_every=10, diverge_threshold=None)
    sequential_range_test(step, model, opt, config, warmup_steps=2, progress=True)
    # group 0 (body) is held at 0 while the head is swept, then swept while the head is held at its suggestion
    head_sweep, body_sweep = [c[1] for c in calls[:20]], [c[0] for c in calls[22:]]
    assert shown == [f"{lr:.2e}" for lr in (head_sweep[9], head_sweep[19], body_sweep[9], body_sweep[19])]


def _split_restored(**phases):
    """A 3-sweep, 30-step split run on a warmed two-group model, checked to restore it: its result and every step's lrs."""
    model, opt, before, step, calls = warmed_two_groups(ratio=0.1)
    config = LRFinderConfig(num_steps=30, end_lr=1.0, diverge_threshold=None, num_sweeps=3)
    result = split_range_test(step, model, opt, config, progress=False, **phases)
    assert_same_state(before, state_of(model, opt))
    return result, calls


SWEEP_30 = [1e-7 * (1.0 / 1e-7) ** (i / 30) for i in range(30)]


def test_split_beside_sweeps_the_head_with_the_rest_training_at_its_suggestion_and_restores():
    result, calls = _split_restored(head_phase="beside")
    body_lr = result.suggestions["body"]["pretrained"]  # the body curve is the joint sweeps' mean, as with "alone"
    assert len(calls) == 90
    assert [c[1] for c in calls[60:]] == pytest.approx(SWEEP_30)  # the head swept over the whole range ...
    assert [c[0] for c in calls[60:]] == [body_lr] * 30  # ... the body training at its suggestion
    assert result.metadata["head_phase"] == "beside" and result.metadata["held_lrs"] == {"body": body_lr}
    assert f"head swept beside the rest training at its suggestion (body at {body_lr:.2e}): 1 sweep" in result.summary()


def test_split_held_sweeps_the_head_first_then_the_body_beside_the_head_at_its_rule_and_restores():
    result, calls = _split_restored(body_phase="held")
    head_lr = result.suggestions["head"]["probe"]  # held at the head's default rule
    assert len(calls) == 90 and result.metadata["cost_steps"] == 90  # the same cost as body_phase="together"
    assert [c[1] for c in calls[:30]] == pytest.approx(SWEEP_30)  # the head swept first ...
    assert [c[0] for c in calls[:30]] == [0.0] * 30  # ... the body held still
    for body_sweep in (calls[30:60], calls[60:]):  # then two body sweeps, averaged ...
        assert [c[0] for c in body_sweep] == pytest.approx(SWEEP_30)
        assert [c[1] for c in body_sweep] == [head_lr] * 30  # ... the head training at its suggestion
    assert result.metadata["body_phase"] == "held" and result.metadata["held_lrs"] == {"head": head_lr}
    assert result.lrs["body"] == pytest.approx(SWEEP_30) and result.losses["head"] != result.losses["body"]
    assert f"body with the head held at its suggestion (head at {head_lr:.2e}): 2 sweeps" in result.summary()
