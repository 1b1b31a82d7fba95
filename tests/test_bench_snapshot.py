"""Smoke run of scripts/bench_snapshot.py --quick: it runs its worker processes and prints the table; nothing about
the figures themselves (memory and timings depend on the machine) beyond their being finite."""

import json
import math
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "bench_snapshot.py")
RATIOS = ("extra_model", "extra_trained", "take_step", "restore_step")


@pytest.mark.slow
def test_quick_run_prints_the_table(tmp_path):
    rows_file = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--json", str(rows_file)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case ") and "extra/model" in line)
    table = [line.split()[0] for line in lines[header + 2 : header + 5]]
    assert table == ["small-full", "small-lora", "small-lora-allopt"]
    assert any(line.startswith(("PASS  small-full", "MISS  small-full")) for line in lines)
    assert any("7B projection" in line for line in lines)
    assert any("snapshot log:" in line and "optimizer" in line for line in lines)  # lora-allopt's info log
    rows = json.loads(rows_file.read_text())
    assert [r["case"] for r in rows] == table
    for r in rows:
        assert all(math.isfinite(r[k]) for k in RATIOS), r
        assert r["model_state"] > r["trainable"] > 0
