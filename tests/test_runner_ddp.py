"""The accelerate runner on two CPU processes (DDP over gloo), launched with torchrun."""

import json
import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_runner_script.py")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and sys.platform == "win32", reason="needs torchrun (Linux/macOS)")
def test_two_processes_record_the_same_token_weighted_curve(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
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
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["num_processes"] == r1["num_processes"] == 2

    # Same curve, same stop, same suggestions on both ranks.
    assert r0["result"]["losses"] == r1["result"]["losses"]
    assert r0["result"]["lrs"] == r1["result"]["lrs"]
    assert r0["result"]["stop_reason"] == r1["result"]["stop_reason"]
    assert r0["result"]["suggestions"] == r1["result"]["suggestions"]
    assert not any(w.startswith("No gradient") for r in (r0, r1) for w in r["result"]["metadata"]["warnings"])
    # The recorded loss is the mean over both ranks' label tokens, not either rank's own loss.
    first = r0["result"]["losses"]["all"][0]
    assert first == pytest.approx(r0["expected_first_loss"], rel=1e-6)
    assert all(abs(first - own) > 1e-4 for own in r0["rank_first_losses"])
    # Each rank got its own weights back, without the DDP wrapper or its gradient hooks.
    assert r0["restored"] and r1["restored"] and r0["unwrapped"] and r1["unwrapped"]
    assert r0["grad_norms"][0] != r0["grad_norms"][1]
    # An unprepared DataLoader is sharded: the ranks see different examples; tokens are counted over both.
    assert r0["seen_indices"] and not set(r0["seen_indices"]) & set(r1["seen_indices"])
    assert r0["sharded_tokens_seen"] == r1["sharded_tokens_seen"] == 2 * 2 * 4 * 16
    # A NaN on rank 1 alone stops both ranks at the same step.
    assert r0["nan_stop"] == r1["nan_stop"] == "non_finite_loss"
    assert r0["nan_steps"] == r1["nan_steps"] == 4
    # Prepared (DDP-wrapped) inputs are restored with either snapshot and stay prepared; no folder is left behind.
    for r in (r0, r1):
        assert r["prepared_restored_sharded_False"] and r["prepared_restored_sharded_True"]
        assert r["prepared_still_wrapped"]
    assert r0["snapshot_folders_left"] == r1["snapshot_folders_left"] == []
    # The confirmation phase: the same trials (losses reduced over both ranks) and the same winner on both ranks;
    # every trial starts from the same state on the same batches (its first step runs at rate 0: the same loss).
    assert r0["confirmation"] == r1["confirmation"] and r0["confirmed"] == r1["confirmed"]
    assert len({trial[0] for trial in r0["confirmation"]["losses"]}) == 1
    assert r0["confirm_restored"] and r1["confirm_restored"]


@pytest.mark.slow
def test_cli_under_torchrun_shards_the_batches_and_reports_once(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_CACHE": str(tmp_path / "cache"),
    }
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cli = ["-m", "hf_lrfind", "--num-steps", "10", "--output-dir", "out", "--no-progress", "--suggest", "valley"]
    proc = subprocess.run(launch + cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("lr_find: use lr") == 1  # the main process alone prints
    assert sorted(os.listdir(tmp_path / "out")) == ["lr_find.json", "lr_find.png"]
    meta = json.loads((tmp_path / "out" / "lr_find.json").read_text())["metadata"]
    assert meta["num_processes"] == 2 and meta["distributed_type"] == "MULTI_CPU"
    assert meta["tokens_seen"] == 3 * 2 * 10 * 8 * 128  # 3 sweeps of both processes' batches, 8 x 128 tokens each
