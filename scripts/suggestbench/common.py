"""The protocol every regime of the suggestion benchmark follows, and the runs it is made of.

A regime is a model, its data, a training budget, an optimizer and a schedule, and an evaluation. Three kinds of run:

- `train`: train at peak learning rate(s) for the regime's budget and return the eval loss (the grid, and the
  confirmation of a suggestion). AdamW, or the regime's optimizer (`optimizers.py`), weight decay 0.01 on weights,
  none on biases and LayerNorm (as the Trainer),
  linear warm-up over the first tenth of the steps then linear decay to 0 (`get_linear_schedule_with_warmup`),
  gradient clipping at 1.0: the Trainer's defaults plus a warm-up.
- `sweep`: hf_lrfind's default range test through the accelerate runner, as a user runs it, on the regime's training
  batches; the raw curve is kept so that any rule can be scored offline.
- seeds: seed `s` sets the head (or whole model) initialisation, dropout and the data order, for training and sweeps
  alike, so that "sweep seed s" is the same user setup as "training seed s".

Everything runs on CPU with `torch.set_num_threads(2)` and fixed seeds, so every number is bit-reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from . import optimizers

WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0


@dataclass
class Regime:
    """
    One regime of the benchmark.

    Args:
        name: its name (the results file is `docs/suggestions/data/<name>.jsonl`).
        description: one line for the report.
        steps: training budget in optimizer steps.
        grid: the peak learning rates of the ground-truth grid.
        build_model: `build_model(seed) -> torch.nn.Module`, random parts initialised from `torch.manual_seed(seed)`.
        train_batches: `train_batches(seed) -> Iterator[dict]`, endless, in an order set by `seed`.
        eval_batches: `eval_batches() -> list[dict]`, the fixed held-out set.
        pairs: (body, head) peak-rate pairs for the per-group grid, where the regime has a new head.
        optimizer: the optimizer's name in `optimizers.build` (`"adamw"` for the first four regimes).
        body_group: the name `groups="auto"` gives the group that is not the head (`"body"`, or `"adapter"` for LoRA).
        causal: a causal LM (its eval loss is weighted by the shifted label tokens).
    """

    name: str
    description: str
    steps: int
    grid: list[float]
    build_model: Callable[[int], torch.nn.Module]
    train_batches: Callable[[int], Iterator[dict[str, torch.Tensor]]]
    eval_batches: Callable[[], list[dict[str, torch.Tensor]]]
    pairs: list[tuple[float, float]] = field(default_factory=list)
    body_group: str = "body"
    optimizer: str = "adamw"
    causal: bool = False


def half_decades(lo: int, hi: int) -> list[float]:
    """Rates 10**(k/2) for k from 2*lo to 2*hi: 1e-5, 3.16e-5, 1e-4, ..."""
    return [10 ** (k / 2) for k in range(2 * lo, 2 * hi + 1)]


def endless(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches epoch after epoch (its own seeded generator sets each epoch's order)."""
    while True:
        yield from loader


def _weight(batch: Mapping[str, torch.Tensor], causal: bool) -> int:
    labels = batch["labels"]
    if labels.ndim >= 2:  # token labels (LM): count the predicted tokens
        return int(((labels[..., 1:] if causal else labels) != -100).sum())
    return int(labels.shape[0])


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], causal: bool = False) -> float:
    """Mean eval loss, weighted by predicted tokens (LM) or examples (classification). NaN if not finite."""
    was_training = model.training
    model.eval()
    total, weight = 0.0, 0
    for batch in batches:
        loss = float(model(**batch).loss)
        w = _weight(batch, causal)
        total, weight = total + loss * w, weight + w
    model.train(was_training)
    value = total / weight
    return value if math.isfinite(value) else math.nan


def decay_groups(model: torch.nn.Module, named: Mapping[str, list[str]] | None, lrs: Mapping[str, float]) -> list[dict]:
    """AdamW param groups: weight decay on weights but not on biases and LayerNorm, per named group's peak lr."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    named = named or {"all": list(params)}
    groups = []
    for group, names in named.items():
        decay = [params[n] for n in names if not (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)]
        no_decay = [params[n] for n in names if n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n]
        for ps, wd in ((decay, WEIGHT_DECAY), (no_decay, 0.0)):
            if ps:
                groups.append({"params": ps, "lr": lrs[group], "weight_decay": wd, "name": group})
    return groups


def train(
    regime: Regime,
    lrs: float | Mapping[str, float],
    seed: int,
    named: Mapping[str, list[str]] | None = None,
    steps: int | None = None,
    skip: int = 0,
) -> dict[str, Any]:
    """
    Train for the regime's budget (or `steps`, the schedule's shape compressed to them) at peak rate(s) `lrs` (one
    float, or one per named group) and evaluate; `skip` batches of the seed's stream are passed over first.

    Returns:
        `{"eval_loss", "train_loss", "losses"}`: the final eval loss (NaN if it diverged), the mean training loss of
        the last tenth of the steps, and every step's training loss.
    """
    from transformers import get_linear_schedule_with_warmup

    from hf_lrfind import detect_groups

    torch.manual_seed(seed)
    model = regime.build_model(seed)
    model.train()
    named = None if isinstance(lrs, (int, float)) else detect_groups(model, "auto")
    lrs = {"all": float(lrs)} if isinstance(lrs, (int, float)) else dict(lrs)
    optimizer = optimizers.build(regime.optimizer, decay_groups(model, named, lrs))
    steps = steps or regime.steps
    scheduler = get_linear_schedule_with_warmup(optimizer, int(WARMUP_RATIO * steps), steps)
    batches = regime.train_batches(seed)
    for _ in range(skip):
        next(batches)
    losses: list[float] = []
    for step in range(steps):
        loss = model(**next(batches)).loss
        losses.append(float(loss))
        if not math.isfinite(losses[-1]):
            return {"eval_loss": math.nan, "train_loss": math.nan, "diverged_at": step, "losses": losses}
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    tail = losses[-max(1, steps // 10) :]
    eval_loss = evaluate(model, regime.eval_batches(), regime.causal)
    return {"eval_loss": eval_loss, "train_loss": sum(tail) / len(tail), "losses": losses}


def sweep(regime: Regime, seed: int, data_seed: int | None = None, **options: Any) -> dict[str, Any]:
    """
    hf_lrfind's range test as a user runs it: `LRFinder(model, optimizer, accelerator=Accelerator(cpu=True),
    max_grad_norm=1.0).range_test(batches, **options)`. Returns the result as a dict (curves, suggestions, metadata).
    `seed` seeds the model (a new head's init, dropout) and, unless `data_seed` is given, the batches (order, masks).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from hf_lrfind import LRFinder

    AcceleratorState._reset_state(reset_partial_state=True)
    torch.manual_seed(seed)
    model = regime.build_model(seed)
    model.train()
    optimizer = optimizers.build(regime.optimizer, decay_groups(model, None, {"all": 1e-3}))
    batches = regime.train_batches(seed if data_seed is None else data_seed)

    class Batches:  # a re-iterable view of the seeded endless stream
        def __iter__(self):
            return batches

    finder = LRFinder(model, optimizer, accelerator=Accelerator(cpu=True), max_grad_norm=MAX_GRAD_NORM, progress=False)
    return finder.range_test(Batches(), **options).to_dict()
