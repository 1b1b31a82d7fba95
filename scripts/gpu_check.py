"""One prepared check of what the README claims on a GPU; prints a table and writes gpu_check.json.

    python scripts/gpu_check.py                 # about 5 minutes on one GPU; also runs on CPU, CUDA parts skipped
    python scripts/gpu_check.py --out gpu_check.json

Needs nothing beyond `bash scripts/setup.sh` (set TORCH_SPEC to a CUDA build of torch on a GPU machine); the
torch-lr-finder comparison and DeepSpeed run where they are installed. Checks, each a row:

- mixed precision through the runner and the Trainer, bf16 and fp16, on a GPT-2 built from a config (124M parameters
  on a GPU, a tiny one on CPU); fp16 with a forced overflow (a huge end_lr): skipped steps are counted, do not
  advance the sweep, and the gradient scaler's state is restored;
- host synchronisations, counted with `torch.cuda.set_sync_debug_mode("warn")`, of a sweep against a plain training
  loop on the same model and batches (the sweep may add one per `check_every` steps and the snapshot's);
- peak accelerator memory of a sweep (cpu and disk snapshots) against the plain loop;
- time per step of a sweep against the plain loop and against torch-lr-finder 0.2.2, medians of alternating rounds;
- restore: weights, optimizer state, scaler state and RNG states (CUDA included) bit-identical after a sweep, after
  a divergence and after an exception;
- sharded state: FSDP through accelerate's plugin in one process, and DeepSpeed ZeRO-2 where it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

CUDA = torch.cuda.is_available()
ROWS: list[dict] = []


def row(check: str, status: str, note: str = "", **numbers) -> None:
    ROWS.append({"check": check, "status": status, "note": note, **numbers})
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())
    print(f"{status:>7}  {check:<34} {shown}{'  (' + note + ')' if note else ''}", flush=True)


def reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def build_model() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    size = dict(n_layer=12, n_embd=768, n_head=12) if CUDA else dict(n_layer=2, n_embd=64, n_head=2)
    config = GPT2Config(vocab_size=8192, n_positions=256, bos_token_id=0, eos_token_id=0, **size)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


def make_batches(n: int = 8) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    batch, seq = (8, 256) if CUDA else (4, 32)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 8192, (batch, seq), generator=g)
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def state(model: torch.nn.Module, optimizer=None, scaler=None) -> dict:
    """Everything a sweep must leave as it was, as CPU copies."""
    out = {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, "rng": torch.get_rng_state()}
    if CUDA:
        out["cuda_rng"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    if optimizer is not None:
        out["optimizer"] = {
            (k, n): v.detach().cpu().clone()
            for k, s in optimizer.state_dict()["state"].items()
            for n, v in s.items()
            if isinstance(v, torch.Tensor)
        }
    if scaler is not None and scaler.is_enabled():
        out["scaler"] = {k: v for k, v in scaler.state_dict().items() if not isinstance(v, torch.Tensor)}
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if x.keys() != y.keys() or not all(_equal(x[k], y[k]) for k in x):
                return False
        elif isinstance(x, list):
            if len(x) != len(y) or not all(_equal(p, q) for p, q in zip(x, y)):
                return False
        elif not _equal(x, y):
            return False
    return True


def _equal(x, y) -> bool:
    return torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


def prepared(mixed_precision: str = "no", **plugins):
    from accelerate import Accelerator

    reset_accelerate()
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=not CUDA, **plugins)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer


def sweep(accelerator, model, optimizer, **options):
    from hf_lrfind import LRFinder

    options = {"start_lr": 1e-6, "end_lr": 1.0, "num_steps": 30, "num_sweeps": 1, **options}
    finder = LRFinder(model, optimizer, accelerator=accelerator, max_grad_norm=1.0, progress=False)
    return finder.range_test(make_batches(), **options)


def check_mixed_precision_runner() -> None:
    for mp in ("bf16", "fp16"):
        if mp == "fp16" and not CUDA:
            row(f"runner {mp}", "skipped", "accelerate runs fp16 as fp32 on CPU, with no gradient scaler")
            continue
        accelerator, model, optimizer = prepared(mp)
        before = state(model, optimizer, accelerator.scaler)
        result = sweep(accelerator, model, optimizer)
        ok = same(before, state(model, optimizer, accelerator.scaler)) and result.suggestion() is not None
        row(f"runner {mp}", "pass" if ok else "FAIL", steps=len(result.losses["all"]), trough=result.suggestion())
        if mp == "fp16":
            before = state(model, optimizer, accelerator.scaler)
            result = sweep(
                accelerator, model, optimizer, start_lr=1e-2, end_lr=1e8, check_every=1, max_skipped_steps=200
            )
            lrs = result.lrs["all"]
            skipped = result.metadata["skipped_steps"]
            advancing = all(b > a for a, b in zip(lrs, lrs[1:]))  # a skipped step is retried at its own lr
            ok = skipped > 0 and advancing and same(before, state(model, optimizer, accelerator.scaler))
            note = "huge end_lr: overflow forced; scaler state restored" if ok else "no skip seen, or not restored"
            row("runner fp16 overflow", "pass" if ok else "FAIL", note, skipped_steps=skipped, recorded=len(lrs))


def check_mixed_precision_trainer() -> None:
    from transformers import Trainer, TrainingArguments

    from hf_lrfind import find_lr

    class Rows(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.rows = [{k: v[i] for k, v in b.items()} for b in make_batches() for i in range(len(b["input_ids"]))]

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> dict:
            return self.rows[i]

    for mp in ("bf16", "fp16"):
        if mp == "fp16" and not CUDA:
            row(f"Trainer {mp}", "skipped", "the Trainer refuses fp16 on CPU")
            continue
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                out, report_to="none", per_device_train_batch_size=4, max_steps=10, use_cpu=not CUDA, **{mp: True}
            )
            trainer = Trainer(model=build_model(), args=args, train_dataset=Rows())
            before = state(trainer.model)
            result = find_lr(trainer, num_steps=30, num_sweeps=1, end_lr=1.0, save_to=None)
            ok = same(before, state(trainer.model)) and result.suggestion() is not None
            row(f"Trainer {mp}", "pass" if ok else "FAIL", steps=len(result.losses["all"]), trough=result.suggestion())


def plain_loop(accelerator, model, optimizer, steps: int) -> None:
    batches = make_batches()
    model.train()
    for i in range(steps):
        batch = {k: v.to(accelerator.device) for k, v in batches[i % len(batches)].items()}
        with accelerator.autocast():
            loss = model(**batch).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()


def count_syncs(fn) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def check_syncs_and_memory() -> None:
    if not CUDA:
        row("host syncs", "skipped", "needs CUDA; tests/test_host_reads.py counts the loss reads on CPU")
        row("peak memory", "skipped", "needs CUDA")
        return
    accelerator, model, optimizer = prepared("bf16")
    steps, check_every = 40, 10
    plain_loop(accelerator, model, optimizer, 3)  # warm-up: allocator, kernels
    start = state(model, optimizer)
    plain = count_syncs(lambda: plain_loop(accelerator, model, optimizer, steps))
    swept = count_syncs(lambda: sweep(accelerator, model, optimizer, num_steps=steps, check_every=check_every))
    allowed = steps // check_every + 4  # the reads, and the snapshot's and restore's synchronisations
    row("host syncs", "pass" if swept - plain <= allowed else "FAIL", plain=plain, sweep=swept, allowed_extra=allowed)
    del start
    peaks = {}
    for name, fn in (
        ("plain", lambda: plain_loop(accelerator, model, optimizer, steps)),
        ("sweep cpu snapshot", lambda: sweep(accelerator, model, optimizer, num_steps=steps)),
        ("sweep disk snapshot", lambda: sweep(accelerator, model, optimizer, num_steps=steps, snapshot="disk")),
    ):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() / 2**20
    extra = max(peaks["sweep cpu snapshot"], peaks["sweep disk snapshot"]) - peaks["plain"]
    row("peak memory", "pass" if extra <= 8 else "FAIL", "MiB; goal: within a few MB", **peaks, extra=extra)


def check_time(rounds: int) -> None:
    accelerator, model, optimizer = prepared("bf16" if CUDA else "no")
    steps = 30

    def timed(fn) -> float:
        if CUDA:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if CUDA:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps

    arms = {
        "plain": lambda: plain_loop(accelerator, model, optimizer, steps),
        "sweep": lambda: sweep(accelerator, model, optimizer, num_steps=steps, diverge_threshold=None, end_lr=1e-3),
    }
    try:
        import torch_lr_finder

        class DictBatches(torch_lr_finder.TrainDataLoaderIter):
            def inputs_labels_from_batch(self, batch):
                return {k: v for k, v in batch.items()}, batch["labels"]

        class Wrapped(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, batch):
                return self.inner(**batch)

        torch_lr_finder.lr_finder.tqdm = lambda iterable, *a, **k: iterable

        def peer() -> None:
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                finder = torch_lr_finder.LRFinder(
                    Wrapped(model), optimizer.optimizer, lambda out, labels: out.loss, device=accelerator.device
                )
                finder.range_test(
                    DictBatches(make_batches()), start_lr=1e-6, end_lr=1e-3, num_iter=steps, diverge_th=1e9
                )
                finder.reset()

        arms["torch-lr-finder"] = peer
    except ImportError:
        pass
    for fn in arms.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(arms[name]))
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    ratio = median["sweep"] / median["plain"]
    # The goals are GPU claims; on CPU the tiny model's step is mostly fixed Python cost: shown, not judged.
    judged = ("pass" if ratio <= 1.02 else "FAIL") if CUDA else "info"
    row("time sweep / plain", judged, "ms/step medians; goal <= 1.02", ratio=ratio, **median)
    if "torch-lr-finder" in median:
        peer_ratio = median["sweep"] / median["torch-lr-finder"]
        judged = ("pass" if peer_ratio < 1 else "FAIL") if CUDA else "info"
        row("time sweep / torch-lr-finder", judged, "goal < 1", ratio=peer_ratio)
    else:
        row("time sweep / torch-lr-finder", "skipped", "torch-lr-finder is not installed (pip install torch-lr-finder)")


def _failing_at(step: int):
    calls = []

    def loss_fn(outputs, batch):
        calls.append(1)
        if len(calls) == step:
            raise RuntimeError("boom")
        return outputs.loss

    return loss_fn


def check_restore() -> None:
    accelerator, model, optimizer = prepared("bf16")
    sweep(accelerator, model, optimizer, num_steps=5)  # optimizer state to restore
    plain_loop(accelerator, model, optimizer, 2)
    for case, options in (
        ("restore after a sweep", {}),
        ("restore after divergence", {"start_lr": 1e-1, "end_lr": 1e6, "check_every": 1}),
        ("restore after an exception", {"loss_fn": "raise"}),
    ):
        before = state(model, optimizer, accelerator.scaler)
        if options.get("loss_fn") == "raise":
            from hf_lrfind import LRFinder

            finder = LRFinder(model, optimizer, accelerator=accelerator, loss_fn=_failing_at(7), progress=False)
            with contextlib.suppress(RuntimeError):
                finder.range_test(make_batches(), num_steps=20, num_sweeps=1)
        else:
            sweep(accelerator, model, optimizer, **options)
        ok = same(before, state(model, optimizer, accelerator.scaler))
        row(case, "pass" if ok else "FAIL", "weights, optimizer, scaler, RNG" + (" incl. CUDA" if CUDA else ""))


def check_sharded() -> None:
    if not CUDA:
        row("FSDP (1 process)", "skipped", "accelerate runs FSDP as plain multi-CPU without a GPU")
        row("FSDP2 (1 process)", "skipped", "accelerate runs FSDP as plain multi-CPU without a GPU")
        row("DeepSpeed ZeRO-2", "skipped", "needs CUDA")
        return
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", "29533")
    from accelerate.utils import FullyShardedDataParallelPlugin

    for name, plugins in (
        ("FSDP (1 process)", {"fsdp_plugin": FullyShardedDataParallelPlugin()}),
        ("FSDP2 (1 process)", {"fsdp_plugin": FullyShardedDataParallelPlugin(fsdp_version=2)}),
        ("DeepSpeed ZeRO-2", None),
    ):
        if plugins is None:
            try:
                import deepspeed  # noqa: F401
                from accelerate.utils import DeepSpeedPlugin
            except ImportError:
                row(name, "skipped", "deepspeed is not installed")
                continue
            plugins = {"deepspeed_plugin": DeepSpeedPlugin(zero_stage=2, gradient_accumulation_steps=1)}
        try:
            accelerator, model, optimizer = prepared("bf16", **plugins)
            before = {k: v.cpu().clone() for k, v in accelerator.get_state_dict(model).items()}
            result = sweep(accelerator, model, optimizer, num_steps=20)
            after = accelerator.get_state_dict(model)
            ok = all(torch.equal(before[k], after[k].cpu()) for k in before) and result.suggestion() is not None
            row(name, "pass" if ok else "FAIL", "full state dict before and after", trough=result.suggestion())
        except Exception as e:  # a row, not a crash: the other checks still report
            row(name, "FAIL", f"{type(e).__name__}: {e}"[:200])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the timing check")
    args = parser.parse_args()
    import accelerate
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device = torch.cuda.get_device_name(0) if CUDA else "CPU (no CUDA: the CUDA-only checks are skipped)"
    print(
        f"{device}; torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}"
    )
    started = time.perf_counter()
    for check in (
        check_mixed_precision_runner,
        check_mixed_precision_trainer,
        check_syncs_and_memory,
        check_restore,
        check_sharded,
    ):
        check()
    check_time(args.rounds)
    report = {
        "device": device,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "rows": ROWS,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    failed = [r["check"] for r in ROWS if r["status"] == "FAIL"]
    print(
        f"{len(ROWS)} checks, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; wrote {args.out} ({report['seconds']} s)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
