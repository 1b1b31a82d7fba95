"""The library's confirmation against the benchmark's cached trials of the same seed: one run, side by side.

    python scripts/check_confirm.py --regime gpt2_scratch_adafactor --seed 2

Runs hf_lrfind's range test with `confirm_steps` = half the regime's run, as a user runs it (the benchmark's
`common.sweep`), and prints each trial's end loss next to the cached `probe` run of the same seed and factor (the
benchmark's own training loop on the same batches; its dropout draws differ), and the two picks.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suggestbench import common  # noqa: E402
from suggestbench.regimes import REGIMES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", default="gpt2_scratch_adafactor", choices=list(REGIMES))
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    from score_suggestions import suggestion_of
    from suggestion_bench import records

    from hf_lrfind.core.confirm import pick

    regime = REGIMES[args.regime]
    cached = records(args.regime)
    probes = {r["options"]["factor"]: r for r in cached if r["kind"] == "probe" and r["seed"] == args.seed}
    if not probes:
        parser.error(f"no cached probe runs for {args.regime} seed {args.seed}: run suggestion_bench.py --kinds probe")
    result = common.sweep(regime, args.seed, confirm_steps=regime.steps // 2)
    c = result["metadata"]["confirmation"]
    trough = suggestion_of("trough", cached, args.seed)
    print(f"{args.regime}, seed {args.seed}: trough {result['suggestions']['all']['trough']:.4e} (cached {trough:.4e})")
    print("factor  library trial end loss  benchmark probe end loss")
    for factor, loss in zip(c["factors"], c["end_losses"]):
        print(f"{factor:>6g}  {loss:>22.4f}  {probes[factor]['train_loss']:>24.4f}")
    cached_pick = pick(sorted(probes), [probes[f]["train_loss"] for f in sorted(probes)])
    print(f"picked: library {c['factor']:.3f}x, from the cached probes {cached_pick:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
