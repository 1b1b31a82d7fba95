"""The suggestion benchmark's runs: ground-truth grids, cached sweeps, and trainings at suggested rates.

Every run appends one JSON line to `docs/suggestions/data/<regime>.jsonl`, and runs already there are skipped, so the
command can be stopped and started again. Runs one training at a time on 2 threads with fixed seeds (bit-reproducible
on the same machine, Python and package versions; see docs/suggestions.md).

    python scripts/suggestion_bench.py                              # everything, in the order below
    python scripts/suggestion_bench.py --regimes gpt2_scratch --kinds sweep grid
    python scripts/suggestion_bench.py --kinds confirm --rule valley   # train at a rule's suggestions (3 seeds)

Kinds: `sweep` (one sweep, the range test of the fastai era: `num_sweeps=1`, 5 seeds), `sweep3` (hf_lrfind's default
range test: 3 sweeps averaged, 5 seeds), `sweep6` (6 sweeps averaged, 5 seeds: twice the tokens per rate of the
default, the first three its sweeps again), `sweep_swap` (3 sweeps of seed 2's model on seed 0's batches, and of
seed 0's on seed 2's), `grid` (every grid rate at 3 seeds), `confirm` (train at the `--rule` suggestion of the
cached sweeps of the grid's seeds), `pairs` (the regime's (body, head) peak-rate pairs at 3 seeds), `auto`
(`groups="auto"` with the sequential strategy at the grid's seeds, trained at its per-group `trough` suggestions),
`split` (the same with `strategy="split"`, at the 5 sweep seeds), `split_beside` (the split strategy with the body
trained at its suggestion during the head's sweep, `head_phase="beside"`), `split_held` (the head swept first, then
the body with the head held at its `probe` suggestion, `body_phase="held"`, 5 seeds, trained at the groups' default
rules), `split_confirm` (train at the split runs' body rate and the `--rule` suggestion read on their cached head
curves), `split_body_third` (the same with a pretrained body at a third of that rate: the lead of
docs/suggestions.md's "Why no reading of these curves can fix it"; not for LoRA adapters), `split_pretrained` (the
same with a pretrained body at the library's `pretrained` rule read on the split runs' cached body curves; options
`{"body_rule": "pretrained"}`, the rule as of the commit that added it: a sixth of the fitted bottom), `probe` (the trials of
the confirmation phase, `confirm_steps`: short trainings of half the budget, the schedule's shape compressed to
them, at `PROBE_FACTORS` times each sweep seed's `trough` suggestion, on the batches that follow the seed's sweeps,
as the library's trials; every step's loss kept).
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

from hf_lrfind.core.strategies import split_range_test  # noqa: E402

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "suggestions", "data")
SWEEP_SEEDS = (0, 1, 2, 3, 4)
GRID_SEEDS = (0, 1, 2)
PROBE_FACTORS = (0.5, 1.0, 2.0)
NEEDS_RULE = {"confirm", "split_confirm", "split_body_third", "split_pretrained"}


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


def _half_decade(lr: float) -> bool:
    return abs(2 * math.log10(lr) - round(2 * math.log10(lr))) < 1e-9


def grid_rates(regime) -> list[float]:
    """
    The regime's grid, refined from its cached results as the first four regimes' grids were by hand: while the best
    half-decade rate (3-seed mean eval loss) sits at an end, one more half decade beyond it; then the two quarter
    decades beside it. Rates whose runs are not all cached yet stop the refinement there (rerun to continue).
    """
    rates = sorted(regime.grid)
    done = {}
    for r in records(regime.name):
        if r["kind"] == "grid":
            done.setdefault(r["lr"], []).append(math.inf if r["eval_loss"] is None else r["eval_loss"])
    while True:
        half = [lr for lr in rates if _half_decade(lr)]
        if any(len(done.get(lr, [])) < len(GRID_SEEDS) for lr in half):
            return rates
        best = min(half, key=lambda lr: sum(done[lr]))
        if best in (half[0], half[-1]) and len(half) < 13:
            step = 10**-0.5 if best == half[0] else 10**0.5
            rates = sorted(rates + [10 ** (round(2 * math.log10(best * step)) / 2)])
            continue
        beside = [10 ** (round(4 * math.log10(best)) / 4 + d) for d in (-0.25, 0.25)]
        return sorted(rates + [lr for lr in beside if not any(math.isclose(lr, x) for x in rates)])


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
        elif kind == "sweep_swap":  # seed 2's model on seed 0's batches and back: is a seed's bottom its model's?
            todo += [
                {"kind": "sweep", "seed": s, "options": {"num_sweeps": 3, "data_seed": d}} for s, d in ((2, 0), (0, 2))
            ]
        elif kind == "sweep6":  # more tokens per rate: does the masked LM's noisy bottom settle?
            todo += [{"kind": "sweep", "seed": s, "options": {"num_sweeps": 6}} for s in SWEEP_SEEDS]
        elif kind == "grid":
            todo += [{"kind": "grid", "lr": lr, "seed": s} for lr in grid_rates(regime) for s in GRID_SEEDS]
        elif kind == "pairs":
            todo += [
                {"kind": "pair", "lr": {regime.body_group: b, "head": h}, "seed": s}
                for b, h in regime.pairs
                for s in GRID_SEEDS
            ]
        elif kind == "auto":
            todo += [{"kind": "auto", "seed": s, "options": {"groups": "auto"}} for s in GRID_SEEDS]
        elif kind == "split":
            todo += [
                {"kind": "auto", "seed": s, "options": {"groups": "auto", "strategy": "split"}} for s in SWEEP_SEEDS
            ]
        elif kind == "split_beside":  # the split strategy with the body at its suggestion during the head sweep
            options = {"groups": "auto", "strategy": "split", "head_phase": "beside"}
            todo += [{"kind": "auto", "seed": s, "options": options} for s in GRID_SEEDS]
        elif kind == "split_held":  # the head first, then the body with the head held at its `probe` rate
            options = {"groups": "auto", "strategy": "split", "body_phase": "held"}
            todo += [{"kind": "auto", "seed": s, "options": options} for s in SWEEP_SEEDS]
        elif kind in ("split_confirm", "split_body_third", "split_pretrained"):  # the split runs' head by --rule
            from score_suggestions import RULES, _body_pretrained, _fastai, _strategy

            from hf_lrfind.core.suggest import PROBE_FACTOR

            read = RULES[rule][1] if rule in RULES else _fastai(rule)  # a library rule not scored on one group
            if kind != "split_confirm" and regime.body_group != "body":
                continue  # a pretrained body's readings: not for LoRA adapters, which are new weights
            for r in records(regime_name):
                if _strategy(r) != "split":  # the head swept alone, not the head_phase="beside" runs
                    continue
                head = read({"lrs": r["curves"]["head"]["lrs"], "losses": r["curves"]["head"]["losses"]})
                if kind == "split_pretrained":  # the library's rule on the cached body curve
                    body, options = _body_pretrained(r), {"body_rule": "pretrained"}
                else:  # the split run's body rate, or a third of it
                    factor = 1 / 3 if kind == "split_body_third" else 1.0
                    body = r["trained_lrs"][regime.body_group] * factor
                    options = {"body_factor": factor} if factor != 1.0 else None
                if rule == "probe":  # its factor in the key: the runs cached before it changed read 30
                    options = {**(options or {}), "head_factor": PROBE_FACTOR}
                record = {"kind": "split_confirm", "rule": rule, "lr": {regime.body_group: body, "head": head}}
                todo.append({**record, "seed": r["seed"], **({"options": options} if options else {})})
        elif kind == "probe":
            from score_suggestions import suggestion_of

            cached = records(regime_name)
            for s in SWEEP_SEEDS:
                trough = suggestion_of("trough", cached, s)
                sweep = next(
                    r for r in cached if r["kind"] == "sweep" and r["seed"] == s and r["options"] == {"num_sweeps": 3}
                )
                options = {"steps": regime.steps // 2, "skip": sweep["cost_steps"]}  # the batches after the sweeps
                todo += [
                    {"kind": "probe", "lr": f * trough, "seed": s, "options": {**options, "factor": f}}
                    for f in PROBE_FACTORS
                ]
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
        options = dict(record["options"])
        # the phases are options of split_range_test that range_test does not take: set for this run only; the body
        # read with trough, as every cached run was (before `pretrained` became the body's default; split_body_third
        # trains at the rate it now gives)
        phases = {k: options.pop(k) for k in ("head_phase", "body_phase") if k in options}
        defaults = dict(split_range_test.__kwdefaults__)
        split_range_test.__kwdefaults__.update(phases, body_method="trough")
        try:
            result = common.sweep(regime, record["seed"], **options)
        finally:
            split_range_test.__kwdefaults__.update(defaults)
        # trained at trough on both groups, as the runs cached first; body_phase="held" at the groups' default rules
        rules = result["metadata"]["default_rules"] if "body_phase" in phases else {}
        lrs = {g: result["suggestions"][g][rules.get(g, "trough")] for g in (regime.body_group, "head")}
        trained = common.train(regime, lrs, record["seed"])
        trained.pop("losses")
        out = {
            "suggestions": result["suggestions"],
            "trained_lrs": lrs,
            "cost_steps": result["metadata"]["cost_steps"],
            "warnings": result["metadata"]["warnings"],
            "curves": {g: {"lrs": result["lrs"][g], "losses": result["losses"][g]} for g in result["lrs"]},
            "sweep_losses": result["metadata"].get("sweep_losses"),
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
        options = record.get("options") or {}
        out = common.train(
            regime, record["lr"], record["seed"], steps=options.get("steps"), skip=options.get("skip", 0)
        )
        if record["kind"] != "probe":  # the full trainings keep their eval and training loss only
            out.pop("losses")
        out = {k: _clean(v) if isinstance(v, float) else v for k, v in out.items()}
    return {**record, **out, "time_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["sweep", "grid"],
        choices=[
            "sweep",
            "sweep3",
            "sweep6",
            "sweep_swap",
            "grid",
            "confirm",
            "pairs",
            "auto",
            "split",
            "split_beside",
            "split_held",
            "split_confirm",
            "split_body_third",
            "split_pretrained",
            "probe",
        ],
    )
    parser.add_argument("--rule", default=None, help="the rule whose suggestions `confirm` trains at")
    parser.add_argument("--dry-run", action="store_true", help="list the runs still to do, and stop")
    args = parser.parse_args(argv)
    if NEEDS_RULE & set(args.kinds) and not args.rule:
        parser.error(
            f"--kinds {', '.join(sorted(NEEDS_RULE & set(args.kinds)))} need --rule NAME (see scripts/score_suggestions.py)"
        )
    torch.set_num_threads(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_lrfind").setLevel(logging.WARNING)
    for name in args.regimes:
        todo = planned(name, args.kinds, args.rule)
        print(f"{name}: {len(todo)} runs to do", flush=True)
        while todo:
            record = todo.pop(0)
            if args.dry_run:
                print("  ", record)
                continue
            done = run(record, name)
            _append(name, done)
            shown = {k: v for k, v in done.items() if k not in ("lrs", "losses", "sweep_losses", "curves")}
            print(f"  {shown}", flush=True)
            if not todo:  # a finished grid pass may refine the grid
                todo = planned(name, args.kinds, args.rule)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
