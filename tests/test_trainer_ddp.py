"""find_lr through a Trainer on two CPU processes (DDP over gloo), launched with torchrun."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_trainer_script.py")


@pytest.mark.slow
def test_both_ranks_finish_with_the_same_result(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        SCRIPT,
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for key in ("lrs", "losses", "stop_reason", "suggestions"):
        assert r0["result"][key] == r1["result"][key], key
    assert len(r0["result"]["losses"]["all"]) == 15
    assert not any(w.startswith("No gradient") for r in (r0, r1) for w in r["result"]["metadata"]["warnings"])
    # The recorded loss is the mean over the processes of each one's own batch mean: not one rank's, and not
    # multiplied by the world size (the Trainer's treatment of BertForSequenceClassification's loss).
    own = [r0["first_local_loss"], r1["first_local_loss"]]
    assert own[0] != own[1]
    assert r0["result"]["losses"]["all"][0] == pytest.approx(sum(own) / 2, rel=1e-6)
    assert r0["restored"] and r1["restored"]
    assert {"lr_find.json", "lr_find.png"} <= set(os.listdir(tmp_path))  # written once, by the main process
