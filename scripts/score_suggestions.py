"""Score learning-rate suggestion rules offline, from the benchmark's cached grids and sweeps (seconds, no training).

    python scripts/score_suggestions.py                 # every regime in docs/suggestions/data, every rule
    python scripts/score_suggestions.py --rules valley minimum --json scores.json

Per regime and rule it prints how many sweep seeds land in the regime's top-group window, the spread of the
suggestions across seeds (max/min), and their distance from the grid's best rate (median of |log10| ratios, as a
factor), then each miss.

The top group of a regime (the same definition everywhere): the grid rates whose 3-seed mean eval loss is within
2 pooled standard deviations of the best mean. The pooled SD is the root mean of the per-rate sample variances (ddof 1)
over the rates where every seed finished. The window runs from where the mean-loss curve, linear in log10(lr), crosses
the threshold below the lowest top rate to where it crosses it above the highest; a neighbour that diverged puts the
edge at the top rate itself, and a top rate at the end of the grid leaves the window open there (marked).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "suggestions", "data")


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pooled_sd(samples: Iterable[list[float]]) -> float:
    """The pooled standard deviation over the rates (or pairs) whose seeds all finished, two at least."""
    finite = [v for v in samples if all(math.isfinite(x) for x in v) and len(v) > 1]
    if not finite:
        raise ValueError("no grid rate has two finished seeds yet: run scripts/suggestion_bench.py --kinds grid")
    return math.sqrt(statistics.fmean(statistics.variance(v) for v in finite))


def top_window(grid: Sequence[dict]) -> dict:
    """The top group and its window from grid records (`lr`, `seed`, `eval_loss`, None when diverged)."""
    by_lr: dict[float, list[float]] = {}
    for r in grid:
        by_lr.setdefault(r["lr"], []).append(math.inf if r["eval_loss"] is None else r["eval_loss"])
    lrs = sorted(by_lr)
    means = [statistics.fmean(by_lr[lr]) for lr in lrs]
    sd = pooled_sd(by_lr.values())
    best = int(np.argmin(means))
    threshold = means[best] + 2 * sd
    top = [i for i, m in enumerate(means) if m <= threshold]
    lo_i, hi_i = min(top), max(top)
    return {
        "lrs": lrs,
        "means": means,
        "sd": sd,
        "best_lr": lrs[best],
        "best_mean": means[best],
        "threshold": threshold,
        "top": [lrs[i] for i in top],
        "window": _log_edges(lrs, means, threshold, lo_i, hi_i),
        "open": (lo_i == 0, hi_i == len(lrs) - 1),
    }


def _log_edges(lrs: Sequence[float], values: Sequence[float], level: float, lo: int, hi: int) -> tuple[float, float]:
    """The rates where `values` cross `level` just outside `lrs[lo] .. lrs[hi]` (inside it, at or below `level`),
    interpolated in log lr; an edge stays at `lrs[lo]` or `lrs[hi]` where the grid ends or its neighbour diverged."""
    x = [math.log10(lr) for lr in lrs]

    def edge(inside: int, outside: int) -> float:
        if not 0 <= outside < len(lrs) or not math.isfinite(values[outside]):
            return x[inside]
        return x[inside] + (level - values[inside]) / (values[outside] - values[inside]) * (x[outside] - x[inside])

    return 10 ** edge(lo, lo - 1), 10 ** edge(hi, hi + 1)


# ----------------------------------------------------------------------------------------------------------------
# Rules. Each reads one cached sweep record: its `lrs` and raw `losses` (for a record of several sweeps, the
# step-by-step mean the library computes) and returns a learning rate. `SOURCES` says which records a rule reads:
# "1 sweep" (the default range test of the fastai era, `num_sweeps=1`) or "3 sweeps" (hf_lrfind's default).

Rule = Callable[[dict], "float | None"]
ONE, THREE = "1 sweep", "3 sweeps"
PROBED = "3 sweeps + trials"  # a 3-sweep record with the seed's `probe` trainings (the confirmation phase's trials)


def _prepared(record: dict, smoothed: bool) -> tuple[np.ndarray, np.ndarray]:
    """The record's curve prepared as the library prepares it; several sweeps are averaged as the library does."""
    from hf_lrfind.core.engine import mean_of_sweeps
    from hf_lrfind.core.recorder import debiased_ema
    from hf_lrfind.core.schedule import lr_at
    from hf_lrfind.core.suggest import prepare_curve

    def finite(values):
        return [math.nan if v is None else v for v in values]

    sweeps = record.get("sweep_losses")
    raw = mean_of_sweeps([finite(s) for s in sweeps]) if sweeps else finite(record["losses"])
    lrs = record["lrs"]
    if len(lrs) < len(raw):  # a cached mean cut shorter than the library's: the default schedule's rates
        lrs = [lr_at(i, 100, 1e-7, 10.0) for i in range(len(raw))]
    return prepare_curve(lrs[: len(raw)], debiased_ema(raw, 0.98) if smoothed else raw, num_steps=100)


def _fastai(name: str) -> Rule:
    def rule(record: dict) -> float | None:
        from hf_lrfind.core.suggest import SUGGESTERS

        return SUGGESTERS[name](*_prepared(record, smoothed=True))

    return rule


def _trough(**kwargs) -> Rule:
    def rule(record: dict) -> float | None:
        from hf_lrfind.core.suggest import trough

        return trough(*_prepared(record, smoothed=False), **kwargs)

    return rule


def _confirmed(score: str, lowest: bool = False) -> Rule:
    """
    The confirmation phase (`confirm_steps`) from the seed's cached trials at multiples of its `trough` suggestion:
    the library's pick ([`hf_lrfind.core.confirm.pick`]: the bottom of the parabola through the trials' scores in
    log lr, kept between them), or with `lowest` the trial that scored lowest. `score`: `train_loss` (the mean
    training loss of the trial's last tenth, what the library reads) or `eval_loss` (the held-out loss, which the
    library does not have).
    """

    def rule(record: dict) -> float | None:
        from hf_lrfind.core.confirm import pick

        probes = sorted(record["probes"], key=lambda p: p["options"]["factor"])
        factors = [p["options"]["factor"] for p in probes]
        scores = [math.inf if p[score] is None else p[score] for p in probes]
        finite = [i for i, x in enumerate(scores) if math.isfinite(x)]
        if lowest:
            factor = factors[min(finite, key=lambda i: (scores[i], factors[i]))] if finite else None
        else:
            factor = pick(factors, scores)
        return None if factor is None else factor * probes[0]["lr"] / factors[0]

    return rule


RULES: dict[str, tuple[str, Rule]] = {
    "trough": (THREE, _trough()),
    **{name: (ONE, _fastai(name)) for name in ("valley", "slide", "steep", "minimum")},
    "trough (1 sweep)": (ONE, _trough()),
    "valley (3 sweeps)": (THREE, _fastai("valley")),
    "minimum (3 sweeps)": (THREE, _fastai("minimum")),
    "confirmed": (PROBED, _confirmed("train_loss")),
    "confirmed (lowest trial)": (PROBED, _confirmed("train_loss", lowest=True)),
    "confirmed (eval loss)": (PROBED, _confirmed("eval_loss", lowest=True)),
}


def sweeps_of(records: Sequence[dict], source: str) -> list[dict]:
    """
    The cached sweep records a rule of `source` reads, by seed. Where a regime has no one-sweep records, the first
    sweep of each 3-sweep record stands for it: it is the same run (same start, same batches; bit-identical on the
    first four regimes, where both are cached). A `PROBED` rule reads the 3-sweep records of the seeds whose trials
    (`probe` records, one per factor of `PROBE_FACTORS`) are all cached, each with its trials as `probes`.
    """
    if source == PROBED:
        from suggestion_bench import PROBE_FACTORS

        probes: dict[int, list[dict]] = {}
        for r in records:
            if r["kind"] == "probe":
                probes.setdefault(r["seed"], []).append(r)
        return [
            {**r, "probes": probes[r["seed"]]}
            for r in sweeps_of(records, THREE)
            if len(probes.get(r["seed"], [])) == len(PROBE_FACTORS)
        ]
    options = {"num_sweeps": 1 if source == ONE else 3}
    found = [r for r in records if r["kind"] == "sweep" and r.get("options") == options]
    if not found and source == ONE:
        found = [
            {**r, "losses": r["sweep_losses"][0], "sweep_losses": None, "options": options}
            for r in sweeps_of(records, THREE)
        ]
    return sorted(found, key=lambda r: r["seed"])


def suggestion_of(rule: str, records: Sequence[dict], seed: int) -> float:
    """The suggestion of a named rule at one sweep seed, from the cached sweeps."""
    source, fn = RULES[rule]
    record = next((r for r in sweeps_of(records, source) if r["seed"] == seed), None)
    if record is None:
        raise ValueError(f"no cached {source} sweep at seed {seed}; run scripts/suggestion_bench.py --kinds sweep")
    value = fn(record)
    if value is None:
        raise ValueError(f"{rule} gave no suggestion on sweep seed {seed}")
    return float(value)


def score(regime: str, rules: Sequence[str]) -> dict:
    """The scores of `rules` on a regime's cached runs."""
    return score_records(load(os.path.join(DATA_DIR, f"{regime}.jsonl")), rules)


def score_records(records: Sequence[dict], rules: Sequence[str]) -> dict:
    """The regime's top-group window, each rule's seeds in it, spread and distance, and the confirmation runs."""
    grid = [r for r in records if r["kind"] == "grid"]
    window = top_window(grid)
    lo, hi = window["window"]
    out = {"window": window, "rules": {}}
    for name in rules:
        source, fn = RULES[name]
        sweeps = sweeps_of(records, source)
        if not sweeps:
            continue
        values = [fn(s) for s in sweeps]
        got = [v for v in values if v is not None]
        inside = [v is not None and lo <= v <= hi for v in values]
        misses = []
        for s, v, ok in zip(sweeps, values, inside):
            if not ok:
                factor = None if v is None else (lo / v if v < lo else v / hi)
                misses.append(
                    {
                        "seed": s["seed"],
                        "lr": v,
                        "factor_outside": factor,
                        "side": None if v is None else ("low" if v < lo else "high"),
                    }
                )
        out["rules"][name] = {
            "source": source,
            "suggestions": values,
            "in_window": sum(inside),
            "seeds": len(sweeps),
            "spread": max(got) / min(got) if got else None,
            "distance": 10 ** statistics.median(abs(math.log10(v / window["best_lr"])) for v in got) if got else None,
            "misses": misses,
        }
    out["confirm"] = confirmations(records, window)
    return out


def confirmations(records: Sequence[dict], window: dict) -> dict:
    """Trainings at a rule's suggestions against the grid's best rate at the same seed: eval loss and their ratio."""
    grid = {(r["lr"], r["seed"]): r["eval_loss"] for r in records if r["kind"] == "grid"}
    out: dict[str, list[dict]] = {}
    for r in sorted((r for r in records if r["kind"] == "confirm"), key=lambda r: (r["rule"], r["seed"])):
        best = grid.get((window["best_lr"], r["seed"]))
        loss = r["eval_loss"]
        ratio = None if loss is None or best is None else loss / best
        row = {"seed": r["seed"], "lr": r["lr"], "eval_loss": loss, "grid_best_loss": best, "ratio": ratio}
        out.setdefault(r["rule"], []).append(row)
    return out


def markdown(regime: str, result: dict) -> str:
    """The report's tables for one regime."""
    w = result["window"]
    lines = ["| peak lr | " + " | ".join(f"{lr:.2e}" for lr in w["lrs"]) + " |"]
    lines.append("|---" * (len(w["lrs"]) + 1) + "|")
    cells = [
        ("**%.4f**" if lr in w["top"] else "%.4f") % m if math.isfinite(m) else "diverged"
        for lr, m in zip(w["lrs"], w["means"])
    ]
    lines.append("| mean eval loss (3 seeds) | " + " | ".join(cells) + " |")
    opened = [side for side, o in zip(("below", "above"), w["open"]) if o]
    lines += [
        "",
        f"Best {w['best_lr']:.3g} ({w['best_mean']:.4f}); pooled sd {w['sd']:.4f}; top group (bold) within "
        f"{w['threshold']:.4f}; window {w['window'][0]:.3g} .. {w['window'][1]:.3g}"
        + (f" (open {' and '.join(opened)}: the grid's edge)" if opened else "")
        + ".",
        "",
    ]
    if not result["rules"]:  # a regime measured for groups="auto" only
        lines.append("No one-group sweeps are cached for this regime: no rule is scored on its single rates.")
    else:
        lines += [
            "| rule | reads | seeds in window | spread | distance from best | suggestions (seeds 0-4) |",
            "|---|---|---|---|---|---|",
        ]
    for name, r in result["rules"].items():
        sugg = ", ".join("-" if v is None else f"{v:.2e}" for v in r["suggestions"])
        spread = "-" if r["spread"] is None else f"{r['spread']:.2f}x"
        dist = "-" if r["distance"] is None else f"{r['distance']:.2f}x"
        lines.append(f"| {name} | {r['source']} | {r['in_window']}/{r['seeds']} | {spread} | {dist} | {sugg} |")
    for rule, rows in result["confirm"].items():
        lines += [
            "",
            f"Trained at the `{rule}` suggestion (the regime's recipe) against the grid's best rate, same seed:",
            "",
        ]
        lines += ["| seed | lr | eval loss | grid best | ratio |", "|---|---|---|---|---|"]
        for row in rows:
            loss = "diverged" if row["eval_loss"] is None else f"{row['eval_loss']:.4f}"
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
            lines.append(f"| {row['seed']} | {row['lr']:.2e} | {loss} | {row['grid_best_loss']:.4f} | {ratio} |")
    return "\n".join(lines)


def plot(scores: dict, path: str) -> None:
    """One panel per regime: the grid's mean eval loss (seeds as dots), the window, and the rules' suggestions."""
    from matplotlib.figure import Figure

    cols = min(4, len(scores))
    rows = -(-len(scores) // cols)
    fig = Figure(figsize=(4.5 * cols, 4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(scores) :]:
        ax.set_visible(False)
    for ax, (regime, result) in zip(axes, scores.items()):
        w = result["window"]
        means = [m if math.isfinite(m) else np.nan for m in w["means"]]
        ax.plot(w["lrs"], means, "k-o", label="grid mean eval loss")
        ax.axvspan(*w["window"], color="C2", alpha=0.2, label="top-group window")
        finite = [m for m in means if np.isfinite(m)]
        top = max(finite)
        for i, (name, marker) in enumerate((("trough", "D"), ("valley", "o"), ("minimum", "v"), ("steep", "^"))):
            r = result["rules"].get(name)
            if r is None:
                continue
            xs = [v for v in r["suggestions"] if v is not None]
            y = top + (i + 1) * 0.04 * (top - min(finite))
            ax.plot(
                xs,
                [y] * len(xs),
                linestyle="none",
                marker=marker,
                color=f"C{i}",
                alpha=0.7,
                label=f"{name} ({r['source']})",
            )
        ax.set_xscale("log")
        ax.set_title(regime)
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("eval loss")
    axes[len(scores) - 1].legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _pair_seeds(records: Sequence[dict], body: str) -> dict[tuple[float, float], dict[int, float]]:
    """(body, head) -> seed -> eval loss (inf where diverged), single rates counting as pairs with body = head."""
    runs: dict[tuple[float, float], dict[int, float]] = {}
    for r in records:
        if r["kind"] in ("grid", "pair"):
            key = (r["lr"], r["lr"]) if r["kind"] == "grid" else (r["lr"][body], r["lr"]["head"])
            runs.setdefault(key, {})[r["seed"]] = math.inf if r["eval_loss"] is None else r["eval_loss"]
    return runs


def _pair_runs(records: Sequence[dict], body: str) -> dict[tuple[float, float], list[float]]:
    """(body, head) -> eval losses in the order they were cached (as `_pair_seeds`)."""
    return {k: list(by_seed.values()) for k, by_seed in _pair_seeds(records, body).items()}


def pair_grid(records: Sequence[dict], body: str = "body") -> dict:
    """
    The (body, head) grid: its best pair, pooled sd and tie band (best mean + 2 pooled sd), and the head window: the
    top-group window (as `top_window`) of the head rates at the best pair's body rate.
    """
    runs = _pair_runs(records, body)
    means = {k: statistics.fmean(v) for k, v in runs.items()}
    sd = pooled_sd(runs.values())
    best = min(means, key=means.get)
    row = [
        {"lr": h, "seed": i, "eval_loss": None if not math.isfinite(x) else x}
        for (b, h), v in runs.items()
        if b == best[0]
        for i, x in enumerate(v)
    ]
    return {"runs": runs, "means": means, "sd": sd, "best": best, "band": means[best] + 2 * sd, "head": top_window(row)}


def _split_runs(records: Sequence[dict], strategy: str = "split") -> list[dict]:
    """A strategy's cached `groups="auto"` runs with their phase curves, by seed."""
    return sorted((r for r in records if _strategy(r) == strategy and "curves" in r), key=lambda r: r["seed"])


def _head_bottom(run: dict) -> float:
    """The rate at the bottom of a split run's head curve's EMA (fastai's `minimum` times 10): what `probe` divides."""
    from hf_lrfind.core.suggest import minimum

    return 10 * minimum(*_prepared(run["curves"]["head"], smoothed=True))


def _body_pretrained(run: dict) -> float:
    """The library's `pretrained` on a split run's cached body curve (the mean of its sweeps): the body rate the
    default trains with, as `--kinds split_pretrained` trained it."""
    from hf_lrfind.core.suggest import pretrained

    curve = {**run["curves"]["body"], "sweep_losses": run["sweep_losses"]["body"]}
    return pretrained(*_prepared(curve, smoothed=False))


def head_rules(records: Sequence[dict], strategy: str, body: str = "body") -> str:
    """Markdown: each rule read on the cached head curves of a strategy's runs, against the head window."""
    from hf_lrfind.core.suggest import SUGGESTERS, trough

    lo, hi = pair_grid(records, body)["head"]["window"]
    runs = _split_runs(records, strategy)
    lines = ["| rule on the head curve | head window hit | suggestions by seed |", "|---|---|---|"]
    for name in ("trough", "valley", "slide", "steep", "minimum", "probe"):
        values = []
        for r in runs:
            record = {"lrs": r["curves"]["head"]["lrs"], "losses": r["curves"]["head"]["losses"]}
            if name == "trough":
                values.append(trough(*_prepared(record, smoothed=False)))
            else:
                values.append(SUGGESTERS[name](*_prepared(record, smoothed=True)))
        hits = sum(v is not None and lo <= v <= hi for v in values)
        cells = ", ".join("-" if v is None else f"{v:.2e}" for v in values)
        lines.append(f"| {name} | {hits}/{len(values)} | {cells} |")
    return "\n".join(lines)


def factor_range(bottoms: Sequence[float], window: tuple[float, float]) -> tuple[float, float]:
    """The factors `f` for which `bottom / f` lies inside `window` for every bottom (empty when low > high)."""
    lo, hi = window
    return max(b / hi for b in bottoms), min(b / lo for b in bottoms)


def head_factors(regimes: Sequence[str]) -> str:
    """
    Markdown: for each regime's split runs, the rate at the bottom of the head curve's EMA (fastai's `minimum` times
    10) and the factors `f` that put `bottom / f` inside the head window; then the factors that do so at every seed
    of every regime (one of the two criteria `probe`'s factor was chosen by; `head_factors_beside` the other).
    """
    from suggestbench.regimes import REGIMES

    from hf_lrfind.core.suggest import PROBE_FACTOR

    lines = ["| regime | head window | EMA bottoms by seed | factors that land every seed |", "|---|---|---|---|"]
    lo_all, hi_all = 0.0, math.inf
    for regime in regimes:
        records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
        lo, hi = pair_grid(records, REGIMES[regime].body_group)["head"]["window"]
        bottoms = [_head_bottom(r) for r in _split_runs(records)]
        f_lo, f_hi = factor_range(bottoms, (lo, hi))
        lo_all, hi_all = max(lo_all, f_lo), min(hi_all, f_hi)
        cells = ", ".join(f"{b:.3g}" for b in bottoms)
        lines.append(f"| {regime} | {lo:.3g} .. {hi:.3g} | {cells} | {f_lo:.1f} .. {f_hi:.1f} |")
    lines.append(f"| all | | | {lo_all:.1f} .. {hi_all:.1f} (`probe`: {PROBE_FACTOR:g}) |")
    return "\n".join(lines)


def _band_interval(heads: Sequence[float], losses: Sequence[float], band: float) -> tuple[float, float] | None:
    """The head rates around the lowest loss whose losses stay within `band` (edges as `_log_edges`); `None` where
    even the lowest is outside."""
    best = int(np.argmin(losses))
    if not losses[best] <= band:
        return None
    lo = hi = best
    while lo > 0 and losses[lo - 1] <= band:
        lo -= 1
    while hi < len(heads) - 1 and losses[hi + 1] <= band:
        hi += 1
    return _log_edges(heads, losses, band, lo, hi)


def head_factors_beside(regimes: Sequence[str]) -> str:
    """
    Markdown: the factors `f` that put each split run's `bottom / f` among the head rates that train inside the tie
    band beside the body rate the default trains with, at the same seed. Per regime: the pair grid's body row nearest
    (in log) the median of the default's body rates on the split runs (`pretrained` read on their body curves;
    adapters: the `trough` they trained at); at each seed of that row, the head rates around the seed's best whose
    own eval loss is within the band; the split run of that seed (the same training seed) and its EMA bottom. The
    head window (`head_factors`) is drawn on 3-seed means at the best pair's body; this is per seed, beside the body
    the head trains with.
    """
    from suggestbench.regimes import REGIMES

    from hf_lrfind.core.suggest import PROBE_FACTOR

    header = "| regime | body row (default's median) | head rates in the band, by seed | EMA bottoms | factors |"
    lines = [header, "|---|---|---|---|---|"]
    lo_all, hi_all = 0.0, math.inf
    for regime in regimes:
        records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
        body = REGIMES[regime].body_group
        band = pair_grid(records, body)["band"]
        runs = {r["seed"]: r for r in _split_runs(records)}
        bodies = [_body_pretrained(r) if body == "body" else r["trained_lrs"][body] for r in runs.values()]
        middle = statistics.median(bodies)
        by_seed = _pair_seeds(records, body)
        row = min({b for b, h in by_seed if b != h}, key=lambda b: abs(math.log10(b / middle)))
        heads = sorted(h for b, h in by_seed if b == row)
        seeds = sorted(set.intersection(*(set(by_seed[row, h]) for h in heads)) & set(runs))
        bottoms = {s: _head_bottom(runs[s]) for s in seeds}
        intervals = {s: _band_interval(heads, [by_seed[row, h][s] for h in heads], band) for s in seeds}
        ranges = [factor_range([bottoms[s]], intervals[s]) if intervals[s] else (math.inf, 0.0) for s in seeds]
        f_lo, f_hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
        lo_all, hi_all = max(lo_all, f_lo), min(hi_all, f_hi)
        cells = ", ".join(f"{v[0]:.3g} .. {v[1]:.3g}" if v else "none in band" for v in intervals.values())
        shown = ", ".join(f"{b:.3g}" for b in bottoms.values())
        found = f"{f_lo:.1f} .. {f_hi:.1f}" if f_lo <= f_hi else "none"
        lines.append(f"| {regime} | {row:.3g} ({middle:.3g}) | {cells} | {shown} | {found} |")
    found = f"{lo_all:.1f} .. {hi_all:.1f}" if lo_all <= hi_all else "none"
    lines.append(f"| all | | | | {found} (`probe`: {PROBE_FACTOR:g}) |")
    return "\n".join(lines)


def _has_pairs(records: Sequence[dict]) -> bool:
    """(body, head) pairs: what a head window is drawn from."""
    return any(r["kind"] == "pair" for r in records)


def _has_split(regime: str) -> bool:
    """Split runs and the (body, head) pairs to judge their head curves by."""
    records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
    return any(_strategy(r) == "split" for r in records) and _has_pairs(records)


ONE_GROUP = "one group, trough (no groups)"
BESIDE = "split (head swept beside the body)"
HELD = "split (body swept beside the held head)"


def _strategy(record: dict) -> str | None:
    """The strategy of a `groups="auto"` run; `BESIDE` for the split runs whose head was swept beside the body, `HELD`
    for those whose body was swept with the head held at its suggestion."""
    if record["kind"] != "auto":
        return None
    options = record["options"]
    if options.get("head_phase") == "beside":
        return BESIDE
    if options.get("body_phase") == "held":
        return HELD
    return options.get("strategy", "sequential")


OLD_PROBE_FACTOR = 30.0  # `probe`'s factor when the split_confirm runs without `head_factor` were trained


def _head_rule(record: dict) -> str:
    """The head's rule of a split_confirm record; `probe` at another factor than the library's now names it (the
    records cached before `head_factor` was recorded read 30)."""
    from hf_lrfind.core.suggest import PROBE_FACTOR

    if record["rule"] != "probe":
        return record["rule"]
    factor = (record.get("options") or {}).get("head_factor", OLD_PROBE_FACTOR)
    return "probe" if factor == PROBE_FACTOR else f"probe /{factor:g}"


def groups_auto(records: Sequence[dict], steps: int, body: str = "body") -> str:
    """
    Markdown: `groups="auto"`, per strategy, trained at its per-group `trough` suggestions, against the best
    (body, head) pair of the grid (single rates count as pairs with body = head): in the tie band, head suggestion in
    the head window, spread of each group's suggestions across seeds. The one-group default trained at its
    suggestion (`confirm` records) is a row too: what a user gets without `groups`.
    """
    grid = pair_grid(records, body)
    runs, best, band, head = grid["runs"], grid["best"], grid["band"], grid["head"]
    paired = _has_pairs(records)  # without pairs, no head window: only the single rates
    lo, hi = head["window"] if paired else (math.nan, math.nan)
    grid_steps = sum(len(v) for v in runs.values()) * steps
    opened = [side for side, o in zip(("below", "above"), head["open"]) if o]
    window = (
        f"Head window at {body} {best[0]:.3g}: {lo:.3g} .. {hi:.3g}"
        + (f" (open {' and '.join(opened)}: the grid's edge)" if opened else "")
        if paired
        else "No (body, head) pairs: the band is the single-rate grid's, and no head window is measured"
    )
    lines = [
        (
            f"Grid: {len(runs)} ({body}, head) settings at 3 seeds ({grid_steps:,} optimizer steps); best pair "
            f"{body} {best[0]:.3g}, head {best[1]:.3g}: mean eval loss {grid['means'][best]:.4f}, pooled sd "
            f"{grid['sd']:.4f}, tie band <= {band:.4f}. {window}."
        ),
        "",
        f"| strategy | seed | {body} lr | head lr | eval loss | in the tie band | head in its window | finder steps (x grid) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cost = {(_strategy(r), r["seed"]): r["cost_steps"] for r in records if r["kind"] == "auto"}
    variants = {"sequential": [r for r in records if _strategy(r) == "sequential"]}
    for split in ("split", BESIDE):
        variants[f"{split}, head by trough"] = [r for r in records if _strategy(r) == split]
    variants[f"{HELD}, head by probe"] = [r for r in records if _strategy(r) == HELD]  # trained at its default rules
    for r in records:  # the split runs' body rate, the head read with another rule from their cached head curves
        if r["kind"] == "split_confirm":
            row = {**r, "trained_lrs": r["lr"], "cost_steps": cost["split", r["seed"]]}
            options = r.get("options") or {}
            factor, rule = options.get("body_factor"), options.get("body_rule")
            body_part = f", {body} x {factor:.3g}" if factor else f", {body} by {rule}" if rule else ""
            variants.setdefault(f"split{body_part}, head by {_head_rule(r)}", []).append(row)
    swept = {r["seed"]: r["cost_steps"] for r in sweeps_of(records, THREE)}
    variants[ONE_GROUP] = [  # the one-group default, trained at its suggestion: every group at that one rate
        {**r, "trained_lrs": {body: r["lr"], "head": r["lr"]}, "cost_steps": swept[r["seed"]]}
        for r in records
        if r["kind"] == "confirm" and r["rule"] == "trough" and r["seed"] in swept
    ]
    for strategy, mine in variants.items():
        if not mine:
            continue
        mine = sorted(mine, key=lambda r: r["seed"])
        for r in mine:
            loss = r["eval_loss"]
            inside = "yes" if loss is not None and loss <= band else "no"
            lrs = r["trained_lrs"]
            in_head = "-" if not paired else "yes" if lo <= lrs["head"] <= hi else "no"
            cost = f"{r['cost_steps']} ({r['cost_steps'] / grid_steps:.3f})"
            shown = "diverged" if loss is None else f"{loss:.4f}"
            lines.append(
                f"| {strategy} | {r['seed']} | {lrs[body]:.2e} | {lrs['head']:.2e} | {shown} | {inside} | {in_head} | {cost} |"
            )
        if len(mine) > 1:
            spreads = {
                g: max(r["trained_lrs"][g] for r in mine) / min(r["trained_lrs"][g] for r in mine)
                for g in (body, "head")
            }
            lines.append(
                f"| {strategy}: spread | | {spreads[body]:.2f}x | {spreads['head']:.2f}x | | "
                f"{sum(r['eval_loss'] is not None and r['eval_loss'] <= band for r in mine)}/{len(mine)} | "
                + (f"{sum(lo <= r['trained_lrs']['head'] <= hi for r in mine)}/{len(mine)} | |" if paired else "- | |")
            )
    return "\n".join(lines)


def overview(scores: dict) -> str:
    """Markdown: one row per regime: its optimizer, window, and each rule's seeds in it (trough's median ratio too)."""
    from suggestbench.regimes import REGIMES

    names = [n for n in RULES if any(n in result["rules"] for result in scores.values())]
    lines = [
        "| regime | optimizer | best lr | window | " + " | ".join(names) + " | trough / best (median) |",
        "|---" * (len(names) + 5) + "|",
    ]
    for regime, result in scores.items():
        w, rules = result["window"], result["rules"]
        cells = [f"{rules[n]['in_window']}/{rules[n]['seeds']}" if n in rules else "-" for n in names]
        got = [v for v in rules["trough"]["suggestions"] if v is not None] if "trough" in rules else []
        ratio = f"{statistics.median(v / w['best_lr'] for v in got):.2f}x" if got else "-"
        lines.append(
            f"| {regime} | {REGIMES[regime].optimizer} | {w['best_lr']:.3g} | {w['window'][0]:.3g} .. "
            f"{w['window'][1]:.3g} | " + " | ".join(cells) + f" | {ratio} |"
        )
    return "\n".join(lines)


def confirmation_table(scores: dict) -> str:
    """Markdown: per regime with cached trials, `trough` against the confirmation read three ways (seeds in window,
    spread, distance from the best rate) and the factor the library's pick gave at each seed."""
    from suggestbench.regimes import REGIMES

    names = ["trough", "confirmed", "confirmed (lowest trial)", "confirmed (eval loss)"]
    lines = [
        "| regime | optimizer | trial steps (of the run) | "
        + " | ".join(f"{n}: in window, spread, distance" for n in names)
        + " | confirmed / trough by seed |",
        "|---" * (len(names) + 4) + "|",
    ]
    for regime, result in scores.items():
        rules = result["rules"]
        if "confirmed" not in rules or not rules["confirmed"]["seeds"]:
            continue
        cells = []
        for n in names:
            r = rules.get(n)
            cells.append(
                "-" if r is None else f"{r['in_window']}/{r['seeds']}, {r['spread']:.2f}x, {r['distance']:.2f}x"
            )
        records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
        trough = dict(zip((r["seed"] for r in sweeps_of(records, THREE)), rules["trough"]["suggestions"]))
        seeds = [r["seed"] for r in sweeps_of(records, PROBED)]
        ratios = ", ".join(f"{v / trough[s]:.2f}" for s, v in zip(seeds, rules["confirmed"]["suggestions"]))
        steps = REGIMES[regime].steps
        lines.append(
            f"| {regime} | {REGIMES[regime].optimizer} | {steps // 2} ({steps}) | "
            + " | ".join(cells)
            + f" | {ratios} |"
        )
    return "\n".join(lines)


def phase_plot(regimes: Sequence[str], path: str, strategy: str = "split") -> None:
    """Per regime, the cached phase curves of a strategy's runs (raw loss, a line per seed) and their suggestions."""
    from matplotlib.figure import Figure
    from suggestbench.regimes import REGIMES

    from hf_lrfind.core.suggest import probe

    fig = Figure(figsize=(9, 3.6 * len(regimes)))
    axes = fig.subplots(len(regimes), 2, squeeze=False)
    for row, regime in zip(axes, regimes):
        records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
        body = REGIMES[regime].body_group
        runs = _split_runs(records, strategy)
        # the split runs trained their head at trough: mark the library's probe on their head curves; and a
        # pretrained body's default, `pretrained`, where split_pretrained trained it. The held runs trained their
        # head at probe's rate then (OLD_PROBE_FACTOR): marked as trained
        split = strategy == "split"
        confirmed = [r for r in records if split and r["kind"] == "split_confirm"]
        head_rule = {r["seed"]: probe(*_prepared(r["curves"]["head"], smoothed=True)) for r in runs if split}
        body_rule = {r["seed"]: r["lr"][body] for r in confirmed if (r.get("options") or {}).get("body_rule")}
        grid = pair_grid(records, body)
        for ax, group in zip(row, (body, "head")):
            lows = []
            for r in runs:
                curve = r["curves"][group]
                line = ax.plot(curve["lrs"], curve["losses"], lw=1, label=f"seed {r['seed']}")[0]
                lr = (head_rule if group == "head" else body_rule).get(r["seed"], r["trained_lrs"][group])
                ax.axvline(lr, color=line.get_color(), ls=":", lw=1)
                lows.append(min(x for x in curve["losses"] if x is not None))
            start = runs[0]["curves"][group]["losses"][0]
            ax.set_ylim(0.9 * min(lows), 1.3 * start)
            if group == "head":
                ax.axvspan(*grid["head"]["window"], color="C2", alpha=0.15, label="head window")
            else:
                ax.axvline(grid["best"][0], color="k", lw=1, label=f"best pair's {body} lr")
            ax.set_xscale("log")
            old = f"probe /{OLD_PROBE_FACTOR:g}"
            rule = ("probe" if split else old) if group == "head" else "pretrained" if body_rule else "trough"
            shown = "held" if strategy == HELD else strategy
            ax.set_title(f"{regime}: {group} curve ({shown}); dotted: {rule}", fontsize="medium")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("raw loss (mean of sweeps)")
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def ema_lag(regimes: Sequence[str]) -> str:
    """Markdown: how far (in decades of lr) fastai's EMA puts the bottom of each one-sweep curve past the centred mean."""
    from hf_lrfind.core.suggest import centered_mean

    lines = ["| regime | EMA bottom / centred bottom, per seed (decades) | median |", "|---|---|---|"]
    for regime in regimes:
        lags = []
        for record in sweeps_of(load(os.path.join(DATA_DIR, f"{regime}.jsonl")), ONE):
            lrs, ema = _prepared(record, smoothed=True)
            _, raw = _prepared(record, smoothed=False)
            lags.append(math.log10(lrs[int(np.argmin(ema))] / lrs[int(np.argmin(centered_mean(raw, 2)))]))
        cells = ", ".join(f"{x:+.2f}" for x in lags)
        lines.append(f"| {regime} | {cells} | {statistics.median(lags):+.2f} |")
    return "\n".join(lines)


def sensitivity(regimes: Sequence[str], factors=(2.0, 2.5, 3.0, 4.0, 5.0), half_widths=(1, 2, 3, 4)) -> str:
    """Markdown: sweep seeds in the window per regime (3-sweep records) for other `factor`s and `half_width`s of trough."""
    loaded = {r: load(os.path.join(DATA_DIR, f"{r}.jsonl")) for r in regimes}
    windows = {r: top_window([x for x in recs if x["kind"] == "grid"])["window"] for r, recs in loaded.items()}
    lines = ["| half_width | factor | " + " | ".join(regimes) + " | fewest |", "|---" * (len(regimes) + 3) + "|"]
    for h in half_widths:
        for k in factors:
            counts = []
            for r, recs in loaded.items():
                sweeps = sweeps_of(recs, THREE)
                values = [_trough(half_width=h, factor=k)(x) for x in sweeps]
                lo, hi = windows[r]
                counts.append((sum(v is not None and lo <= v <= hi for v in values), len(sweeps)))
            cells = [f"{c}/{n}" for c, n in counts]
            lines.append(f"| {h} | {k:g} | " + " | ".join(cells) + f" | {min(c for c, _ in counts)} |")
    return "\n".join(lines)


def _bottom_rule(kind: str, width: float) -> Rule:
    """
    A body rule tried against `trough` for broad, noisy bottoms, a third of the rate at the bottom as `trough`, the
    bottom found otherwise. `"centre"`: the geometric middle of the rates around the centred mean's lowest point whose
    centred mean stays within `width` of the way from that point back up to the curve's start. `"parabola"`: the
    library's fitted bottom (what `pretrained` reads, at `width` decades; `pretrained` is its sixth at 0.75): the vertex
    of the least-squares parabola (raw loss against log10 lr) over `width` decades each side of that point, kept
    inside them.
    """
    from hf_lrfind.core.suggest import TROUGH_FACTOR, _fitted_bottom, centered_mean, finite_length

    def rule(record: dict) -> float:
        lrs, raw = (np.asarray(x, dtype=float) for x in _prepared(record, smoothed=False))
        if kind == "parabola":  # the cached curves all have finite losses, so there is a bottom
            return _fitted_bottom("parabola", lrs, raw, width) / TROUGH_FACTOR
        end = finite_length(raw)
        x, raw = np.log10(lrs[:end]), raw[:end]
        s = centered_mean(raw, 2)
        i = int(np.argmin(s))
        limit = s[i] + width * (np.median(s[:5]) - s[i])
        a, b = i, i
        while a > 0 and s[a - 1] <= limit:
            a -= 1
        while b < len(s) - 1 and s[b + 1] <= limit:
            b += 1
        return 10 ** ((x[a] + x[b]) / 2) / TROUGH_FACTOR

    return rule


def body_rules(split_regimes: Sequence[str], all_regimes: Sequence[str]) -> str:
    """
    Markdown: `trough` and the `_bottom_rule` variants on the body (or adapter) curves of the split runs, against the
    regime's single-rate window (seeds in it, spread), and on every regime's one-group 3-sweep curves.
    """
    from suggestbench.regimes import REGIMES

    variants = {"trough": _trough()}
    variants.update({f"centre, within {q:g}": _bottom_rule("centre", q) for q in (0.05, 0.1, 0.2)})
    variants.update({f"parabola, +-{h:g} decade": _bottom_rule("parabola", h) for h in (0.5, 0.75, 1.0)})
    loaded = {r: load(os.path.join(DATA_DIR, f"{r}.jsonl")) for r in dict.fromkeys([*split_regimes, *all_regimes])}
    windows = {r: top_window([x for x in recs if x["kind"] == "grid"])["window"] for r, recs in loaded.items()}
    head = "| body rule | " + " | ".join(f"{r}: in window, spread" for r in split_regimes)
    lines = [head + " | one group, 3 sweeps: in window |", "|---" * (len(split_regimes) + 2) + "|"]
    for name, rule in variants.items():
        cells = []
        for regime in split_regimes:
            body, (lo, hi) = REGIMES[regime].body_group, windows[regime]
            runs = sorted((r for r in loaded[regime] if _strategy(r) == "split"), key=lambda r: r["seed"])
            values = [rule({**r["curves"][body], "sweep_losses": r["sweep_losses"][body]}) for r in runs]
            cells.append(f"{sum(lo <= v <= hi for v in values)}/{len(values)}, {max(values) / min(values):.2f}x")
        hits = seeds = 0
        for regime in all_regimes:
            lo, hi = windows[regime]
            values = [rule(r) for r in sweeps_of(loaded[regime], THREE)]
            hits, seeds = hits + sum(lo <= v <= hi for v in values), seeds + len(values)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {hits}/{seeds} |")
    return "\n".join(lines)


def sweep_counts(regime: str, most: int) -> str:
    """
    Markdown: `trough` on the mean of the first k sweeps of each seed's `most`-sweep record, k = 1 .. `most` (k sweeps
    hold k times the tokens per rate of one): seeds in the regime's window, spread, suggestions.
    """
    records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
    lo, hi = top_window([r for r in records if r["kind"] == "grid"])["window"]
    runs = sorted(
        (r for r in records if r["kind"] == "sweep" and r.get("options") == {"num_sweeps": most}),
        key=lambda r: r["seed"],
    )
    if not runs:
        raise ValueError(f"{regime} has no {most}-sweep records: run scripts/suggestion_bench.py --kinds sweep{most}")
    lines = [
        f"| sweeps averaged | {regime}: in window | spread | seeds {', '.join(str(r['seed']) for r in runs)} |",
        "|---|---|---|---|",
    ]
    for k in range(1, most + 1):
        values = [_trough()({**r, "sweep_losses": r["sweep_losses"][:k]}) for r in runs]
        cells = ", ".join(f"{v:.2e}" for v in values)
        hits = sum(lo <= v <= hi for v in values)
        lines.append(f"| {k} | {hits}/{len(values)} | {max(values) / min(values):.2f}x | {cells} |")
    return "\n".join(lines)


def swaps(regime: str) -> str:
    """
    Markdown: `trough` on the 3-sweep records that ran one seed's model on another seed's batches (`data_seed`), beside
    the two seeds' own: whether a seed's reading follows its model (a new head's init, dropout) or its batches.
    """
    records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
    runs = {
        (r["seed"], r["options"].get("data_seed", r["seed"])): r
        for r in records
        if r["kind"] == "sweep"
        and r["options"].get("num_sweeps") == 3
        and set(r["options"]) <= {"num_sweeps", "data_seed"}
    }
    seeds = sorted({s for pair in runs for s in pair if pair[0] != pair[1]})
    lines = ["| model of seed | batches of seed | trough (3 sweeps) |", "|---|---|---|"]
    for model in seeds:
        for data in seeds:
            if (model, data) in runs:
                lines.append(f"| {model} | {data} | {_trough()(runs[model, data]):.2e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=None)
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--json", default=None, help="also write the scores to this file")
    parser.add_argument("--markdown", default=None, help="also write the report's tables to this file")
    parser.add_argument("--plot", default=None, help="also draw the grids and suggestions to this PNG")
    parser.add_argument(
        "--sensitivity", action="store_true", help="also print trough's seeds in window for other settings"
    )
    parser.add_argument("--phase-plot", default=None, help="also draw the split strategy's phase curves to this PNG")
    parser.add_argument(
        "--body-rules", action="store_true", help="also print other readings of the split runs' body curves"
    )
    parser.add_argument(
        "--held-phase-plot", default=None, help="also draw the phase curves of body_phase='held' to this PNG"
    )
    parser.add_argument(
        "--swaps", action="store_true", help="also print trough on one seed's model swept on another seed's batches"
    )
    parser.add_argument(
        "--sweep-counts",
        type=int,
        default=None,
        metavar="N",
        help="also print trough on the mean of 1 .. N sweeps, from the regimes' N-sweep records",
    )
    args = parser.parse_args(argv)
    regimes = args.regimes or sorted(f[:-6] for f in os.listdir(DATA_DIR) if f.endswith(".jsonl"))
    scores = {}
    for regime in regimes:
        try:
            s = scores[regime] = score(regime, args.rules)
        except ValueError as e:
            print(f"\n{regime}: not scored: {e}")
            continue
        w = s["window"]
        opened = (
            " (open " + " and ".join(side for side, o in zip(("below", "above"), w["open"]) if o) + ")"
            if any(w["open"])
            else ""
        )
        print(
            f"\n{regime}: best {w['best_lr']:.3g} (mean eval loss {w['best_mean']:.4f}, pooled sd {w['sd']:.4f}); top group {[f'{x:.3g}' for x in w['top']]}, window {w['window'][0]:.3g} .. {w['window'][1]:.3g}{opened}"
        )
        print(f"  {'rule':<22}{'reads':>9}{'in window':>10}{'spread':>8}{'distance':>10}  suggestions by seed")
        for name, r in s["rules"].items():
            sugg = " ".join("None" if v is None else f"{v:.2e}" for v in r["suggestions"])
            spread = "-" if r["spread"] is None else f"{r['spread']:.2f}x"
            dist = "-" if r["distance"] is None else f"{r['distance']:.2f}x"
            print(f"  {name:<22}{r['source']:>9}{r['in_window']:>7}/{r['seeds']:<2}{spread:>8}{dist:>10}  {sugg}")
            for miss in r["misses"]:
                if miss["lr"] is not None:
                    print(
                        f"      miss: seed {miss['seed']} at {miss['lr']:.2e}, {miss['factor_outside']:.2f}x {miss['side']}"
                    )
        for rule, rows in s["confirm"].items():
            ratios = " ".join("diverged" if r["ratio"] is None else f"{r['ratio']:.3f}" for r in rows)
            print(f"  trained at {rule}: eval loss / grid best at the same seed = {ratios}")
    # rule scores, the sensitivity and the EMA's lag need one-group sweeps (minilm_mlm has the split runs only)
    swept = {regime: s for regime, s in scores.items() if s["rules"]}
    print("\n" + overview(swept))
    if any("confirmed" in r["rules"] for r in scores.values()):
        print("\n" + confirmation_table(scores))
    if args.sensitivity:
        print("\n" + sensitivity(list(swept)))
        print("\n" + ema_lag(list(swept)))
    for regime in regimes:
        records = load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
        if any(r["kind"] == "auto" for r in records):
            from suggestbench.regimes import REGIMES

            body = REGIMES[regime].body_group
            print(f"\n{regime}, groups='auto':\n" + groups_auto(records, REGIMES[regime].steps, body))
            for strategy in ("sequential", "split", BESIDE, HELD):  # head curves need a head window: pairs
                if _has_pairs(records) and any(_strategy(r) == strategy and "curves" in r for r in records):
                    print(
                        f"\n{regime}, rules on the head curves of {strategy}:\n" + head_rules(records, strategy, body)
                    )
    split_regimes = [r for r in regimes if _has_split(r)]
    if split_regimes:
        print("\nhead curves of the split runs, and the factors below their bottom that land in the head window:")
        print(head_factors(split_regimes))
        print("\nthe same factors against the head rates that train in the band beside the default's body, per seed:")
        print(head_factors_beside(split_regimes))
    if args.body_rules and split_regimes:
        print("\nthe split runs' body curves read by other rules, against the single-rate window:")
        print(
            body_rules(
                split_regimes, [r for r in regimes if any(sweeps_of(load(os.path.join(DATA_DIR, f"{r}.jsonl")), THREE))]
            )
        )
    if args.sweep_counts:
        key = {"num_sweeps": args.sweep_counts}
        for regime in regimes:
            if any(
                r["kind"] == "sweep" and r.get("options") == key
                for r in load(os.path.join(DATA_DIR, f"{regime}.jsonl"))
            ):
                print(f"\n{regime}: trough on the mean of the first k of {args.sweep_counts} sweeps:")
                print(sweep_counts(regime, args.sweep_counts))
    for regime in regimes if args.swaps else ():
        if any("data_seed" in (r.get("options") or {}) for r in load(os.path.join(DATA_DIR, f"{regime}.jsonl"))):
            print(f"\n{regime}: one seed's model on another seed's batches:")
            print(swaps(regime))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write("\n\n".join(f"### {regime}\n\n{markdown(regime, r)}" for regime, r in scores.items()) + "\n")
    if args.plot:
        plot(scores, args.plot)
    if args.phase_plot:
        phase_plot(split_regimes, args.phase_plot)
    if args.held_phase_plot:
        held = [r for r in regimes if any(_strategy(x) == HELD for x in load(os.path.join(DATA_DIR, f"{r}.jsonl")))]
        phase_plot(held, args.held_phase_plot, strategy=HELD)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(scores, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
