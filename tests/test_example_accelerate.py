"""examples/accelerate_causal_lm.py as users run it: the training after `--find-lr` is, on every rank, the training
`--learning-rate <the suggestion>` gives without a sweep (losses and final weights, bit for bit)."""

import json
import os
import subprocess
import sys

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", "accelerate_causal_lm.py")


def run(out, processes, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = (launch if processes > 1 else [sys.executable]) + [EXAMPLE, "--output-dir", str(out), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"train_rank{r}.json").read_text()) for r in range(processes)]


@pytest.mark.slow
@pytest.mark.parametrize("processes, extra", [(1, []), (2, ["--gradient-accumulation-steps", "2"])])
def test_training_after_the_sweep_is_the_training_at_its_suggestion(tmp_path, processes, extra):
    swept = run(tmp_path / "swept", processes, "--find-lr", "--find-lr-steps", "40", *extra)
    peak = swept[0]["peak_lr"]
    assert peak != 5e-4  # the suggestion, not the script's default rate
    plain = run(tmp_path / "plain", processes, "--learning-rate", repr(peak), *extra)
    for after, without in zip(swept, plain):
        assert after["peak_lr"] == without["peak_lr"] == peak
        assert after["losses"] == without["losses"] and len(after["losses"]) > 5
        assert after["weights"] == without["weights"]
    assert len({rank["weights"] for rank in swept}) == 1  # the ranks trained one model
    assert sorted(p.name for p in (tmp_path / "swept").glob("lr_find.*")) == ["lr_find.json", "lr_find.png"]
