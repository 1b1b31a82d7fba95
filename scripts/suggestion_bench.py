"""The suggestion benchmark's runs: ground-truth grids, cached sweeps, and trainings at suggested rates.

Every run appends one JSON line to `docs/suggestions/data/<regime>.jsonl`, and runs already there are skipped, so the
command can be stopped and started again. Runs one training at a time on 2 threads with fixed seeds (bit-reproducible
on the same machine, Python and package versions; see docs/suggestions.md).

    python scripts/suggestion_bench.py                              # everything, in the order below
    python scripts/suggestion_bench.py --regimes gpt2_scratch --kinds sweep grid
    python scripts/suggestion_bench.py --kinds confirm --rule valley   # train at a rule's suggestions (3 seeds)

Kinds: `sweep` (one sweep, the range test of the fastai era: `num_sweeps=1`, 5 seeds), `sweep3` (hf_lrfind's default
range test: 3 sweeps averaged, 5 seeds), `grid` (every grid rate at 3 seeds), `confirm` (train at the `--rule`
suggestion of the cached sweeps of the grid's seeds), `pairs` (the regime's (body, head) peak-rate pairs at 3 seeds),
`auto` (`groups="auto"` at the grid's seeds, trained at its per-group `trough` suggestions).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suggestbench import common  # noqa: E402
from suggestbench.regimes import REGIMES  # noqa: E402

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "suggestions", "data")
SWEEP_SEEDS = (0, 1, 2, 3, 4)
GRID_SEEDS = (0, 1, 2)


def records(regime: str) -> list[dict]:
    """The cached runs of a regime."""
    path = os.path.join(DATA_DIR, f"{regime}.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _key(record: dict) -> tuple:
    return (
        record["kind"],
        record.get("rule"),
        json.dumps(record.get("lr")),
        record.get("seed"),
        json.dumps(record.get("options")),
    )


def _append(regime: str, record: dict) -> None:
    os.makedirs(DATA_DIR, exist_ok=True)
    with open(os.path.join(DATA_DIR, f"{regime}.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")


def _clean(x: float) -> float | None:
    return x if math.isfinite(x) else None


def planned(regime_name: str, kinds: list[str], rule: str | None) -> list[dict]:
    """The runs still to do, as records without their results."""
    regime = REGIMES[regime_name]
    done = {_key(r) for r in records(regime_name)}
    todo = []
    for kind in kinds:
        if kind == "sweep":
            todo += [{"kind": "sweep", "seed": s, "options": {"num_sweeps": 1}} for s in SWEEP_SEEDS]
        elif kind == "sweep3":  # hf_lrfind's default: 3 sweeps averaged
            todo += [{"kind": "sweep", "seed": s, "options": {"num_sweeps": 3}} for s in SWEEP_SEEDS]
        elif kind == "grid":
            todo += [{"kind": "grid", "lr": lr, "seed": s} for lr in regime.grid for s in GRID_SEEDS]
        elif kind == "pairs":
            todo += [
                {"kind": "pair", "lr": {"body": b, "head": h}, "seed": s} for b, h in regime.pairs for s in GRID_SEEDS
            ]
        elif kind == "auto":
            todo += [{"kind": "auto", "seed": s, "options": {"groups": "auto"}} for s in GRID_SEEDS]
        elif kind == "confirm":
            from score_suggestions import suggestion_of

            cached = records(regime_name)
            for s in GRID_SEEDS:
                todo.append({"kind": "confirm", "rule": rule, "lr": suggestion_of(rule, cached, s), "seed": s})
    return [r for r in todo if _key(r) not in done]


def run(record: dict, regime_name: str) -> dict:
    regime = REGIMES[regime_name]
    start = time.perf_counter()
    if record["kind"] == "auto":  # groups="auto" as a user runs it, then training at its per-group suggestions
        result = common.sweep(regime, record["seed"], **record["options"])
        lrs = {g: result["suggestions"][g]["trough"] for g in ("body", "head")}
        trained = common.train(regime, lrs, record["seed"])
        out = {
            "suggestions": result["suggestions"],
            "trained_lrs": lrs,
            "cost_steps": result["metadata"]["cost_steps"],
            "warnings": result["metadata"]["warnings"],
            **{k: _clean(v) if isinstance(v, float) else v for k, v in trained.items()},
        }
    elif record["kind"] == "sweep":
        result = common.sweep(regime, record["seed"], **(record["options"] or {}))
        out = {
            "lrs": result["lrs"]["all"],
            "losses": result["losses"]["all"],
            "stop_reason": result["stop_reason"]["all"],
            "suggestions": result["suggestions"]["all"],
            "steps_run": result["metadata"]["steps_run"],
            "cost_steps": result["metadata"]["cost_steps"],
            "sweep_losses": result["metadata"].get("sweep_losses", {}).get("all"),
            "warnings": result["metadata"]["warnings"],
        }
    else:
        out = common.train(regime, record["lr"], record["seed"])
        out = {k: _clean(v) if isinstance(v, float) else v for k, v in out.items()}
    return {**record, **out, "time_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument(
        "--kinds", nargs="+", default=["sweep", "grid"], choices=["sweep", "sweep3", "grid", "confirm", "pairs", "auto"]
    )
    parser.add_argument("--rule", default=None, help="the rule whose suggestions `confirm` trains at")
    parser.add_argument("--dry-run", action="store_true", help="list the runs still to do, and stop")
    args = parser.parse_args(argv)
    if "confirm" in args.kinds and not args.rule:
        parser.error("--kinds confirm needs --rule NAME (see scripts/score_suggestions.py for the rules)")
    torch.set_num_threads(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_lrfind").setLevel(logging.WARNING)
    for name in args.regimes:
        todo = planned(name, args.kinds, args.rule)
        print(f"{name}: {len(todo)} runs to do", flush=True)
        for record in todo:
            if args.dry_run:
                print("  ", record)
                continue
            done = run(record, name)
            _append(name, done)
            shown = {k: v for k, v in done.items() if k not in ("lrs", "losses")}
            print(f"  {shown}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
