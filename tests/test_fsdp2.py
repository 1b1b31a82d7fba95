"""The engine's snapshot and restore on a model sharded with torch's FSDP2 (`fully_shard`, parameters as DTensors),
two CPU processes over gloo, launched with torchrun."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "fsdp2_script.py")
EVERYTHING = ["buffers", "param_groups", "params", "state"]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", SCRIPT, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fresh", "warm", "disk"])
def test_sweep_leaves_every_shard_and_the_optimizer_state_bit_identical(ranks, name):
    for r in ranks:
        run = r[name]
        assert r["world"] == 2 and run["all_dtensor"]
        assert run["had_state"] == (name != "fresh")
        assert run["sweep_changed"] == EVERYTHING  # the sweep did move weights, buffers, lrs and optimizer state
        assert run["diff"] == []  # parameters (the frozen one too), buffers, optimizer state and groups as before
        assert run["same_objects"]  # put back in place: same parameters, buffers and state tensors, same storage
        assert run["lr_after"] == [1e-3] and run["grads_after"] == []
        assert not any(w.startswith("No gradient") for w in run["warnings"])  # sharded DTensors have their grads
        # Run on the same batches without dropout, each sweep starts from the state the first one started from.
        assert all(s == run["sweep_losses"][0] for s in run["sweep_losses"])
        assert len(run["sweep_losses"]) == (3 if name == "warm" else 2)
    assert ranks[0][name]["sweep_losses"] == ranks[1][name]["sweep_losses"]
    if name == "disk":
        assert ranks[0]["disk"]["folders_left"] == ranks[1]["disk"]["folders_left"] == []


@pytest.mark.slow
def test_each_rank_snapshots_only_its_own_shards(ranks):
    s0, s1 = (r["snapshot"] for r in ranks)
    for s in (s0, s1):
        assert s["names"] == sorted(s["trainable_names"] + s["buffer_names"])
        assert "offset" not in s["names"] and "offset" not in s["trainable_names"]  # the frozen parameter
        assert s["plain_tensors"] and s["optimizer_state_is_local"]
        assert s["snapshot_bytes"] == s["local_param_bytes"] + s["buffer_bytes"]
        assert s["snapshot_bytes"] < 0.6 * (s["full_param_bytes"] + s["buffer_bytes"])
        assert s["grad_names"] == s["trainable_names"] and s["grads_restored"]
    # The two ranks' shards make up the whole model; the head's odd first dimension splits 2 rows / 1 row.
    assert s0["local_param_bytes"] + s1["local_param_bytes"] == s0["full_param_bytes"] == s1["full_param_bytes"]
    assert s0["local_param_bytes"] > s1["local_param_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("warm_steps", [0, 3])
def test_training_after_a_sweep_matches_training_without_one(ranks, warm_steps):
    r0, r1 = (r[f"continue_warm{warm_steps}"] for r in ranks)
    for run in (r0, r1):
        assert run["losses_swept"] == run["losses_plain"]  # dropout on: the random generators came back too
        assert run["diff"] == [] and run["has_state"]  # the same shards, buffers and optimizer state at the end
    assert r0["losses_swept"] == r1["losses_swept"]
