"""The snapshot holds what a sweep can change and nothing else, and puts it back in place."""

import logging

import pytest
import torch

from hf_lrfind import LRFinderConfig, StepOutput, range_test
from hf_lrfind.core.state import StateSnapshot, changeable_tensors

CONFIG = LRFinderConfig(num_steps=12, num_sweeps=2, diverge_threshold=None, skip_end=0)


class Frozen(torch.nn.Module):
    """A frozen body (as a LoRA fine-tune's base model), a trained head, a buffer the forward updates."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.body = torch.nn.Linear(8, 16)
        self.head = torch.nn.Linear(16, 1)
        self.register_buffer("calls", torch.zeros(()))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.body.requires_grad_(False)

    def forward(self, x):
        self.calls += 1
        return self.head(torch.relu(self.body(x)))


def step_for(model, optimizer, also=None):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8, generator=g)
    y = x.sum(1, keepdim=True)

    def step():
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if also is not None:
            also()
        return StepOutput(loss.detach())

    return step


def copies(model, optimizer):
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    return params, buffers, state


def assert_same(model, optimizer, before):
    params, buffers, state = before
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]), n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert {id(p) for p in optimizer.state} == set(state)
    for p, s in optimizer.state.items():
        assert s.keys() == state[id(p)].keys()
        for k, v in s.items():
            assert torch.equal(v, state[id(p)][k]), k


def test_frozen_parameters_outside_the_optimizer_are_neither_copied_nor_written():
    model = Frozen()
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
    assert sorted(changeable_tensors(model, optimizer)) == ["calls", "head.bias", "head.weight"]
    snapshot = StateSnapshot(model, optimizer)
    assert sorted(snapshot._state["tensors"]) == ["calls", "head.bias", "head.weight"]
    body, pointer = model.body.weight, model.body.weight.data_ptr()
    before = copies(model, optimizer)
    with torch.no_grad():  # were the body written back, this change would be undone: it stays
        body.add_(1.0)
    snapshot.restore()
    assert torch.equal(body, before[0]["body.weight"] + 1.0) and body.data_ptr() == pointer
    with torch.no_grad():
        body.copy_(before[0]["body.weight"])
    range_test(step_for(model, optimizer), model, optimizer, CONFIG, progress=False)
    assert_same(model, optimizer, before)  # frozen body, head, the buffer the forward counted up, optimizer


def test_a_frozen_parameter_the_optimizer_holds_is_still_protected(caplog):
    model = Frozen()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)  # the frozen body too, as many PEFT scripts do

    def write_into_the_body():  # what an optimizer that updates parameters without gradients could do
        with torch.no_grad():
            model.body.weight.mul_(0.5)

    before = copies(model, optimizer)
    with caplog.at_level(logging.INFO, logger="hf_lrfind.core.state"):
        range_test(step_for(model, optimizer, write_into_the_body), model, optimizer, CONFIG, progress=False)
    assert_same(model, optimizer, before)
    assert "2 parameters (0.0 MiB) need no gradient but sit in the optimizer's param groups" in caplog.text


def test_a_parameter_only_the_optimizer_knows_is_protected():
    model = Frozen()
    temperature = torch.nn.Parameter(torch.ones(()))
    optimizer = torch.optim.AdamW([*model.head.parameters(), temperature], lr=1e-2)

    def step():
        loss = (model(torch.ones(2, 8)) * temperature).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return StepOutput(loss.detach())

    assert "optimizer.2" in changeable_tensors(model, optimizer)
    range_test(step, model, optimizer, CONFIG, progress=False)
    assert torch.equal(temperature, torch.ones(()))


@pytest.mark.parametrize("location", ["cpu", "disk"])
def test_a_warm_optimizer_gets_its_state_back_in_place(tmp_path, location):
    model = Frozen()
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3, weight_decay=0.1)
    step = step_for(model, optimizer)
    for _ in range(3):
        step()
    before = copies(model, optimizer)
    live = {id(v) for s in optimizer.state.values() for v in s.values()}
    config = LRFinderConfig(num_steps=12, num_sweeps=2, snapshot=location, snapshot_dir=str(tmp_path))
    range_test(step, model, optimizer, config, progress=False)
    assert_same(model, optimizer, before)
    assert {id(v) for s in optimizer.state.values() for v in s.values()} == live  # the same tensors, rewritten
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3]


def test_a_fresh_optimizer_is_left_without_state():
    model = Frozen()
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
    range_test(step_for(model, optimizer), model, optimizer, CONFIG, progress=False)
    assert len(optimizer.state) == 0


class OwnStateDict(torch.optim.SGD):
    """An optimizer that keeps its state its own way: restored through its state_dict methods."""

    def state_dict(self):
        return {"wrapped": super().state_dict()}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict["wrapped"])


def test_an_optimizer_with_its_own_state_dict_is_restored_through_it():
    model = Frozen()
    optimizer = OwnStateDict(model.head.parameters(), lr=1e-3, momentum=0.9)
    step = step_for(model, optimizer)
    step()
    before = copies(model, optimizer)
    range_test(step, model, optimizer, CONFIG, progress=False)
    assert_same(model, optimizer, before)


def test_gradients_present_at_the_snapshot_come_back_and_tied_weights_are_copied_once():
    embedding = torch.nn.Embedding(10, 4)
    model = torch.nn.Sequential(embedding, torch.nn.Linear(4, 10))
    model[1].weight = embedding.weight  # tied
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.arange(3)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    snapshot = StateSnapshot(model, optimizer)
    assert sorted(snapshot._state["tensors"]) == ["0.weight", "1.bias"]
    optimizer.step()
    optimizer.zero_grad()
    snapshot.restore()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_accelerates_optimizer_is_restored_in_place_and_state_under_other_keys_comes_back():
    from accelerate import Accelerator

    model = Frozen()

    class Counting(torch.optim.AdamW):  # keeps a count under a key that is not a parameter, as some optimizers do
        def step(self, closure=None):
            self.state["calls"] = self.state.get("calls", 0) + 1
            return super().step(closure)

    optimizer = Accelerator(cpu=True).prepare_optimizer(Counting(model.head.parameters(), lr=1e-3))
    step = step_for(model, optimizer)
    step()
    snapshot = StateSnapshot(model, optimizer)  # the Trainer hands over accelerate's AcceleratedOptimizer
    assert snapshot._in_place and snapshot.optimizer is optimizer.optimizer
    tensors = {id(v) for p, s in optimizer.state.items() if isinstance(p, torch.Tensor) for v in s.values()}
    for _ in range(3):
        step()
    snapshot.restore()
    assert optimizer.state["calls"] == 1
    assert {id(v) for p, s in optimizer.state.items() if isinstance(p, torch.Tensor) for v in s.values()} == tensors
