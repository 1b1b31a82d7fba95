"""Cost per step of `LRFinder.range_test` against a plain accelerate training loop and against torch-lr-finder.

Run from the repository root: `python scripts/bench_runner.py [--quick] [--steps 100] [--rounds 5]`.

One small GPT-2-style model (random init) and one DataLoader of fixed batches serve three arms, each run for the
same number of optimizer steps (forward, backward, AdamW step, zero_grad; fp32):

- plain: a user's accelerate loop on the prepared model and optimizer (lr set each step, as a schedule would);
- runner: `hf_lrfind.LRFinder(...).range_test(...)` on the same prepared objects, divergence off so that every step
  runs; its time includes the snapshot and restore, which are also timed on their own;
- torch-lr-finder 0.2.2: `LRFinder(model, optimizer, criterion).range_test(...)` plus its `reset()`, with a
  `TrainDataLoaderIter` subclass for the dict batches (its tqdm bar and prints are silenced).

Rounds rotate the order of the arms and every arm starts from the same weights; per-step times are compared by their
median over rounds. The ratios use the CPU time of this process (one torch thread by default), which other programs
on a shared machine do not inflate; wall times are printed too. With several threads, oversubscribed OpenMP threads on
a busy CPU make wall timings swing by several times. A second, short measurement
on a toy model (one Linear layer, where a step is mostly Python) gives the runner's fixed cost per step in
microseconds, which does not depend on the model. Goals: runner / plain <= 1.02, runner / torch-lr-finder < 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

START_LR, END_LR = 1e-6, 1e-2  # the loss stays finite: every arm runs all its steps


class DictModel(torch.nn.Module):
    """torch-lr-finder calls `model(inputs)`: pass the dict batch on as keyword arguments."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict[str, torch.Tensor]) -> object:
        return self.inner(**batch)


class Toy(torch.nn.Module):
    """One Linear layer with a transformers-like output: a step costs about as much Python as it does arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=torch.nn.functional.mse_loss(self.linear(x), labels))


def make_arms(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> dict[str, Callable[[int], None]]:
    """The three arms on `model` (not prepared) and `loader`, sharing one prepared model and AdamW optimizer."""
    import torch_lr_finder
    from accelerate import Accelerator

    from hf_lrfind.integrations.runner import LRFinder

    accelerator = Accelerator(cpu=True)
    prepared, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-4))

    def plain(steps: int) -> None:
        prepared.train()
        batches = iter(loader)
        for i in range(steps):
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            for group in optimizer.param_groups:
                group["lr"] = START_LR * (END_LR / START_LR) ** (i / steps)
            with accelerator.autocast():
                loss = prepared(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()

    def runner(steps: int) -> None:
        LRFinder(prepared, optimizer, accelerator=accelerator, progress=False).range_test(
            loader, start_lr=START_LR, end_lr=END_LR, num_steps=steps, num_sweeps=1, diverge_threshold=None
        )

    class DictBatches(torch_lr_finder.TrainDataLoaderIter):
        def inputs_labels_from_batch(self, batch: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor]:
            return batch, batch["labels"]

    torch_lr_finder.lr_finder.tqdm = lambda iterable, *a, **k: iterable  # no bar: its cost is not the finder's
    wrapped = DictModel(model)

    def peer(steps: int) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            finder = torch_lr_finder.LRFinder(wrapped, optimizer.optimizer, lambda outputs, labels: outputs.loss)
            finder.range_test(
                DictBatches(loader), start_lr=START_LR, end_lr=END_LR, num_iter=steps, diverge_th=float("inf")
            )
            finder.reset()

    return {"plain": plain, "runner": runner, "torch-lr-finder": peer}


def measure(
    arms: dict[str, Callable[[int], None]], model: torch.nn.Module, steps: int, rounds: int, verbose: bool
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """
    Seconds per step of each arm in each round, as CPU time of this process and as wall time; the arms rotate and
    each starts from the same weights.
    """
    from hf_lrfind.core.state import StateSnapshot

    baseline = StateSnapshot(model)  # restored between arms, untimed
    for arm in arms.values():  # warm-up: thread pools, allocator, first-call paths
        arm(3)
        baseline.restore()
    names = list(arms)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            arms[name](steps)
            cpu[name].append((time.process_time() - start_cpu) / steps)
            wall[name].append((time.perf_counter() - start) / steps)
            baseline.restore()
        if verbose:
            cells = ", ".join(f"{n} {cpu[n][-1] * 1e3:.2f} ({wall[n][-1] * 1e3:.2f})" for n in names)
            print(f"  round {r + 1}: {cells} ms/step CPU (wall)")
    baseline.close()
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 steps, 2 rounds: a smoke run, too short to judge")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; one keeps timings steady on a busy CPU")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 30, 2

    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from hf_lrfind.core.state import StateSnapshot

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    config = GPT2Config(
        n_layer=args.layers,
        n_embd=args.hidden,
        n_head=4,
        vocab_size=args.vocab,
        n_positions=args.seq,
        bos_token_id=0,
        eos_token_id=0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, args.vocab, (args.seq,), generator=g) for _ in range(8 * args.batch)]
    loader = torch.utils.data.DataLoader([{"input_ids": x, "labels": x} for x in ids], batch_size=args.batch)

    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"GPT-2 {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}, batch {args.batch} x {args.seq} tokens "
        f"({n_params:.1f}M parameters), {torch.get_num_threads()} thread(s); {args.steps} steps per arm, {args.rounds} rounds"
    )
    cpu, wall = measure(make_arms(model, loader), model, args.steps, args.rounds, verbose=True)
    median = {name: statistics.median(t) for name, t in cpu.items()}
    for name in cpu:
        print(
            f"{name:>16}: {median[name] * 1e3:8.2f} ms/step CPU time (median), wall {statistics.median(wall[name]) * 1e3:.2f} median / {min(wall[name]) * 1e3:.2f} min"
        )
    snapshots = []
    optimizer = torch.optim.AdamW(model.parameters())
    for _ in range(5):
        start = time.perf_counter()
        snapshot = StateSnapshot(model, optimizer)
        snapshot.restore()
        snapshot.close()
        snapshots.append(time.perf_counter() - start)
    snap = statistics.median(snapshots)
    print(
        f"{'snapshot+restore':>16}: {snap * 1e3:8.2f} ms once per sweep, {snap / args.steps * 1e3:.3f} ms/step (included in runner)"
    )

    # The fixed cost per step, independent of the model: a toy where a step is mostly Python.
    toy = Toy()
    toy_data = [{"x": torch.randn(16, generator=g), "labels": torch.randn(16, generator=g)} for _ in range(64)]
    toy_loader = torch.utils.data.DataLoader(toy_data, batch_size=8)
    toy_steps = 300
    toy_cpu, _ = measure(make_arms(toy, toy_loader), toy, toy_steps, max(args.rounds, 3), verbose=False)
    toy_median = {name: statistics.median(t) for name, t in toy_cpu.items()}
    print(
        f"fixed cost per step (toy model, {toy_steps} steps): "
        + ", ".join(f"{n} {v * 1e6:.0f} us" for n, v in toy_median.items())
        + f"; runner - plain = {(toy_median['runner'] - toy_median['plain']) * 1e6:.0f} us"
    )

    ratio_plain = median["runner"] / median["plain"]
    ratio_peer = median["runner"] / median["torch-lr-finder"]
    print(f"runner / plain           = {ratio_plain:.3f} (goal <= 1.02: {'met' if ratio_plain <= 1.02 else 'missed'})")
    print(f"runner / torch-lr-finder = {ratio_peer:.3f} (goal < 1: {'met' if ratio_peer < 1 else 'missed'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
