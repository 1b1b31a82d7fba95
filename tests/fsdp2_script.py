"""Launched by tests/test_fsdp2.py as `torchrun --standalone --nproc_per_node 2 fsdp2_script.py OUT_DIR`.

Two CPU processes (gloo) train a tiny model sharded with torch's FSDP2 (`fully_shard`): every parameter is a DTensor
of which each rank holds one shard. The engine's snapshot must copy and put back this rank's shards only. Each rank
writes what it saw to OUT_DIR/rank{N}.json for the test to assert.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from hf_lrfind.core.config import LRFinderConfig
from hf_lrfind.core.engine import range_test
from hf_lrfind.core.state import StateSnapshot, rng_state, set_rng_state
from hf_lrfind.core.sweep import StepOutput

IN, HIDDEN, OUT = 16, 64, 3  # OUT is odd: the head's shards differ in size between the ranks
BATCH, SWEEP_STEPS, TRAIN_STEPS, WARM_STEPS = 8, 8, 5, 3


class Block(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.fc = nn.Linear(HIDDEN, HIDDEN)
        self.norm = nn.BatchNorm1d(HIDDEN)  # buffers a sweep changes (running statistics, batch count)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(torch.relu(self.norm(self.fc(x)))) + x


class Net(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.embed = nn.Linear(IN, HIDDEN)
        self.offset = nn.Parameter(torch.randn(HIDDEN), requires_grad=False)  # frozen, outside the optimizer
        self.blocks = nn.ModuleList(Block(dropout) for _ in range(2))
        self.head = nn.Linear(HIDDEN, OUT)

    def forward(self, x):
        h = self.embed(x) + self.offset
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def build(mesh, dropout=0.0, warm_steps=0):
    """The same random init on both ranks, sharded per block then at the root; AdamW over the trainable parameters,
    trained `warm_steps` steps so that its state exists."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Net(dropout)
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    step = make_step(model, optimizer, batches(7, warm_steps))
    for _ in range(warm_steps):
        step()
    return model, optimizer


def batches(seed, n):
    """This rank's own batches (a regression target the model can learn)."""
    g = torch.Generator().manual_seed(1000 * seed + dist.get_rank())
    w = torch.randn(IN, OUT, generator=torch.Generator().manual_seed(seed))
    out = []
    for _ in range(n):
        x = torch.randn(BATCH, IN, generator=g)
        out.append((x, x @ w + 0.1 * torch.randn(BATCH, OUT, generator=g)))
    return out


def make_step(model, optimizer, data, cycle=None):
    """One optimizer step on the next batch (`data[i % cycle]` when cycling); returns the loss averaged over ranks."""
    calls = [0]

    def step():
        i = calls[0] % cycle if cycle else calls[0]
        calls[0] += 1
        x, y = data[i]
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach().clone()
        dist.all_reduce(mean, op=dist.ReduceOp.SUM)
        return StepOutput(loss=mean / dist.get_world_size())

    return step


def local(t):
    return t.to_local() if isinstance(t, DTensor) else t


def capture(model, optimizer):
    """Clones of this rank's shards: every parameter (the frozen one too), buffer and optimizer state tensor."""
    params = {n: local(p).detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    names = {id(p): n for n, p in model.named_parameters()}
    state = {
        names[id(p)]: {k: local(v).clone() if torch.is_tensor(v) else v for k, v in s.items()}
        for p, s in optimizer.state.items()
    }
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return {"params": params, "buffers": buffers, "state": state, "groups": groups}


def identities(model, optimizer):
    """Which tensor objects and storages are live: a restore in place keeps them."""
    out = {n: (id(p), local(p).data_ptr()) for n, p in model.named_parameters()}
    out.update({n: (id(b), b.data_ptr()) for n, b in model.named_buffers()})
    for p, s in optimizer.state.items():
        out.update({(id(p), k): (id(v), local(v).data_ptr()) for k, v in s.items() if torch.is_tensor(v)})
    return out


def differences(a, b):
    """Bit-identical captures; the names of what differs otherwise."""
    diff = []
    for kind in ("params", "buffers"):
        if a[kind].keys() != b[kind].keys():
            diff.append(f"{kind}.names")
        diff += [f"{kind}.{n}" for n in a[kind] if n in b[kind] and not torch.equal(a[kind][n], b[kind][n])]
    if a["state"].keys() != b["state"].keys():
        diff.append(f"state.keys {sorted(a['state'])} != {sorted(b['state'])}")
    else:
        for n, s in a["state"].items():
            for k, v in s.items():
                w = b["state"][n].get(k)
                same = torch.equal(v, w) if torch.is_tensor(v) and torch.is_tensor(w) else v == w
                if not same or s.keys() != b["state"][n].keys():
                    diff.append(f"state.{n}.{k}")
    if a["groups"] != b["groups"]:
        diff.append("param_groups")
    return diff


def nbytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def check_restore(mesh, report, name, warm_steps, **config):
    """Check 1 (and 4 with `snapshot="disk"`): after `range_test` every shard, buffer and optimizer state tensor is
    bit-identical to before, in the same tensors; the sweeps, run on the same batches without dropout, agree."""
    model, optimizer = build(mesh, warm_steps=warm_steps)
    before, ids = capture(model, optimizer), identities(model, optimizer)
    step = make_step(model, optimizer, batches(11, SWEEP_STEPS), cycle=SWEEP_STEPS)
    changed = []

    def sweep_step():
        out = step()
        changed.append(differences(before, capture(model, optimizer)))
        return out

    cfg = LRFinderConfig(start_lr=1e-4, end_lr=1.0, num_steps=SWEEP_STEPS, diverge_threshold=None, **config)
    result = range_test(sweep_step, model, optimizer, cfg, progress=False, log_warnings=False)
    after = capture(model, optimizer)
    report[name] = {
        "all_dtensor": all(isinstance(p, DTensor) for p in model.parameters()),
        "had_state": bool(before["state"]),
        "diff": differences(before, after),
        "same_objects": ids == identities(model, optimizer),
        "sweep_changed": sorted({d.split(".")[0] for step_diff in changed for d in step_diff}),
        "sweep_losses": result.metadata["sweep_losses"]["all"],
        "lr_after": [g["lr"] for g in optimizer.param_groups],
        "grads_after": [n for n, p in model.named_parameters() if p.grad is not None],
        "warnings": result.metadata["warnings"],
    }
    if config.get("snapshot") == "disk":
        report[name]["folders_left"] = os.listdir(config["snapshot_dir"])


def check_snapshot_size(mesh, report):
    """Check 2: a snapshot holds this rank's shards of the trainable parameters and the buffers, nothing else; its
    optimizer state is sharded too; gradients present when it is taken come back."""
    model, optimizer = build(mesh, warm_steps=WARM_STEPS)
    x, y = batches(13, 1)[0]
    nn.functional.mse_loss(model(x), y).backward()  # gradients present at snapshot time (sharded DTensors)
    grads = {n: local(p.grad).clone() for n, p in model.named_parameters() if p.grad is not None}
    snapshot = StateSnapshot(model, optimizer)
    saved = snapshot._state["tensors"]
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    exp_avg = snapshot._state["optimizer"]["state"][0]["exp_avg"]
    first = optimizer.param_groups[0]["params"][0]
    optimizer.step()  # change parameters, state and gradients, then put everything back
    optimizer.zero_grad()
    snapshot.restore()
    restored_grads = {n: local(p.grad).clone() for n, p in model.named_parameters() if p.grad is not None}
    report["snapshot"] = {
        "names": sorted(saved),
        "trainable_names": sorted(trainable),
        "buffer_names": sorted(buffers),
        "plain_tensors": all(type(t) is torch.Tensor for t in saved.values()),
        "snapshot_bytes": nbytes(saved.values()),
        "local_param_bytes": nbytes(local(p) for p in trainable.values()),
        "buffer_bytes": nbytes(buffers.values()),
        "full_param_bytes": nbytes(trainable.values()),  # a DTensor's numel is the global one
        "frozen_full_bytes": nbytes([model.offset]),
        "grad_names": sorted(snapshot._state["grads"]),
        "grads_restored": grads.keys() == restored_grads.keys()
        and all(torch.equal(grads[n], restored_grads[n]) for n in grads),
        "optimizer_state_is_local": list(exp_avg.shape) == list(local(first).shape) and type(exp_avg) is torch.Tensor,
        "optimizer_state_bytes": nbytes(
            v for s in snapshot._state["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)
        ),
    }
    snapshot.close()


def check_training_continues(mesh, report, warm_steps):
    """Check 3: N training steps after a sweep give the same losses and shards as N steps from the same start without
    one (dropout on: the snapshot must also put the random generators back)."""
    train = batches(17, TRAIN_STEPS)
    runs = {}
    start_rng = rng_state()  # the warm-up's dropout draws the same masks in both runs
    for swept in (True, False):
        set_rng_state(start_rng)
        model, optimizer = build(mesh, dropout=0.1, warm_steps=warm_steps)
        if swept:
            cfg = LRFinderConfig(start_lr=1e-4, end_lr=1.0, num_steps=SWEEP_STEPS, num_sweeps=2, diverge_threshold=None)
            range_test(make_step(model, optimizer, batches(19, 2 * SWEEP_STEPS)), model, optimizer, cfg, progress=False)
        step = make_step(model, optimizer, train)
        losses = [float(step().loss) for _ in range(TRAIN_STEPS)]
        runs[swept] = (losses, capture(model, optimizer))
    report[f"continue_warm{warm_steps}"] = {
        "losses_swept": runs[True][0],
        "losses_plain": runs[False][0],
        "diff": differences(runs[True][1], runs[False][1]),
        "has_state": bool(runs[True][1]["state"]),
    }


def main():
    out_dir = sys.argv[1]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    report = {"world": world}
    check_restore(mesh, report, "fresh", warm_steps=0, num_sweeps=2)
    check_restore(mesh, report, "warm", warm_steps=WARM_STEPS, num_sweeps=3)
    disk_dir = os.path.join(out_dir, f"snapshots{rank}")
    os.makedirs(disk_dir)
    check_restore(mesh, report, "disk", warm_steps=WARM_STEPS, num_sweeps=2, snapshot="disk", snapshot_dir=disk_dir)
    check_snapshot_size(mesh, report)
    check_training_continues(mesh, report, warm_steps=0)
    check_training_continues(mesh, report, warm_steps=WARM_STEPS)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
