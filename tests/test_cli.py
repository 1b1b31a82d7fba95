"""The `hf-lrfind` command line: the embedded default in-process and as a subprocess, local data, bad input."""

import csv
import os
import re
import subprocess
import sys

import datasets
import pytest
from accelerate.state import AcceleratorState, GradientState
from transformers import GPT2Config

from hf_lrfind import LRFinderResult
from hf_lrfind.cli import main
from hf_lrfind.data import load_sample_text, train_tokenizer


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A blank accelerate state per run of main(), and the datasets cache inside tmp_path."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(load_sample_text(), vocab_size=300)


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "reviews.csv"
    texts = load_sample_text()[:24]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i, text in enumerate(texts):
            writer.writerow([text, "pos" if i % 2 else "neg"])
    return str(path)


def config_folder(path, tokenizer, pad=True):
    """A GPT-2-style config.json (random init) with its tokenizer saved next to it."""
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer), n_positions=128)
    config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    config.save_pretrained(path)
    if not pad:
        tokenizer = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token=tokenizer.eos_token)
    tokenizer.save_pretrained(path)
    return str(path)


def test_embedded_default_in_process(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--num-steps", "20", "--output-dir", str(out), "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == ["lr_find.json", "lr_find.png"]
    result = LRFinderResult.load(out / "lr_find.json")
    assert result.groups == ["all"] and 0 < len(result.losses["all"]) <= 20
    assert result.metadata["num_sweeps"] == 3 and result.metadata["cost_steps"] == 3 * 20
    assert result.metadata["tokens_seen"] == result.metadata["cost_steps"] * 8 * 128
    lines = capsys.readouterr().out.strip().splitlines()
    steps = len(result.losses["all"])
    trough = result.suggestions["all"]["trough"]
    assert re.fullmatch(
        rf"lr_find: use lr {trough:.2e} \(trough, the default rule\); (its curve passed the checks|check its curve first: \d warning\(s\) logged)",
        lines[0],
    )
    recorded = ", ".join(str(len(s)) for s in result.metadata["sweep_losses"]["all"])
    assert lines[1].startswith(f"  3 sweeps from the same start on the next batches (steps recorded: {recorded} of 20;")
    assert lines[1].endswith(f"the curve is their step-by-step mean, {steps} points")
    assert lines[2].startswith("  cost: 60 optimizer steps in all (every step that ran, also those past a stop)")
    assert lines[3].split() == ["group", "trough", "valley", "slide", "steep", "minimum"]
    assert lines[4].split()[0] == "all" and len(lines[4].split()) == 6
    assert lines[4].split()[1] == (f"{trough:.2e}" if trough is not None else "-")
    assert len(lines) == 6  # the warnings are logged (stderr), not printed again
    assert lines[-1] == f"Wrote {out / 'lr_find.json'} and {out / 'lr_find.png'}"


def test_embedded_default_as_a_subprocess(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "hf_lrfind", "--num-steps", "10", "--output-dir", "out", "--suggest", "valley"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith("lr_find: use lr ") and "(valley, the default rule)" in proc.stdout
    assert proc.stdout.splitlines()[3].split() == ["group", "valley"]
    assert sorted(os.listdir(tmp_path / "out")) == ["lr_find.json", "lr_find.png"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # nothing cached or written anywhere else in the working folder


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "hf-lrfind")
    if not os.path.exists(script):
        pytest.skip(f"no hf-lrfind console script next to {sys.executable}: the package is not installed here")
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--num-steps" in proc.stdout


def test_local_csv_classification_with_a_config_folder(tmp_path, tokenizer, csv_file, capsys):
    folder = config_folder(tmp_path / "model", tokenizer)
    args = ["--config", folder, "--dataset", csv_file, "--num-steps", "6", "--batch-size", "4", "--max-length", "32"]
    assert main([*args, "--output-dir", str(tmp_path / "out"), "--no-progress", "--grad-accum", "2"]) == 0
    result = LRFinderResult.load(tmp_path / "out" / "lr_find.json")
    assert result.metadata["grad_accum_steps"] == 2 and len(result.losses["all"]) == 6
    assert "group" in capsys.readouterr().out


def test_groups_auto_on_a_classifier_sweeps_the_model_then_the_head(tmp_path, tokenizer, csv_file, capsys):
    folder = config_folder(tmp_path / "model", tokenizer)
    args = ["--config", folder, "--dataset", csv_file, "--task", "seq-cls", "--num-steps", "12", "--batch-size", "4"]
    assert (
        main([*args, "--max-length", "32", "--groups", "auto", "--output-dir", str(tmp_path / "out"), "--no-progress"])
        == 0
    )
    result = LRFinderResult.load(tmp_path / "out" / "lr_find.json")
    assert result.groups == ["head", "body"] and result.metadata["strategy"] == "split"
    out = capsys.readouterr().out
    assert re.search(r"^head ", out, re.M) and re.search(r"^body ", out, re.M)
    lines = out.splitlines()
    assert lines[0].startswith("lr_find: use lr ") and " for head (probe, the default rule); " in lines[0]
    assert " for body (pretrained, the default rule); " in lines[1]
    assert lines[2].startswith("  every group at one rate, read for body: 2 sweeps from the same start")
    one_sweep = r"1 sweep, (all 12 steps recorded|\d+ of 12 steps recorded: it stopped when the loss diverged)"
    assert re.fullmatch(rf"  head alone, the rest held still: {one_sweep}", lines[3])
    assert lines[4].startswith(f"  cost: {2 * 12 + 12} optimizer steps in all")


def test_confirm_steps_trains_each_factor_and_reports_the_winner(tmp_path, tokenizer, csv_file, capsys):
    folder = config_folder(tmp_path / "model", tokenizer)
    args = ["--config", folder, "--dataset", csv_file, "--num-steps", "10", "--num-sweeps", "1", "--batch-size", "4"]
    args += ["--confirm-steps", "10", "--confirm-factors", "1,0.25", "--output-dir", str(tmp_path / "out")]
    assert main([*args, "--no-progress"]) == 0
    result = LRFinderResult.load(tmp_path / "out" / "lr_find.json")
    confirmation = result.metadata["confirmation"]
    assert confirmation["factors"] == [0.25, 1.0] and result.metadata["cost_steps"] == 10 + 2 * 10
    assert result.suggestion() == confirmation["factor"] * result.suggestions["all"]["trough"]
    out = capsys.readouterr().out
    assert "(confirmed, the default rule)" in out and "confirmed: 2 trainings of 10 steps" in out


def test_layer_decay_gives_one_group_per_layer(tmp_path):
    assert main(["--num-steps", "12", "--layer-decay", "0.5", "--output-dir", str(tmp_path), "--no-progress"]) == 0
    result = LRFinderResult.load(tmp_path / "lr_find.json")
    assert result.groups == ["layer_1", "layer_0", "embeddings"] and result.metadata["strategy"] == "joint"
    assert result.lrs["layer_0"][0] == pytest.approx(0.5 * result.lrs["layer_1"][0])


def _file(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: ["--dataset", str(d["tmp"] / "missing.csv")], "missing.csv: no such file"),
        (lambda d: ["--dataset", d["csv"], "--text-column", "body"], "Column 'body' is not in the dataset"),
        (lambda d: ["--dataset", d["csv"], "--task", "seq-cls", "--label-column", "y"], "pass --label-column"),
        (lambda d: ["--task", "seq-cls"], "embedded sample text has none; pass --dataset"),
        (lambda d: ["--config", d["model"], "--task", "masked-lm"], "gpt2 models have no masked-lm head"),
        (
            lambda d: ["--config", d["no_pad"], "--dataset", d["csv"], "--task", "seq-cls"],
            "no pad token.*tokenizer.pad_token = tokenizer.eos_token",
        ),
        (lambda d: ["--config", d["model"], "--block-size", "256"], "--block-size 128 or less"),
        (lambda d: ["--config", str(d["tmp"] / "nothing")], "--config .*: no such file or folder"),
        (lambda d: ["--model", str(d["tmp"] / "nothing")], "--model .*nothing: the folder does not exist"),
        (lambda d: ["--model", "./does-not-exist"], "--model ./does-not-exist: the folder does not exist"),
        (lambda d: ["--num-sweeps", "0"], r"num_sweeps \(0\) must be at least 1"),
        (lambda d: ["--start-lr", "1", "--end-lr", "0.1"], r"start_lr \(1.0\) must be smaller than end_lr \(0.1\)"),
        (lambda d: ["--suggest", "valley,best"], "best"),
        (lambda d: ["--mode", "cubic"], "invalid choice: 'cubic'"),
        (lambda d: ["--batch-size", "0"], "must be a positive integer"),
        (lambda d: ["--model", "a", "--config", "b"], "not allowed with argument"),
        (lambda d: ["--dataset", _file(d["tmp"] / "h.csv", "text,label\n")], r"h\.csv: it holds no examples \(a csv"),
        (lambda d: ["--dataset", _file(d["tmp"] / "e.txt", "\n")], r"e\.txt: it holds no examples; give it at least"),
        (lambda d: ["--confirm-steps", "3"], r"confirm_steps \(3\) must be 0 \(off\) or at least 10"),
        (lambda d: ["--confirm-factors", "0.5,x"], r"--confirm-factors \('0.5,x'\) must be comma-separated numbers"),
    ],
    ids=[
        "missing_file",
        "unknown_text_column",
        "unknown_label_column",
        "embedded_text_has_no_labels",
        "no_loss_for_task",
        "no_pad_token",
        "block_too_long",
        "missing_config",
        "missing_model",
        "missing_relative_model",
        "no_sweeps",
        "lr_order",
        "unknown_suggester",
        "bad_choice",
        "bad_int",
        "model_and_config",
        "header_only_csv",
        "empty_text_file",
        "confirm_too_short",
        "confirm_factors_not_numbers",
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(make_args, message, tmp_path, tokenizer, csv_file, capsys):
    where = {
        "tmp": tmp_path,
        "csv": csv_file,
        "model": config_folder(tmp_path / "model", tokenizer),
        "no_pad": config_folder(tmp_path / "no_pad", tokenizer, pad=False),
    }
    status = main([*make_args(where), "--num-steps", "5", "--output-dir", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-lrfind: error: "), captured.err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_help_shows_the_defaults(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (
        ("--start-lr", "1e-07"),
        ("--end-lr", "10.0"),
        ("--num-steps", "100"),
        ("--num-sweeps", "3"),
        ("--batch-size", "8"),
    ):
        assert re.search(f"{option} [A-Z_]+ .*?\\(default: {re.escape(default)}\\)", text), option


def test_config_file_uses_the_tokenizer_saved_beside_it(tmp_path, tokenizer, monkeypatch):
    folder = config_folder(tmp_path / "model", tokenizer)

    def no_training(*args, **kwargs):
        raise AssertionError("trained a new tokenizer instead of loading the one beside config.json")

    monkeypatch.setattr("hf_lrfind.data.train_tokenizer", no_training)
    args = ["--config", os.path.join(folder, "config.json"), "--num-steps", "5", "--num-sweeps", "1"]
    assert main([*args, "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    assert LRFinderResult.load(tmp_path / "out" / "lr_find.json").metadata["num_sweeps"] == 1
