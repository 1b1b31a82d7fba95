"""The suggestion benchmark's scoring (scripts/score_suggestions.py) on a small hand-made cache with known answers."""

import json
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))

import score_suggestions as S  # noqa: E402

LRS = [1e-4, 1e-3, 1e-2, 1e-1]


def grid(means_by_lr, offsets=(-0.1, 0.0, 0.1)):
    """Three seeds per rate at mean +- 0.1: every rate's sample sd is 0.1, so the pooled sd is 0.1."""
    return [
        {"kind": "grid", "lr": lr, "seed": s, "eval_loss": None if m is None else m + d}
        for lr, m in means_by_lr.items()
        for s, d in enumerate(offsets)
    ]


def sweep(seed, bottom_lr, num_sweeps):
    """A cached sweep whose raw loss is a symmetric bowl in log10(lr) with its bottom at `bottom_lr`."""
    lrs = 1e-7 * (1e8) ** (np.arange(100) / 100)
    losses = 1.0 + 0.2 * np.abs(np.log10(lrs) - math.log10(bottom_lr))
    return {
        "kind": "sweep",
        "seed": seed,
        "options": {"num_sweeps": num_sweeps},
        "lrs": lrs.tolist(),
        "losses": losses.tolist(),
    }


def test_top_window_interpolates_the_threshold_in_log_lr():
    w = S.top_window(grid({1e-4: 2.0, 1e-3: 1.0, 1e-2: 1.1, 1e-1: 2.2}))
    assert w["best_lr"] == 1e-3 and w["sd"] == pytest.approx(0.1)
    assert w["threshold"] == pytest.approx(1.2) and w["top"] == [1e-3, 1e-2]
    # below: from 1.0 at 1e-3 to 2.0 at 1e-4, 1.2 is crossed a fifth of the way; above: 1.1 -> 2.2, a eleventh
    assert math.log10(w["window"][0]) == pytest.approx(-3 - 0.2)
    assert math.log10(w["window"][1]) == pytest.approx(-2 + 1 / 11)
    assert w["open"] == (False, False)


def test_top_window_at_the_grid_edge_and_next_to_a_diverged_rate():
    w = S.top_window(grid({1e-4: 1.0, 1e-3: 1.5, 1e-2: 1.1, 1e-1: None}))
    assert w["top"] == [1e-4, 1e-2] and w["open"] == (True, False)  # the hull of the top rates
    assert w["window"][0] == pytest.approx(1e-4)
    assert w["window"][1] == pytest.approx(1e-2)  # the diverged neighbour puts the edge at the top rate


def test_rules_are_scored_on_their_own_sweeps():
    records = grid({1e-4: 2.0, 1e-3: 1.0, 1e-2: 1.1, 1e-1: 2.2})
    bottoms = [3e-3, 3e-3, 3e-3, 3e-3, 3e-1]  # the last seed's bottom is 100x higher
    records += [sweep(s, b, 3) for s, b in enumerate(bottoms)]
    records += [sweep(s, 3e-3, 1) for s in range(5)]
    out = S.score_records(records, ["trough", "trough (1 sweep)"])
    three, one = out["rules"]["trough"], out["rules"]["trough (1 sweep)"]
    assert three["source"] == S.THREE and one["source"] == S.ONE
    assert one["in_window"] == 5 and one["spread"] == pytest.approx(1.0)
    assert three["in_window"] == 4 and three["spread"] == pytest.approx(100, rel=0.1)
    (miss,) = three["misses"]
    assert miss["seed"] == 4 and miss["side"] == "high" and miss["lr"] == pytest.approx(1e-1, rel=0.1)


def test_confirmation_runs_are_compared_with_the_grids_best_at_the_same_seed():
    records = grid({1e-4: 2.0, 1e-3: 1.0, 1e-2: 1.1, 1e-1: 2.2})
    records.append({"kind": "confirm", "rule": "trough", "seed": 1, "lr": 2e-3, "eval_loss": 1.05})
    out = S.score_records(records, [])
    (row,) = out["confirm"]["trough"]
    assert row["grid_best_loss"] == 1.0 and row["ratio"] == pytest.approx(1.05)
    assert "| 1 | 2.00e-03 | 1.0500 | 1.0000 | 1.050 |" in S.markdown("toy", out)


def test_one_sweep_rules_read_the_first_sweep_of_three_where_no_one_sweep_record_exists():
    records = grid({1e-4: 2.0, 1e-3: 1.0, 1e-2: 1.1, 1e-1: 2.2})
    three = sweep(0, 3e-3, 3)
    first = sweep(0, 3e-2, 1)["losses"]  # the first sweep's bottom differs from the others'
    three["sweep_losses"] = [first, three["losses"], three["losses"]]
    records.append(three)
    (derived,) = S.sweeps_of(records, S.ONE)
    assert derived["losses"] == first and derived["sweep_losses"] is None
    assert S.suggestion_of("trough (1 sweep)", records, 0) == pytest.approx(1e-2, rel=0.1)
    records.append(sweep(0, 3e-3, 1))  # a real one-sweep record takes precedence
    assert S.suggestion_of("trough (1 sweep)", records, 0) == pytest.approx(1e-3, rel=0.1)


def test_pair_grid_finds_the_best_pair_and_the_head_window_at_its_body_rate():
    records = grid({1e-4: 2.0, 1e-3: 1.5})  # single rates: pairs with body = head
    heads = {1e-3: 1.8, 1e-2: 1.0, 1e-1: 1.1, 1.0: 2.2}
    records += [
        {"kind": "pair", "lr": {"adapter": 1e-4, "head": h}, "seed": s, "eval_loss": m + d}
        for h, m in heads.items()
        for s, d in enumerate((-0.1, 0.0, 0.1))
    ]
    out = S.pair_grid(records, "adapter")
    assert out["best"] == (1e-4, 1e-2) and out["sd"] == pytest.approx(0.1) and out["band"] == pytest.approx(1.2)
    lo, hi = out["head"]["window"]  # the head rates at adapter 1e-4: 2.0 at 1e-4, 1.8, 1.0, 1.1, 2.2
    assert math.log10(lo) == pytest.approx(-2 - 0.25) and math.log10(hi) == pytest.approx(-1 + 1 / 11)


def split_run(eval_loss):
    """A cached groups="auto" split run at seed 0, trained at body 2e-4 and head 5e-2, its finder at 300 steps."""
    return {
        "kind": "auto",
        "seed": 0,
        "options": {"strategy": "split"},
        "trained_lrs": {"body": 2e-4, "head": 5e-2},
        "eval_loss": eval_loss,
        "cost_steps": 300,
    }


def test_groups_auto_shows_the_one_group_default_trained_at_its_rate_beside_the_split_runs():
    records = grid({1e-4: 2.0, 1e-3: 1.5})
    records += [
        {"kind": "pair", "lr": {"body": 1e-4, "head": h}, "seed": s, "eval_loss": m + d}
        for h, m in {1e-2: 1.0, 1e-1: 1.1}.items()
        for s, d in enumerate((-0.1, 0.0, 0.1))
    ]  # best pair (1e-4, 1e-2): 1.0, band 1.2; head window at body 1e-4 around 1e-2 .. 1e-1
    records += [{**sweep(0, 1e-3, 3), "cost_steps": 270}, {**sweep(1, 1e-3, 3), "cost_steps": 280}]
    records += [
        {"kind": "confirm", "rule": "trough", "lr": lr, "seed": seed, "eval_loss": loss}
        for seed, lr, loss in ((0, 3e-4, 1.1), (1, 4e-4, 1.4))
    ]
    records.append(split_run(eval_loss=1.05))
    records.append(  # the split run's body at a third of its rate, the head by probe
        {
            "kind": "split_confirm",
            "rule": "probe",
            "lr": {"body": 2e-4 / 3, "head": 5e-2},
            "seed": 0,
            "options": {"body_factor": 1 / 3},
            "eval_loss": 1.15,
        }
    )
    for factor, head, loss in ((None, 5e-2, 1.25), (70.0, 2e-2, 1.05)):  # probe's factor before, then recorded
        records.append(  # the split run's body at a rule read on its cached body curve, the head by probe
            {
                "kind": "split_confirm",
                "rule": "probe",
                "lr": {"body": 4e-5, "head": head},
                "seed": 0,
                "options": {"body_rule": "pretrained", **({"head_factor": factor} if factor else {})},
                "eval_loss": loss,
            }
        )
    table = S.groups_auto(records, steps=10).splitlines()
    third = [line for line in table if line.startswith("| split, body x 0.333, head by probe /30 | 0 |")]
    assert third == [
        "| split, body x 0.333, head by probe /30 | 0 | 6.67e-05 | 5.00e-02 | 1.1500 | yes | yes | 300 (2.500) |"
    ]
    ruled = [line for line in table if line.startswith("| split, body by pretrained, head by probe")]
    assert ruled == [
        "| split, body by pretrained, head by probe /30 | 0 | 4.00e-05 | 5.00e-02 | 1.2500 | no | yes | 300 (2.500) |",
        "| split, body by pretrained, head by probe | 0 | 4.00e-05 | 2.00e-02 | 1.0500 | yes | yes | 300 (2.500) |",
    ]
    rows = [line for line in table if line.startswith("| one group")]
    assert rows == [
        "| one group, trough (no groups) | 0 | 3.00e-04 | 3.00e-04 | 1.1000 | yes | no | 270 (2.250) |",
        "| one group, trough (no groups) | 1 | 4.00e-04 | 4.00e-04 | 1.4000 | no | no | 280 (2.333) |",
        "| one group, trough (no groups): spread | | 1.33x | 1.33x | | 1/2 | 0/2 | |",
    ]


def test_groups_auto_without_pairs_judges_against_the_single_rate_band_and_claims_no_head_window():
    records = grid({1e-4: 2.0, 1e-3: 1.5})  # best 1e-3: band 1.5 + 2 * 0.1
    records.append(split_run(eval_loss=1.65))
    table = S.groups_auto(records, steps=10).splitlines()
    assert table[0].endswith(
        "No (body, head) pairs: the band is the single-rate grid's, and no head window is measured."
    )
    assert "| split, head by trough | 0 | 2.00e-04 | 5.00e-02 | 1.6500 | yes | - | 300 (5.000) |" in table


def test_the_grid_is_extended_while_its_best_is_at_an_end_then_refined_beside_it(monkeypatch):
    import suggestion_bench as B
    from suggestbench.common import half_decades

    regime = type("R", (), {"name": "toy", "grid": half_decades(-3, -2)})()  # 1e-3, 3.16e-3, 1e-2
    cached = []
    monkeypatch.setattr(B, "records", lambda name: cached)

    def finish(loss_of):
        for lr in B.grid_rates(regime):
            if not any(r["lr"] == lr for r in cached):
                cached.extend({"kind": "grid", "lr": lr, "seed": s, "eval_loss": loss_of(lr)} for s in B.GRID_SEEDS)

    assert B.grid_rates(regime) == half_decades(-3, -2)  # nothing run yet: the first pass
    finish(lambda lr: abs(math.log10(lr) + 4))  # the best is 1e-4, below the first pass
    assert [round(math.log10(x), 2) for x in B.grid_rates(regime)] == [-3.5, -3.0, -2.5, -2.0]  # one step down
    while len(cached) < 3 * len(B.grid_rates(regime)):  # run what each pass adds, as the benchmark does
        finish(lambda lr: abs(math.log10(lr) + 4))
    rates = B.grid_rates(regime)  # extended to a half decade past 1e-4, then the quarter decades beside it
    assert [round(math.log10(x), 2) for x in rates] == [-4.5, -4.25, -4.0, -3.75, -3.5, -3.0, -2.5, -2.0]


def test_confirmed_reads_the_seeds_trials_as_the_library_does_at_seeds_with_every_trial():
    from hf_lrfind.core.confirm import pick

    records = grid({1e-4: 2.0, 1e-3: 1.0, 1e-2: 1.1, 1e-1: 2.2})
    records += [sweep(s, 3e-3, 3) for s in range(3)]
    trials = {0: [2.0, 1.5, 1.7], 1: [1.0, 1.0, 3.0], 2: [None, 1.2]}  # seed 1: a tie; seed 2: one trial missing
    for seed, losses in trials.items():
        for factor, loss in zip((0.5, 1.0, 2.0), losses):
            lr = factor * S.suggestion_of("trough", records, seed)
            eval_loss = None if loss is None else -loss
            options = {"factor": factor}
            records.append(
                {
                    "kind": "probe",
                    "lr": lr,
                    "seed": seed,
                    "options": options,
                    "train_loss": loss,
                    "eval_loss": eval_loss,
                }
            )
    rules = ["trough", "confirmed", "confirmed (lowest trial)", "confirmed (eval loss)"]
    scores = S.score_records(records, rules)["rules"]
    trough = scores["trough"]["suggestions"]
    assert scores["confirmed"]["seeds"] == 2  # seed 2 lacks a trial
    assert scores["confirmed"]["suggestions"] == [
        pytest.approx(pick([0.5, 1.0, 2.0], trials[s]) * trough[s], rel=1e-12) for s in (0, 1)
    ]
    assert scores["confirmed (lowest trial)"]["suggestions"] == [trough[0], 0.5 * trough[1]]  # a tie: the lower
    assert scores["confirmed (eval loss)"]["suggestions"] == [0.5 * trough[0], 2.0 * trough[1]]


def test_factor_range_keeps_every_bottom_over_its_factor_inside_the_window():
    low, high = S.factor_range([1.0, 2.0], (0.01, 0.1))
    assert (low, high) == pytest.approx((20.0, 100.0))  # 2 / 20 = 0.1 (top edge), 1 / 100 = 0.01 (bottom edge)
    for f in (low, 30.0, high):
        assert all(0.01 - 1e-12 <= b / f <= 0.1 + 1e-12 for b in (1.0, 2.0))
    assert S.factor_range([1.0, 200.0], (0.01, 0.1))[0] > S.factor_range([1.0, 200.0], (0.01, 0.1))[1]  # none fits


def test_the_bottom_rules_read_a_third_of_the_bottom_of_a_bowl_and_the_middle_of_a_flat_one():
    bowl = sweep(0, 1e-3, 3)
    for rule in (S._bottom_rule("centre", 0.1), S._bottom_rule("parabola", 0.5), S._trough()):
        assert rule(bowl) == pytest.approx(1e-3 / 3, rel=0.1)
    flat = dict(bowl, losses=np.maximum(1.0, 1.0 + 0.2 * np.abs(np.log10(bowl["lrs"]) + 3) - 0.2).tolist())
    # flat from 1e-4 to 1e-2: trough reads where the stretch starts (its centred mean's first lowest point), centre
    # its middle, 1e-3
    assert 1e-4 / 3 < S._trough()(flat) < 2e-4 / 3
    assert S._bottom_rule("centre", 0.05)(flat) == pytest.approx(1e-3 / 3, rel=0.1)


def test_the_cached_pretrained_runs_trained_at_the_librarys_pretrained_on_their_split_runs_curves():
    """`--kinds split_pretrained` trained each body at `pretrained` read on the cached body curve of the same seed's
    split run: the library's rule still gives those rates, to the bit (a changed rule must be trained again)."""
    checked = {}
    for name in sorted(os.listdir(S.DATA_DIR)):
        records = S.load(os.path.join(S.DATA_DIR, name))
        split = {r["seed"]: r for r in records if S._strategy(r) == "split"}
        for r in records:
            if r["kind"] == "split_confirm" and (r.get("options") or {}).get("body_rule") == "pretrained":
                # the library's pretrained on the cached curve; 1e-12 leaves room for another BLAS under the fit
                assert r["lr"]["body"] == pytest.approx(S._body_pretrained(split[r["seed"]]), rel=1e-12)
                checked.setdefault(name, []).append(r["seed"])
    full = ("minilm_cls", "minilm_mlm", "minilm_pkg", "minilm_hf", "minilm_tools", "minilm_libs")
    for regime in full:  # every seed of the six full fine-tunes, at each head factor trained
        assert set(checked[f"{regime}.jsonl"]) == {0, 1, 2, 3, 4}


def test_the_cached_probe_runs_trained_their_head_at_the_librarys_probe_on_their_split_runs_curves():
    """The split_confirm runs at probe's factor now (`head_factor`) trained each head at the library's `probe` read on
    the cached head curve of the same seed's split run: every seed of the seven fine-tunes."""
    from hf_lrfind.core.suggest import PROBE_FACTOR, probe

    checked = {}
    for name in sorted(os.listdir(S.DATA_DIR)):
        records = S.load(os.path.join(S.DATA_DIR, name))
        split = {r["seed"]: r for r in records if S._strategy(r) == "split"}
        for r in records:
            if r["kind"] == "split_confirm" and (r.get("options") or {}).get("head_factor") == PROBE_FACTOR:
                head = split[r["seed"]]["curves"]["head"]
                assert r["lr"]["head"] == pytest.approx(probe(*S._prepared(head, smoothed=True)), rel=1e-12)
                checked.setdefault(name[: -len(".jsonl")], []).append(r["seed"])
    for regime in ("minilm_cls", "minilm_lora", "minilm_mlm", "minilm_pkg", "minilm_hf", "minilm_tools", "minilm_libs"):
        assert sorted(checked[regime]) == [0, 1, 2, 3, 4]


def test_band_interval_reads_the_head_rates_in_the_band_around_the_best_with_interpolated_edges():
    heads = [1e-3, 1e-2, 1e-1, 1.0]
    lo, hi = S._band_interval(heads, [2.0, 1.0, 1.1, 2.2], band=1.2)
    assert math.log10(lo) == pytest.approx(-2 - 0.2) and math.log10(hi) == pytest.approx(-1 + 1 / 11)
    lo, hi = S._band_interval(heads, [1.0, 1.1, 1.3, 1.0], band=1.2)  # only the run around the best; an edge stays
    assert lo == 1e-3 and math.log10(hi) == pytest.approx(-2 + 0.5)
    lo, hi = S._band_interval(heads, [1.0, 1.1, math.inf, 1.0], band=1.2)  # a diverged neighbour: the edge stays
    assert (lo, hi) == (1e-3, 1e-2)


def test_band_interval_is_none_where_even_the_seeds_best_is_outside_the_band():
    assert S._band_interval([1.0, 10.0, 100.0], [2.0, 1.5, 2.0], band=1.2) is None


def test_head_factors_beside_matches_each_split_run_to_the_grid_seed_of_its_own_training_seed(tmp_path, monkeypatch):
    """The pair-grid row nearest the adapters' median rate (2e-3: row 1e-3, not 1e-2); per seed, the head rates in the
    band and the split run of the same seed, whatever the order of the records."""
    heads = [1e-3, 1e-2, 1e-1, 1.0]
    lrs = (1e-6 * 1e7 ** (np.arange(100) / 100)).tolist()
    runs = [  # head curves bottoming out at 1e-4 (seed 0) and 1e-2 (seed 1), before the EMA; in reverse seed order
        {
            "kind": "auto",
            "seed": seed,
            "options": {"strategy": "split"},
            "trained_lrs": {"adapter": adapter, "head": 1.0},
            "curves": {"head": {"lrs": lrs, "losses": (1 + np.abs(np.log10(lrs) - math.log10(low))).tolist()}},
        }
        for seed, adapter, low in ((1, 3e-3, 1e-2), (0, 1e-3, 1e-4))
    ]
    losses = {0: [2.0, 1.0, 1.1, 2.2], 1: [1.0, 1.0, 1.0, 1.0]}  # seed 1: every head in the band
    pairs = [
        {"kind": "pair", "lr": {"adapter": row, "head": h}, "seed": seed, "eval_loss": losses[seed][i] + shift}
        for seed in (1, 0)
        for row, shift in ((1e-3, 0.0), (1e-2, 5.0))
        for i, h in enumerate(heads)
    ]
    with open(tmp_path / "minilm_lora.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in runs + pairs)
    monkeypatch.setattr(S, "DATA_DIR", str(tmp_path))
    band = S.pair_grid(runs + pairs, "adapter")["band"]
    lo0, hi0 = S._band_interval(heads, losses[0], band)
    bottoms = {s: S._head_bottom(r) for s, r in ((r["seed"], r) for r in runs)}
    assert bottoms[0] < bottoms[1]
    table = S.head_factors_beside(["minilm_lora"]).splitlines()
    row = table[2].split(" | ")
    assert row[1] == "0.001 (0.002)" and row[2] == f"{lo0:.3g} .. {hi0:.3g}, 0.001 .. 1"
    f_lo, f_hi = max(bottoms[0] / hi0, bottoms[1] / 1.0), min(bottoms[0] / lo0, bottoms[1] / 1e-3)
    assert row[4] == f"{f_lo:.1f} .. {f_hi:.1f} |"


def test_auto_runs_are_labelled_by_strategy_and_phase():
    auto = {"kind": "auto", "options": {"groups": "auto", "strategy": "split"}}
    assert S._strategy(auto) == "split"
    assert S._strategy({**auto, "options": {**auto["options"], "head_phase": "beside"}}) == S.BESIDE
    assert S._strategy({**auto, "options": {**auto["options"], "body_phase": "held"}}) == S.HELD
    assert S._strategy({"kind": "auto", "options": {"groups": "auto"}}) == "sequential"
    assert S._strategy({"kind": "sweep"}) is None


def test_sweep_counts_read_trough_on_the_mean_of_the_first_k_sweeps(tmp_path, monkeypatch):
    records = grid({1e-4: 2.0, 1e-3: 1.0, 1e-2: 1.1, 1e-1: 2.2})
    for seed in (0, 1):
        record = sweep(seed, 1e-2, 2)
        x = np.log10(record["lrs"])
        shallow = 1.0 + 0.2 * np.abs(x + 1)  # the first sweep bottoms at 1e-1 ...
        deep = 1.0 + 2.0 * np.abs(x + 2)  # ... the second, much deeper, at 1e-2: their mean bottoms there
        record["sweep_losses"] = [shallow.tolist(), deep.tolist()]
        records.append(record)
    records.append(sweep(0, 1e-3, 3))  # another count's record is not read
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.setattr(S, "DATA_DIR", str(tmp_path))
    header, _, one, two = (
        [c.strip() for c in row.strip("|").split("|")] for row in S.sweep_counts("toy", 2).splitlines()
    )
    assert header == ["sweeps averaged", "toy: in window", "spread", "seeds 0, 1"]
    assert one[:3] == ["1", "0/2", "1.00x"] and two[:3] == ["2", "2/2", "1.00x"]  # the window: 6.3e-4 .. 1.2e-2
    assert [float(v) for v in one[3].split(", ")] == pytest.approx([1e-1 / 3] * 2, rel=0.1)
    assert [float(v) for v in two[3].split(", ")] == pytest.approx([1e-2 / 3] * 2, rel=0.1)
    with pytest.raises(ValueError, match="--kinds sweep5"):
        S.sweep_counts("toy", 5)


def test_swaps_put_each_seeds_model_on_each_seeds_batches(tmp_path, monkeypatch):
    own = [sweep(0, 1e-3, 3), sweep(2, 1e-2, 3), sweep(1, 1e-1, 3)]  # seed 1 has no swapped run: left out
    swapped = [sweep(2, 1.2e-2, 3), sweep(0, 1.2e-3, 3)]
    swapped[0]["options"]["data_seed"], swapped[1]["options"]["data_seed"] = 0, 2
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in own + swapped))
    monkeypatch.setattr(S, "DATA_DIR", str(tmp_path))
    rows = [[c.strip() for c in row.strip("|").split("|")] for row in S.swaps("toy").splitlines()[2:]]
    assert [r[:2] for r in rows] == [["0", "0"], ["0", "2"], ["2", "0"], ["2", "2"]]
    expected = [1e-3, 1.2e-3, 1.2e-2, 1e-2]  # a third of each bottom
    assert [float(r[2]) for r in rows] == pytest.approx([b / 3 for b in expected], rel=0.1)
