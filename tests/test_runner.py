"""The accelerate runner: applied lrs, equality with a plain accelerate loop, bf16, gradient accumulation, restore."""

import copy
import json
import logging
import os
import random

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import ProjectConfiguration
from transformers import GPT2Config, GPT2LMHeadModel

import hf_lrfind.integrations.runner as runner_module
from hf_lrfind import LRFinderConfig, LRFinderResult
from hf_lrfind.integrations.accelerate_state import AccelerateStateSnapshot
from hf_lrfind.integrations.runner import LRFinder

VOCAB, SEQ = 64, 16


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """AcceleratorState is a process-wide singleton: every test starts from a blank one."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def tiny_gpt2(seed=0, dropout=0.0):
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=SEQ,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"
    return model


def make_batches(n=3, batch_size=4, seed=0, ragged=False):
    """Causal-LM batches; `ragged` masks a random tail of each row's labels, so rows hold different label counts."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        ids = torch.randint(1, VOCAB, (batch_size, SEQ), generator=g)
        labels = ids.clone()
        if ragged:
            for row in range(batch_size):
                keep = int(torch.randint(2, SEQ + 1, (1,), generator=g))
                labels[row, keep:] = -100
        batches.append({"input_ids": ids, "labels": labels})
    return batches


def exp_lrs(start, end, n):
    return [start * (end / start) ** (i / n) for i in range(n)]


def snapshot_of(model, optimizer):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()},
        copy.deepcopy(optimizer.state_dict()),
        {name: m.training for name, m in model.named_modules()},
        (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()),
    )


def assert_same(a, b):
    weights_a, grads_a, opt_a, modes_a, rng_a = a
    weights_b, grads_b, opt_b, modes_b, rng_b = b
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        assert (grads_a[k] is None) == (grads_b[k] is None), k
        assert grads_a[k] is None or torch.equal(grads_a[k], grads_b[k]), k
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for i in opt_a["state"]:
        for key, value in opt_a["state"][i].items():
            assert torch.equal(value, opt_b["state"][i][key]), (i, key)
    assert modes_a == modes_b
    assert torch.equal(rng_a[0], rng_b[0]) and rng_a[1] == rng_b[1] and np.array_equal(rng_a[2], rng_b[2])


def plain_loop(accelerator, model, optimizer, batches, lrs, max_grad_norm=None):
    """What a user's accelerate training loop does, at the given per-step lrs (one group)."""
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    losses = []
    for i, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = batches[i % len(batches)]
        with accelerator.autocast():
            loss = model(**batch).loss
        accelerator.backward(loss)
        if max_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_applied_lrs_per_group_keep_their_ratio():
    model = tiny_gpt2()
    body = [p for n, p in model.named_parameters() if n.startswith("transformer.h.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("transformer.h.")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": 1e-3}, {"params": rest, "lr": 1e-4}])
    seen = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append([g["lr"] for g in opt.param_groups]))
    finder = LRFinder(model, optimizer, accelerator=Accelerator(cpu=True), progress=False)
    result = finder.range_test(
        make_batches(), start_lr=1e-5, end_lr=1e-1, num_steps=12, num_sweeps=1, diverge_threshold=None, skip_end=0
    )
    expected = exp_lrs(1e-5, 1e-1, 12)
    assert result.lrs["group_0"] == pytest.approx(expected, rel=1e-12)
    assert result.lrs["group_1"] == pytest.approx([0.1 * lr for lr in expected], rel=1e-12)
    assert [s[0] for s in seen] == result.lrs["group_0"]  # what the optimizer used is what was recorded
    assert [s[1] for s in seen] == result.lrs["group_1"]
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-4]
    assert finder.result is result


@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
def test_raw_losses_equal_a_plain_accelerate_loop(max_grad_norm):
    model = tiny_gpt2()
    twin = copy.deepcopy(model)
    batches = make_batches(n=3)
    accelerator = Accelerator(cpu=True)
    result = LRFinder(
        model,
        torch.optim.AdamW(model.parameters()),
        accelerator=accelerator,
        max_grad_norm=max_grad_norm,
        progress=False,
    ).range_test(batches, start_lr=1e-4, end_lr=1.0, num_steps=8, num_sweeps=1, diverge_threshold=None, check_every=3)
    plain = plain_loop(
        accelerator, twin, torch.optim.AdamW(twin.parameters()), batches, result.lrs["all"], max_grad_norm
    )
    assert len(plain) == 8
    assert result.losses["all"] == plain  # exactly: the same arithmetic, 3 batches cycled over 8 steps


def test_bf16_on_cpu_runs_under_bf16_autocast():
    model = tiny_gpt2()
    twin = copy.deepcopy(model)
    batches = make_batches(n=2)
    accelerator = Accelerator(mixed_precision="bf16", cpu=True)
    result = LRFinder(model, torch.optim.AdamW(model.parameters()), accelerator=accelerator, progress=False).range_test(
        batches, start_lr=1e-4, end_lr=1e-1, num_steps=6, diverge_threshold=None
    )
    assert result.metadata["mixed_precision"] == "bf16"
    with torch.no_grad():
        fp32 = model(**batches[0]).loss.item()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(**batches[0]).loss.float().item()
    assert fp32 != bf16
    assert result.losses["all"][0] == pytest.approx(bf16, abs=1e-6)
    assert result.losses["all"] == plain_loop(
        accelerator, twin, torch.optim.AdamW(twin.parameters()), batches, result.lrs["all"]
    )
    assert "forward" not in model.__dict__  # the autocast forward accelerate put on the model for the sweep is gone


def test_grad_accum_2x4_gives_the_curve_of_1x8_with_uneven_label_counts():
    full = make_batches(n=4, batch_size=8, ragged=True)
    halves = [{k: v[s] for k, v in b.items()} for b in full for s in (slice(0, 4), slice(4, 8))]
    counts = [int((h["labels"][:, 1:] != -100).sum()) for h in halves[:2]]
    assert counts[0] != counts[1]  # a plain mean of the two micro-batch losses would be wrong here
    options = {"start_lr": 1e-4, "end_lr": 1e-2, "num_steps": 8, "diverge_threshold": None}
    model_a, model_b = tiny_gpt2(), tiny_gpt2()
    accelerator = Accelerator(cpu=True)
    one = LRFinder(model_a, torch.optim.AdamW(model_a.parameters()), accelerator=accelerator, progress=False)
    two = LRFinder(model_b, torch.optim.AdamW(model_b.parameters()), accelerator=accelerator, progress=False)
    r1 = one.range_test(full, grad_accum_steps=1, **options)
    r2 = two.range_test(halves, grad_accum_steps=2, **options)
    assert r1.lrs == r2.lrs
    np.testing.assert_allclose(r2.losses["all"], r1.losses["all"], rtol=1e-5)
    with torch.no_grad():
        micro = [model_b(**h).loss.item() for h in halves[:2]]
    naive_error = abs((micro[0] + micro[1]) / 2 - r1.losses["all"][0])
    assert naive_error > 10 * 1e-5 * r1.losses["all"][0]  # the unweighted mean is off by 10x the tolerance above
    assert r2.metadata["grad_accum_steps"] == 2 and r2.metadata["tokens_seen"] == r1.metadata["tokens_seen"]


@pytest.mark.parametrize("prepared", [False, True])
def test_everything_is_restored_and_training_continues_as_without_the_test(prepared):
    model = tiny_gpt2(dropout=0.1)
    twin = copy.deepcopy(model)
    batches = make_batches(n=2)
    accelerator = Accelerator(cpu=True)

    def warm(m):
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        m(**batches[0]).loss.backward()
        opt.step()  # optimizer state is not empty, and the gradient is left in place
        m.transformer.drop.eval()  # a submodule in another mode than the rest
        return opt

    with torch.random.fork_rng():
        torch.manual_seed(1)
        optimizer = warm(model)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        twin_optimizer = warm(twin)
    if prepared:
        model, optimizer = accelerator.prepare(model, optimizer)
    before = snapshot_of(model, optimizer)
    LRFinder(model, optimizer, accelerator=accelerator, progress=False).range_test(
        batches, start_lr=1e-4, end_lr=10.0, num_steps=20, check_every=4
    )
    assert_same(before, snapshot_of(model, optimizer))
    if prepared:
        assert any(m is model for m in accelerator._models) and isinstance(optimizer, type(accelerator._optimizers[0]))
    else:
        assert accelerator._models == [] and accelerator._optimizers == []
        for name in ("forward", "_original_forward", "_is_accelerate_prepared"):
            assert name not in model.__dict__
        assert "step" not in optimizer.__dict__

    def train(m, opt):
        m.train()
        losses = []
        for batch in batches * 2:
            loss = m(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        return losses

    if prepared:
        model, optimizer = accelerator.unwrap_model(model), optimizer.optimizer
    with torch.random.fork_rng():
        torch.manual_seed(2)
        after_test = train(model, optimizer)
    with torch.random.fork_rng():
        torch.manual_seed(2)
        without_test = train(twin, twin_optimizer)
    assert after_test == without_test


class CountingLoader:
    def __init__(self, batches):
        self.batches, self.iterations, self.served = batches, 0, 0

    def __iter__(self):
        self.iterations += 1
        for batch in self.batches:
            self.served += 1
            yield batch


def test_short_loader_is_cycled():
    model = tiny_gpt2()
    loader = CountingLoader(make_batches(n=3))
    result = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False).range_test(
        loader, start_lr=1e-4, end_lr=1e-2, num_steps=7, num_sweeps=1, diverge_threshold=None
    )
    assert len(result.losses["all"]) == 7
    assert loader.served == 7 and loader.iterations == 3


@pytest.mark.parametrize("loader", [[], CountingLoader([])], ids=["len_0", "yields_nothing"])
def test_empty_loader_is_refused_and_changes_nothing(loader):
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = snapshot_of(model, optimizer)
    with pytest.raises(ValueError, match="at least one batch"):
        LRFinder(model, optimizer, progress=False).range_test(loader, num_steps=5)
    assert_same(before, snapshot_of(model, optimizer))


def test_loss_fn_when_batches_have_no_labels():
    model = tiny_gpt2()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [{"input_ids": b["input_ids"]} for b in make_batches(n=2)]
    before = snapshot_of(model, optimizer)
    with pytest.raises(ValueError, match="returned no loss.*loss_fn"):
        LRFinder(model, optimizer, progress=False).range_test(batches, num_steps=4)
    assert_same(before, snapshot_of(model, optimizer))

    def loss_fn(outputs, batch):
        logits, ids = outputs.logits[:, :-1], batch["input_ids"][:, 1:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids.reshape(-1))

    result = LRFinder(model, optimizer, loss_fn=loss_fn, progress=False).range_test(
        batches, start_lr=1e-4, end_lr=1e-2, num_steps=4, diverge_threshold=None
    )
    with torch.no_grad():
        expected = model(**make_batches(n=1)[0]).loss.item()
    assert result.losses["all"][0] == pytest.approx(expected, rel=1e-6)


def test_fp16_on_cpu_warns_with_the_fix(caplog):
    model = tiny_gpt2()
    accelerator = Accelerator(mixed_precision="fp16", cpu=True)
    with caplog.at_level(logging.WARNING, logger="hf_lrfind.integrations.runner"):
        LRFinder(
            model, torch.optim.SGD(model.parameters(), lr=0.1), accelerator=accelerator, progress=False
        ).range_test(make_batches(n=1), start_lr=1e-4, end_lr=1e-2, num_steps=3)
    assert any("fp16" in r.message and "mixed_precision='bf16'" in r.message for r in caplog.records)


def test_skipped_optimizer_steps_are_counted_and_retried():
    model = tiny_gpt2()
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    seen, real_step = [], optimizer.step

    def step(closure=None):  # what the gradient scaler does on inf/NaN gradients: no update, flag set
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer._is_overflow = len(seen) in (3, 4)
        if not optimizer._is_overflow:
            real_step(closure)

    optimizer.step = step
    result = LRFinder(model, optimizer, accelerator=accelerator, progress=False).range_test(
        make_batches(), start_lr=1e-4, end_lr=1e-2, num_steps=6, num_sweeps=1, diverge_threshold=None
    )
    del optimizer.step
    expected = exp_lrs(1e-4, 1e-2, 6)
    assert result.metadata["skipped_steps"] == 2
    assert result.lrs["all"] == pytest.approx(expected)
    assert seen == pytest.approx(expected[:2] + [expected[2]] * 3 + expected[3:])  # the skipped lr is tried again


def test_tokens_seen_and_output_dir(tmp_path):
    model = tiny_gpt2()
    batches = make_batches(n=2, batch_size=4)
    batches[1]["attention_mask"] = torch.ones(4, SEQ, dtype=torch.long)
    batches[1]["attention_mask"][:, -3:] = 0
    result = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False).range_test(
        batches,
        start_lr=1e-4,
        end_lr=1e-2,
        num_steps=4,
        num_sweeps=1,
        diverge_threshold=None,
        output_dir=tmp_path / "out",
    )
    assert result.metadata["tokens_seen"] == 2 * 4 * SEQ + 2 * 4 * (SEQ - 3)
    assert result.metadata["runner"] == "accelerate" and result.metadata["num_processes"] == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["lr_find.json", "lr_find.png"]
    assert LRFinderResult.load(tmp_path / "out" / "lr_find.json") == result


def test_dataloader_generator_is_left_as_it_was():
    dataset = [{"input_ids": b["input_ids"][i], "labels": b["labels"][i]} for b in make_batches(n=2) for i in range(4)]
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(3)
    )
    twin = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(3))
    model = tiny_gpt2()
    LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False).range_test(
        loader, start_lr=1e-4, end_lr=1e-2, num_steps=9
    )
    order = [b["input_ids"][:, 0].tolist() for b in loader]
    assert order == [b["input_ids"][:, 0].tolist() for b in twin]


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_a_collator_wrapped_by_the_trainer_draws_as_before(kind):
    import numpy as np
    from transformers.trainer_utils import RemoveColumnsCollator

    from hf_lrfind.integrations.accelerate_state import DataOrder

    class Masking:  # a collator with its own generator, as DataCollatorForLanguageModeling(seed=...) has
        def __init__(self):
            self.generator = torch.Generator().manual_seed(0) if kind == "torch" else np.random.default_rng(0)

        def __call__(self, examples):
            g = self.generator
            return {"draw": float(torch.rand(1, generator=g)) if kind == "torch" else g.random()}

    wrapped = RemoveColumnsCollator(Masking(), signature_columns=["draw"], model_name="tiny")
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=2, collate_fn=wrapped)
    order = DataOrder(loader)
    first = [b["draw"] for b in loader]
    order.restore()
    assert [b["draw"] for b in loader] == first


def test_accelerate_state_snapshot_restores_and_leaves_checkpoints_alone(tmp_path):
    project = ProjectConfiguration(project_dir=str(tmp_path), automatic_checkpoint_naming=True, total_limit=1)
    accelerator = Accelerator(cpu=True, project_config=project)
    os.makedirs(tmp_path / "checkpoints" / "checkpoint_0")
    model = tiny_gpt2()
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    batch = make_batches(n=1)[0]

    def train_step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    train_step()
    before = snapshot_of(model, optimizer)
    snapshot = AccelerateStateSnapshot(accelerator, directory=str(tmp_path))
    folder = snapshot.path
    for _ in range(2):
        train_step()
        torch.rand(3)
        snapshot.restore()  # repeatable
        assert_same(before, snapshot_of(model, optimizer))
    snapshot.close()
    assert not os.path.exists(folder)
    assert os.listdir(tmp_path / "checkpoints") == ["checkpoint_0"] and project.iteration == 0


def test_sharded_state_goes_through_accelerate_save_state(monkeypatch, tmp_path):
    monkeypatch.setattr(runner_module, "uses_sharded_state", lambda accelerator: True)
    monkeypatch.setattr(runner_module, "shards_parameters", lambda accelerator: True)
    saved = []
    real_save = Accelerator.save_state
    monkeypatch.setattr(Accelerator, "save_state", lambda self, d, **kw: saved.append(d) or real_save(self, d, **kw))
    accelerator = Accelerator(cpu=True)
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="accelerator.prepare"):
        LRFinder(model, optimizer, accelerator=accelerator, progress=False).range_test(make_batches(), num_steps=4)
    model, optimizer = accelerator.prepare(model, optimizer)
    before = snapshot_of(model, optimizer)
    LRFinder(model, optimizer, accelerator=accelerator, progress=False).range_test(
        make_batches(), start_lr=1e-3, end_lr=10.0, num_steps=10, snapshot_dir=str(tmp_path)
    )
    assert_same(before, snapshot_of(model, optimizer))
    assert len(saved) == 1 and os.path.dirname(saved[0]) == str(tmp_path) and not os.path.exists(saved[0])


@pytest.mark.parametrize(
    "kind, fsdp2, through_accelerate",
    [("FSDP", False, True), ("FSDP", True, False), ("DEEPSPEED", False, True), ("MULTI_CPU", False, False)],
)
def test_only_state_kept_in_sharded_containers_goes_through_save_state(kind, fsdp2, through_accelerate):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from hf_lrfind.integrations.accelerate_state import shards_parameters, uses_sharded_state

    accelerator = SimpleNamespace(distributed_type=DistributedType[kind], state=SimpleNamespace(is_fsdp2=fsdp2))
    assert uses_sharded_state(accelerator) is through_accelerate  # FSDP2's DTensors: StateSnapshot, shard by shard
    assert shards_parameters(accelerator) is (kind != "MULTI_CPU")


def test_bad_arguments_say_what_to_do():
    model = tiny_gpt2()
    accelerator = Accelerator(cpu=True)
    prepared_model, prepared_optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="pass that accelerator"):
        LRFinder(prepared_model, prepared_optimizer)
    with pytest.raises(ValueError, match="Only the optimizer"):
        LRFinder(tiny_gpt2(), prepared_optimizer, accelerator=accelerator).range_test(make_batches(), num_steps=3)
    finder = LRFinder(tiny_gpt2(), torch.optim.SGD(model.parameters(), lr=0.1), accelerator=accelerator)
    with pytest.raises(TypeError, match="Unknown range_test options"):
        finder.range_test(make_batches(), num_step=3)
    with pytest.raises(TypeError, match="either config= or"):
        finder.range_test(make_batches(), config=LRFinderConfig(num_steps=3), end_lr=1.0)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        finder.range_test(make_batches(), grad_accum_steps=0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), max_grad_norm=-1.0)


def test_result_json_has_the_runner_metadata(tmp_path):
    model = tiny_gpt2()
    result = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False).range_test(
        make_batches(), config=LRFinderConfig(start_lr=1e-4, end_lr=1e-2, num_steps=3, skip_end=0)
    )
    result.save(tmp_path / "r.json")
    meta = json.loads((tmp_path / "r.json").read_text())["metadata"]
    assert meta["distributed_type"] == "NO" and meta["grad_accum_steps"] == 1 and meta["device"] == "cpu"


@pytest.mark.parametrize("prepared", [False, True])
@pytest.mark.parametrize("strategy", ["joint", "split", "sequential"])
def test_groups_auto_gives_one_curve_per_group_and_leaves_the_user_optimizer(prepared, strategy):
    from transformers import BertConfig, BertForSequenceClassification

    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=SEQ,
            num_labels=2,
        )
        model = BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(0)
    batches = [
        {"input_ids": torch.randint(0, VOCAB, (4, SEQ), generator=g), "labels": torch.randint(0, 2, (4,), generator=g)}
        for _ in range(3)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    accelerator = Accelerator(cpu=True)
    if prepared:
        model, optimizer = accelerator.prepare(model, optimizer)
    before = snapshot_of(model, optimizer)
    result = LRFinder(model, optimizer, accelerator=accelerator, progress=False).range_test(
        batches, num_steps=12, end_lr=1.0, groups="auto", strategy=strategy
    )
    assert result.groups == ["head", "body"] and result.metadata["strategy"] == strategy
    assert result.metadata["groups"]["head"] == ["classifier.weight", "classifier.bias"]
    assert_same(before, snapshot_of(model, optimizer))
    assert len(accelerator._optimizers) == (1 if prepared else 0)  # the sweep's optimizer is not left behind
