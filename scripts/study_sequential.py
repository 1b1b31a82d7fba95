"""Study: what the body curve of `groups="auto"` measures in the fine-tune regime, and whether the head's warm-up or
its rate during the body sweep is what moves the body suggestion.

The sequential strategy sweeps the head, warms it up for `num_steps // 2` steps at its `trough` suggestion (constant
rate), then sweeps the body with the head held at that rate. Four variants, each at the grid's seeds (0, 1, 2) of the
`minilm_cls` regime, as a user runs it (`LRFinder(...).range_test(batches, groups="auto")`):

- `as_is`: the library's strategy;
- `head_still`: the head held at lr 0 during the body sweep (its warmed-up weights kept);
- `ramped`: the warm-up ramps the head's rate linearly from 0 to its suggestion;
- `ramped_head_still`: both.

The variants patch the library's strategy module for the run (the library has no such options). One JSON line per
run in `docs/suggestions/studies/minilm_cls_sequential.jsonl` (runs already there are skipped), then a table.

    python scripts/study_sequential.py          # about 17 minutes on 2 CPU cores
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suggestbench import common  # noqa: E402
from suggestbench.regimes import REGIMES  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "suggestions", "studies")
OUT = os.path.join(OUT, "minilm_cls_sequential.jsonl")
VARIANTS = ("as_is", "head_still", "ramped", "ramped_head_still")
SEEDS = (0, 1, 2)


@contextlib.contextmanager
def variant(name: str):
    """The library's sequential strategy, changed as the variant says, for the duration of the block."""
    from hf_lrfind.core import strategies

    original_sweep, original_sequential = strategies.sweep, strategies.sequential_range_test
    sweeping = [False]

    def sweep(step_fn, optimizer, config, *, bounds=None, **kwargs):
        if name.endswith("head_still") and kwargs.get("description", "").endswith("(body)"):
            bounds = [(0.0, 0.0) if lo == hi > 0 else (lo, hi) for lo, hi in bounds]  # the head's held rate -> 0
        sweeping[0] = True
        try:
            return original_sweep(step_fn, optimizer, config, bounds=bounds, **kwargs)
        finally:
            sweeping[0] = False

    def sequential(step_fn, model, optimizer, config, **kwargs):
        if name.startswith("ramped"):
            inner, warmup, done, peak = step_fn, config.num_steps // 2, [0], []

            def step_fn():
                if not sweeping[0] and done[0] < warmup:  # a warm-up step: its rate ramps to the held one
                    peak[:] = peak or [group["lr"] for group in optimizer.param_groups]
                    done[0] += 1
                    for group, lr in zip(optimizer.param_groups, peak):
                        group["lr"] = lr * done[0] / warmup
                return inner()

        return original_sequential(step_fn, model, optimizer, config, **kwargs)

    strategies.sweep, strategies.sequential_range_test = sweep, sequential
    try:
        yield
    finally:
        strategies.sweep, strategies.sequential_range_test = original_sweep, original_sequential


def run(name: str, seed: int) -> dict:
    start = time.perf_counter()
    with variant(name):
        result = common.sweep(REGIMES["minilm_cls"], seed, groups="auto")
    return {
        "variant": name,
        "seed": seed,
        "suggestions": result["suggestions"],
        "lrs": result["lrs"],
        "losses": result["losses"],
        "stop_reason": result["stop_reason"],
        "cost_steps": result["metadata"]["cost_steps"],
        "warnings": result["metadata"]["warnings"],
        "time_s": round(time.perf_counter() - start, 1),
    }


def table(records: list[dict]) -> str:
    """Per run: the body suggestion, the loss the body sweep starts from, and the bottom `trough` reads."""
    from hf_lrfind import LRFinderConfig
    from hf_lrfind.core.suggest import TROUGH_HALF_WIDTH, centered_mean, prepare_curve

    num_steps = LRFinderConfig().num_steps  # the sweeps ran with the default

    lines = [
        "| variant | seed | head `trough` | body curve: first loss | bottom `trough` reads (at lr) | body `trough` |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        lrs, raw = prepare_curve(r["lrs"]["body"], r["losses"]["body"], num_steps=num_steps)
        mean = centered_mean(raw, TROUGH_HALF_WIDTH)
        low = int(np.argmin(mean))
        body, head = r["suggestions"]["body"]["trough"], r["suggestions"]["head"]["trough"]
        first = r["losses"]["body"][0]
        lines.append(
            f"| {r['variant']} | {r['seed']} | {head:.3g} | {first:.3g} | {mean[low]:.3g} ({lrs[low]:.2e}) | {body:.2e} |"
        )
    return "\n".join(lines)


def main() -> int:
    torch.set_num_threads(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_lrfind").setLevel(logging.ERROR)
    records = [json.loads(line) for line in open(OUT)] if os.path.exists(OUT) else []
    done = {(r["variant"], r["seed"]) for r in records}
    for name in VARIANTS:
        for seed in SEEDS:
            if (name, seed) in done:
                continue
            record = run(name, seed)
            with open(OUT, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            records.append(record)
            print(name, seed, {g: f"{s['trough']:.2e}" for g, s in record["suggestions"].items()}, flush=True)
    order = {(name, seed): i for i, (name, seed) in enumerate((n, s) for n in VARIANTS for s in SEEDS)}
    print(table(sorted(records, key=lambda r: order[(r["variant"], r["seed"])])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
