"""After a sweep, every rank draws the batches it would have drawn without one (torchrun, 2 CPU processes)."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_data_order_script.py")
VARIANTS = ("default", "seedable", "dispatch_batches", "split_batches")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("data_order")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", SCRIPT, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_prepared_loop_draws_the_same_batches_after_a_sweep(ranks, variant):
    for rank in ranks:
        drawn = rank[f"runner/{variant}"]
        assert sum(len(b) for b in drawn["plain"]) == 3 * 12  # 3 epochs of 12 examples per rank
        assert drawn["after_sweep"] == drawn["plain"]
    # The ranks draw different examples (the loader is sharded) and epochs are shuffled differently.
    r0, r1 = (rank[f"runner/{variant}"]["plain"] for rank in ranks)
    per_epoch = len(r0) // 3
    assert not {i for b in r0[:per_epoch] for i in b} & {i for b in r1[:per_epoch] for i in b}
    assert r0[:per_epoch] != r0[per_epoch : 2 * per_epoch]


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_trainer_trains_on_the_same_batches_after_a_sweep(ranks, variant):
    for rank in ranks:
        drawn = rank[f"trainer/{variant}"]
        assert len(drawn["plain"]) == 4 * 12  # 4 epochs of 12 examples per rank
        assert drawn["after_find_lr"] == drawn["plain"]
        assert drawn["after_callback"] == drawn["plain"]
        assert drawn["sweep_drew"] == 7 * (2 if variant == "split_batches" else 4)  # the sweep drew its own first
