"""The Trainer adapter: find_lr and LRFinderCallback run through the Trainer's own training step."""

import logging
import math
import os
import time

import pytest
import torch
from torch.utils.data import Dataset, SequentialSampler
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainingArguments,
)

from hf_lrfind import LRFinderCallback, find_lr


class Tokens(Dataset):
    def __init__(self, n=64, length=12, vocab=64, kind="cls", seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)
        self.labels = (self.ids[:, 0] % 2) if kind == "cls" else self.ids
        self.kind = kind

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class InOrder(Trainer):
    """Same data order whatever the batch size: GA 2 x 4 sees what 1 x 8 sees."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models: intra-op threads only add contention (10x slower on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bert(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(cfg)


def gpt2(seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=16))


def make_trainer(tmp_path, model=None, cls=Trainer, data=None, optimizers=(None, None), callbacks=None, **kw):
    defaults = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=8,
        max_steps=6,
        learning_rate=1e-3,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=1,
    )
    defaults.update(kw)
    args = TrainingArguments(**defaults)
    return cls(
        model=model if model is not None else bert(),
        args=args,
        train_dataset=data or Tokens(),
        optimizers=optimizers,
        callbacks=callbacks,
    )


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def train_losses(trainer):
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def two_group_optimizer(model):
    """AdamW with the body at 0.1x the head (unnamed groups), and the lrs of its param groups at every step."""
    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    opt = torch.optim.AdamW([{"params": body, "lr": 1e-4}, {"params": head, "lr": 1e-3}])
    seen = []
    opt.register_step_pre_hook(lambda opt, args, kwargs: seen.append([g["lr"] for g in opt.param_groups]))
    return opt, seen


def test_applied_lrs_follow_the_sweep_in_every_group(tmp_path):
    model = bert()
    opt, seen = two_group_optimizer(model)
    trainer = make_trainer(tmp_path, model, optimizers=(opt, None))
    result = find_lr(trainer, num_steps=12, num_sweeps=1, end_lr=1.0, save_to=None)
    assert len(seen) == 12  # the sweep's steps only: no batch runs after it
    assert [s[0] for s in seen] == result.lrs["group_0"]
    assert [s[1] for s in seen] == result.lrs["group_1"] == pytest.approx([10 * lr for lr in result.lrs["group_0"]])
    assert result.lrs["group_0"][:2] == [1e-7, 1e-7 * (1e7) ** (1 / 12)]
    assert trainer.state.global_step == 0


def test_grad_accumulation_gives_the_same_curve(tmp_path):
    curves = []
    for bs, ga in ((8, 1), (4, 2)):
        # no dropout: its random draws depend on the micro-batch shape
        trainer = make_trainer(
            tmp_path / f"{ga}",
            model=bert(dropout=0.0),
            cls=InOrder,
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            max_grad_norm=0.0,
        )
        curves.append(find_lr(trainer, num_steps=10, end_lr=1e-2, save_to=None).losses["all"])
    assert curves[0] == pytest.approx(curves[1], rel=1e-5)


def test_find_lr_then_train_is_train_alone(tmp_path):
    alone = make_trainer(tmp_path / "a")
    alone_losses = train_losses(alone)
    trainer = make_trainer(tmp_path / "b")
    result = find_lr(trainer, num_steps=10)  # the default 3 sweeps, restored between and after
    assert os.path.exists(tmp_path / "b" / "lr_find.json") and os.path.exists(tmp_path / "b" / "lr_find.png")
    assert result.metadata["num_sweeps"] == 3 and result.metadata["steps_run"] == result.metadata["cost_steps"] == 30
    assert train_losses(trainer) == alone_losses
    assert_same(weights(alone.model), weights(trainer.model))


def test_callback_stop_leaves_everything_and_a_later_train_is_train_alone(tmp_path):
    alone = make_trainer(tmp_path / "a")
    alone_losses = train_losses(alone)
    finder = LRFinderCallback(then="stop", num_steps=10, save_to=None)
    trainer = make_trainer(tmp_path / "b", callbacks=[finder])
    before = weights(trainer.model)
    trainer.train()
    assert finder.result is not None and trainer.state.global_step == 0
    assert_same(before, weights(trainer.model))
    assert not [h for h in trainer.state.log_history if "loss" in h]  # the stop step logged nothing
    assert train_losses(trainer) == alone_losses  # the callback swept once; this train() trains
    assert_same(weights(alone.model), weights(trainer.model))


def test_callback_train_is_plain_training_at_the_suggestion(tmp_path):
    finder = LRFinderCallback(num_steps=10, save_to=None)  # then="train", the default
    trainer = make_trainer(tmp_path / "b", callbacks=[finder])
    losses = train_losses(trainer)
    lr = finder.result.suggestion()  # the default rule, trough
    plain = make_trainer(tmp_path / "a", learning_rate=lr)
    assert train_losses(plain) == losses
    assert_same(weights(plain.model), weights(trainer.model))


def test_divergence_stops_the_sweep(tmp_path):
    trainer = make_trainer(tmp_path, model=gpt2(), data=Tokens(kind="lm"))
    result = find_lr(trainer, num_steps=100, start_lr=1e-3, end_lr=1e5, check_every=1, save_to=None)
    assert result.stop_reason["all"] in ("diverged", "non_finite_loss")
    assert len(result.losses["all"]) < 100


def test_bf16_on_cpu(tmp_path):
    trainer = make_trainer(tmp_path, model=gpt2(), data=Tokens(kind="lm"), bf16=True)
    before = weights(trainer.model)
    result = find_lr(trainer, num_steps=10, save_to=None)
    assert len(result.losses["all"]) == 10 and all(torch.isfinite(torch.tensor(result.losses["all"])))
    assert_same(before, weights(trainer.model))


def test_groups_auto_split_gives_head_and_body(tmp_path):
    trainer = make_trainer(tmp_path, weight_decay=0.01)
    before = weights(trainer.model)
    result = find_lr(trainer, groups="auto", num_steps=12, end_lr=1.0, save_to=None)
    assert result.groups == ["head", "body"] and result.metadata["strategy"] == "split"
    assert result.metadata["cost_steps"] == 36  # two sweeps of the whole model, one of the head
    assert result.metadata["groups"]["head"] == ["classifier.weight", "classifier.bias"]
    assert_same(before, weights(trainer.model))
    result.apply(trainer, "minimum")
    assert {g["name"]: g["lr"] for g in trainer.optimizer.param_groups} == {
        g: result.suggestion("minimum", g) for g in ("head", "body")
    }
    assert trainer.args.learning_rate == result.suggestion("minimum", "head")  # what a user reads back agrees
    trainer.train()  # trains with the per-group optimizer


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="then"):
        LRFinderCallback(then="continue")
    with pytest.raises(ValueError, match="method"):
        LRFinderCallback(method="valley", suggest=["steep"])
    with pytest.raises(TypeError, match="always stops"):
        find_lr(make_trainer(tmp_path), then="train")
    empty = make_trainer(tmp_path)
    empty.train_dataset = torch.utils.data.Subset(Tokens(), [])
    with pytest.raises(ValueError, match="an empty train_dataset: give Trainer"):
        find_lr(empty)


def test_model_without_loss_is_refused_and_left_unchanged(tmp_path):
    class NoLabels(Tokens):
        def __getitem__(self, i):
            return {"input_ids": self.ids[i]}

    trainer = make_trainer(tmp_path, data=NoLabels())
    before = weights(trainer.model)
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match="no 'labels' entry"):
        find_lr(trainer, num_steps=5, save_to=None)
    assert_same(before, weights(trainer.model))
    assert torch.equal(torch.get_rng_state(), rng) and trainer.optimizer is None


def test_warmup_starting_at_zero_keeps_the_group_ratios(tmp_path):
    # With warm-up the scheduler has set every lr to 0 before the sweep starts; ratios come from initial_lr.
    trainer = make_trainer(tmp_path, warmup_steps=3)
    result = find_lr(trainer, num_steps=10, save_to=None)
    assert result.lrs["all"][0] == 1e-7
    grouped = find_lr(
        make_trainer(tmp_path / "g", warmup_steps=3), groups="auto", strategy="joint", num_steps=10, save_to=None
    )
    assert grouped.lrs["body"][0] == pytest.approx(0.1 * grouped.lrs["head"][0])


def test_callback_train_with_groups_trains_each_group_at_its_suggestion(tmp_path):
    finder = LRFinderCallback(then="train", groups="auto", num_steps=12, end_lr=1.0, save_to=None)
    trainer = make_trainer(tmp_path, callbacks=[finder], warmup_steps=2)
    seen = []
    from transformers import TrainerCallback

    class Spy(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            seen.append({g["name"]: g["initial_lr"] for g in optimizer.param_groups})

    trainer.add_callback(Spy())
    trainer.train()
    expected = {g: finder.result.suggestion(group=g) for g in ("head", "body")}  # each group's default rule
    assert expected == {
        "head": finder.result.suggestions["head"]["probe"],
        "body": finder.result.suggestions["body"]["pretrained"],
    }
    assert seen and all(s == expected for s in seen)  # the schedule's peak per group
    assert trainer.state.global_step == 6


class Recorder:
    """Records the Trainer events a callback receives (a duck-typed TrainerCallback)."""

    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        if name.startswith("on_") and name != "on_init_end":
            return lambda args, state, control, logs=None, **kw: self.events.append(
                (name, sorted(logs)) if logs is not None else name
            )
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class CountingSteps(Trainer):
    calls = 0

    def training_step(self, *args, **kwargs):
        CountingSteps.calls += 1
        return super().training_step(*args, **kwargs)


def test_find_lr_runs_no_other_callback_and_leaves_no_trace(tmp_path):
    recorder = Recorder()
    trainer = make_trainer(tmp_path, bf16=True, callbacks=[recorder])
    model, state, gradient_state = trainer.model, trainer.state, trainer.accelerator.gradient_state
    references = list(gradient_state.dataloader_references)
    rng = torch.get_rng_state()
    result = find_lr(trainer, num_steps=8, skip_end=0, save_to=None)
    # Trackers and user callbacks see no training start or end, only the suggestions.
    logged = [f"lr_find/all/{m}" for m in sorted(result.suggestions["all"]) if result.suggestions["all"][m]]
    assert recorder.events == [("on_log", sorted([*logged, "lr_find/optimizer_steps", "lr_find/tokens"]))]
    assert trainer.state is state and state.log_history == [] and state.global_step == 0
    assert trainer.optimizer is None and trainer.lr_scheduler is None and trainer.model_wrapped is model
    # accelerate's autocast wrapper and prepared flag are gone, the dataloader is not left running, RNG as before.
    assert "forward" not in model.__dict__ and not getattr(model, "_is_accelerate_prepared", False)
    assert gradient_state.dataloader_references == references and trainer.accelerator._models == []
    assert torch.equal(torch.get_rng_state(), rng)


def test_callback_stop_runs_no_batch_after_the_sweep(tmp_path, caplog):
    recorder = Recorder()
    finder = LRFinderCallback(then="stop", num_steps=8, save_to=None)
    trainer = make_trainer(tmp_path, cls=CountingSteps, callbacks=[finder, recorder])
    CountingSteps.calls = 0
    trainer_log = logging.getLogger("transformers.trainer")
    filters, seen = list(trainer_log.filters), []
    handler = logging.Handler()
    handler.emit = seen.append
    trainer_log.addHandler(handler)
    try:
        out = trainer.train()
    finally:
        trainer_log.removeHandler(handler)
    assert CountingSteps.calls == 3 * 8 and out.global_step == 0  # three sweeps of 8 steps, then nothing
    # What train() returns and logs says no training ran: no train_loss 0.0, no training speed.
    assert math.isnan(out.training_loss) and not {"train_loss", "train_runtime"} & set(out.metrics)
    assert not [h for h in trainer.state.log_history if "train_loss" in h or "train_runtime" in h]
    assert [r for r in caplog.records if "ends without training" in r.getMessage()]
    names = {e if isinstance(e, str) else e[0] for e in recorder.events}
    assert not {"on_step_begin", "on_step_end", "on_substep_end", "on_save", "on_evaluate"} & names
    assert "get_batch_samples" not in trainer.__dict__ and trainer_log.filters == filters
    # The loop's warning about an epoch without samples is about the epoch stop mode emptied: not shown.
    assert not [r for r in seen if "single sample" in r.getMessage()]
    CountingSteps.calls = 0
    trainer.train()  # swept once: this one trains
    assert CountingSteps.calls == trainer.args.max_steps


@pytest.mark.parametrize("event", ["on_epoch_begin", "on_train_end"])
def test_stop_mode_leaves_nothing_behind_when_train_fails_after_the_sweep(tmp_path, event):
    # Another callback raising after the sweep: no stand-in on the trainer, no filter on transformers' logger, and
    # the next train() trains every step.
    class Failing:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    failing = Failing()
    setattr(failing, event, fail)
    trainer_log = logging.getLogger("transformers.trainer")
    filters = list(trainer_log.filters)
    finder = LRFinderCallback(then="stop", num_steps=8, save_to=None)
    trainer = make_trainer(tmp_path, cls=CountingSteps, callbacks=[failing, finder])  # it runs first
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    if event == "on_epoch_begin":  # failed before the epoch ran: the next sweep on this trainer cleans up
        trainer.remove_callback(failing)
        trainer.remove_callback(finder)
        trainer.add_callback(LRFinderCallback(num_steps=6, num_sweeps=1, save_to=None, then="train"))
        CountingSteps.calls = 0
        trainer.train()
        assert CountingSteps.calls == 6 + trainer.args.max_steps  # a full sweep, then every training step
    assert "get_batch_samples" not in trainer.__dict__ and trainer_log.filters == filters


class CountingClips(Trainer):
    calls = 0

    def _clip_grad_norm(self, model):
        CountingClips.calls += 1
        return self.accelerator.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)


def test_the_sweep_clips_through_the_trainers_own_clipping(tmp_path):
    # A subclass's (or transformers 5.3+'s) _clip_grad_norm is what the sweep calls, once per optimizer step.
    trainer = make_trainer(tmp_path, cls=CountingClips, max_grad_norm=0.5)
    CountingClips.calls = 0
    result = find_lr(trainer, num_steps=6, num_sweeps=1, save_to=None)
    assert CountingClips.calls == result.metadata["cost_steps"] == 6


def test_callback_stop_restores_a_batch_run_by_another_loop(tmp_path):
    # A Trainer whose loop fetches batches by another path runs a batch before it stops: it is undone at the end.
    class OwnLoop:
        def __init__(self):
            self.trainer = None

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.trainer.__dict__.pop("get_batch_samples", None)

    alone = make_trainer(tmp_path / "a")
    alone_losses = train_losses(alone)
    own, tracker = OwnLoop(), Tracker()
    finder = LRFinderCallback(then="stop", num_steps=8, save_to=None)
    trainer = make_trainer(tmp_path / "b", callbacks=[finder, own, tracker], save_strategy="steps", save_steps=1)
    own.trainer = trainer
    before = weights(trainer.model)
    trainer.train()
    assert trainer.state.global_step == 0 and not [h for h in trainer.state.log_history if "loss" in h]
    # The batch that ran was not logged to trackers, nor saved (the Trainer's flow callback did not switch them on).
    assert not [logs for logs in tracker.logs if "loss" in logs] and not list((tmp_path / "b").glob("checkpoint-*"))
    trainer.args.save_strategy = "no"
    assert_same(before, weights(trainer.model))
    assert train_losses(trainer) == alone_losses
    assert_same(weights(alone.model), weights(trainer.model))


def test_apply_sets_each_group_of_the_users_optimizer_as_the_schedules_peak(tmp_path):
    model = bert()
    opt, seen = two_group_optimizer(model)
    trainer = make_trainer(tmp_path, model, optimizers=(opt, None), warmup_steps=2, max_steps=4)
    result = find_lr(trainer, num_steps=20, end_lr=1.0, save_to=None)
    result.apply(trainer, "minimum")
    expected = [result.suggestion("minimum", g) for g in ("group_0", "group_1")]
    assert [g["lr"] for g in opt.param_groups] == expected and "initial_lr" not in opt.param_groups[0]
    seen.clear()  # keep only the training steps
    trainer.train()
    # linear warm-up over 2 steps then linear decay to 0 at step 4, from each group's own peak
    factors = [0.0, 0.5, 1.0, 0.5]
    assert seen == [[f * lr for lr in expected] for f in factors]


def test_callback_train_with_the_users_two_group_optimizer(tmp_path):
    model = bert()
    opt, seen = two_group_optimizer(model)
    finder = LRFinderCallback(then="train", method="minimum", num_steps=20, num_sweeps=1, end_lr=1.0, save_to=None)
    trainer = make_trainer(tmp_path, model, optimizers=(opt, None), callbacks=[finder], warmup_steps=2, max_steps=4)
    trainer.train()
    peaks = [finder.result.suggestion("minimum", g) for g in ("group_0", "group_1")]
    assert seen[:20] == [list(lrs) for lrs in zip(finder.result.lrs["group_0"], finder.result.lrs["group_1"])]
    assert seen[20:] == [[f * lr for lr in peaks] for f in (0.0, 0.5, 1.0, 0.5)]


def test_the_suggestions_are_shown_on_the_console_where_the_trainer_shows_its_metrics(tmp_path, capsys):
    result = find_lr(make_trainer(tmp_path / "a", disable_tqdm=False), num_steps=8, num_sweeps=1, save_to=None)
    out = capsys.readouterr().out
    trough = result.suggestions["all"]["trough"]
    assert f"lr_find: use lr {trough:.2e} (trough, the default rule); " in out
    assert f"  cost: {result.metadata['cost_steps']} optimizer steps in all" in out and "  other rules: valley " in out
    finder = LRFinderCallback(num_steps=8, num_sweeps=1, save_to=None)
    make_trainer(tmp_path / "b", callbacks=[finder], disable_tqdm=False).train()
    out = capsys.readouterr().out
    assert f"lr_find: use lr {finder.result.suggestion():.2e} (trough, the default rule)" in out  # the rule in use
    assert f"lr_find: training now, at peak learning rate {finder.result.suggestion():.2e} (trough)" in out
    find_lr(
        make_trainer(tmp_path / "c"), num_steps=8, num_sweeps=1, save_to=None
    )  # disable_tqdm: no bar to write under
    out = capsys.readouterr().out
    assert "lr_find: use lr" not in out and "'lr_find/all/trough'" in out  # the Trainer's PrinterCallback prints


class Tracker:
    """Keeps what `on_log` receives, as a `report_to` tracker would send it."""

    def __init__(self):
        self.logs = []

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def test_training_speed_covers_the_training_alone_and_the_sweep_is_reported_apart(tmp_path):
    tracker = Tracker()
    finder = LRFinderCallback(num_steps=8, num_sweeps=2, save_to=None)
    trainer = make_trainer(tmp_path, callbacks=[tracker, finder])  # a tracker listed before the finder
    order = list(trainer.callback_handler.callbacks)
    started = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - started
    (swept,) = [h for h in trainer.state.log_history if "lr_find/runtime" in h]
    assert swept["lr_find/optimizer_steps"] == 16 and swept["lr_find/tokens"] == finder.result.metadata["tokens_seen"]
    # The Trainer's clock started before the sweep: its runtime and the sweep's add up to at most the call's wall time.
    assert out.metrics["train_runtime"] + swept["lr_find/runtime"] <= wall
    steps_per_second = trainer.state.max_steps / out.metrics["train_runtime"]
    assert out.metrics["train_steps_per_second"] == pytest.approx(steps_per_second, rel=0.01, abs=2e-3)
    assert trainer.state.log_history[-1]["train_runtime"] == out.metrics["train_runtime"]
    (seen,) = [logs for logs in tracker.logs if "train_runtime" in logs]  # trackers see it corrected
    assert seen["train_runtime"] == out.metrics["train_runtime"]
    assert trainer.callback_handler.callbacks == order  # the finder listened first during train(), then as before


def test_a_callback_without_trough_uses_the_first_rule_it_runs(tmp_path):
    finder = LRFinderCallback(then="train", suggest=["valley", "steep"], num_steps=10, num_sweeps=1, save_to=None)
    assert finder.method is None  # no rule named: each group's default rule, the first the sweep runs
    trainer = make_trainer(tmp_path, callbacks=[finder])
    trainer.train()
    assert trainer.args.learning_rate == finder.result.suggestion("valley") == finder.result.suggestion()
