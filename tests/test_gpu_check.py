"""scripts/gpu_check.py runs without a GPU: the CUDA-only checks are skipped and say why, the others pass."""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU, run scripts/gpu_check.py itself (about 5 minutes)")
def test_gpu_check_runs_on_cpu_and_says_what_it_skipped(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "gpu_check.py"), "--out", str(out), "--rounds", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["check"]: r for r in json.loads(out.read_text())["rows"]}
    assert {r["status"] for r in rows.values()} <= {"pass", "skipped", "info"}
    for name in (
        "runner bf16",
        "Trainer bf16",
        "restore after a sweep",
        "restore after divergence",
        "restore after an exception",
    ):
        assert rows[name]["status"] == "pass", name
    for name in ("runner fp16", "host syncs", "peak memory", "FSDP (1 process)"):
        assert rows[name]["status"] == "skipped" and rows[name]["note"], name
