"""Warnings reach the console by default (as transformers' do), on the main process only, at a settable level."""

import os
import subprocess
import sys

import pytest

# A sweep whose loss never drops: hf_lrfind warns that its curve cannot be trusted.
FLAT_SWEEP = """
import torch, hf_lrfind
model = torch.nn.Linear(2, 1)
optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
step = lambda: hf_lrfind.StepOutput(torch.tensor(1.0))
{before}
hf_lrfind.range_test(step, model, optimizer, hf_lrfind.LRFinderConfig(num_steps=20, num_sweeps=1), progress=False)
print("done")
"""


def run(before="", **env):
    code = FLAT_SWEEP.format(before=before)
    environ = {k: v for k, v in os.environ.items() if k not in ("RANK", "HF_LRFIND_VERBOSITY")}
    proc = subprocess.run([sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    return proc.stderr


def test_a_curve_warning_is_on_stderr_by_default_once():
    err = run()
    assert err.count("[hf_lrfind] The loss never clearly dropped") == 1, err


@pytest.mark.parametrize(
    "before, env",
    [
        ("", {"RANK": "1"}),  # another process of torchrun: only rank 0 writes
        ("", {"HF_LRFIND_VERBOSITY": "error"}),
        ("hf_lrfind.verbosity.set_verbosity_error()", {}),
        ("hf_lrfind.verbosity.disable_default_handler()", {}),
    ],
)
def test_the_warning_is_silenced_off_the_main_process_or_when_asked(before, env):
    assert "never clearly dropped" not in run(before, **env)


def test_info_shows_the_sweep_and_a_program_that_configures_logging_sees_each_message_once():
    info = run("hf_lrfind.verbosity.set_verbosity_info()")
    assert "[hf_lrfind] LR range test: 20 of 20 steps recorded, ran to the end." in info
    err = run("import logging; logging.basicConfig(); hf_lrfind.verbosity.enable_propagation()")
    assert err.count("never clearly dropped") == 2  # ours and the root logger's: propagation is opt-in
    assert run("import logging; logging.basicConfig()").count("never clearly dropped") == 1
