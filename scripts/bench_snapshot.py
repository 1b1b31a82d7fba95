"""Extra peak host memory and snapshot time of a sweep, against plain training on the same model and batches.

Run from the repository root: `python scripts/bench_snapshot.py [--quick] [--steps 6] [--rounds 3] [--cases ...]`.

Each measurement runs in a fresh Python process (this script with `--worker CASE ARM`), so that no arm inherits
another's heap. A case is a BERT sequence classifier (random init from a config) at two sizes, "small" (BERT-mini
shape: hidden 256, 4 layers) and "base" (`BertConfig()` defaults, 110M parameters), trained three ways:

- full: every parameter trained, `AdamW(model.parameters())`;
- lora: peft `LoraConfig(r=8, target_modules=["query", "value"], task_type="SEQ_CLS")` (the classifier is trained
  through `modules_to_save`), AdamW over the trainable parameters only, as the Trainer builds it;
- lora-allopt: the same adapter with `AdamW(model.parameters())`, frozen parameters included, as many PEFT scripts do:
  the snapshot then copies the frozen parameters the optimizer holds (and logs that it does).

Both arms of a case build the model, the optimizer, the batches and `Accelerator(cpu=True)`, run `--warm` plain steps
(so the optimizer holds its state, which the snapshot then copies: the worst case), collect garbage, hand freed heap
back to the system (`malloc_trim`), and reset the kernel's high-water mark of resident memory (writing "5" to
/proc/self/clear_refs resets VmHWM). Then:

- plain: `accelerator.prepare(model, optimizer)` and `--steps` training steps (autocast, backward, step, zero_grad);
- sweep: `LRFinder(model, optimizer, accelerator=..., progress=False).range_test(batches, num_steps=--steps,
  num_sweeps=1, diverge_threshold=None)` on the same unprepared model and optimizer.

The peak of each arm is VmHWM minus the resident memory at the reset; "extra" is the sweep's peak minus the plain
arm's. The plain worker then times `StateSnapshot(model, optimizer)` and `.restore()` (after one step, so there is
something to put back) against its own training steps on the same batch, interleaved (`--rounds` rounds): the ratios
are of wall-clock medians (with 2 threads on a busy CPU, absolute step times swing by several times; the ratios much
less). The plain peaks of lora and lora-allopt (the same memory work: AdamW keeps no state for parameters without
gradients) differ only by noise, which is printed as the resolution of "extra".

Goals: LoRA at base size, extra <= 10% of the model's state (parameters and buffers); full fine-tune, extra <= 1.1x the
trainable weights plus their optimizer state. Before commit 19255e3 (the whole `state_dict()` copied) the LoRA base
case measured 389 MB extra (93% of the model's state) and 6 s to take.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MB = 1e6
SIZES = {  # BertConfig fields, and the batch (examples x tokens) each size is measured with
    "small": {
        "config": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},
        "batch": (8, 128),
    },
    "base": {"config": {}, "batch": (4, 64)},  # 8 x 128 takes ~1 min a step on a busy 2-core CPU
}
CASES = [f"{size}-{kind}" for size in SIZES for kind in ("full", "lora", "lora-allopt")]
ARMS = ("plain", "sweep")
START_LR, END_LR = 1e-6, 1e-3
RESULT = "RESULT "

# Llama-2-7B: 32 layers, hidden 4096, q_proj and v_proj 4096 x 4096.
LLAMA_LAYERS, LLAMA_HIDDEN, LLAMA_PARAMS, LORA_R = 32, 4096, 7e9, 8


# ---------------------------------------------------------------------------------------------------------------------
# Worker: one arm of one case in this process.


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field} line; this benchmark needs Linux.")
    return int(match.group(1))


def rss() -> float:
    """Resident memory of this process now, in bytes."""
    return _status_kb("VmRSS") * 1024.0


def hwm() -> float:
    """High-water mark of resident memory since the process started or since [`reset_hwm`], in bytes."""
    return _status_kb("VmHWM") * 1024.0


def trim() -> None:
    """Collect garbage and give the heap's free memory back to the system (glibc), so that RSS counts what is held."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the heap keeps what it has
        pass


def reset_hwm() -> None:
    """[`trim`], then set the high-water mark to the resident memory now."""
    trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    if hwm() > rss() + 1024 * 1024:
        raise RuntimeError("Writing 5 to /proc/self/clear_refs did not reset VmHWM; the peaks would be wrong.")


def build(case: str, steps: int, batch: tuple[int, int] | None) -> dict:
    """Model, optimizer and batches of `case`, the same in every arm (seeded)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    size, kind = case.split("-", 1)
    examples, tokens = batch or SIZES[size]["batch"]
    config = BertConfig(num_labels=2, **SIZES[size]["config"])
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    if kind.startswith("lora"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS")
        )
    params = (
        list(model.parameters())
        if kind in ("full", "lora-allopt")
        else [p for p in model.parameters() if p.requires_grad]
    )
    optimizer = torch.optim.AdamW(params, lr=START_LR)
    g = torch.Generator().manual_seed(0)
    batches = [
        {
            "input_ids": torch.randint(0, config.vocab_size, (examples, tokens), generator=g),
            "attention_mask": torch.ones(examples, tokens, dtype=torch.long),
            "labels": torch.randint(0, 2, (examples,), generator=g),
        }
        for _ in range(steps)
    ]
    return {"model": model, "optimizer": optimizer, "batches": batches, "batch": (examples, tokens)}


def sizes(model, optimizer) -> dict[str, float]:
    """Bytes of the model's state (parameters and buffers, each once), of its trainable parameters, of the optimizer's
    state tensors, and of the frozen parameters the optimizer holds."""
    import torch

    def nbytes(tensors) -> float:
        unique = {id(t): t for t in tensors}
        return float(sum(t.numel() * t.element_size() for t in unique.values()))

    held = [p for group in optimizer.param_groups for p in group["params"]]
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return {
        "model_state": nbytes([*model.parameters(), *model.buffers()]),
        "trainable": nbytes([p for p in model.parameters() if p.requires_grad]),
        "optimizer_state": float(sum(t.numel() * t.element_size() for t in state)),
        "frozen_in_optimizer": nbytes([p for p in held if not p.requires_grad]),
    }


def worker(
    case: str, arm: str, steps: int, rounds: int, warm: int, threads: int, batch: tuple[int, int] | None
) -> dict:
    import torch

    torch.set_num_threads(threads)
    from accelerate import Accelerator
    from transformers.utils import logging as hf_logging

    import hf_lrfind
    from hf_lrfind import StateSnapshot
    from hf_lrfind.integrations import runner

    hf_logging.set_verbosity_error()
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    state_logger = logging.getLogger("hf_lrfind.core.state")
    state_logger.setLevel(logging.INFO)
    state_logger.addHandler(Collect())

    built = build(case, steps, batch)
    model, optimizer, batches = built["model"], built["optimizer"], built["batches"]
    accelerator = Accelerator(cpu=True)
    model.train()

    def raw_step(batch: dict) -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for i in range(warm):  # the optimizer gets its state, first-call paths run
        raw_step(batches[i % len(batches)])
    out: dict = {"case": case, "arm": arm, "steps": steps, "warm": warm, "batch": built["batch"]}
    out.update(sizes(model, optimizer))
    out["threads"] = torch.get_num_threads()

    reset_hwm()
    base = rss()
    out["baseline_rss"] = base
    if arm == "plain":
        prepared, prepared_optimizer = accelerator.prepare(model, optimizer)
        step_times: list[float] = []

        def plain_step(i: int) -> None:
            for group in prepared_optimizer.param_groups:
                group["lr"] = START_LR * (END_LR / START_LR) ** (i / steps)
            start = time.perf_counter()
            with accelerator.autocast():
                loss = prepared(**batches[i % len(batches)]).loss
            accelerator.backward(loss)
            prepared_optimizer.step()
            prepared_optimizer.zero_grad()
            step_times.append(time.perf_counter() - start)

        for i in range(steps):
            plain_step(i)
        out["peak"] = hwm() - base
        trim()
        out["after"] = rss() - base
        # Snapshot take and restore, interleaved with training steps on the same batch, in this process.
        takes, restores = [], []
        for r in range(rounds):
            start = time.perf_counter()
            snapshot = StateSnapshot(model, optimizer)
            takes.append(time.perf_counter() - start)
            plain_step(r)
            start = time.perf_counter()
            snapshot.restore()
            restores.append(time.perf_counter() - start)
            snapshot.close()
            del snapshot
        out["step_times"] = step_times
        out["step_s"] = statistics.median(step_times)
        out["take_s"] = statistics.median(takes)
        out["restore_s"] = statistics.median(restores)
    else:
        trace: dict = {"restores": []}

        class Traced(StateSnapshot):  # RSS checkpoints around the runner's snapshot (diagnostics only)
            def __init__(self, *args, **kwargs) -> None:
                before = rss()
                super().__init__(*args, **kwargs)
                trace["take_held"] = rss() - before
                trace["peak_at_take"] = hwm() - base

            def restore(self) -> None:
                peak_before = hwm()
                super().restore()
                trace["restores"].append(hwm() - peak_before)

        runner.StateSnapshot = Traced
        finder = hf_lrfind.LRFinder(model, optimizer, accelerator=accelerator, progress=False)
        result = finder.range_test(
            batches, start_lr=START_LR, end_lr=END_LR, num_steps=steps, num_sweeps=1, diverge_threshold=None, skip_end=0
        )
        out["peak"] = hwm() - base
        out["steps_run"] = result.metadata["steps_run"]
        del finder, result
        trim()
        out["after"] = rss() - base
        out["take_held"] = trace.get("take_held", float("nan"))
        out["peak_at_take"] = trace.get("peak_at_take", float("nan"))
        out["restore_raised_peak"] = max(trace["restores"], default=0.0)
    out["log"] = messages
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Driver: one fresh process per arm, then the table.


def run_worker(case: str, arm: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", case, arm]
    cmd += [f"--steps={args.steps}", f"--rounds={args.rounds}", f"--warm={args.warm}", f"--threads={args.threads}"]
    if args.batch:
        cmd += ["--batch", args.batch]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise RuntimeError(f"worker {case} {arm} failed with exit code {proc.returncode}")
    result = json.loads(lines[-1][len(RESULT) :])
    print(
        f"  {case:<17} {arm:<5} peak +{result['peak'] / MB:8.1f} MB over its baseline ({time.perf_counter() - start:5.1f} s)",
        flush=True,
    )
    return result


def row(plain: dict, sweep: dict) -> dict:
    extra = sweep["peak"] - plain["peak"]
    trained_state = plain["trainable"] + plain["optimizer_state"]
    return {
        "case": plain["case"],
        "model_state": plain["model_state"],
        "trainable": plain["trainable"],
        "optimizer_state": plain["optimizer_state"],
        "frozen_in_optimizer": plain["frozen_in_optimizer"],
        "extra": extra,
        "extra_model": extra / plain["model_state"],
        "extra_trained": extra / trained_state,
        "take_step": plain["take_s"] / plain["step_s"],
        "restore_step": plain["restore_s"] / plain["step_s"],
        "step_s": plain["step_s"],
        "take_held": sweep["take_held"],
        "peak_at_take": sweep["peak_at_take"],
        "restore_raised_peak": sweep["restore_raised_peak"],
        "plain_peak": plain["peak"],
        "sweep_peak": sweep["peak"],
        "sweep_after": sweep["after"],
        "plain_after": plain["after"],
        "batch": plain["batch"],
        "steps_run": sweep["steps_run"],
        "log": sweep["log"],
    }


def print_table(rows: list[dict], noise_by_size: dict[str, float]) -> None:
    header = (
        f"{'case':<17} {'model MB':>9} {'train MB':>9} {'opt MB':>8} {'extra MB':>9} "
        f"{'extra/model':>11} {'extra/(train+opt)':>17} {'take/step':>9} {'restore/step':>12}"
    )
    print(header)
    print("-" * len(header))
    marked = False
    for r in rows:
        level = noise_by_size.get(r["case"].split("-", 1)[0])
        mark = "*" if level is not None and abs(r["extra"]) <= level else " "
        marked = marked or mark == "*"
        print(
            f"{r['case']:<17} {r['model_state'] / MB:9.1f} {r['trainable'] / MB:9.2f} {r['optimizer_state'] / MB:8.2f} "
            f"{r['extra'] / MB:9.1f} {r['extra_model']:11.3f} {r['extra_trained']:17.3f}{mark}{r['take_step']:9.3f} {r['restore_step']:12.3f}"
        )
    if marked:
        print("* extra within the noise of the peaks (below): the ratio to the trained state means nothing there")
    print()
    print("details (MB over each arm's baseline; snapshot = resident memory the runner's snapshot added when taken):")
    for r in rows:
        examples, tokens = r["batch"]
        print(
            f"  {r['case']:<17} batch {examples}x{tokens}, step {r['step_s']:.2f} s; plain peak {r['plain_peak'] / MB:.1f}, "
            f"sweep peak {r['sweep_peak'] / MB:.1f} (already {r['peak_at_take'] / MB:.1f} after the snapshot), snapshot {r['take_held'] / MB:.1f}, "
            f"restore raised the peak by {r['restore_raised_peak'] / MB:.1f}; held after (heap trimmed): plain {r['plain_after'] / MB:.1f}, "
            f"sweep {r['sweep_after'] / MB:.1f}; sweep ran {r['steps_run']} steps"
        )
        for message in r["log"]:
            print(f"    snapshot log: {message}")


def goals(rows: list[dict]) -> list[tuple[str, bool]]:
    checks = []
    for r in rows:
        if r["case"] == "base-lora":
            checks.append(
                (
                    f"base-lora: extra {r['extra'] / MB:.1f} MB = {r['extra_model']:.3f} of the model's state (goal <= 0.10)",
                    r["extra_model"] <= 0.10,
                )
            )
        if r["case"].endswith("-full"):
            checks.append(
                (
                    f"{r['case']}: extra {r['extra'] / MB:.1f} MB = {r['extra_trained']:.3f}x trainable weights + optimizer state (goal <= 1.1)",
                    r["extra_trained"] <= 1.1,
                )
            )
    return checks


def noise(rows: list[dict]) -> dict[str, float]:
    """Per size, how far apart the plain peaks of lora and lora-allopt are: the two arms do the same memory work (AdamW
    keeps no state for parameters without gradients), so their difference is the measurement's noise."""
    out = {}
    for size in SIZES:
        peaks = [r["plain_peak"] for r in rows if r["case"] in (f"{size}-lora", f"{size}-lora-allopt")]
        if len(peaks) == 2:
            out[size] = abs(peaks[0] - peaks[1])
    return out


def projection(rows: list[dict], noise_by_size: dict[str, float]) -> None:
    """The 7B LoRA projection by the measured ratios, against a full copy of the state."""
    per_projection = 2 * LORA_R * LLAMA_HIDDEN  # A: r x 4096, B: 4096 x r
    adapter = per_projection * 2 * LLAMA_LAYERS  # q and v in every layer
    adapter_bytes = adapter * 2  # bf16
    trained = adapter_bytes * 3  # weights + AdamW's exp_avg and exp_avg_sq, in the parameters' dtype (bf16)
    old = LLAMA_PARAMS * 2
    print("7B projection (Llama-2-7B shapes: 32 layers, hidden 4096, q_proj and v_proj 4096x4096; LoRA r=8, bf16):")
    print(
        f"  adapter = 2 x {LORA_R} x {LLAMA_HIDDEN} = {per_projection:,} params per projection (A: {LORA_R}x{LLAMA_HIDDEN}, B: {LLAMA_HIDDEN}x{LORA_R}) "
        f"x 2 projections x {LLAMA_LAYERS} layers = {adapter:,} params = {adapter_bytes / MB:.1f} MB in bf16; "
        f"with AdamW's exp_avg and exp_avg_sq (bf16, like the weights): {trained / MB:.1f} MB of trained state"
    )
    for r in rows:
        size, kind = r["case"].split("-", 1)
        if kind == "full":
            print(
                f"  new rule, by {r['case']}'s extra/(train+opt) = {r['extra_trained']:.3f}: "
                f"{r['extra_trained']:.3f} x {trained / MB:.1f} MB = {r['extra_trained'] * trained / MB:.1f} MB per process"
            )
        elif kind == "lora":
            state = r["trainable"] + r["optimizer_state"]
            level = noise_by_size.get(size, 0.0)
            if r["extra"] > level:
                print(
                    f"  new rule, by {r['case']}'s extra/(train+opt) = {r['extra_trained']:.3f}: "
                    f"{r['extra_trained']:.3f} x {trained / MB:.1f} MB = {r['extra_trained'] * trained / MB:.1f} MB per process"
                )
            else:
                print(
                    f"  {r['case']}'s extra peak ({r['extra'] / MB:.1f} MB on {state / MB:.2f} MB of trained state) is within the noise "
                    f"of the peaks ({level / MB:.1f} MB): no usable ratio"
                )
            held = r["take_held"] / state
            print(
                f"  new rule, by what {r['case']}'s snapshot held when taken ({r['take_held'] / MB:.2f} MB = {held:.2f}x its trained state): "
                f"{held:.2f} x {trained / MB:.1f} MB = {held * trained / MB:.1f} MB per process"
            )
    print(f"  old rule, a full copy of the state: {LLAMA_PARAMS:.0e} params x 2 bytes = {old / 1e9:.0f} GB per process")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model only, 3 steps, 2 rounds: a smoke run")
    parser.add_argument("--steps", type=int, default=6, help="training steps per arm (the sweep's num_steps)")
    parser.add_argument("--rounds", type=int, default=3, help="snapshot take/restore timings per case")
    parser.add_argument("--warm", type=int, default=1, help="plain steps before the baseline (0: a fresh optimizer)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", help="EXAMPLESxTOKENS for every size (default: 8x128 small, 4x64 base)")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="default: all (small ones only with --quick)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker process")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "ARM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch = tuple(int(x) for x in args.batch.split("x")) if args.batch else None
    if args.worker:
        case, arm = args.worker
        if case not in CASES or arm not in ARMS:
            parser.error(f"--worker takes a case of {CASES} and an arm of {ARMS}")
        print(
            RESULT + json.dumps(worker(case, arm, args.steps, args.rounds, args.warm, args.threads, batch)), flush=True
        )
        return 0
    if args.quick:
        args.steps, args.rounds = 3, 2
    cases = args.cases or [c for c in CASES if not args.quick or c.startswith("small")]
    print(
        f"BERT sequence classifier, random init; {args.steps} steps per arm after {args.warm} warm-up step(s), "
        f"AdamW, fp32, {args.threads} threads; one fresh process per arm; cases: {' '.join(cases)}"
    )
    start = time.perf_counter()
    rows = []
    for case in cases:
        results = {arm: run_worker(case, arm, args) for arm in ARMS}
        rows.append(row(results["plain"], results["sweep"]))
    print(f"({time.perf_counter() - start:.0f} s in all)")
    print()
    print_table(rows, noise(rows))
    for size, level in noise(rows).items():
        print(
            f"noise ({size}): the plain peaks of {size}-lora and {size}-lora-allopt, the same memory work, differ by {level / MB:.1f} MB"
        )
    print()
    for text, ok in goals(rows):
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    print()
    projection(rows, noise(rows))
    print(
        "  before commit 19255e3 (whole state_dict copied), base-lora measured 389 MB extra = 0.93 of the model's state"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    bad = [
        r["case"]
        for r in rows
        if not all(math.isfinite(r[k]) for k in ("extra_model", "extra_trained", "take_step", "restore_step"))
    ]
    if bad:
        print(f"non-finite ratios in {bad}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
