"""Cost of the engine per step over a plain training step, on the same model and batches, measured side by side.

Run from the repository root: `python scripts/bench_engine.py [--steps 100] [--rounds 3]`.

Both arms run the same step function (forward, backward, AdamW step, zero_grad) on the same batches of a small
GPT-2-style model. The plain arm loops over it; the engine arm runs `hf_lrfind.range_test` (divergence off, so every
step runs), which adds the per-step lr setting, the on-device loss record, a host read every `check_every` steps,
and the snapshot and restore of weights, optimizer and RNG. Rounds alternate the two arms; the ratio of the medians is
printed. Goal: at most 1.02.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_lrfind import LRFinderConfig, StepOutput, range_test

    torch.manual_seed(0)
    config = GPT2Config(n_layer=args.layers, n_embd=args.hidden, n_head=4, vocab_size=2048, n_positions=args.seq)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 2048, (args.batch, args.seq), generator=g) for _ in range(8)]
    position = [0]

    def step() -> StepOutput:
        ids = batches[position[0] % len(batches)]
        position[0] += 1
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return StepOutput(loss.detach())

    def plain() -> float:
        position[0] = 0
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return time.perf_counter() - start

    def engine() -> float:
        position[0] = 0
        cfg = LRFinderConfig(num_steps=args.steps, num_sweeps=1, end_lr=1e-2, diverge_threshold=None)
        start = time.perf_counter()
        range_test(step, model, optimizer, cfg, progress=False)
        return time.perf_counter() - start

    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: GPT-2 {args.layers} layers, hidden {args.hidden}, {n_params / 1e6:.1f}M parameters; batch {args.batch}x{args.seq}; {torch.get_num_threads()} threads"
    )
    plain()  # warm-up (allocator, AdamW state)
    times = {"plain": [], "engine": []}
    for r in range(args.rounds):
        for name, fn in (
            (("plain", plain), ("engine", engine)) if r % 2 == 0 else (("engine", engine), ("plain", plain))
        ):
            times[name].append(fn())
        print(
            f"round {r + 1}: plain {times['plain'][-1] / args.steps * 1e3:.1f} ms/step, engine {times['engine'][-1] / args.steps * 1e3:.1f} ms/step"
        )
    ratio = statistics.median(times["engine"]) / statistics.median(times["plain"])
    print(
        f"engine / plain per step (median of {args.rounds} rounds, {args.steps} steps, snapshot and restore included): {ratio:.3f} (goal <= 1.02)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
