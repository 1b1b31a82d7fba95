"""Time `hf_lrfind.core.suggest.valley` (O(n log n)) against fastai's O(n^2) double loop on one 5,000-point curve, and
`trough` (O(n)) at 5,000 and 50,000 points.

Run from the repository root: `python scripts/bench_valley.py`. Exits with status 1 if the two answers differ.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

try:
    from hf_lrfind.core.suggest import valley
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_lrfind.core.suggest import valley


def fastai_valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's valley (`fastai/callback/schedule.py`), line for line, on the float32 values as Python floats."""
    losses = losses.astype(np.float32).tolist()
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs.astype(np.float32)[idx])


def best_of(fn, repeats: int) -> tuple[float, float]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(n: int = 5000) -> int:
    rng = np.random.default_rng(0)
    lrs = 1e-7 * (10 / 1e-7) ** (np.arange(n) / n)
    x = np.linspace(0, 1, n)
    losses = 2.3 - 1.5 / (1 + np.exp(-(x - 0.5) * 15)) + np.exp((x - 0.9) * 20) + rng.normal(0, 0.02, n)
    fast_s, fast = best_of(lambda: valley(lrs, losses), repeats=5)
    ref_s, ref = best_of(lambda: fastai_valley(lrs, losses), repeats=1)
    print(f"n = {n}")
    print(f"valley (O(n log n)):        {fast_s * 1e3:10.2f} ms -> {fast!r}")
    print(f"fastai reference (O(n^2)):  {ref_s * 1e3:10.2f} ms -> {ref!r}")
    # valley returns the float64 rate at the index fastai picks; fastai holds it as float32.
    same = math.isclose(fast, ref, rel_tol=1e-7)
    print(f"speed-up: {ref_s / fast_s:.0f}x; same answer (to float32 precision): {same}")
    # trough is O(n) (a cumulative sum): ten times the points should take about ten times as long, not a hundred.
    from hf_lrfind.core.suggest import trough

    big_lrs = 1e-7 * (10 / 1e-7) ** (np.arange(10 * n) / (10 * n))
    big = np.interp(np.linspace(0, 1, 10 * n), x, losses)
    small_s, _ = best_of(lambda: trough(lrs, losses), repeats=20)
    big_s, _ = best_of(lambda: trough(big_lrs, big), repeats=20)
    print(f"trough (O(n)): {small_s * 1e3:.3f} ms at n = {n}, {big_s * 1e3:.3f} ms at 10n: {big_s / small_s:.1f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
